"""How well a trained pruner ranks tokens on held-out samples, next to references that say what is reachable.

- `evaluate_pruner`: mean Spearman correlation, per prune layer, between the pruner's scores and |π̂| over the prompt
  tokens, the scores computed from the unpruned model's hidden states entering each layer (the inputs saliency saw);
- `salient_recall`: the recall of the salient tokens within the kept fraction (what pruning needs when saliency is
  sparse);
- `token_type_spearman`: the Spearman of a context-free scorer; at layer 0 the pruner reads the token embedding alone,
  so that is what it can reach there.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from sdtp.decoder import device_of
from sdtp.pruner import PruningModule
from sdtp.pruner_training import PrunerSample, load_samples
from sdtp.stats import spearman


@torch.no_grad()
def _heldout_scores(model: nn.Module, pruner: PruningModule, samples: pd.DataFrame, saliency: pd.DataFrame, layers):
    """Yield (layer, pruner scores, |π̂|) over the prompt tokens of every sample, scores from the unpruned model's
    hidden states entering each layer — the inputs the saliency saw."""
    device = device_of(model.model.embed_tokens)
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
    model: nn.Module,
    pruner: PruningModule,
    samples: pd.DataFrame,
    saliency: pd.DataFrame,
    layers: list[int],
    keep_fraction: float,
) -> tuple[dict[int, float], dict[int, float]]:
    """(`evaluate_pruner`'s Spearman, mean `salient_recall`) per layer, from one pass over the samples."""
    rho: dict[int, list[float]] = {int(layer): [] for layer in layers}
    recall: dict[int, list[float]] = {int(layer): [] for layer in layers}
    for layer, scores, target in _heldout_scores(model, pruner, samples, saliency, layers):
        rho[layer].append(spearman(scores, target))
        recall[layer].append(salient_recall(scores, target, keep_fraction))
    return _mean_per_layer(rho), _mean_per_layer(recall)


def token_type_spearman(train: list[PrunerSample], heldout: list[PrunerSample], layers: list[int]) -> dict[int, float]:
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
