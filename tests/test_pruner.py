"""The pruning module's checkpoint: round trip and load errors."""

from __future__ import annotations

import json

import pytest
import torch

from sdtp.pruner import PruningModule


def test_pruner_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    module = PruningModule([4, 1], hidden_size=32)
    path = module.save(tmp_path / "pruner", meta={"keep_ratio": 0.7})
    meta = json.loads((path / "pruner.json").read_text())
    assert meta["layers"] == [1, 4] and meta["hidden_size"] == 32 and meta["format"] == "sdtp-pruner"
    loaded = PruningModule.load(path)
    hidden = torch.randn(1, 10, 32)
    assert torch.equal(module(4, hidden), loaded(4, hidden))
    assert module(1, hidden).shape == (1, 10)
    assert loaded.meta == {"keep_ratio": 0.7}
    assert not list(tmp_path.glob(".pruner.*"))  # no temp directory left behind
    with pytest.raises(KeyError, match=r"no stage for layer 2; it was trained for layers \[1, 4\]"):
        loaded(2, hidden)


def test_pruner_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="pruner.json does not exist"):
        PruningModule.load(tmp_path)
    PruningModule([1], 16).save(tmp_path / "p")
    (tmp_path / "p" / "pruner.json").write_text(json.dumps({"format": "other", "version": 9}))
    with pytest.raises(ValueError, match="expected format 'sdtp-pruner' version 1"):
        PruningModule.load(tmp_path / "p")
