"""LongBench path end to end: fixture data.zip -> task-records -> longbench-predict (tiny model) -> longbench-score.

One module-scoped run drives the real commands through `sdtp.commands.cli.main` (hub download faked, a tiny Qwen2 and a
word-level tokenizer saved with `save_pretrained`); the tests below check its outputs. The last tests rerun
longbench-predict on the same model: killed part-way and resumed, with a `.partial` of other settings, with a record
that runs out of memory.
"""

from __future__ import annotations

import json
import math
import types

import pandas as pd
import pytest
import torch
from tiny_models import (
    ASSISTANT,
    V1_TASKS,
    fixture_record,
    make_fixture_model,
    make_fixture_tokenizer,
    make_fixture_zip,
    run_cli,
)
from transformers import PreTrainedTokenizerFast

from sdtp.commands import gpu_pool
from sdtp.data.synthetic import SYNTHETIC_TASKS, generate_records
from sdtp.longbench import data as lb_data
from sdtp.longbench import predict as predict_module
from sdtp.longbench.prompts import build_prompt, encode_record
from sdtp.longbench.records import write_jsonl
from sdtp.longbench.tasks import get_task
from sdtp.schedule import KeepSchedule

METHODS = {"baseline": "1.0", "random": "0.5"}


MAX_INPUT_TOKENS = 96


MAX_SAMPLES = 2


SETTINGS_MODEL = {
    "name": "tiny",
    "source": "demo",
    "dtype": "float32",
    "attn_implementation": "sdpa",
    "device": "cpu",
    "weights": "pretrained",
}


SCHEDULE = {"layers": [1, 2], "sink_tokens": 2, "local_ratio": 0.1, "min_local": 2}


PREDICT_SETTINGS = {
    "seed": 0,
    "model": SETTINGS_MODEL,
    "schedule": SCHEDULE,
    "longbench": {"max_input_tokens": MAX_INPUT_TOKENS},
}


SCORE_COLUMNS = [
    "model",
    "method",
    "keep_ratio",
    "task",
    "metric",
    "score",
    "n",
    "oom_records",
    "score_0_4k",
    "score_4_8k",
    "score_8k_plus",
    "mean_prompt_tokens",
    "mean_compression_ratio",
    "mean_prefill_s",
    "chat_template",
    "mean_kv_fraction",
    "kv_budget",
    "press_compression_ratio",
    "error_records",
    "press_uncompressed_records",
    "weights",
    "host",  # sdtp.provenance: the scoring job's
    "slurm_job_id",
    "cuda_visible_devices",
]


