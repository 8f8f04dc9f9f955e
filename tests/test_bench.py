"""`sdtp.bench`: the prefill benchmark's rows, and a length that runs out of memory."""

from __future__ import annotations

import math
import sys

import pytest
from tiny_models import make_tiny_model

from sdtp import bench as bench_module
from sdtp.bench import bench_prefill, summarize

VARIANTS = ["transformers", "baseline", "sdtp r=0.5"]


def test_an_out_of_memory_length_is_recorded_and_the_others_run(monkeypatch):
    """The engine runs out of memory at length 48 (cuBLAS's RuntimeError form): that length gets one "oom" row per
    variant with NaN times, the memory is freed outside the except block, and lengths 32 and 24 are timed."""
    model = make_tiny_model("qwen2", "sdpa")
    real = bench_module.prefill_with_pruning
    freed = []

    def prefill(model, ids, *args, **kwargs):
        if ids.shape[1] == 48:
            raise RuntimeError("CUDA error: out of memory")
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(bench_module, "prefill_with_pruning", prefill)
    monkeypatch.setattr(bench_module, "free_memory", lambda: freed.append(sys.exc_info()))
    rows = bench_prefill(model, [32, 48, 24], [0.5], [1, 3], warmup=1, repeats=2)
    assert freed == [(None, None, None)]
    assert list(dict.fromkeys(rows.length)) == [32, 48, 24]
    oom = rows[rows.length == 48]
    assert list(oom.variant) == VARIANTS and set(oom.status) == {"oom"} and oom.prefill_s.isna().all()
    assert oom.ideal_speedup.iloc[-1] > 1  # the analytic columns are still there
    for length in (32, 24):
        ok = rows[rows.length == length]
        assert list(ok.variant) == [v for v in VARIANTS for _ in range(2)] and set(ok.status) == {"ok"}
        assert (ok.prefill_s > 0).all()
        assert ok[ok.variant == "sdtp r=0.5"].scorer_share.iloc[0] > 0  # measured (a ratio of timings: no upper bound)
    table = summarize(rows).set_index(["length", "variant"])
    assert table.loc[(48, "baseline")].status == "oom" and math.isnan(table.loc[(48, "sdtp r=0.5")].speedup)
    assert table.loc[(32, "baseline")].status == "ok" and table.loc[(32, "baseline")].speedup == 1.0

    def broken(*args, **kwargs):  # any other error still stops the benchmark
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(bench_module, "prefill_with_pruning", broken)
    with pytest.raises(RuntimeError, match="shapes"):
        bench_prefill(model, [16], [0.5], [1, 3], warmup=0, repeats=1)


def test_summary_reports_flops_per_second_and_mfu_against_the_measured_peak():
    model = make_tiny_model("qwen2", "sdpa")
    rows = bench_prefill(model, [32], [0.5], [1, 3], warmup=0, repeats=2)
    table = summarize(rows, peak_flops=1e9).set_index("variant")
    for variant in VARIANTS:
        flops = rows[rows.variant == variant].flops.iloc[0]
        at = table.loc[variant]
        assert at.tflops_per_s == pytest.approx(flops / at.prefill_s / 1e12)
        assert at.mfu == pytest.approx(flops / at.prefill_s / 1e9) and at.mfu > 0
    assert summarize(rows).mfu.isna().all()  # no measured peak, no MFU
