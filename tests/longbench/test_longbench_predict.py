"""Greedy prediction of LongBench records: one record, a task, out-of-memory records, a resumed task."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import fixture_record, make_fixture_model, make_fixture_tokenizer

from sdtp.longbench import predict as predict_module
from sdtp.longbench.predict import predict_record, predict_task
from sdtp.longbench.prompts import encode_record
from sdtp.longbench.tasks import get_task
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer


def test_decoding_stops_at_eos():
    """A model whose final norm is zero gives all-zero logits: the argmax is id 0, the EOS, at the first step."""
    tokenizer = make_fixture_tokenizer()
    model = make_fixture_model(tokenizer)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    schedule = KeepSchedule([1, 2], 1.0)
    row = predict_record(
        model, tokenizer, get_task("hotpotqa"), fixture_record("hotpotqa", 1), schedule, get_scorer("baseline"), 96
    )
    assert row.new_tokens == 1 and row.pred == ""


def _task_setup(n=4):
    tokenizer = make_fixture_tokenizer()
    model = make_fixture_model(tokenizer)
    records = [fixture_record("hotpotqa", i) for i in range(n)]
    return model, tokenizer, get_task("hotpotqa"), records, KeepSchedule([1, 2], 0.5, min_local=2)


def test_a_record_out_of_memory_is_an_oom_row_and_the_task_goes_on(monkeypatch):
    """Record 1 raises torch.OutOfMemoryError, record 2 cuBLAS's RuntimeError: both become "oom" rows (empty
    prediction, no measurements), memory is freed outside the except block, and records 0 and 3 are predicted."""
    import sys

    model, tokenizer, task, records, schedule = _task_setup()
    real = predict_module.predict_record
    errors = {
        "hotpotqa-1": torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB"),
        "hotpotqa-2": RuntimeError("CUDA error: out of memory"),
    }
    calls, freed, streamed = [], [], []

    def predict_record(model, tokenizer, task, record, *args):
        calls.append(record["_id"])
        if record["_id"] in errors:
            raise errors[record["_id"]]
        return real(model, tokenizer, task, record, *args)

    monkeypatch.setattr(predict_module, "predict_record", predict_record)
    monkeypatch.setattr(predict_module, "free_memory", lambda: freed.append(sys.exc_info()))
    rows = predict_task(
        model, tokenizer, task, records, schedule, get_scorer("random"), 96, on_row=lambda row: streamed.append(row)
    )
    assert calls == [r["_id"] for r in records] and streamed == rows
    assert [row.status for row in rows] == ["ok", "oom", "oom", "ok"]
    assert freed == [(None, None, None)] * 2  # once per OOM, with no exception being handled
    for row, record in zip(rows[1:3], records[1:3], strict=True):
        assert row.pred == "" and row.new_tokens == 0 and row.tokens_per_layer == []
        assert row.prefill_s is None and row.compression_ratio is None
        assert row.answers == record["answers"] and row.length == record["length"]
        assert row.prompt_tokens == len(encode_record(task, record, tokenizer, 96))
    assert rows[0].prefill_s > 0 and rows[3].tokens_per_layer[0] > rows[3].tokens_per_layer[-1]

    def broken(*args):  # any other error still stops the task
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(predict_module, "predict_record", broken)
    with pytest.raises(RuntimeError, match="shapes"):
        predict_task(model, tokenizer, task, records, schedule, get_scorer("random"), 96)


def test_done_records_are_skipped_and_an_oom_warm_up_is_survived(monkeypatch):
    """`done=2` predicts records 2 and 3 only (a resumed job), rows identical to an uninterrupted run's but for the
    timing; the warm-up prefill running out of memory is logged and the records still run."""
    model, tokenizer, task, records, schedule = _task_setup()
    full = predict_task(model, tokenizer, task, records, schedule, get_scorer("baseline"), 96)
    real_prefill = predict_module.prefill_with_pruning
    prefills = []

    def prefill(*args, **kwargs):
        prefills.append(args[1].shape[1])
        if len(prefills) == 1:  # the warm-up
            raise RuntimeError("CUDA error: out of memory")
        return real_prefill(*args, **kwargs)

    monkeypatch.setattr(predict_module, "prefill_with_pruning", prefill)
    rest = predict_task(model, tokenizer, task, records, schedule, get_scorer("baseline"), 96, done=2)
    assert len(prefills) == 3  # warm-up, then records 2 and 3
    assert [row.status for row in rest] == ["ok", "ok"]
    without_time = lambda row: {k: v for k, v in dataclasses.asdict(row).items() if k != "prefill_s"}  # noqa: E731
    assert [without_time(row) for row in rest] == [without_time(row) for row in full[2:]]
    assert predict_task(model, tokenizer, task, records, schedule, get_scorer("baseline"), 96, done=4) == []
