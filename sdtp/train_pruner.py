"""`python -m sdtp train-pruner`: SDTP's stage 2, training the pruning modules with the LLM frozen.

Per training sample (batch size 1, one optimiser step per sample) the loss is

    lm_weight · LM cross-entropy of the model run with pruning simulated by attention masking
  + mse_weight · Σ_stages MSE(π, target)
  + rank_weight · Σ_stages mean over pairs of log(1 + exp(−(π_i − π_j) · sign(target_i − target_j)))

where π are the pruner's scores of the prompt tokens alive at a prune layer and the target is the stage-1 saliency of
the same tokens at that layer (`sdtp.saliency`). A weight of 0 switches a term off (the paper's ablation).

Design choices (the paper leaves them open):

- **Target.** Importance is |π̂| (removing a token changes the loss by about −π̂, in either direction). For the MSE the
  magnitudes are standardised over the scored tokens of each (sample, layer) — zero mean, unit variance — so the term
  is scale-free across layers and samples while keeping relative gaps (ranks alone would lose them). The ranking sign
  comes from the raw |π̂|; pairs with equal |π̂| are skipped.
- **Which tokens.** Only prompt tokens (labels == -100, the prefix before the first labelled token) are scored and
  pruned: the response plays the decoded tokens, which SDTP never prunes. The schedule — cumulative keep counts, sinks,
  local window at the prompt end — is applied with `KeepSchedule.select`, exactly as `sdtp.engine` does at inference.
- **Masked simulation.** The whole sequence (prompt + response) runs through the model's own modules layer by layer
  with a (1, 1, n, n) additive attention mask = causal mask + a per-key bias log(m_j), m_j the key's keep mask. A
  pruned key stays masked for this and every later layer. Forward value of m_j: 1 if kept, δ = e^-70 if pruned, so
  the bias is −70 — the forward equals hard pruning in float32 unless a pruned key out-scores every kept key of a
  query by more than ~50 nats of attention logit. A finite δ (not −∞) is what lets pruned tokens get a gradient: with
  bias log m_j the gradient w.r.t. m_j is DynamicViT's masked-softmax gradient, which does not vanish at m_j → 0.
- **Straight-through estimator.** m_j's gradient is that of the soft mask s_j = sigmoid((π_j − t) / temperature),
  t midway between the lowest kept and the highest pruned score of the stage (detached): the bias is
  log(h_j) + (s_j − s_j.detach()) / h_j, whose forward value is exactly log(h_j). Sinks and the local window are kept
  whatever their score, so they get no gradient from the LM term. Across stages the log-masks add up (m = Π m_s).
- **Pruner input.** The pruner reads a detached float32 copy of the hidden states of the masked forward, so the
  MSE/ranking terms of a later stage do not train earlier stages through the hidden states.
- **Long inputs.** The ranking term compares at most `rank_pairs` pairs per stage and sample, drawn uniformly without
  replacement from all i < j pairs (seeded `torch.Generator`); shorter inputs use every pair.

Evaluation: mean Spearman correlation, per prune layer, between the pruner's scores and |π̂| on the held-out split,
the scores computed from the unpruned model's hidden states entering each layer (the inputs saliency saw), over the
prompt tokens; next to it, the recall of the salient tokens within the kept fraction, and the Spearman of a
context-free scorer (`token_type_spearman`): at layer 0 the pruner reads the token embedding alone, so that is what
it can reach there.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from sdtp.engine import _check_window, _run_layer
from sdtp.pruner import PruningModule
from sdtp.schedule import KeepSchedule

log = logging.getLogger(__name__)

# log δ: the attention bias of a pruned key (see the module docstring). e^-70 ≈ 4e-31 is far below float32 resolution
# in the forward, yet the attention weight it leaves (and so the gradient) stays a normal float32/bfloat16 number.
PRUNED_LOG_KEEP = -70.0

OPTIMIZERS = ("adamw", "adam", "sgd")
LOSS_COLUMNS = ["model", "keep_ratio", "epoch", "step", "sample", "lm", "mse", "rank", "total"]


@dataclass
class PrunerTrainConfig:
    """Pruner-training settings: the config's `pruner:` section (the seed is the top-level `seed`).

    Fields:
        epochs: passes over the training split (paper: 2).
        lr: learning rate.
        weight_decay: optimiser weight decay.
        optimizer: "adamw" | "adam" | "sgd".
        lm_weight: weight of the LM cross-entropy under simulated pruning; 0 switches it off.
        mse_weight: weight of MSE(π, standardised |π̂|); 0 switches it off.
        rank_weight: weight of the pairwise logistic ranking loss; 0 switches it off.
        rank_pairs: at most this many token pairs per stage and sample in the ranking loss (sampled uniformly).
        temperature: of the soft keep mask sigmoid((π − t)/temperature) that carries the LM gradient, in score units
            (scores are trained toward standardised |π̂|, so 1 ≈ one standard deviation).
        max_grad_norm: clip the pruner's gradient norm to this; 0 disables clipping.
        log_every: log the running loss every this many optimiser steps.
    """

    epochs: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    lm_weight: float = 1.0
    mse_weight: float = 1.0
    rank_weight: float = 1.0
    rank_pairs: int = 2048
    temperature: float = 0.5
    max_grad_norm: float = 1.0
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("epochs", "rank_pairs", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"pruner.{name} = {value!r} must be an integer >= 1")
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"pruner.{name} = {value!r} must be a number > 0")
        for name in ("weight_decay", "lm_weight", "mse_weight", "rank_weight", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"pruner.{name} = {value!r} must be a number >= 0")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"pruner.optimizer = {self.optimizer!r} must be one of {', '.join(OPTIMIZERS)}")
        if self.lm_weight == self.mse_weight == self.rank_weight == 0:
            raise ValueError("pruner.lm_weight, mse_weight and rank_weight are all 0: nothing to train")

    @classmethod
    def from_dict(cls, d: dict | None) -> "PrunerTrainConfig":
        """Build from the config's `pruner:` mapping, rejecting keys this class does not know."""
        from sdtp.settings import section_from_dict

        return section_from_dict(cls, "pruner", d)


