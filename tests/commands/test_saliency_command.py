"""`python -m sdtp saliency` on a tiny model: rows per (sample, layer), and samples that run out of memory."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import torch
from tiny_models import TINY_MODEL_SETTINGS, prompt_and_answer, run_cli, save_tiny_model

from sdtp.commands import gpu_pool
from sdtp.commands import saliency as saliency_command

SETTINGS = {"seed": 0, "model": TINY_MODEL_SETTINGS, "schedule": {"layers": [1, 3]}}


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A tiny model and four training samples (three train, one held out); returns the command's arguments."""
    monkeypatch.setattr(gpu_pool, "claim_devices", lambda *args, **kwargs: None)  # CPU run: no GPU pool
    save_tiny_model(tmp_path / "model")
    rows = []
    for sample in range(4):
        ids, labels = prompt_and_answer(101, 20 + 4 * sample, 4, seed=sample)
        rows.append(
            dict(
                split="train" if sample < 3 else "heldout",
                sample=sample,
                _id=f"s{sample}",
                tokens=ids.shape[1],
                input_ids=ids[0].tolist(),
                labels=labels[0].tolist(),
            )
        )
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    return [
        "saliency", "--settings", json.dumps(SETTINGS), "--model-dir", tmp_path / "model",
        "--train", tmp_path / "train.parquet", "--out", tmp_path / "scores.parquet",
        "--sparsity", tmp_path / "sparsity.parquet",
    ]  # fmt: skip


def test_a_sample_out_of_memory_is_skipped_and_counted(job, tmp_path, monkeypatch, caplog):
    """Sample 1 raises torch.OutOfMemoryError and sample 3 cuBLAS's RuntimeError: both are skipped (no rows), the
    memory is freed outside the except block, the log counts them, and samples 0 and 2 have their saliency."""
    real = saliency_command.token_saliency
    errors = {28: torch.cuda.OutOfMemoryError("CUDA out of memory."), 36: RuntimeError("CUDA error: out of memory")}
    calls, freed = [], []

    def token_saliency(model, ids, *args, **kwargs):
        calls.append(ids.shape[1])
        if ids.shape[1] in errors:  # samples 1 and 3 (28 and 36 tokens)
            raise errors[ids.shape[1]]
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(saliency_command, "token_saliency", token_saliency)
    monkeypatch.setattr(saliency_command, "free_memory", lambda: freed.append(sys.exc_info()))
    with caplog.at_level("INFO"):
        run_cli(*job)
    assert calls == [24, 28, 32, 36]
    assert freed == [(None, None, None)] * 2
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert sorted(set(scores["sample"])) == [0, 2] and len(scores) == 4  # two samples × two layers
    assert [len(s) for s in scores.sort_values(["sample", "layer"]).scores] == [24, 24, 32, 32]
    assert sorted(set(pd.read_parquet(tmp_path / "sparsity.parquet")["sample"])) == [0, 2]
    assert "2 of 4 samples ran out of memory and were skipped: train sample 1, heldout sample 3" in caplog.text

    def broken(*args, **kwargs):  # any other error still fails the job
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(saliency_command, "token_saliency", broken)
    with pytest.raises(RuntimeError, match="shapes"):
        run_cli(*job)


def test_every_sample_out_of_memory_fails_the_job(job, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(saliency_command, "token_saliency", out_of_memory)
    with pytest.raises(RuntimeError, match="every one of the 4 samples ran out of memory"):
        run_cli(*job)
    assert not (tmp_path / "scores.parquet").exists() and not (tmp_path / "sparsity.parquet").exists()
