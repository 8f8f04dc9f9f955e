"""The aggregation behind the workflow's tables (`sdtp.report.tables`): latency summary and LongBench deltas."""

from __future__ import annotations

import pandas as pd
import pytest

from sdtp.report.tables import HELDOUT_COLUMNS, longbench_with_deltas, pruner_heldout_table, summarize_latency


def _latency_rows(method, ratio, prefill, decode, length=100, ideal=1.0):
    return [
        dict(
            model="m",
            method=method,
            keep_ratio=ratio,
            length=length,
            repeat=i,
            prefill_s=p,
            decode_s=d,
            total_s=p + d,
            new_tokens=4,
            ideal_speedup=ideal,
            compression_ratio=1 / ratio,
            kv_bytes=100,
            peak_memory_bytes=1,
            device="cpu",
            dtype="float32",
            status="ok",
        )
        for i, (p, d) in enumerate(zip(prefill, decode, strict=True))
    ]


def test_summary_speedups_against_baseline_at_same_length():
    rows = (
        _latency_rows("baseline", 1.0, [2.0, 2.2, 1.8], [1.0, 1.0, 1.0])
        + _latency_rows("sdtp", 0.5, [1.0, 1.2, 0.8], [0.5, 0.5, 0.5], ideal=2.5)
        + _latency_rows("baseline", 1.0, [4.0], [1.0], length=200)
        + [dict(_latency_rows("sdtp", 0.5, [0.0], [0.0], length=200)[0], status="oom", prefill_s=float("nan"))]
    )
    summary = summarize_latency(pd.DataFrame(rows)).set_index(["method", "length"])
    sdtp = summary.loc[("sdtp", 100)]
    assert sdtp.prefill_s == 1.0 and sdtp.prefill_spread_s == pytest.approx(0.4) and sdtp.repeats == 3
    assert sdtp.prefill_speedup == pytest.approx(2.0) and sdtp.decode_speedup == pytest.approx(2.0)
    assert sdtp.e2e_speedup == pytest.approx(3.0 / 1.5) and sdtp.measured_over_ideal == pytest.approx(2.0 / 2.5)
    assert summary.loc[("baseline", 100)].prefill_speedup == 1.0
    assert summary.loc[("sdtp", 200)].status == "oom"


def test_longbench_deltas():
    scores = pd.DataFrame(
        [
            dict(model="m", method="baseline", keep_ratio=1.0, task="t", score=50.0),
            dict(model="m", method="sdtp", keep_ratio=0.7, task="t", score=45.5),
            dict(model="m", method="random", keep_ratio=0.7, task="u", score=10.0),
        ]
    )
    out = longbench_with_deltas(scores).set_index(["method", "task"])
    assert out.loc[("sdtp", "t")].delta_vs_baseline == pytest.approx(-4.5)
    assert out.loc[("baseline", "t")].delta_vs_baseline == 0.0
    assert pd.isna(out.loc[("random", "u")].delta_vs_baseline)  # no baseline for that task


def test_longbench_table_keeps_the_oom_count():
    """`oom_records` passes through; score files from before the column get 0 (their rows concatenate as NaN)."""
    new = pd.DataFrame(
        [
            dict(model="m", method="baseline", keep_ratio=1.0, task="t", score=50.0, oom_records=0),
            dict(model="m", method="sdtp", keep_ratio=0.5, task="t", score=25.0, oom_records=3),
        ]
    )
    old = pd.DataFrame([dict(model="m", method="random", keep_ratio=0.5, task="t", score=10.0)])
    out = longbench_with_deltas(pd.concat([new, old], ignore_index=True)).set_index("method")
    assert out.oom_records.to_dict() == {"baseline": 0, "random": 0, "sdtp": 3}
    assert out.oom_records.dtype.kind == "i"
    assert longbench_with_deltas(old).oom_records.tolist() == [0]


def test_longbench_table_keeps_the_error_count():
    """`error_records` (records the method could not run) passes through; older score files get 0."""
    new = pd.DataFrame([dict(model="m", method="sdtp+snapkv", keep_ratio=0.5, task="t", score=5.0, error_records=2)])
    old = pd.DataFrame([dict(model="m", method="baseline", keep_ratio=1.0, task="t", score=10.0)])
    out = longbench_with_deltas(pd.concat([new, old], ignore_index=True)).set_index("method")
    assert out.error_records.to_dict() == {"baseline": 0, "sdtp+snapkv": 2} and out.error_records.dtype.kind == "i"


def test_pruner_heldout_table_has_one_row_per_ratio_and_layer():
    metas = [
        dict(base_model="m", keep_ratio=0.5, train_samples=8, heldout_samples=2,
             heldout_spearman={"7": 0.25, "4": None}, heldout_salient_recall={"4": 1.0, "7": 0.5},
             heldout_token_type_spearman={"4": 0.125, "7": 0.0}),
        dict(base_model="m", keep_ratio=0.9, heldout_spearman={}, heldout_salient_recall={}),  # no held-out prompts
    ]  # fmt: skip
    table = pruner_heldout_table(metas)
    assert list(table.columns) == HELDOUT_COLUMNS
    assert table[["keep_ratio", "layer"]].values.tolist() == [[0.5, 4], [0.5, 7]]
    assert pd.isna(table.spearman[0]) and table.spearman[1] == 0.25  # a figure stored as null (not finite) is NaN
    assert table.salient_recall.tolist() == [1.0, 0.5] and table.token_type_spearman.tolist() == [0.125, 0.0]
    assert table.heldout_samples.tolist() == [2, 2]
    assert pruner_heldout_table([]).empty
