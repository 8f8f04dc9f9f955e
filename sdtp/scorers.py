"""Token scorers: the one thing that differs between SDTP and its comparators.

The engine (`sdtp.engine`) owns pruning, positions and the cache; at each prune point it asks a scorer for one score
per alive token and keeps the schedule's top tokens (plus sinks and the local window). Adding a method is one small
class with a `score` method.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sdtp.decoder import device_of
from sdtp.pruner import PruningModule
from sdtp.saliency import SaliencyConfig, token_saliency
from sdtp.schedule import KeepSchedule


@dataclass
class ScoreContext:
    """What a scorer sees at one prune point.

    Attributes:
        model: the causal LM being run.
        layer: index of the decoder layer the pruning stage runs before.
        stage: index of the stage in the schedule (0-based).
        hidden_states: (1, n, d) hidden states entering `layer`, n = tokens alive.
        positions: (n,) original position ids of the alive tokens, ascending.
        position_embeddings: the model's rotary (cos, sin) for `positions`, each (1, n, head_dim).
    """

    model: nn.Module
    layer: int
    stage: int
    hidden_states: torch.Tensor
    positions: torch.Tensor
    position_embeddings: tuple[torch.Tensor, torch.Tensor]


class Scorer:
    """Base class. `prunes = False` makes the engine skip pruning altogether."""

    name: str = "base"
    prunes: bool = True

    def begin(self, model: nn.Module, input_ids: torch.Tensor, schedule: KeepSchedule) -> None:
        """Called once per prompt before prefill (e.g. to compute whole-input statistics)."""

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        """(n,) importance of each alive token; higher is kept first."""
        raise NotImplementedError


class BaselineScorer(Scorer):
    """No pruning: the unmodified model."""

    name = "baseline"
    prunes = False

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        return torch.zeros(ctx.positions.shape[0], device=ctx.positions.device)


@dataclass
class RandomScorer(Scorer):
    """Uniform random scores, seeded per (seed, layer) so the same config gives the same selection."""

    seed: int = 0
    name = "random"

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        # Drawn on the device itself (its own generator): no host-to-device copy inside a timed prefill. A CUDA
        # generator's stream differs from the CPU one, so CPU and GPU runs keep different (each seeded) tokens.
        device = ctx.positions.device
        generator = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + ctx.layer)
        return torch.rand(ctx.positions.shape[0], generator=generator, device=device)


class StreamingScorer(Scorer):
    """StreamingLLM's shape: sinks (always kept by the schedule) plus the most recent tokens."""

    name = "streaming"

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        return ctx.positions.float()


class AttentionScorer(Scorer):
    """LazyLLM-style: the attention the last query pays each key at this layer, summed over heads.

    Computed from the layer's own q/k projections and rotary embedding for the last query only, so it costs one row of
    attention (heads × n), never an n × n matrix.
    """

    name = "attention"

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        layer = ctx.model.model.layers[ctx.layer]
        attn = layer.self_attn
        x = layer.input_layernorm(ctx.hidden_states)
        _, n, _ = x.shape
        head_dim = attn.head_dim
        q = attn.q_proj(x[:, -1:]).view(1, 1, -1, head_dim).transpose(1, 2)  # (1, H, 1, hd)
        k = attn.k_proj(x).view(1, n, -1, head_dim).transpose(1, 2)  # (1, KVH, n, hd)
        if hasattr(attn, "q_norm"):  # families with per-head q/k norms (Qwen3-style)
            q, k = attn.q_norm(q), attn.k_norm(k)
        apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        # Under accelerate's device_map the rotary embedding is its own placed module (after `model.norm`, on the last
        # GPU): bring its cos/sin to this layer's device.
        cos, sin = (t.to(q.device) for t in ctx.position_embeddings)
        q, _ = apply_rotary(q, q, cos[:, -1:], sin[:, -1:])
        k, _ = apply_rotary(k, k, cos, sin)
        kv_heads = k.shape[1]
        q = q.view(1, kv_heads, -1, head_dim)  # (1, KVH, groups, hd): query heads grouped by their shared key head
        logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * attn.scaling  # (1, KVH, groups, n)
        return logits.softmax(-1).sum(dim=(0, 1, 2))


