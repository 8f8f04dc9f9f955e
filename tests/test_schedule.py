from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sdtp.schedule import KeepSchedule


def test_paper_layout_from_config():
    schedule = KeepSchedule.from_config(start=4, step=3, stages=8, keep_ratio=0.9, num_layers=28)
    assert schedule.layers == [4, 7, 10, 13, 16, 19, 22, 25]
    assert schedule.stage_of(4) == 0 and schedule.stage_of(25) == 7 and schedule.stage_of(5) is None


def test_cumulative_keep_follows_ratio_power():
    schedule = KeepSchedule.from_config(start=4, step=3, stages=10, keep_ratio=0.9, num_layers=32)
    alive = schedule.counts(100_000)
    assert alive[-1] / 100_000 == pytest.approx(0.9**10, rel=1e-3)  # the paper's "65% pruned"


def test_keep_count_rounding_and_protection():
    schedule = KeepSchedule([1], 0.5)
    assert schedule.keep_count(1000) == 500
    assert schedule.keep_count(1001) == 501  # round half up
    assert schedule.protected_count(1000) == 4 + 100
    assert schedule.protected_count(100) == 4 + 16  # local window at least 16
    assert schedule.keep_count(30) == 20  # protected tokens outrank the budget of 15
    assert schedule.keep_count(1) == 1 and schedule.keep_count(0) == 0
    assert KeepSchedule([1], 0.01, sink_tokens=0, min_local=0, local_ratio=0.0).keep_count(10) == 1  # never 0


@pytest.mark.parametrize(
    "layers, ratio, message",
    [
        ([1, 2], 0.0, r"keep_ratio must be in \(0, 1\], got 0.0"),
        ([1, 2], 1.5, r"keep_ratio must be in \(0, 1\], got 1.5"),
        ([1, 2], -0.1, r"got -0.1"),
        ([3, 1, 3], 0.5, r"duplicate layer\(s\) \[3\]"),
        ([-1], 0.5, r"must be >= 0, got \[-1\]"),
    ],
)
def test_invalid_schedules_name_the_value(layers, ratio, message):
    with pytest.raises(ValueError, match=message):
        KeepSchedule(layers, ratio)


def test_layer_outside_model_names_it():
    with pytest.raises(ValueError, match=r"prune layer\(s\) \[28, 31\] outside the model: it has 28 decoder layers"):
        KeepSchedule.from_config(start=4, step=3, stages=10, keep_ratio=0.9, num_layers=28)


def test_ties_are_broken_towards_earlier_tokens():
    schedule = KeepSchedule([0], 0.5, sink_tokens=1, min_local=1, local_ratio=0.0)
    scores = torch.zeros(10)
    assert schedule.select(scores).tolist() == [0, 1, 2, 3, 9]
    scores[7] = 1.0
    assert schedule.select(scores).tolist() == [0, 1, 2, 7, 9]


def test_nan_scores_rank_last():
    schedule = KeepSchedule([0], 0.5, sink_tokens=0, min_local=0, local_ratio=0.0)
    scores = torch.tensor([float("nan"), 1.0, float("nan"), 2.0])
    assert schedule.select(scores).tolist() == [1, 3]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 3000),
    ratio=st.floats(0.01, 1.0),
    sinks=st.integers(0, 8),
    min_local=st.integers(0, 32),
    seed=st.integers(0, 2**31 - 1),
    ties=st.booleans(),
)
def test_select_properties(n, ratio, sinks, min_local, seed, ties):
    schedule = KeepSchedule([0], ratio, sink_tokens=sinks, min_local=min_local)
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 3, (n,), generator=generator).float() if ties else torch.rand(n, generator=generator)
    kept = schedule.select(scores)
    k = schedule.keep_count(n)
    assert kept.shape == (k,) and 1 <= k <= n
    assert k >= min(n, math.floor(ratio * n + 0.5))
    assert torch.all(kept[1:] > kept[:-1])  # sorted, unique
    kept_set = set(kept.tolist())
    assert set(range(min(sinks, n))) <= kept_set
    local = max(min_local, math.ceil(0.1 * n))
    assert set(range(max(0, n - local), n)) <= kept_set
    # Every dropped token scores no higher than every kept unprotected one.
    protected = set(range(min(sinks, n))) | set(range(max(0, n - local), n))
    free_kept = [i for i in kept_set if i not in protected]
    dropped = [i for i in range(n) if i not in kept_set]
    if free_kept and dropped:
        assert scores[dropped].max() <= scores[free_kept].min()
    assert torch.equal(kept, schedule.select(scores.clone()))  # deterministic


def test_tokens_scored_are_the_tokens_reaching_each_stage():
    schedule = KeepSchedule([1, 3, 5], 0.5, sink_tokens=1, local_ratio=0.0, min_local=0)
    assert schedule.tokens_scored(100) == [100, *schedule.counts(100)[:2]]
    assert KeepSchedule([], 0.5).tokens_scored(100) == []
