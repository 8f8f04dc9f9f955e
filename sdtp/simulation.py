"""SDTP's pruning simulated by attention masking, for training the pruning modules (stage 2).

The whole sequence (prompt + response) runs through the model's own modules layer by layer with a (1, 1, n, n)
additive attention mask = causal mask + a per-key bias log(m_j), m_j the key's keep mask. A pruned key stays masked for
this and every later layer. Forward value of m_j: 1 if kept, δ = e^-70 if pruned, so the bias is −70 — the forward
equals hard pruning in float32 unless a pruned key out-scores every kept key of a query by more than ~50 nats of
attention logit. A finite δ (not −∞) is what lets pruned tokens get a gradient: with bias log m_j the gradient w.r.t.
m_j is DynamicViT's masked-softmax gradient, which does not vanish at m_j → 0.

Straight-through estimator: m_j's gradient is that of the soft mask s_j = sigmoid((π_j − t) / temperature), t midway
between the lowest kept and the highest pruned score of the stage (detached): the bias is
log(h_j) + (s_j − s_j.detach()) / h_j, whose forward value is exactly log(h_j). Sinks and the local window are kept
whatever their score, so they get no gradient from the LM term. Across stages the log-masks add up (m = Π m_s).

The pruner reads a detached float32 copy of the hidden states of the masked forward, so the MSE/ranking terms of a
later stage do not train earlier stages through the hidden states. Only prompt tokens (before `prompt_length`) are
scored and pruned; the schedule is applied with `KeepSchedule.select`, exactly as `sdtp.engine` does at inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sdtp.decoder import check_window, device_of, run_decoder_layer
from sdtp.pruner import PruningModule
from sdtp.schedule import KeepSchedule

# log δ: the attention bias of a pruned key (see the module docstring). e^-70 ≈ 4e-31 is far below float32 resolution
# in the forward, yet the attention weight it leaves (and so the gradient) stays a normal float32/bfloat16 number.
PRUNED_LOG_KEEP = -70.0


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
    implementation = getattr(model.config, "_attn_implementation", "sdpa")
    if implementation not in ("sdpa", "eager"):
        raise ValueError(
            f"simulated pruning needs an additive attention mask, which attn_implementation={implementation!r} does "
            "not apply (FlashAttention-2 reads any mask as a padding mask); load the model with 'sdpa' or 'eager'"
        )
    if straight_through and model.dtype == torch.float16:
        raise ValueError(
            "stage-2 pruner training cannot run the model in float16: the LM term's gradient through a pruned key's "
            f"weight e^{PRUNED_LOG_KEEP:.0f} underflows in fp16 and most of it is lost; set model.dtype to bfloat16 "
            "(or float32) for the saliency and pruner jobs"
        )
    decoder = model.model
    n = input_ids.shape[1]
    check_window(model, n)  # the mask is full causal attention, as in the engine
    prompt_length = n if prompt_length is None else int(prompt_length)
    hidden = decoder.embed_tokens(input_ids.to(device_of(decoder.embed_tokens)))
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
        layer_device = device_of(layer)
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
        hidden = run_decoder_layer(layer, hidden, mask, positions, None, position_embeddings)
    hidden = decoder.norm(hidden.to(device_of(decoder.norm)))
    return SimulatedPrefill(hidden, scores_of, scored_of, kept_of)


def logits_of(model: nn.Module, hidden: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """LM-head logits (1, p, vocab), at least float32, of the final-norm `hidden` (1, n, d) at `positions` (default:
    all)."""
    if positions is not None:
        hidden = hidden[:, positions.to(hidden.device)]
    logits = model.lm_head(hidden.to(device_of(model.lm_head)))
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
