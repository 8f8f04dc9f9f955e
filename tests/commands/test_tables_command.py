"""`python -m sdtp tables` (`sdtp.commands.tables`): per-job Parquet files → the workflow's tables."""

from __future__ import annotations

import pandas as pd

from sdtp.commands.cli import main as cli_main


def test_tables_command_with_no_inputs_writes_empty_tables(tmp_path):
    assert cli_main(["tables", "--out-dir", str(tmp_path)]) == 0
    for name in ("latency", "summary", "longbench", "saliency_sparsity", "pruner_losses"):
        assert pd.read_parquet(tmp_path / f"{name}.parquet").empty