# ----------------------------------------------------------------------------------------------------------------------
# Loss terms and evaluation metric


def sample_pairs(n: int, max_pairs: int, generator: torch.Generator) -> torch.Tensor:
    """Distinct index pairs (i, j), i < j < n: all of them if there are at most `max_pairs`, else `max_pairs` drawn
    uniformly without replacement.

    Returns:
        (P, 2) LongTensor on CPU, sorted by (j, i).
    """
    total = n * (n - 1) // 2
    if total <= max_pairs:
        linear = torch.arange(total)
    elif total <= 4 * max_pairs:
        linear = torch.randperm(total, generator=generator)[:max_pairs]
    else:
        # Rejection: draws with replacement, duplicates dropped, until enough. The set is invariant under permutations
        # of [0, total), so given its size it is a uniform subset, and a random part of it is uniform too.
        linear = torch.empty(0, dtype=torch.long)
        while linear.numel() < max_pairs:
            need = max_pairs - linear.numel()
            draws = torch.randint(total, (2 * need + 16,), generator=generator)
            linear = torch.unique(torch.cat([linear, draws]))
        linear = linear[torch.randperm(linear.numel(), generator=generator)[:max_pairs]]
    linear = torch.sort(linear).values
    # Linear index k = j(j-1)/2 + i enumerates pairs column by column; invert the triangular number, then fix the
    # float rounding by one step either way.
    j = torch.floor((1 + torch.sqrt(1 + 8 * linear.double())) / 2).long()
    j = torch.where(j * (j - 1) // 2 > linear, j - 1, j)
    j = torch.where((j + 1) * j // 2 <= linear, j + 1, j)
    i = linear - j * (j - 1) // 2
    return torch.stack([i, j], dim=1)


def ranking_loss(scores: torch.Tensor, targets: torch.Tensor, pairs: torch.Tensor | None = None) -> torch.Tensor:
    """Mean pairwise logistic loss log(1 + exp(−(s_i − s_j) · sign(t_i − t_j))) over pairs with t_i ≠ t_j.

    Args:
        scores: (n,) predicted scores.
        targets: (n,) target importance; only its order matters.
        pairs: (P, 2) index pairs; None = every pair i < j (O(n²) memory: use `sample_pairs` on long inputs).
    Returns:
        scalar tensor; 0 (still attached to `scores`) when no pair has distinct targets.
    """
    if pairs is None:
        pairs = torch.triu_indices(scores.shape[0], scores.shape[0], offset=1, device=scores.device).T
    pairs = pairs.to(scores.device)
    sign = torch.sign(targets[pairs[:, 0]] - targets[pairs[:, 1]]).to(scores.dtype)
    untied = sign != 0
    if not bool(untied.any()):
        return scores.sum() * 0.0
    margin = (scores[pairs[:, 0]] - scores[pairs[:, 1]]) * sign
    return nn.functional.softplus(-margin[untied]).mean()


def standardise(values: torch.Tensor) -> torch.Tensor:
    """(n,) → zero mean, unit (population) variance; all zeros when the values are constant."""
    centred = values - values.mean()
    std = centred.pow(2).mean().sqrt()
    return centred / std if float(std) > 0 else torch.zeros_like(values)


def spearman(a, b) -> float:
    """Spearman correlation of two equal-length 1-D sequences (average ranks for ties); NaN if either is constant."""
    a = pd.Series(np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64))
    b = pd.Series(np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64))
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    rank_a, rank_b = a.rank(method="average").to_numpy(), b.rank(method="average").to_numpy()
    if len(a) < 2 or rank_a.std() == 0 or rank_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


