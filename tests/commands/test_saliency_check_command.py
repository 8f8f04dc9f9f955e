"""`python -m sdtp saliency-check` on a tiny model."""

from __future__ import annotations

import json

import pandas as pd
from tiny_models import TINY_MODEL_SETTINGS, prompt_and_answer, save_tiny_model

from sdtp.commands.cli import main as cli_main


def test_saliency_check_command_writes_one_row_per_sample_layer_and_reduction(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    rows = []
    for sample in range(3):
        ids, labels = prompt_and_answer(model.config.vocab_size, 20, 3, seed=sample)
        rows.append(
            dict(
                split="train" if sample == 0 else "heldout",
                sample=sample,
                _id=str(sample),
                tokens=23,
                input_ids=ids[0].tolist(),
                labels=labels[0].tolist(),
            )
        )
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    settings = {
        "seed": 0,
        "model": TINY_MODEL_SETTINGS,
        "schedule": {"start": 1, "step": 1, "stages": 2},
        "saliency": {"reduction": "abs_sum"},
    }
    out = tmp_path / "check.parquet"
    code = cli_main(
        [
            "saliency-check",
            "--settings",
            json.dumps(settings),
            "--model-dir",
            str(tmp_path / "model"),
            "--train",
            str(tmp_path / "train.parquet"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = pd.read_parquet(out)
    assert len(table) == 2 * 2 * 2  # 2 held-out samples × layers 1, 2 × reductions sum, abs_sum
    assert set(table["sample"]) == {1, 2} and set(table.reduction) == {"sum", "abs_sum"}
    assert table.spearman.between(-1, 1).all()