PREDICTION_FIELDS = {
    "_id",
    "pred",
    "answers",
    "all_classes",
    "length",
    "prompt_tokens",
    "tokens_per_layer",
    "compression_ratio",
    "prefill_s",
    "new_tokens",
    "status",
    "chat_template",
    "kv_lengths",
    "kv_budget",
    "press_compression_ratio",
    "press_uncompressed_layers",
    "reason",
    "weights",
    "job_key",
    "host",
    "slurm_job_id",
    "cuda_visible_devices",
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run task-records (v1 via the faked hub, and synthetic), predict and score; return the paths."""
    root = tmp_path_factory.mktemp("pipeline")
    archive = make_fixture_zip(root / "data.zip")
    tokenizer = make_fixture_tokenizer()
    model_dir = root / "model"
    make_fixture_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    hub_calls = []

    def fake_download(**kwargs):
        hub_calls.append(kwargs)
        return str(archive)

    record_settings = {
        "seed": 0,
        "longbench": {
            "source": "v1",
            "data_dir": None,
            "max_samples": MAX_SAMPLES,
            "context_words": 80,
            "synthetic_records": 3,
        },
    }
    # The tokenizer's own chat template (`model`), so that the wrapping rule per task is what is checked.
    predict_settings = {**PREDICT_SETTINGS, "longbench": {**PREDICT_SETTINGS["longbench"], "chat_template": "model"}}
    runs = [(task, method) for task in V1_TASKS for method in METHODS] + [("synthetic_passkey", "baseline")]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # data_dir null extracts into ./resources/longbench
        mp.setattr(lb_data, "hf_hub_download", fake_download)
        mp.setattr(gpu_pool, "claim_device", lambda: None)  # CPU run: no GPU pool
        for task in V1_TASKS:
            run_cli(
                "task-records",
                "--settings",
                json.dumps(record_settings),
                "--task",
                task,
                "--out",
                root / "tasks" / f"{task}.jsonl",
            )
        synthetic = {**record_settings, "longbench": {**record_settings["longbench"], "source": "synthetic"}}
        run_cli(
            "task-records",
            "--settings",
            json.dumps(synthetic),
            "--task",
            "synthetic_passkey",
            "--out",
            root / "tasks" / "synthetic_passkey.jsonl",
        )
        for task, method in runs:
            out = root / "longbench" / method / f"{task}.jsonl"
            run_cli(
                "longbench-predict",
                "--settings",
                json.dumps(predict_settings),
                "--model-dir",
                model_dir,
                "--method",
                method,
                "--ratio",
                METHODS[method],
                "--task",
                task,
                "--records",
                root / "tasks" / f"{task}.jsonl",
                "--out",
                out,
            )
            run_cli(
                "longbench-score",
                "--predictions",
                out,
                "--model",
                "tiny",
                "--method",
                method,
                "--ratio",
                METHODS[method],
                "--task",
                task,
                "--out",
                out.with_suffix(".score.parquet"),
            )
    return types.SimpleNamespace(root=root, model_dir=model_dir, hub_calls=hub_calls, runs=runs)


def predictions(pipeline, method, task) -> list[dict]:
    path = pipeline.root / "longbench" / method / f"{task}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def score_row(pipeline, method, task) -> pd.Series:
    frame = pd.read_parquet(pipeline.root / "longbench" / method / f"{task}.score.parquet")
    assert len(frame) == 1
    return frame.iloc[0]


def test_task_records_from_the_downloaded_zip(pipeline):
    assert len(pipeline.hub_calls) == 1  # extracted once into resources/longbench, then read from there
    assert (pipeline.root / "resources" / "longbench" / "hotpotqa.jsonl").is_file()
    for task in V1_TASKS:
        lines = (pipeline.root / "tasks" / f"{task}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == [fixture_record(task, i) for i in range(MAX_SAMPLES)]
    assert not list((pipeline.root / "tasks").glob(".*"))  # no temporary files left behind


def test_predictions_have_the_fields_and_follow_the_prompt_rules(pipeline):
    from transformers import AutoModelForCausalLM

    tokenizer = PreTrainedTokenizerFast.from_pretrained(pipeline.model_dir)
    model = AutoModelForCausalLM.from_pretrained(pipeline.model_dir).eval()
    assistant_id = tokenizer.convert_tokens_to_ids(ASSISTANT)
    for task in V1_TASKS:
        spec = get_task(task)
        for method in METHODS:
            rows = predictions(pipeline, method, task)
            assert [row["_id"] for row in rows] == [f"{task}-{i}" for i in range(MAX_SAMPLES)]
            for i, row in enumerate(rows):
                assert set(row) == PREDICTION_FIELDS and row["status"] == "ok" and row["chat_template"] == "model"
                assert row["weights"] == "pretrained"  # sdtp.models.weights_of: a checkpoint with no GGUF source
                record = fixture_record(task, i)
                assert row["answers"] == record["answers"] and row["length"] == record["length"]
                assert row["all_classes"] is None
                ids = encode_record(spec, record, tokenizer, MAX_INPUT_TOKENS, chat_template="model")
                assert row["prompt_tokens"] == len(ids)
                assert (assistant_id in ids) == (task == "hotpotqa")  # chat template for hotpotqa only
                assert isinstance(row["pred"], str) and row["prefill_s"] > 0
                assert len(row["pred"].split()) <= row["new_tokens"]
                if method == "baseline":  # unpruned: exactly what transformers' own greedy `generate` produces
                    generated = model.generate(
                        torch.tensor([ids]), max_new_tokens=spec.max_new_tokens, do_sample=False,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                    )[0, len(ids):].tolist()  # fmt: skip
                    assert row["new_tokens"] == len(generated)
                    assert row["pred"] == tokenizer.decode(generated, skip_special_tokens=True)
        # record 0 is longer than max_input_tokens: truncated in the middle (+ 2 chat-template tokens for hotpotqa)
        full = len(tokenizer(build_prompt(spec, fixture_record(task, 0)))["input_ids"])
        first = predictions(pipeline, "baseline", task)[0]
        assert full > MAX_INPUT_TOKENS >= first["prompt_tokens"] - (2 if task == "hotpotqa" else 0)


def test_tokens_per_layer_reflect_pruning_for_random_only(pipeline):
    schedule = KeepSchedule(SCHEDULE["layers"], 0.5, sink_tokens=2, local_ratio=0.1, min_local=2)
    num_layers = 5  # tests/tiny_models.py
    for task in V1_TASKS:
        for row in predictions(pipeline, "baseline", task):
            assert row["tokens_per_layer"] == [row["prompt_tokens"]] * num_layers
            assert row["compression_ratio"] == 1.0
        for row in predictions(pipeline, "random", task):
            tokens = row["tokens_per_layer"]
            assert tokens == schedule.tokens_per_layer(row["prompt_tokens"], num_layers)
            assert tokens[0] == row["prompt_tokens"] > tokens[1] > tokens[2] == tokens[4]
            assert row["compression_ratio"] == pytest.approx(row["prompt_tokens"] / (sum(tokens) / num_layers))


def test_score_parquet_rows(pipeline):
    for task, method in pipeline.runs:
        row = score_row(pipeline, method, task)
        rows = predictions(pipeline, method, task)
        assert list(row.index) == SCORE_COLUMNS
        assert row["model"] == "tiny" and row["method"] == method and row["task"] == task
        assert row["keep_ratio"] == float(METHODS[method])
        assert row["metric"] == get_task(task).metric_name == "qa_f1_score"
        assert row["n"] == len(rows) == MAX_SAMPLES and row["oom_records"] == 0
        assert row["chat_template"] == "model"  # the provenance of the prompts, from the predictions
        assert row["weights"] == "pretrained"  # what the weights were, from the predictions
        assert not list((pipeline.root / "longbench" / method).glob("*.partial"))  # renamed once complete
        assert 0.0 <= row["score"] <= 100.0
        assert row["mean_prompt_tokens"] == pytest.approx(sum(r["prompt_tokens"] for r in rows) / len(rows))
        assert row["mean_prefill_s"] > 0
        if method == "baseline":
            assert row["mean_compression_ratio"] == 1.0
        else:
            assert row["mean_compression_ratio"] > 1.5
        if task in V1_TASKS:  # lengths 3000 and 5000: one sample in each of the first two buckets
            assert not math.isnan(row["score_0_4k"]) and not math.isnan(row["score_4_8k"])
            assert math.isnan(row["score_8k_plus"])


def test_synthetic_task_runs_through_the_same_path(pipeline):
    rows = predictions(pipeline, "baseline", "synthetic_passkey")
    expected = generate_records("synthetic_passkey", n=MAX_SAMPLES, context_words=80, seed=0)
    assert [row["_id"] for row in rows] == [r["_id"] for r in expected]
    assert all(row["new_tokens"] <= SYNTHETIC_TASKS["synthetic_passkey"]["max_new_tokens"] for row in rows)


# --- a resumable job: one row per record as it comes, `.partial` until done, out-of-memory records ------------------

RESUME_RECORDS = 4


class Killed(Exception):
    """Stands for the job being killed while predicting a record."""


@pytest.fixture
def resume_job(pipeline, tmp_path, monkeypatch):
    """A records file of 4 hotpotqa records and `run(out, ...)`, which runs longbench-predict (random, r=0.5) on it
    with `predict_record` counted and, from call `kill_at` or on the records named in `oom`, failing."""
    records = tmp_path / "records.jsonl"
    write_jsonl([fixture_record("hotpotqa", i) for i in range(RESUME_RECORDS)], records)
    monkeypatch.setattr(gpu_pool, "claim_devices", lambda *args, **kwargs: None)  # CPU run: no GPU pool
    real = predict_module.predict_record
    calls = []

    def run(out, *, kill_at=None, oom=(), settings=None, ratio="0.5"):
        def predict_record(model, tokenizer, task, record, *args):
            calls.append(record["_id"])
            if kill_at is not None and len(calls) > kill_at:
                raise Killed(record["_id"])
            if record["_id"] in oom:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
            return real(model, tokenizer, task, record, *args)

        calls.clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(predict_module, "predict_record", predict_record)
            run_cli(
                "longbench-predict", "--settings", json.dumps(settings or PREDICT_SETTINGS),
                "--model-dir", pipeline.model_dir, "--method", "random", "--ratio", ratio, "--task", "hotpotqa",
                "--records", records, "--out", out,
            )  # fmt: skip
        return list(calls)

    return run


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "prefill_s"} for row in rows]


def test_a_killed_job_resumes_where_it_stopped(resume_job, tmp_path, caplog):
    """Killed while predicting record 2: `<out>.partial` holds records 0 and 1 and `<out>` does not exist; the rerun
    predicts records 2 and 3 only and its file equals an uninterrupted run's (timings aside)."""
    full = tmp_path / "full" / "hotpotqa.jsonl"
    assert resume_job(full) == [f"hotpotqa-{i}" for i in range(RESUME_RECORDS)]
    out = tmp_path / "resumed" / "hotpotqa.jsonl"
    partial = out.with_name("hotpotqa.jsonl.partial")
    with pytest.raises(Killed):
        resume_job(out, kill_at=2)
    assert not out.exists()
    assert [row["_id"] for row in _lines(partial)] == ["hotpotqa-0", "hotpotqa-1"]
    with caplog.at_level("INFO"):
        calls = resume_job(out)
    assert calls == ["hotpotqa-2", "hotpotqa-3"]
    assert "2 of 4 records already predicted" in caplog.text
    assert not partial.exists()
    assert _without_timing(_lines(out)) == _without_timing(_lines(full))
    # killed again while writing a line: the cut line is dropped and its record predicted again
    out2 = tmp_path / "cut" / "hotpotqa.jsonl"
    partial2 = out2.with_name("hotpotqa.jsonl.partial")
    with pytest.raises(Killed):
        resume_job(out2, kill_at=3)
    lines = partial2.read_text().splitlines(keepends=True)
    partial2.write_text("".join(lines[:2]) + lines[2][:25])
    assert resume_job(out2) == ["hotpotqa-2", "hotpotqa-3"]
    assert _without_timing(_lines(out2)) == _without_timing(_lines(full))


def test_a_partial_file_from_other_settings_is_not_reused(resume_job, tmp_path, caplog):
    """A `.partial` left by a job with another keep ratio, or other settings, is discarded (logged) and every record
    predicted again with the new ones."""
    out = tmp_path / "hotpotqa.jsonl"
    with pytest.raises(Killed):
        resume_job(out, kill_at=2, ratio="0.7")
    with caplog.at_level("INFO"):
        assert len(resume_job(out)) == RESUME_RECORDS
    assert "written with other settings" in caplog.text
    rows = _lines(out)
    assert [row["_id"] for row in rows] == [f"hotpotqa-{i}" for i in range(RESUME_RECORDS)]
    assert len({row["job_key"] for row in rows}) == 1
    other = {**PREDICT_SETTINGS, "longbench": {"max_input_tokens": 80}}
    out.unlink()
    with pytest.raises(Killed):
        resume_job(out, kill_at=3, settings=other)
    assert len(resume_job(out)) == RESUME_RECORDS


def test_an_out_of_memory_record_is_an_oom_row_the_scorer_counts(resume_job, tmp_path):
    """Record 1 runs out of memory: its row says "oom" with an empty prediction, the others are predicted, and
    longbench-score counts it as 0 and reports it in `oom_records`."""
    out = tmp_path / "hotpotqa.jsonl"
    assert len(resume_job(out, oom={"hotpotqa-1"})) == RESUME_RECORDS
    rows = _lines(out)
    assert [row["status"] for row in rows] == ["ok", "oom", "ok", "ok"]
    assert rows[1]["pred"] == "" and rows[1]["prefill_s"] is None and rows[1]["tokens_per_layer"] == []
    run_cli(
        "longbench-score", "--predictions", out, "--model", "tiny", "--method", "random", "--ratio", "0.5",
        "--task", "hotpotqa", "--out", tmp_path / "score.parquet",
    )  # fmt: skip
    score = pd.read_parquet(tmp_path / "score.parquet").iloc[0]
    assert score["n"] == RESUME_RECORDS and score["oom_records"] == 1
    # provenance: outside SLURM the job id is null, in the score row and in every prediction record
    assert score["slurm_job_id"] is None and score["host"] and "cuda_visible_devices" in score
    assert all(row["slurm_job_id"] is None and row["host"] for row in rows)
    ok = [row for row in rows if row["status"] == "ok"]
    assert score["mean_prefill_s"] == pytest.approx(sum(row["prefill_s"] for row in ok) / len(ok))