# ----------------------------------------------------------------------------------------------------------------------
# Training samples


@dataclass
class PrunerSample:
    """One training sample with its stage-1 saliency.

    Attributes:
        sample: the sample's id (column `sample` of train.parquet).
        input_ids: (1, n) prompt + response token ids.
        labels: (1, n) LM targets, -100 on the prompt.
        saliency: {layer: (n,) float32 signed saliency π̂ of every token entering that layer}.
    """

    sample: int
    input_ids: torch.Tensor
    labels: torch.Tensor
    saliency: dict[int, torch.Tensor]

    @property
    def prompt_length(self) -> int:
        """Tokens before the first labelled one: the part SDTP may prune (all of it when nothing is labelled)."""
        labelled = (self.labels[0] != -100).nonzero()
        return int(labelled[0]) if labelled.numel() else self.labels.shape[1]


def load_samples(train: pd.DataFrame, saliency: pd.DataFrame, layers: list[int]) -> list[PrunerSample]:
    """Join train.parquet rows (split, sample, input_ids, labels) with scores.parquet rows (split, sample, layer,
    scores) into `PrunerSample`s, in the order of `train`; a clear error names a missing or mismatched saliency row."""
    by_key = {(row.split, int(row.sample), int(row.layer)): row.scores for row in saliency.itertuples(index=False)}
    samples = []
    for row in train.itertuples(index=False):
        ids = torch.tensor([list(row.input_ids)], dtype=torch.long)
        per_layer = {}
        for layer in layers:
            scores = by_key.get((row.split, int(row.sample), int(layer)))
            if scores is None:
                raise ValueError(
                    f"no saliency for split {row.split!r} sample {row.sample} layer {layer} in the saliency file; "
                    "it must come from `python -m sdtp saliency` run with the same schedule and training samples"
                )
            if len(scores) != ids.shape[1]:
                raise ValueError(
                    f"saliency of split {row.split!r} sample {row.sample} layer {layer} has {len(scores)} scores for "
                    f"{ids.shape[1]} tokens: the saliency file was computed on other training samples"
                )
            per_layer[int(layer)] = torch.tensor(list(scores), dtype=torch.float32)
        labels = torch.tensor([list(row.labels)], dtype=torch.long)
        samples.append(PrunerSample(int(row.sample), ids, labels, per_layer))
    return samples


# ----------------------------------------------------------------------------------------------------------------------
# Pruning simulated by attention masking


