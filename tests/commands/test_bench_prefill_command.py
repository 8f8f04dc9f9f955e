"""`python -m sdtp bench-prefill` on a tiny model (the model builder faked)."""

from __future__ import annotations

import pandas as pd
import torch
from tiny_models import make_tiny_model, run_cli

from sdtp import bench as bench_module


def test_bench_prefill_command_goes_on_past_an_out_of_memory_length(monkeypatch, tmp_path, caplog):
    """`python -m sdtp bench-prefill` on a tiny model: torch.OutOfMemoryError at length 40 is logged and written as
    "oom" rows, and length 16 is still timed."""
    model = make_tiny_model("qwen2", "sdpa")
    monkeypatch.setattr(bench_module, "build_bench_model", lambda *args: model)
    real = bench_module.prefill_with_pruning

    def prefill(model, ids, *args, **kwargs):
        if ids.shape[1] == 40:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(bench_module, "prefill_with_pruning", prefill)
    out = tmp_path / "bench.parquet"
    with caplog.at_level("WARNING"):
        run_cli("bench-prefill", "--lengths", 40, 16, "--ratios", 0.5, "--layers", 1, 3, "--warmup", 0,
                "--repeats", 1, "--device", "cpu", "--out", out)  # fmt: skip
    rows = pd.read_parquet(out)
    assert set(rows[rows.length == 40].status) == {"oom"} and set(rows[rows.length == 16].status) == {"ok"}
    assert (rows[rows.length == 16].prefill_s > 0).all()
    assert "out of memory at length(s) [40]" in caplog.text
