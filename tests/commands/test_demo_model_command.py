"""`python -m sdtp demo-model`: the default recipe copies the shipped checkpoint (seconds, no training)."""

from __future__ import annotations

import filecmp
import json
import logging

import pytest

from sdtp.commands.cli import main as cli_main
from sdtp.demo_model import SHIPPED_CHECKPOINT


def test_default_recipe_copies_the_shipped_checkpoint(tmp_path, caplog):
    out = tmp_path / "models" / "demo" / "hf"
    with caplog.at_level(logging.INFO):
        assert cli_main(["demo-model", "--settings", json.dumps({"seed": 0, "demo": {}}), "--out", str(out)]) == 0
    assert "copied from the shipped checkpoint" in caplog.text
    for path in SHIPPED_CHECKPOINT.iterdir():
        assert filecmp.cmp(path, out / path.name, shallow=False), path.name
    assert not list(out.parent.glob(".*tmp"))  # written atomically


def test_unknown_demo_key_names_the_section(tmp_path):
    with pytest.raises(ValueError, match=r"unknown demo config keys \['hidden_sise'\] in config section `demo`"):
        cli_main(
            ["demo-model", "--settings", json.dumps({"seed": 0, "demo": {"hidden_sise": 8}}), "--out", str(tmp_path)]
        )
