"""SDTP's stage 2: training the pruning modules with the LLM frozen.

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
- **Long inputs.** The ranking term compares at most `rank_pairs` pairs per stage and sample, drawn uniformly without
  replacement from all i < j pairs (seeded `torch.Generator`); shorter inputs use every pair.

The pruning itself is simulated by attention masking (`sdtp.simulation`); held-out evaluation is `sdtp.pruner_eval`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from sdtp.decoder import device_of
from sdtp.pruner import PruningModule
from sdtp.schedule import KeepSchedule
from sdtp.sections import section_from_dict
from sdtp.simulation import lm_loss_at_labels, simulate_pruning

log = logging.getLogger(__name__)


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
    def from_dict(cls, d: dict | None) -> PrunerTrainConfig:
        """Build from the config's `pruner:` mapping, rejecting keys this class does not know."""
        return section_from_dict(cls, "pruner", d)


# ----------------------------------------------------------------------------------------------------------------------
# Loss terms


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
    device = device_of(model.model.embed_tokens)
    result = simulate_pruning(
        model,
        pruner,
        sample.input_ids.to(device),
        schedule,
        sample.prompt_length,
        config.temperature,
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
    device = device_of(model.model.embed_tokens)
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
                dict(
                    model=model_name,
                    keep_ratio=float(schedule.keep_ratio),
                    epoch=epoch,
                    step=step,
                    sample=sample.sample,
                    lm=terms.lm.item(),
                    mse=terms.mse.item(),
                    rank=terms.rank.item(),
                    total=terms.total.item(),
                )
            )
            if step % config.log_every == 0 or step == steps_total:
                recent = pd.DataFrame(rows[-config.log_every :])
                log.info(
                    "epoch %d step %d/%d: total %.4f (lm %.4f, mse %.4f, rank %.4f; mean of last %d), %.1f s",
                    epoch,
                    step,
                    steps_total,
                    recent.total.mean(),
                    recent.lm.mean(),
                    recent.mse.mean(),
                    recent["rank"].mean(),
                    len(recent),
                    time.perf_counter() - start,
                )
    return pruner.eval(), pd.DataFrame(rows, columns=LOSS_COLUMNS)
