"""`sdtp.peaks`: the GEMM and copy microbenchmarks measure positive, finite peaks, recorded with the device's name;
on CUDA (simulated by recording) every timed call is bracketed by a synchronisation of the device it ran on."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from sdtp import latency, peaks
from sdtp.commands.cli import main as cli_main


def test_cpu_peaks_are_positive_finite_and_named_as_latency_rows_name_the_device():
    row = peaks.measure_peaks("cpu", torch.float32, gemm_size=256, copy_bytes=8 * 2**20, warmup=1, repeats=3)
    assert row.device_kind == "cpu" and row.device_index == -1 and row.dtype == "float32"
    assert row.device == latency.device_name(torch.device("cpu")) and "threads" in row.device
    for value in (row.gemm_flops_per_s, row.copy_bytes_per_s):
        assert math.isfinite(value) and value > 0
    assert row.gemm_flops_per_s >= row.gemm_flops_per_s_median and row.copy_bytes_per_s >= row.copy_bytes_per_s_median
    assert row.gemm_size == 256 and row.copy_bytes == 8 * 2**20 and row.repeats == 3


def test_gemm_flops_count_two_per_multiply_add_and_the_peak_is_the_fastest_repeat(monkeypatch):
    seconds = [0.5, 0.25, 1.0]
    monkeypatch.setattr(
        peaks, "repeat_timed", lambda fn, devices, warmup, repeats: [fn() is not None and s for s in seconds]
    )
    gemm = peaks.gemm_flops_per_s(torch.device("cpu"), torch.float32, 64, 0, 3)
    assert gemm == peaks.Rate(peak=2 * 64**3 / 0.25, median=2 * 64**3 / 0.5, spread=(1.0 - 0.25) / 0.5)
    copy = peaks.copy_bytes_per_s(torch.device("cpu"), 4096, 0, 3)
    assert copy.peak == 2 * 4096 / 0.25 and copy.median == 2 * 4096 / 0.5  # read + write


def test_cuda_peaks_time_each_device_between_its_own_syncs(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"Fake H100 ({device})")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(f"sync {device}"))
    monkeypatch.setattr(peaks, "_place", lambda tensor, device, dtype: tensor.to(dtype))  # CPU tensors stand in
    real_matmul, real_copy = torch.matmul, torch.Tensor.copy_
    monkeypatch.setattr(torch, "matmul", lambda *a, **k: calls.append("gemm") or real_matmul(*a, **k))
    monkeypatch.setattr(torch.Tensor, "copy_", lambda self, src: calls.append("copy") or real_copy(self, src))
    rows = peaks.measured_peaks("cuda", [torch.bfloat16], gemm_size=32, copy_bytes=4096, warmup=1, repeats=2)
    assert [(r["device"], r["device_index"], r["dtype"]) for r in rows] == [
        ("Fake H100 (cuda:0)", 0, "bfloat16"),
        ("Fake H100 (cuda:1)", 1, "bfloat16"),
    ]
    one_device = lambda d: (  # noqa: E731  warm-up untimed, then each timed repeat between two syncs
        ["gemm"]
        + [f"sync cuda:{d}", "gemm", f"sync cuda:{d}"] * 2
        + ["copy"]
        + [f"sync cuda:{d}", "copy", f"sync cuda:{d}"] * 2
    )
    assert calls == one_device(0) + one_device(1)


def test_cuda_kind_without_a_device_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        peaks.measured_peaks("cuda", [torch.float32])
    with pytest.raises(ValueError, match="must be cpu or cuda"):
        peaks.measured_peaks("tpu", [torch.float32])


def test_peak_command_writes_one_row_per_dtype(tmp_path, capsys):
    out = tmp_path / "peak" / "cpu.parquet"
    args = ["peak", "--kind", "cpu", "--dtypes", "float32", "bfloat16", "--gemm-size", "128", "--copy-mib", "4"]
    assert cli_main([*args, "--warmup", "0", "--repeats", "2", "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert table.dtype.tolist() == ["float32", "bfloat16"] and (table.device == table.device[0]).all()
    assert (table.gemm_flops_per_s > 0).all() and (table.copy_bytes_per_s > 0).all()
    assert table.device[0] in capsys.readouterr().out