class OracleScorer(Scorer):
    """True gradient saliency |π̂| of this very input (an upper bound, not a speed method).

    Computed by one forward + backward of the full, unpruned model in `begin` (see `sdtp.saliency`):
    - with a reference answer (`set_reference`, as LongBench prediction does): stage 1's objective (`config.objective`,
      by default the mean logit) of that answer's tokens, teacher-forced after the prompt — so the oracle marks the
      prompt tokens the correct answer depends on, exactly as stage 1 marks the pruner's training targets;
    - without one (latency runs): T = the LM loss of the prompt itself (mean next-token cross-entropy over the prompt).
    Either way the hidden dimension is reduced as stage 1 does (`config.reduction`). The reference is used for one
    prompt only: `begin` clears it. Memory is linear in the prompt length (checkpointed layers, logits only at the
    label positions, in chunks): see `sdtp.saliency.token_saliency` for the formula.
    """

    name = "oracle"

    def __init__(self, config: SaliencyConfig | None = None):
        self.config = config or SaliencyConfig()
        self._saliency: dict[int, torch.Tensor] = {}
        self._reference: torch.Tensor | None = None

    def set_reference(self, answer_ids: list[int] | torch.Tensor | None) -> None:
        """Token ids of the reference answer of the next prompt (None: use the prompt's own LM loss)."""
        self._reference = None if answer_ids is None else torch.as_tensor(answer_ids, dtype=torch.long).reshape(1, -1)

    def begin(self, model: nn.Module, input_ids: torch.Tensor, schedule: KeepSchedule) -> None:
        reference, self._reference = self._reference, None
        if reference is None or reference.numel() == 0:
            saliency = token_saliency(
                model, input_ids, schedule.layers, objective="loss", reduction=self.config.reduction
            )
        else:
            n = input_ids.shape[1]
            full = torch.cat([input_ids, reference.to(input_ids.device)], dim=1)
            labels = full.clone()
            labels[:, :n] = -100
            saliency = token_saliency(
                model,
                full,
                schedule.layers,
                labels=labels,
                objective=self.config.objective,
                reduction=self.config.reduction,
            )
            saliency = {layer: s[:n] for layer, s in saliency.items()}
        self._saliency = {layer: s.abs() for layer, s in saliency.items()}

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        if ctx.layer not in self._saliency:
            raise RuntimeError("OracleScorer.begin() was not called for this prompt and schedule")
        return self._saliency[ctx.layer].to(ctx.positions.device)[ctx.positions]


class SdtpScorer(Scorer):
    """SDTP: scores from the trained pruning module (`sdtp.pruner`)."""

    name = "sdtp"

    def __init__(self, checkpoint: str | Path | PruningModule):
        self.module = checkpoint if isinstance(checkpoint, PruningModule) else PruningModule.load(checkpoint)
        self.module.eval().requires_grad_(False)
        self._weights = {k: v.detach().clone() for k, v in self.module.state_dict().items()}  # as trained (fp32)
        self._placed_for: tuple[int, torch.dtype] | None = None

    def begin(self, model: nn.Module, input_ids: torch.Tensor, schedule: KeepSchedule) -> None:
        missing = [layer for layer in schedule.layers if str(layer) not in self.module.stages]
        if missing:
            raise ValueError(
                f"the pruning module was trained for layers {self.module.layers} but the schedule prunes at {missing}; "
                "train a pruner for this schedule or use its layers"
            )
        if self.module.hidden_size != model.config.hidden_size:
            raise ValueError(
                f"the pruning module expects hidden size {self.module.hidden_size}, "
                f"the model has {model.config.hidden_size}"
            )
        placement = (id(model), model.dtype)
        if self._placed_for != placement:  # once per model, not per prompt: each stage on its layer's device
            layers = model.model.layers
            # From the trained fp32 weights, never from an earlier placement's cast copy.
            self.module.load_state_dict({k: v.clone() for k, v in self._weights.items()}, assign=True)
            self.module.place({layer: device_of(layers[layer]) for layer in self.module.layers}, model.dtype)
            self._placed_for = placement

    def score(self, ctx: ScoreContext) -> torch.Tensor:
        return self.module(ctx.layer, ctx.hidden_states)[0]


SCORERS: dict[str, type[Scorer]] = {
    cls.name: cls for cls in (BaselineScorer, SdtpScorer, RandomScorer, StreamingScorer, AttentionScorer, OracleScorer)
}


def get_scorer(name: str, **kwargs) -> Scorer:
    """Build the scorer called `name` (baseline, sdtp, random, streaming, attention, oracle).

    kwargs: `seed` for random; `checkpoint` (a pruner directory) for sdtp; `saliency` (a `SaliencyConfig`) for
    oracle. Unused kwargs for other methods are ignored
    so callers can pass one set of options for every method.
    """
    if name not in SCORERS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(SCORERS)}")
    if name == "random":
        return RandomScorer(seed=int(kwargs.get("seed", 0)))
    if name == "sdtp":
        if kwargs.get("checkpoint") is None:
            raise ValueError(
                "method 'sdtp' needs checkpoint=<pruner directory> (train one with `python -m sdtp train-pruner`)"
            )
        return SdtpScorer(kwargs["checkpoint"])
    if name == "oracle":
        return OracleScorer(kwargs.get("saliency"))
    return SCORERS[name]()
