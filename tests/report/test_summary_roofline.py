"""The summary's roofline columns (`sdtp.report.tables.summarize_latency` with measured peaks): decode and End2End
ideals, measured ÷ ideal per phase, MFU and MBU, by hand; NaN (not an error) where a device has no measured peak."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sdtp.report.tables import summarize_latency

PEAKS = pd.DataFrame([dict(device="cpu (x, 2 threads)", dtype="float32", gemm_flops_per_s=1e9, copy_bytes_per_s=1e8)])


def _rows(method, ratio, prefill_s, decode_s, prefill_flops, decode_bytes, device="cpu (x, 2 threads)"):
    return [
        dict(
            model="m", method=method, keep_ratio=ratio, length=100, repeat=0, prefill_s=prefill_s, decode_s=decode_s,
            total_s=prefill_s + decode_s, new_tokens=5, ideal_speedup=4e8 / prefill_flops, compression_ratio=1 / ratio,
            kv_bytes=1, peak_memory_bytes=1, device=device, dtype="float32", status="ok",
            prefill_flops=prefill_flops, prefill_bytes=1e6, decode_flops=1e6, decode_bytes=decode_bytes,
            baseline_prefill_flops=4e8, baseline_prefill_bytes=1e6, baseline_decode_flops=1e6,
            baseline_decode_bytes=1e8,
        )
    ]  # fmt: skip


def test_roofline_columns_by_hand():
    # Baseline: prefill 4e8 FLOPs at 1e9 FLOP/s = 0.4 s roofline; decode 1e8 bytes at 1e8 B/s = 1 s.
    # Pruned: prefill 2e8 FLOPs = 0.2 s; decode 8e7 bytes = 0.8 s.
    latency = pd.DataFrame(_rows("baseline", 1.0, 0.8, 1.25, 4e8, 1e8) + _rows("sdtp", 0.5, 0.5, 1.0, 2e8, 8e7))
    summary = summarize_latency(latency, PEAKS).set_index("method")
    sdtp, base = summary.loc["sdtp"], summary.loc["baseline"]
    assert sdtp.prefill_ideal_speedup == sdtp.ideal_speedup == pytest.approx(2.0)
    assert sdtp.decode_ideal_speedup == pytest.approx(1.0 / 0.8)
    assert sdtp.e2e_ideal_speedup == pytest.approx((0.4 + 1.0) / (0.2 + 0.8))
    assert sdtp.prefill_measured_over_ideal == sdtp.measured_over_ideal == pytest.approx((0.8 / 0.5) / 2.0)
    assert sdtp.decode_measured_over_ideal == pytest.approx((1.25 / 1.0) / 1.25)
    assert sdtp.e2e_measured_over_ideal == pytest.approx((2.05 / 1.5) / (1.4 / 1.0))
    assert base.prefill_tflops_per_s == pytest.approx(4e8 / 0.8 / 1e12) and base.prefill_mfu == pytest.approx(0.5)
    assert base.decode_gbytes_per_s == pytest.approx(0.08) and base.decode_mbu == pytest.approx(0.8)
    columns = [
        "prefill_ideal_speedup", "decode_ideal_speedup", "e2e_ideal_speedup", "prefill_measured_over_ideal",
        "decode_measured_over_ideal", "e2e_measured_over_ideal", "prefill_tflops_per_s", "prefill_mfu",
        "decode_gbytes_per_s", "decode_mbu",
    ]  # fmt: skip
    assert all(math.isfinite(value) for value in summary[columns].to_numpy().ravel())


def test_a_device_without_a_measured_peak_gets_nan_not_an_error(caplog):
    latency = pd.DataFrame(_rows("baseline", 1.0, 0.8, 1.25, 4e8, 1e8, device="Fake GPU, Fake GPU"))
    summary = summarize_latency(latency, PEAKS)
    assert math.isnan(summary.decode_mbu[0]) and math.isnan(summary.e2e_ideal_speedup[0])
    assert summary.prefill_speedup[0] == 1.0 and "no measured peak for [('Fake GPU', 'float32')]" in caplog.text
    # A model over several identical GPUs is looked up by the first one's name.
    gpu = pd.DataFrame([dict(device="Fake GPU", dtype="float32", gemm_flops_per_s=1e9, copy_bytes_per_s=1e8)])
    assert summarize_latency(latency, gpu).decode_mbu[0] == pytest.approx(0.8)
    # Rows written before the roofline columns existed still summarise.
    old = latency.drop(columns=["decode_bytes", "prefill_bytes"])
    assert math.isnan(summarize_latency(old, gpu).decode_mbu[0])


def test_paired_speedups_are_medians_of_the_per_repeat_ratios():
    baseline = _rows("baseline", 1.0, 0.8, 1.25, 4e8, 1e8)
    pruned = []
    # Three repeats; the machine slowed down in the second: both sides of its pair slowed alike.
    for repeat, (prefill, decode, base_prefill, base_decode) in enumerate(
        [(0.5, 1.0, 1.0, 1.2), (1.0, 2.0, 2.2, 2.6), (0.4, 0.9, 0.9, 1.0)]
    ):
        (row,) = _rows("sdtp", 0.5, prefill, decode, 2e8, 8e7)
        pruned.append(
            dict(row, repeat=repeat, paired_baseline_prefill_s=base_prefill, paired_baseline_decode_s=base_decode)
        )
    summary = summarize_latency(pd.DataFrame(baseline + pruned), PEAKS).set_index("method")
    sdtp = summary.loc["sdtp"]
    assert sdtp.speedup_baseline == "paired" and summary.loc["baseline"].speedup_baseline == "baseline job"
    assert sdtp.prefill_speedup == pytest.approx(2.2)  # median of 2.0, 2.2, 2.25
    assert sdtp.decode_speedup == pytest.approx(1.2)  # median of 1.2, 1.3, 1.111
    assert sdtp.e2e_speedup == pytest.approx(2.2 / 1.5)  # median of 2.2/1.5, 4.8/3.0, 1.9/1.3
    assert sdtp.decode_measured_over_ideal == pytest.approx(1.2 / 1.25)
    # One repeat without its pair (its baseline ran out of memory): the baseline job's medians, as without pairing.
    pruned[2] = dict(pruned[2], paired_baseline_prefill_s=math.nan, paired_baseline_decode_s=math.nan)
    sdtp = summarize_latency(pd.DataFrame(baseline + pruned), PEAKS).set_index("method").loc["sdtp"]
    assert sdtp.speedup_baseline == "baseline job" and sdtp.prefill_speedup == pytest.approx(0.8 / 0.5)