@dataclass
class SimulatedPrefill:
    """Outcome of `simulate_pruning`.

    Attributes:
        hidden: (1, n, d) output of the model's final norm for every position (pruned ones included; their values
            influence no kept token).
        scores: {prune layer: (m_l,) float32 pruner scores of the prompt tokens alive entering that layer}.
        scored_positions: {prune layer: (m_l,) their positions}.
        kept_positions: {prune layer: positions of the prompt tokens that stage keeps}.
    """

    hidden: torch.Tensor
    scores: dict[int, torch.Tensor]
    scored_positions: dict[int, torch.Tensor]
    kept_positions: dict[int, torch.Tensor]


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _protected(schedule: KeepSchedule, m: int, device: torch.device) -> torch.Tensor:
    """(m,) bool: the sinks and local window that `schedule.select` keeps among m tokens whatever their scores."""
    protected = torch.zeros(m, dtype=torch.bool, device=device)
    protected[: schedule.sink_tokens] = True
    local = schedule.protected_count(m) - min(schedule.sink_tokens, m)
    if local > 0:
        protected[m - local :] = True
    return protected


def straight_through_log_keep(
    scores: torch.Tensor, keep: torch.Tensor, protected: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per-token attention bias log(m) of one stage: forward value 0 (kept) or `PRUNED_LOG_KEEP` (pruned), gradient
    that of the soft mask sigmoid((score − t)/temperature), t midway between the lowest kept and highest pruned score.

    Args:
        scores: (m,) float32 scores of the tokens reaching the stage (attached to the pruner).
        keep: indices the stage keeps (`KeepSchedule.select`); at least one token must be pruned.
        protected: (m,) bool, tokens kept whatever their score (no gradient).
    Returns:
        (m,) float32.
    """
    kept = torch.zeros_like(protected)
    kept[keep] = True
    detached = scores.detach()
    highest_pruned = detached[~kept].max()
    chosen = kept & ~protected
    lowest_kept = detached[chosen].min() if bool(chosen.any()) else highest_pruned
    threshold = (lowest_kept + highest_pruned) / 2
    soft = torch.sigmoid((scores - threshold) / temperature)
    hard = torch.where(kept, 1.0, math.exp(PRUNED_LOG_KEEP)).to(scores.dtype)
    log_hard = torch.where(kept, 0.0, PRUNED_LOG_KEEP).to(scores.dtype)
    # d log(m)/d m = 1/m at the forward value m = hard; the difference is exactly 0 in the forward.
    log_keep = log_hard + (soft - soft.detach()) / hard
    return torch.where(protected, torch.zeros_like(log_keep), log_keep)


def _attention_mask(key_bias: torch.Tensor, causal: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(1, 1, n, n) additive mask: key_bias[j] where key j ≤ query i, the dtype's minimum above the diagonal."""
    bias = key_bias.to(dtype)[None, :].expand_as(causal)
    return torch.where(causal, bias, torch.finfo(dtype).min)[None, None]


def simulate_pruning(
    model: nn.Module,
    pruner: PruningModule,
    input_ids: torch.Tensor,
    schedule: KeepSchedule,
    prompt_length: int | None = None,
    temperature: float = 0.5,
    straight_through: bool = True,
) -> SimulatedPrefill:
    """Run the model over the whole sequence with SDTP's pruning simulated by attention masking.

    At each prune layer the pruner scores the prompt tokens still alive (from the masked forward's hidden states);
    `schedule.select` picks the survivors; the others are masked out as keys for this and every later layer with a
    straight-through bias (`straight_through_log_keep`). Tokens from `prompt_length` on are never pruned.

    Args:
        model: causal LM with `model.model.{embed_tokens, rotary_emb, layers, norm}` (as `sdtp.engine`), frozen.
        pruner: scores for every layer of `schedule` (float32).
        input_ids: (1, n) token ids.
        prompt_length: the prunable prefix; None = all n tokens (a prompt-only input, as at inference).
        temperature: of the soft keep mask.
        straight_through: give the mask the soft mask's gradient; False = hard mask only, and no autograd graph
            through the model (when the LM term is off, only the scores need gradients).
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape (1, n): batch size 1, got {tuple(input_ids.shape)}")
    decoder = model.model
    n = input_ids.shape[1]
    _check_window(model, n)  # the mask is full causal attention, as in the engine
    prompt_length = n if prompt_length is None else int(prompt_length)
    hidden = decoder.embed_tokens(input_ids.to(_device_of(decoder.embed_tokens)))
    device = hidden.device
    positions = torch.arange(n, device=device)
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    # Σ over stages of log(keep mask) per key; float32 at least, float64 for a float64 model (gradient checks)
    key_bias = torch.zeros(n, dtype=torch.promote_types(hidden.dtype, torch.float32), device=device)
    alive_prompt = torch.arange(prompt_length, device=device)
    position_embeddings = decoder.rotary_emb(hidden, positions[None])
    mask = _attention_mask(key_bias, causal, hidden.dtype)
    scores_of, scored_of, kept_of = {}, {}, {}

    for idx, layer in enumerate(decoder.layers):
        layer_device = _device_of(layer)
        if hidden.device != layer_device:  # accelerate dispatch: everything follows the layer's device
            hidden, positions, mask = hidden.to(layer_device), positions.to(layer_device), mask.to(layer_device)
            position_embeddings = tuple(p.to(layer_device) for p in position_embeddings)
        if schedule.stage_of(idx) is not None and alive_prompt.numel() > 0:
            tokens = hidden[0, alive_prompt.to(hidden.device)].detach().float()
            scores = pruner(idx, tokens).to(device)
            keep = schedule.select(scores)
            scores_of[idx], scored_of[idx] = scores, alive_prompt
            kept_of[idx] = alive_prompt[keep]
            if keep.numel() < alive_prompt.numel():
                protected = _protected(schedule, alive_prompt.numel(), device)
                stage_log_keep = straight_through_log_keep(scores, keep, protected, temperature)
                if not straight_through:
                    stage_log_keep = stage_log_keep.detach()
                key_bias = key_bias.index_add(0, alive_prompt, stage_log_keep.to(key_bias.dtype))
                alive_prompt = kept_of[idx]
                mask = _attention_mask(key_bias, causal, hidden.dtype).to(hidden.device)
        hidden = _run_layer(layer, hidden, mask, positions, None, position_embeddings)
    hidden = decoder.norm(hidden.to(_device_of(decoder.norm)))
    return SimulatedPrefill(hidden, scores_of, scored_of, kept_of)


def logits_of(model: nn.Module, hidden: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """LM-head logits (1, p, vocab), at least float32, of the final-norm `hidden` (1, n, d) at `positions` (default:
    all)."""
    if positions is not None:
        hidden = hidden[:, positions.to(hidden.device)]
    logits = model.lm_head(hidden.to(_device_of(model.lm_head)))
    return logits.to(torch.promote_types(logits.dtype, torch.float32))  # half → float32; float64 stays


def lm_loss_at_labels(model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions, with logits only where a label follows (never the
    full (n, vocab) matrix); 0 when nothing is labelled. Equals `sdtp.saliency.lm_loss` on full logits."""
    targets = labels[0, 1:].to(hidden.device)
    predicting = (targets != -100).nonzero().squeeze(1)
    if predicting.numel() == 0:
        return hidden.new_zeros((), dtype=torch.float32)
    logits = logits_of(model, hidden, predicting)[0]
    return nn.functional.cross_entropy(logits, targets[predicting].to(logits.device))


# ----------------------------------------------------------------------------------------------------------------------
# Training


@dataclass
class LossTerms:
    """Unweighted terms of one sample's loss (scalars) and the weighted total that is optimised."""

    lm: torch.Tensor
    mse: torch.Tensor
    rank: torch.Tensor
    total: torch.Tensor


def sample_loss(
    model: nn.Module,
    pruner: PruningModule,
    sample: PrunerSample,
    schedule: KeepSchedule,
    config: PrunerTrainConfig,
    generator: torch.Generator,
) -> LossTerms:
    """The three loss terms of one sample (MSE and ranking summed over stages) and their weighted sum."""
    device = _device_of(model.model.embed_tokens)
    result = simulate_pruning(
        model, pruner, sample.input_ids.to(device), schedule, sample.prompt_length, config.temperature,
        straight_through=config.lm_weight > 0,
    )
    lm = lm_loss_at_labels(model, result.hidden, sample.labels)
    mse = rank = torch.zeros((), device=device)
    for layer, scores in result.scores.items():
        importance = sample.saliency[layer].to(device)[result.scored_positions[layer]].abs()
        mse = mse + nn.functional.mse_loss(scores, standardise(importance))
        pairs = sample_pairs(scores.shape[0], config.rank_pairs, generator)
        rank = rank + ranking_loss(scores, importance, pairs)
    # A switched-off term is left out of the sum (not multiplied by 0), so it cannot leak a NaN into the total.
    weighted = ((config.lm_weight, lm), (config.mse_weight, mse), (config.rank_weight, rank))
    total = sum(weight * term.to(device) for weight, term in weighted if weight)
    return LossTerms(lm=lm, mse=mse, rank=rank, total=total)


def _optimizer(config: PrunerTrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay)


def train_pruner(
    model: nn.Module,
    samples: list[PrunerSample],
    schedule: KeepSchedule,
    config: PrunerTrainConfig,
    seed: int = 0,
    model_name: str = "model",
) -> tuple[PruningModule, pd.DataFrame]:
    """Train a fresh float32 `PruningModule` for `schedule.layers` on `samples` (one optimiser step per sample,
    shuffled each epoch); the model is put in eval mode and frozen. Deterministic given `seed`.

    Returns:
        (pruner in eval mode, losses: one row per step with columns `LOSS_COLUMNS`).
    """
    if not samples:
        raise ValueError("no training samples: the training split of train.parquet is empty")
    if not schedule.layers:
        raise ValueError("the schedule has no prune layers: there is no pruner to train")
    model.eval().requires_grad_(False)
    device = _device_of(model.model.embed_tokens)
    torch.manual_seed(seed)
    pruner = PruningModule(schedule.layers, model.config.hidden_size).to(device).train()
    optimizer = _optimizer(config, pruner.parameters())
    generator = torch.Generator().manual_seed(seed)  # sample order and ranking pairs
    rows, step, start = [], 0, time.perf_counter()
    steps_total = config.epochs * len(samples)
    for epoch in range(config.epochs):
        for index in torch.randperm(len(samples), generator=generator).tolist():
            sample = samples[index]
            terms = sample_loss(model, pruner, sample, schedule, config, generator)
            optimizer.zero_grad(set_to_none=True)
            if terms.total.requires_grad:  # e.g. LM term only at keep ratio 1: nothing prunes, nothing to learn
                terms.total.backward()
                if config.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(pruner.parameters(), config.max_grad_norm)
                optimizer.step()
            step += 1
            rows.append(
                dict(model=model_name, keep_ratio=float(schedule.keep_ratio), epoch=epoch, step=step,
                     sample=sample.sample, lm=terms.lm.item(), mse=terms.mse.item(), rank=terms.rank.item(),
                     total=terms.total.item())
            )
            if step % config.log_every == 0 or step == steps_total:
                recent = pd.DataFrame(rows[-config.log_every :])
                log.info(
                    "epoch %d step %d/%d: total %.4f (lm %.4f, mse %.4f, rank %.4f; mean of last %d), %.1f s",
                    epoch, step, steps_total, recent.total.mean(), recent.lm.mean(), recent.mse.mean(),
                    recent["rank"].mean(), len(recent), time.perf_counter() - start,
                )
    return pruner.eval(), pd.DataFrame(rows, columns=LOSS_COLUMNS)


@torch.no_grad()
def _heldout_scores(model: nn.Module, pruner: PruningModule, samples: pd.DataFrame, saliency: pd.DataFrame, layers):
    """Yield (layer, pruner scores, |π̂|) over the prompt tokens of every sample, scores from the unpruned model's
    hidden states entering each layer — the inputs the saliency saw."""
    device = _device_of(model.model.embed_tokens)
    for sample in load_samples(samples, saliency, layers):
        hidden_states = model.model(
            input_ids=sample.input_ids.to(device), use_cache=False, output_hidden_states=True
        ).hidden_states  # hidden_states[l] enters decoder layer l
        prompt = sample.prompt_length
        for layer in layers:
            scores = pruner(int(layer), hidden_states[int(layer)][0, :prompt].float())
            yield int(layer), scores, sample.saliency[int(layer)][:prompt].abs()


def _mean_per_layer(values: dict[int, list[float]]) -> dict[int, float]:
    return {layer: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for layer, v in values.items()}


def evaluate_pruner(
    model: nn.Module, pruner: PruningModule, samples: pd.DataFrame, saliency: pd.DataFrame, layers: list[int]
) -> dict[int, float]:
    """Mean (over samples) Spearman correlation per layer between the pruner's scores and |π̂| of the prompt tokens.

    The scores come from the unpruned model's hidden states entering each layer — the inputs the saliency saw.

    Args:
        samples: train.parquet rows to evaluate (typically split == "heldout").
        saliency: scores.parquet rows covering them.
    Returns:
        {layer: mean Spearman}; NaN for a layer where no sample had a defined correlation (or no samples).
    """
    per_layer: dict[int, list[float]] = {int(layer): [] for layer in layers}
    for layer, scores, target in _heldout_scores(model, pruner, samples, saliency, layers):
        per_layer[layer].append(spearman(scores, target))
    return _mean_per_layer(per_layer)


def salient_recall(scores: torch.Tensor, target: torch.Tensor, keep_fraction: float, threshold: float = 0.1) -> float:
    """Fraction of the salient tokens (|π̂| > threshold × the largest, the set `sdtp.saliency.sparsity` counts) that
    rank among the pruner's top ceil(keep_fraction × n) scores; NaN when no token is salient.

    Spearman weighs every token alike; when saliency is sparse (a few needles in filler) the filler's near-zero
    |π̂| order is noise and dominates it. This asks what pruning needs: are the salient tokens kept?
    """
    target = target.float()
    salient = target > threshold * target.max()
    if target.max() <= 0 or not salient.any():
        return float("nan")
    k = max(1, math.ceil(keep_fraction * len(scores)))
    kept = torch.zeros_like(salient)
    kept[torch.topk(scores.float(), k).indices.to(kept.device)] = True
    return float((kept & salient).sum() / salient.sum())


def evaluate_heldout(
    model: nn.Module, pruner: PruningModule, samples: pd.DataFrame, saliency: pd.DataFrame, layers: list[int],
    keep_fraction: float,
) -> tuple[dict[int, float], dict[int, float]]:
    """(`evaluate_pruner`'s Spearman, mean `salient_recall`) per layer, from one pass over the samples."""
    rho: dict[int, list[float]] = {int(layer): [] for layer in layers}
    recall: dict[int, list[float]] = {int(layer): [] for layer in layers}
    for layer, scores, target in _heldout_scores(model, pruner, samples, saliency, layers):
        rho[layer].append(spearman(scores, target))
        recall[layer].append(salient_recall(scores, target, keep_fraction))
    return _mean_per_layer(rho), _mean_per_layer(recall)


def token_type_spearman(
    train: list[PrunerSample], heldout: list[PrunerSample], layers: list[int]
) -> dict[int, float]:
    """Held-out Spearman, per layer, of a context-free scorer: each token id's mean percentile of |π̂| among its
    sample's prompt tokens on `train` (ids never seen there get the median, 0.5).

    A reference for `evaluate_pruner`: at decoder layer 0 the hidden state is the token embedding, so the pruner's
    score there is a function of the token id alone, like this scorer's. When |π̂| varies mostly with context
    (a needle among random filler words) neither can rank it much better than this.
    """
    values: dict[int, list[float]] = {int(layer): [] for layer in layers}
    for layer in values:
        # One (token id, percentile) row per training prompt token; the mean per id is the scorer (vectorised:
        # a Dolly-sized split has millions of tokens).
        seen = pd.concat([
            pd.DataFrame({
                "token": sample.input_ids[0, : sample.prompt_length].numpy(),
                "percentile": pd.Series(sample.saliency[layer][: sample.prompt_length].abs().numpy()).rank(pct=True),
            })
            for sample in train
        ])  # fmt: skip
        mean_percentile = seen.groupby("token")["percentile"].mean()
        for sample in heldout:
            tokens = pd.Series(sample.input_ids[0, : sample.prompt_length].numpy())
            predicted = tokens.map(mean_percentile).fillna(0.5).to_numpy()
            values[layer].append(spearman(predicted, sample.saliency[layer][: sample.prompt_length].abs()))
    return _mean_per_layer(values)


# ----------------------------------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sdtp.settings import add_settings_arguments

    add_settings_arguments(parser)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage the pruner is trained for")
    parser.add_argument("--train", required=True, help="samples Parquet from `prepare-train`")
    parser.add_argument("--saliency", required=True, help="Parquet from `saliency`: split, sample, layer, scores")
    parser.add_argument("--out", required=True, help="pruner checkpoint directory to write")
    parser.add_argument("--losses", required=True, help="Parquet: one row per optimisation step")


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def main(args: argparse.Namespace) -> int:
    from sdtp.io import write_parquet
    from sdtp.settings import load_run_model, schedule_for

    settings, model, _ = load_run_model(args)
    config = PrunerTrainConfig.from_dict(settings.get("pruner"))
    schedule = schedule_for(settings, model, args.ratio)
    model_name = settings["model"]["name"]
    train_rows = pd.read_parquet(args.train)
    saliency = pd.read_parquet(args.saliency)
    train_samples = load_samples(train_rows[train_rows.split == "train"], saliency, schedule.layers)
    heldout_rows = train_rows[train_rows.split == "heldout"]
    log.info(
        "training the pruner for layers %s at keep ratio %s on %d samples (%d held out), %s",
        schedule.layers, args.ratio, len(train_samples), len(heldout_rows), config,
    )
    start = time.perf_counter()
    pruner, losses = train_pruner(model, train_samples, schedule, config, seed=settings["seed"], model_name=model_name)
    train_s = time.perf_counter() - start
    heldout, recall = (
        evaluate_heldout(model, pruner, heldout_rows, saliency, schedule.layers, args.ratio)
        if len(heldout_rows) else ({}, {})
    )  # fmt: skip
    finite = [v for v in heldout.values() if math.isfinite(v)]
    heldout_mean = float(np.mean(finite)) if finite else float("nan")
    for layer, value in heldout.items():
        log.info("held-out Spearman(pruner, |saliency|) at layer %d: %.3f", layer, value)
    if heldout:
        log.info("held-out Spearman, mean over layers: %.3f", heldout_mean)
    for layer, value in recall.items():
        log.info(
            "held-out recall of salient tokens in the pruner's top %.0f%% at layer %d: %.3f",
            100 * args.ratio, layer, value,
        )
    context_free = (
        token_type_spearman(train_samples, load_samples(heldout_rows, saliency, schedule.layers), schedule.layers)
        if len(heldout_rows) else {}
    )  # fmt: skip
    for layer, value in context_free.items():
        log.info(
            "held-out Spearman of a context-free scorer (each token type's mean |saliency| percentile in training) "
            "at layer %d: %.3f", layer, value,
        )
    meta = dict(
        base_model=model_name,
        model_dir=args.model_dir,
        keep_ratio=float(args.ratio),
        layers=schedule.layers,
        schedule=dict(sink_tokens=schedule.sink_tokens, local_ratio=schedule.local_ratio, min_local=schedule.min_local),
        config=dataclasses.asdict(config),
        seed=settings["seed"],
        train_samples=len(train_samples),
        heldout_samples=len(heldout_rows),
        steps=len(losses),
        heldout_spearman={str(layer): _finite_or_none(value) for layer, value in heldout.items()},
        heldout_spearman_mean=_finite_or_none(heldout_mean),
        heldout_salient_recall={str(layer): _finite_or_none(value) for layer, value in recall.items()},
        heldout_token_type_spearman={str(layer): _finite_or_none(value) for layer, value in context_free.items()},
        train_s=train_s,
    )
    pruner.save(args.out, meta=meta)
    write_parquet(losses, args.losses)
    log.info("wrote %s and %s (%d steps, %.1f s)", args.out, args.losses, len(losses), train_s)
    return 0
