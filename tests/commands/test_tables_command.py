"""`python -m sdtp tables` (`sdtp.commands.tables`): per-job Parquet files → the workflow's tables."""

from __future__ import annotations

import pandas as pd
import pytest

from sdtp.commands.cli import main as cli_main
from sdtp.pruner import PruningModule


def test_tables_command_with_no_inputs_writes_empty_tables(tmp_path):
    assert cli_main(["tables", "--out-dir", str(tmp_path)]) == 0
    for name in ("latency", "summary", "longbench", "saliency_sparsity", "pruner_losses", "pruner_heldout"):
        assert pd.read_parquet(tmp_path / f"{name}.parquet").empty


def test_tables_command_reads_held_out_figures_from_pruner_checkpoints(tmp_path):
    pruner = PruningModule([2, 3], hidden_size=8)
    meta = dict(base_model="tiny", keep_ratio=0.7, heldout_spearman={"2": 0.5, "3": 0.25},
                heldout_salient_recall={"2": 1.0, "3": 0.75}, heldout_token_type_spearman={"2": 0.0, "3": 0.125},
                train_samples=6, heldout_samples=2)  # fmt: skip
    pruner.save(tmp_path / "r0.7" / "pruner", meta=meta)
    out = tmp_path / "tables"
    assert cli_main(["tables", "--pruners", str(tmp_path / "r0.7" / "pruner"), "--out-dir", str(out)]) == 0
    table = pd.read_parquet(out / "pruner_heldout.parquet")
    assert table[["model", "keep_ratio", "layer", "spearman", "salient_recall"]].values.tolist() == [
        ["tiny", 0.7, 2, 0.5, 1.0],
        ["tiny", 0.7, 3, 0.25, 0.75],
    ]


def test_tables_command_names_an_incomplete_pruner_checkpoint(tmp_path):
    (tmp_path / "pruner").mkdir()
    with pytest.raises(FileNotFoundError, match=r"pruner\.json does not exist"):
        cli_main(["tables", "--pruners", str(tmp_path / "pruner"), "--out-dir", str(tmp_path / "tables")])
