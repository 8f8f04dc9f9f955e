"""RULER's commands in-process on a tiny model with a byte-level BPE tokenizer: ruler-generate -> ruler-predict
(killed part-way and resumed; a record out of memory) -> ruler-score -> ruler-table (table and figures)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from ruler_bpe import ESSAY_PARAGRAPHS, save_bpe_model
from tiny_models import run_cli

from sdtp.commands import gpu_pool
from sdtp.ruler import predict as predict_module

MODEL = {"name": "tiny", "source": "hub", "id": None, "dtype": "float32", "attn_implementation": "sdpa",
         "device": "cpu", "weights": "pretrained", "revision": None}  # fmt: skip
RULER = {"samples": 3, "seed": 5, "chat_template": "none", "qa_data_dir": None}
PREDICT = {"seed": 0, "model": MODEL, "schedule": {"layers": [1, 2], "sink_tokens": 2, "local_ratio": 0.1,
                                                   "min_local": 2}}  # fmt: skip


class Killed(Exception):
    """Stands for the job being killed while predicting a record."""


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("ruler-commands")
    save_bpe_model(root / "model")
    essays = root / "essays"
    essays.mkdir()
    for i, paragraph in enumerate(ESSAY_PARAGRAPHS):
        (essays / f"{i}.txt").write_text(paragraph + "\n")
    records = root / "records.jsonl"
    settings = json.dumps({"model": MODEL, "ruler": RULER})
    run_cli("ruler-generate", "--settings", settings, "--model-dir", root / "model", "--essays", essays, "--task",
            "niah_single_2", "--length", 384, "--out", records)  # fmt: skip
    return root, records


def predict(job, out, monkeypatch, *, kill_at=None, oom=()):
    """ruler-predict (streaming, r=0.5) with `predict_record` counted and failing from call `kill_at` or on the
    record indices in `oom`; the records it predicted."""
    root, records = job
    monkeypatch.setattr(gpu_pool, "claim_devices", lambda *args, **kwargs: None)
    real, calls = predict_module.predict_record, []

    def predict_record(model, tokenizer, record, *args):
        calls.append(record["index"])
        if kill_at is not None and len(calls) > kill_at:
            raise Killed
        if record["index"] in oom:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return real(model, tokenizer, record, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predict_module, "predict_record", predict_record)
        run_cli("ruler-predict", "--settings", json.dumps(PREDICT), "--model-dir", root / "model", "--gpus", 0,
                "--method", "streaming", "--ratio", 0.5, "--task", "niah_single_2", "--records", records,
                "--out", out)  # fmt: skip
    return calls


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_writes_records_that_fit_the_length(job):
    records = lines(job[1])
    assert [r["index"] for r in records] == [0, 1, 2] and {r["seed"] for r in records} == {5}
    assert all(r["length"] <= 384 and r["task"] == "niah_single_2" for r in records)


def test_a_killed_prediction_resumes_where_it_stopped(job, tmp_path, monkeypatch):
    full = tmp_path / "full.jsonl"
    assert predict(job, full, monkeypatch) == [0, 1, 2]
    out = tmp_path / "resumed.jsonl"
    with pytest.raises(Killed):
        predict(job, out, monkeypatch, kill_at=2)
    assert not out.exists() and [r["_id"] for r in lines(tmp_path / "resumed.jsonl.partial")] == [0, 1]
    assert predict(job, out, monkeypatch) == [2]
    drop = ("prefill_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in lines(out)] == [
        {k: v for k, v in r.items() if k not in drop} for r in lines(full)
    ]
    assert all(0 < r["new_tokens"] <= 128 and r["kv_fraction"] < 1 for r in lines(out))


def test_an_out_of_memory_record_is_scored_zero_and_counted_in_the_table(job, tmp_path, monkeypatch):
    predictions = tmp_path / "p.jsonl"
    predict(job, predictions, monkeypatch, oom={1})
    assert [r["status"] for r in lines(predictions)] == ["ok", "oom", "ok"]
    weights = {r["weights"] for r in lines(predictions)}  # every row, the failed one too, says what the weights are
    assert len(weights) == 1 and weights.pop()
    score = tmp_path / "p.score.parquet"
    run_cli("ruler-score", "--predictions", predictions, "--model", "tiny", "--method", "streaming", "--ratio", 0.5,
            "--out", score)  # fmt: skip
    samples = pd.read_parquet(score)
    assert len(samples) == 3 and samples.score.iloc[1] == 0.0 and samples.status.tolist() == ["ok", "oom", "ok"]
    table_path, figures = tmp_path / "tables" / "ruler.parquet", tmp_path / "figures"
    run_cli("ruler-table", "--scores", score, "--out", table_path)
    run_cli("ruler-table", "--table", table_path, "--figures-dir", figures)
    table = pd.read_parquet(table_path)
    assert len(table) == 1 and table.n.iloc[0] == 3 and table.oom_count.iloc[0] == 1
    assert table.weights.iloc[0] == lines(predictions)[0]["weights"]
    assert table.max_seq_length.iloc[0] == 384 and table.method.iloc[0] == "streaming"
    assert sorted(p.name for p in figures.glob("*.html")) == [
        "ruler_score_vs_kv_budget.html", "ruler_score_vs_length.html", "ruler_task_heatmap.html"
    ]  # fmt: skip
