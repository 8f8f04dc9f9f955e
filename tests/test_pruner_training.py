"""Stage 2 training of the pruning modules: the loss terms, pair sampling, the config and the training loop."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tiny_models import make_samples, make_tiny_model

from sdtp.pruner import PruningModule
from sdtp.pruner_training import (
    LOSS_COLUMNS,
    PrunerTrainConfig,
    ranking_loss,
    sample_loss,
    sample_pairs,
    train_pruner,
)
from sdtp.schedule import KeepSchedule


def test_ranking_loss_equals_double_loop():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(9, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 4, (9,), generator=generator).double()  # many ties: those pairs are skipped
    total, count = 0.0, 0
    for i in range(9):
        for j in range(i + 1, 9):
            if targets[i] == targets[j]:
                continue
            sign = 1.0 if targets[i] > targets[j] else -1.0
            total += math.log1p(math.exp(-(scores[i] - scores[j]).item() * sign))
            count += 1
    assert ranking_loss(scores, targets).item() == pytest.approx(total / count, rel=1e-12)
    # Explicit pairs give the same value; a perfect ranking by a wide margin costs almost nothing.
    all_pairs = torch.triu_indices(9, 9, offset=1).T
    assert ranking_loss(scores, targets, all_pairs).item() == pytest.approx(total / count, rel=1e-12)
    assert ranking_loss(100 * targets, targets).item() < 1e-30
    # All targets tied: no pair counts, the loss is 0 and still differentiable.
    flat = torch.zeros(5, requires_grad=True)
    loss = ranking_loss(flat, torch.ones(5))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(flat.grad, torch.zeros(5))


@pytest.mark.parametrize("n, max_pairs", [(5, 100), (20, 100), (50, 100), (100_000, 1000)])
def test_sample_pairs_distinct_valid_and_seeded(n, max_pairs):
    pairs = sample_pairs(n, max_pairs, torch.Generator().manual_seed(1))
    expected = min(max_pairs, n * (n - 1) // 2)
    assert pairs.shape == (expected, 2) and pairs.dtype == torch.long
    i, j = pairs[:, 0], pairs[:, 1]
    assert bool((i >= 0).all() and (i < j).all() and (j < n).all())
    assert len({tuple(p) for p in pairs.tolist()}) == expected
    again = sample_pairs(n, max_pairs, torch.Generator().manual_seed(1))
    assert torch.equal(pairs, again)
    if expected < n * (n - 1) // 2:
        assert not torch.equal(pairs, sample_pairs(n, max_pairs, torch.Generator().manual_seed(2)))
    else:
        assert set(map(tuple, pairs.tolist())) == set(map(tuple, torch.triu_indices(n, n, 1).T.tolist()))


def test_sample_pairs_cover_the_triangle_evenly():
    """Uniform over pairs: later tokens (larger j) appear in more pairs, j's mean is 2/3 of n, not n/2."""
    n = 300
    pairs = sample_pairs(n, 5000, torch.Generator().manual_seed(0))
    exact_mean_j = sum(j * j for j in range(n)) / (n * (n - 1) / 2)  # pairs with larger index j: j of them
    assert pairs[:, 1].double().mean().item() == pytest.approx(exact_mean_j, rel=0.03)


def test_full_loss_gradients_are_finite_in_bfloat16():
    model = make_tiny_model("llama", "sdpa", dtype=torch.bfloat16)
    sample = make_samples(make_tiny_model("llama", "sdpa"), [2], count=1, prompt=50, response=6)[0]
    schedule = KeepSchedule([2], 0.5, min_local=4)
    pruner = PruningModule(schedule.layers, model.config.hidden_size)
    terms = sample_loss(model, pruner, sample, schedule, PrunerTrainConfig(), torch.Generator().manual_seed(0))
    terms.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in pruner.parameters())
    assert math.isfinite(terms.total.item())


