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
