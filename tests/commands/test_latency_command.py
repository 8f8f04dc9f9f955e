"""`python -m sdtp latency` on a saved tiny model."""

from __future__ import annotations

import json

import pandas as pd
from tiny_models import TINY_MODEL_SETTINGS, save_tiny_model

from sdtp.commands.cli import main as cli_main


def test_latency_command_writes_parquet(tmp_path):
    save_tiny_model(tmp_path / "model")
    settings = {
        "seed": 0,
        "model": TINY_MODEL_SETTINGS,
        "schedule": {"start": 1, "step": 2, "stages": 2, "min_local": 4},
        "latency": {"warmup": 0, "repeats": 2, "new_tokens": 3},
    }
    out = tmp_path / "out" / "L48.parquet"
    code = cli_main(
        [
            "latency",
            "--settings",
            json.dumps(settings),
            "--model-dir",
            str(tmp_path / "model"),
            "--method",
            "streaming",
            "--ratio",
            "0.5",
            "--length",
            "48",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    frame = pd.read_parquet(out)
    assert len(frame) == 2 and set(frame.status) == {"ok"}
    assert list(frame.kv_lengths[0]) == [48, 24, 24, 12, 12]
    assert not list(out.parent.glob(".*tmp"))  # written atomically: no temp file left


def test_latency_rows_name_the_slurm_job_and_devices_that_produced_them(tmp_path, monkeypatch):
    save_tiny_model(tmp_path / "model")
    settings = {
        "seed": 0,
        "model": TINY_MODEL_SETTINGS,
        "schedule": {"start": 1, "step": 2, "stages": 2, "min_local": 4},
        "latency": {"warmup": 0, "repeats": 2, "new_tokens": 2},
    }
    # as inside the executor plugin's srun step: SLURM pinned GPU 3, the pool stands aside (and holds no lock after)
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    out = tmp_path / "L32.parquet"
    argv = ["latency", "--settings", json.dumps(settings), "--model-dir", str(tmp_path / "model")]
    assert cli_main([*argv, "--method", "baseline", "--ratio", "1.0", "--length", "32", "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    assert list(frame.slurm_job_id) == ["4711", "4711"] and list(frame.cuda_visible_devices) == ["3", "3"]
    assert frame.host.notna().all()
    for name in ("SLURM_JOB_ID", "SLURM_STEP_ID", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name)
    assert cli_main([*argv, "--method", "baseline", "--ratio", "1.0", "--length", "32", "--out", str(out)]) == 0
    rows = pd.read_parquet(out)
    assert rows.slurm_job_id.isna().all() and rows.cuda_visible_devices.isna().all()  # null outside SLURM


def test_latency_on_a_shape_of_its_own_times_sdtp_with_a_random_init_pruner_of_its_size(tmp_path):
    """A `latency.model` shape: random weights with the config overridden (d=32 instead of the saved 64), and sdtp
    with a seeded random-init pruning module of that size, labelled so; the roofline's inputs are in the rows."""
    save_tiny_model(tmp_path / "model")
    model = {
        **TINY_MODEL_SETTINGS,
        "name": "tiny-latency",
        "weights": "random",
        "config_overrides": {"hidden_size": 32},
    }
    settings = {
        "seed": 0,
        "model": model,
        "schedule": {"start": 1, "step": 2, "stages": 2, "min_local": 4},
        "latency": {"warmup": 0, "repeats": 1, "new_tokens": 3},
    }
    out = tmp_path / "L48.parquet"
    args = ["latency", "--settings", json.dumps(settings), "--model-dir", str(tmp_path / "model"), "--method", "sdtp"]
    assert cli_main([*args, "--ratio", "0.5", "--length", "48", "--pruner-init", "random", "--out", str(out)]) == 0
    row = pd.read_parquet(out).iloc[0]
    assert row.model == "tiny-latency-random-weights" and row.pruner_weights == "random-init (timing only)"
    assert list(row.kv_lengths) == [48, 24, 24, 12, 12] and row.status == "ok"
    assert row.decode_bytes < row.baseline_decode_bytes and row.prefill_bytes < row.baseline_prefill_bytes
    assert row.decode_flops > 0 and row.baseline_prefill_flops > row.prefill_flops