def test_training_lowers_the_loss_and_is_deterministic():
    model = make_tiny_model("qwen2", "sdpa", num_hidden_layers=3)
    schedule = KeepSchedule([1, 2], 0.6, min_local=4)
    samples = make_samples(model, schedule.layers, count=4)
    config = PrunerTrainConfig(epochs=6, lr=1e-2, log_every=8)
    pruner, losses = train_pruner(model, samples, schedule, config, seed=0, model_name="tiny")
    assert list(losses.columns) == LOSS_COLUMNS and len(losses) == 24
    assert losses.step.tolist() == list(range(1, 25)) and set(losses["sample"]) == {0, 1, 2, 3}
    by_epoch = losses.groupby("epoch")[["total", "mse", "rank"]].mean()
    assert by_epoch.total.iloc[-1] < 0.85 * by_epoch.total.iloc[0]
    assert by_epoch.mse.iloc[-1] < by_epoch.mse.iloc[0] and by_epoch["rank"].iloc[-1] < by_epoch["rank"].iloc[0]
    assert (losses.total - (losses.lm + losses.mse + losses["rank"])).abs().max() < 1e-4
    assert not pruner.training and all(p.requires_grad for p in pruner.parameters())
    # The LM term alone trains through the straight-through mask: the pruner learns to keep what the response needs.
    lm_only = PrunerTrainConfig(epochs=4, lr=1e-2, mse_weight=0.0, rank_weight=0.0)
    _, lm_losses = train_pruner(model, samples, schedule, lm_only, seed=0)
    lm_by_epoch = lm_losses.groupby("epoch").lm.mean()
    assert lm_by_epoch.iloc[-1] < lm_by_epoch.iloc[0] - 0.1
    short = dataclasses.replace(config, epochs=1)
    first, _ = train_pruner(model, samples, schedule, short, seed=3)
    second, _ = train_pruner(model, samples, schedule, short, seed=3)
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("off, optimizer", [("lm_weight", "sgd"), ("mse_weight", "adam"), ("rank_weight", "adamw")])
def test_each_loss_term_switches_off(off, optimizer):
    model = make_tiny_model("qwen2", "sdpa", num_hidden_layers=3)
    schedule = KeepSchedule([1, 2], 0.6, min_local=4)
    samples = make_samples(model, schedule.layers, count=2)
    other = "mse_weight" if off != "mse_weight" else "lm_weight"
    config = PrunerTrainConfig(epochs=1, optimizer=optimizer, **{off: 0.0, other: 2.0})
    torch.manual_seed(0)
    pruner = PruningModule(schedule.layers, model.config.hidden_size)
    terms = sample_loss(model, pruner, samples[0], schedule, config, torch.Generator().manual_seed(0))
    expected = config.lm_weight * terms.lm + config.mse_weight * terms.mse + config.rank_weight * terms.rank
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert getattr(terms, off.removesuffix("_weight")).item() > 0  # still reported, just not optimised
    _, losses = train_pruner(model, samples, schedule, config, seed=0)
    assert len(losses) == 2 and losses[["lm", "mse", "rank", "total"]].notna().all().all()


def test_config_rejects_unknown_keys_and_bad_values():
    assert PrunerTrainConfig.from_dict({"epochs": 1}).epochs == 1
    assert PrunerTrainConfig.from_dict(None) == PrunerTrainConfig()
    message = r"unknown pruner config key 'lrr' in config section `pruner`; valid keys: epochs, lr"
    with pytest.raises(ValueError, match=message):
        PrunerTrainConfig.from_dict({"epochs": 1, "lrr": 0.1})
    with pytest.raises(ValueError, match="optimizer = 'lion' must be one of adamw, adam, sgd"):
        PrunerTrainConfig.from_dict({"optimizer": "lion"})
    with pytest.raises(ValueError, match="epochs = 0 must be an integer >= 1"):
        PrunerTrainConfig(epochs=0)
    with pytest.raises(ValueError, match="all 0: nothing to train"):
        PrunerTrainConfig(lm_weight=0, mse_weight=0, rank_weight=0)
