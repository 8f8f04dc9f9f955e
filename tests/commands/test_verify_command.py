"""`python -m sdtp verify`: a JSON report when the engine is right; a non-zero exit naming the failed check (and no
output, so no dependent job runs) when it is not."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import TINY_MODEL_SETTINGS, save_tiny_model

import sdtp.engine as engine_module
from sdtp.commands.cli import main as cli_main

SETTINGS = {
    "seed": 0,
    "model": TINY_MODEL_SETTINGS,
    "schedule": {"start": 1, "step": 2, "stages": 2, "min_local": 4},
    "keep_ratios": [0.7, 0.5],
}


def run(tmp_path, settings=SETTINGS):
    out = tmp_path / "verify" / "tiny.json"
    argv = ["verify", "--settings", json.dumps(settings), "--model-dir", str(tmp_path / "model"), "--gpus", "0"]
    return cli_main([*argv, "--tokens", "128", "--out", str(out)]), out


def test_a_passing_engine_writes_the_report(tmp_path):
    save_tiny_model(tmp_path / "model")
    code, out = run(tmp_path)
    report = json.loads(out.read_text())
    assert code == 0 and report["passed"] and report["model"] == "tiny"
    assert report["keep_ratio"] == 0.5 and report["prune_layers"] == [1, 3] and report["prompt_tokens"] == 128
    assert report["dtype"] == "float32" and report["tolerance"]["max_relative_error"] == 1e-4
    assert all(check["passed"] for check in report["checks"]) and len(report["checks"]) == 11
    assert not list(out.parent.glob("*.failed.json"))


def test_a_failing_engine_stops_with_the_check_named(tmp_path, monkeypatch):
    save_tiny_model(tmp_path / "model")
    real = engine_module.rotary
    monkeypatch.setattr(
        engine_module, "rotary", lambda d, h, p: real(d, h, torch.arange(p.shape[0], device=p.device))
    )  # kept tokens renumbered 0..m-1
    with pytest.raises(SystemExit, match=r"FAIL prefill_equals_reference\[random\].*\n.*positions or masks are wrong"):
        run(tmp_path)
    out = tmp_path / "verify" / "tiny.json"
    assert not out.exists()
    failed = json.loads((tmp_path / "verify" / "tiny.failed.json").read_text())
    assert not failed["passed"] and any(not check["passed"] for check in failed["checks"])


def test_after_stage_two_the_trained_pruner_is_verified(tmp_path):
    from sdtp.pruner import PruningModule

    save_tiny_model(tmp_path / "model")
    pruner = PruningModule([1, 3], 64).save(tmp_path / "pruner")
    out = tmp_path / "verify" / "tiny" / "sdtp-r0.7.json"
    argv = ["verify", "--settings", json.dumps(SETTINGS), "--model-dir", str(tmp_path / "model"), "--gpus", "0"]
    assert cli_main([*argv, "--pruner", str(pruner), "--ratio", "0.7", "--tokens", "96", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["passed"] and report["keep_ratio"] == 0.7
    names = [check["name"] for check in report["checks"]]
    assert "prefill_equals_reference[sdtp]" in names and "decode_equals_reference[sdtp]" in names
    assert not any("[random]" in name for name in names)


def test_the_prompt_comes_from_the_training_data(tmp_path):
    """With `--train` the verification prompt is the training samples' tokens one after another (repeated to length)."""
    import pandas as pd

    from sdtp.commands.verify import _prompt

    pd.DataFrame({"input_ids": [[5, 6, 7], [8, 9]]}).to_parquet(tmp_path / "train.parquet")
    assert _prompt(str(tmp_path / "train.parquet"), 7, 101, 0).tolist() == [[5, 6, 7, 8, 9, 5, 6]]
    random_prompt = _prompt(None, 7, 101, 0)
    assert random_prompt.shape == (1, 7) and torch.equal(random_prompt, _prompt(None, 7, 101, 0))
    save_tiny_model(tmp_path / "model")
    pd.DataFrame({"input_ids": [list(range(10, 90))]}).to_parquet(tmp_path / "train.parquet")
    out = tmp_path / "v.json"
    argv = ["verify", "--settings", json.dumps(SETTINGS), "--model-dir", str(tmp_path / "model"), "--gpus", "0"]
    assert cli_main([*argv, "--train", str(tmp_path / "train.parquet"), "--tokens", "96", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["passed"]
