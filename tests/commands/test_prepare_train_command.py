"""`python -m sdtp prepare-train` with a Dolly fixture file."""

from __future__ import annotations

import json

import pandas as pd
import torch
from tiny_models import write_dolly_fixture

from sdtp.commands.cli import main as cli_main
from sdtp.data.tokenizer import build_tokenizer


def test_prepare_train_command_with_dolly(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "config.json").write_text("{}")
    path = write_dolly_fixture(tmp_path / "dolly.jsonl")
    settings = {
        "seed": 0,
        "model": {"name": "tiny", "source": "demo"},
        "train_data": {"source": "dolly", "path": str(path), "samples": 2, "heldout_samples": 1, "max_tokens": 64},
    }
    out = tmp_path / "train.parquet"
    assert cli_main(["prepare-train", "--settings", json.dumps(settings), "--model-dir", str(tmp_path / "model"),
                     "--out", str(out)]) == 0  # fmt: skip
    table = pd.read_parquet(out)
    assert table._id.tolist() == ["dolly-0", "dolly-1", "dolly-2"]
    assert table.split.tolist() == ["train", "train", "heldout"]
    assert torch.tensor(list(table.tokens)).min() > 0
