"""Is gradient saliency a faithful measure of what pruning a token costs? (`python -m sdtp saliency-check`)

SDTP trains its pruner to imitate π̂ = (∂T/∂x)·x. Whether that target marks the tokens pruning must keep is a property
of the model, and it can be measured directly: the *removal effect* of prompt token j at prune layer l is

    effect_l(j) = T(full) − T(token j masked out as a key for layer l and every later layer)

which is exactly what SDTP does to a token it prunes before layer l (its own hidden state then influences nothing).
T is stage 1's objective on the response tokens (`sdtp.saliency`). One batched forward of the model's own layers per
`batch_size` tokens and layer; no gradients.

`check_samples` compares each saliency reduction (`sum`, `abs_sum`) with the removal effect on held-out samples:
Spearman over the prompt tokens, and where the *decisive* tokens — effect above 10% of the sample's largest — rank
under the saliency (median rank / prompt length, 0 = top; recall in the top half).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from sdtp.decoder import check_window, device_of, run_decoder_layer
from sdtp.saliency import REDUCTIONS, token_saliency
from sdtp.stats import spearman

log = logging.getLogger(__name__)

# Attention bias of a removed key: far below any real attention logit, finite so that no row is all -inf.
REMOVED_KEY_BIAS = -1e4


def _objective(model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, objective: str) -> torch.Tensor:
    """(B,) stage-1 objective of each batch row (`sdtp.saliency.label_logit` / `lm_loss`), from the final-norm
    output `hidden` (B, n, d); logits only where a label follows."""
    targets = labels[0, 1:].to(hidden.device)
    predicting = (targets != -100).nonzero().squeeze(1)
    logits = model.lm_head(hidden[:, predicting].to(device_of(model.lm_head))).float()  # (B, p, vocab)
    label = targets[predicting].to(logits.device)
    picked = logits.gather(-1, label[None, :, None].expand(logits.shape[0], -1, 1)).squeeze(-1)  # (B, p)
    if objective == "loss":
        return (logits.logsumexp(-1) - picked).mean(-1)
    return picked.mean(-1)


@torch.no_grad()
def removal_effect(
    model: nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    layers: list[int],
    objective: str = "logit",
    batch_size: int = 32,
) -> dict[int, torch.Tensor]:
    """T(full) − T(prompt token j removed as a key from layer l on), for every prompt token j and l in `layers`.

    Args:
        input_ids: (1, n) prompt + response.
        labels: (1, n), -100 on the prompt; the prompt is the prefix before the first label.
        objective: "logit" or "loss" (`sdtp.saliency`); for the loss the sign is flipped so that a positive effect
            always means the token helped (removing it lowered the logit or raised the loss).
    Returns:
        {layer: (prompt_length,) float32 on CPU}.
    """
    decoder = model.model
    n = input_ids.shape[1]
    check_window(model, n)
    labelled = (labels[0] != -100).nonzero()
    if labelled.numel() == 0:
        raise ValueError("removal_effect needs labels: the effect is measured on the response tokens")
    prompt = int(labelled[0])
    embeds = decoder.embed_tokens(input_ids.to(device_of(decoder.embed_tokens)))
    positions = torch.arange(n, device=embeds.device)
    position_embeddings = decoder.rotary_emb(embeds, positions[None])
    causal = torch.ones(n, n, dtype=torch.bool, device=embeds.device).tril()
    sign = -1.0 if objective == "loss" else 1.0

    def run(key_bias: torch.Tensor) -> torch.Tensor:
        """key_bias: (B, num_layers, n) additive bias per key and layer → (B,) objective."""
        hidden = embeds.expand(key_bias.shape[0], -1, -1)
        pos, emb = positions, position_embeddings
        for idx, layer in enumerate(decoder.layers):
            device = device_of(layer)
            if hidden.device != device:
                hidden, pos, emb = hidden.to(device), pos.to(device), tuple(e.to(device) for e in emb)
            bias = key_bias[:, idx].to(device=device, dtype=hidden.dtype)
            mask = torch.where(causal.to(device)[None], bias[:, None, :], torch.finfo(hidden.dtype).min)[:, None]
            hidden = run_decoder_layer(layer, hidden, mask, pos, None, emb)
        return _objective(model, decoder.norm(hidden.to(device_of(decoder.norm))), labels, objective)

    num_layers = len(decoder.layers)
    full = run(torch.zeros(1, num_layers, n, device=embeds.device))[0]
    effects = {}
    for layer in sorted(set(int(layer) for layer in layers)):
        effect = torch.empty(prompt)
        for start in range(0, prompt, batch_size):
            tokens = torch.arange(start, min(prompt, start + batch_size), device=embeds.device)
            key_bias = torch.zeros(len(tokens), num_layers, n, device=embeds.device)
            key_bias[torch.arange(len(tokens)), layer:, tokens] = REMOVED_KEY_BIAS
            effect[start : start + len(tokens)] = (sign * (full - run(key_bias))).float().cpu()
        effects[layer] = effect
    return effects


def compare(saliency: torch.Tensor, effect: torch.Tensor, threshold: float = 0.1) -> dict[str, float]:
    """How well |saliency| (prompt tokens) ranks the removal effect: Spearman, and the decisive tokens' ranks."""
    importance = saliency.abs()
    decisive = (effect > threshold * effect.max()).nonzero().squeeze(1) if effect.max() > 0 else torch.empty(0)
    rank = torch.empty(len(importance), dtype=torch.long)
    rank[torch.argsort(importance, descending=True, stable=True)] = torch.arange(len(importance))
    relative = (rank[decisive.long()].float() / len(importance)).tolist()
    return dict(
        spearman=spearman(importance, effect),
        decisive_tokens=len(relative),
        decisive_median_relative_rank=float(np.median(relative)) if relative else math.nan,
        decisive_recall_top_half=float(np.mean([r < 0.5 for r in relative])) if relative else math.nan,
    )


def check_samples(
    model: nn.Module, samples: pd.DataFrame, layers: list[int], objective: str, batch_size: int = 32
) -> pd.DataFrame:
    """One row per (sample, layer, reduction) with `compare`'s columns; `samples` are train.parquet rows."""
    device = device_of(model.model.embed_tokens)
    rows = []
    for i, sample in enumerate(samples.itertuples(index=False)):
        ids = torch.tensor([list(sample.input_ids)], device=device)
        labels = torch.tensor([list(sample.labels)], device=device)
        effects = removal_effect(model, ids, labels, layers, objective, batch_size)
        for reduction in REDUCTIONS:
            saliency = token_saliency(model, ids, layers, labels=labels, objective=objective, reduction=reduction)
            for layer, effect in effects.items():
                measured = compare(saliency[layer][: len(effect)], effect)
                rows.append(dict(sample=int(sample.sample), layer=layer, reduction=reduction, **measured))
        log.info("saliency-check %d/%d samples", i + 1, len(samples))
    return pd.DataFrame(rows)
