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


def test_forward_is_rms_norm_then_the_mlp():
    """The folded normalisation is the module's definition: RMS-normalise, then Linear → GELU → Linear."""
    torch.manual_seed(0)
    module = PruningModule([2], 64)
    x = torch.randn(3, 50, 64) * torch.rand(3, 50, 1) * 100  # magnitudes differing across tokens
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.eps)
    torch.testing.assert_close(module(2, x), module.stages["2"](normed).squeeze(-1), rtol=1e-5, atol=1e-5)


def test_placed_in_bf16_the_scores_stay_float32_and_distinct():
    """One path everywhere: the first layer in the model's dtype (no n × d upcast), the scores in fp32 (bf16 scores
    tie and ties would decide the ranking), close to the fp32 module's ranking."""
    torch.manual_seed(0)
    reference = PruningModule([0], 64)
    placed = PruningModule([0], 64)
    placed.load_state_dict(reference.state_dict())
    placed.place({0: torch.device("cpu")}, torch.bfloat16)
    first, _, last = placed.stages["0"]
    assert first.weight.dtype == torch.bfloat16 and last.weight.dtype == torch.float32
    hidden = torch.randn(1, 4096, 64).to(torch.bfloat16)
    scores = placed(0, hidden)[0]
    assert scores.dtype == torch.float32
    assert scores.unique().numel() >= 0.95 * scores.numel()
    expected = reference(0, hidden.float())[0]
    ranks = lambda t: t.argsort().argsort().double()  # noqa: E731
    assert torch.corrcoef(torch.stack([ranks(scores), ranks(expected)]))[0, 1] > 0.99
