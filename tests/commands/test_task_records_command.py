"""`python -m sdtp task-records`: synthetic records and task-name errors."""

from __future__ import annotations

import json

import pytest
from tiny_models import run_cli

from sdtp.data.synthetic import generate_records


def test_synthetic_task_records_are_deterministic(tmp_path):
    def run(seed: int, name: str, max_samples=None):
        settings = {
            "seed": seed,
            "longbench": {
                "source": "synthetic",
                "data_dir": None,
                "max_samples": max_samples,
                "context_words": 100,
                "synthetic_records": 4,
            },
        }
        out = tmp_path / name
        run_cli("task-records", "--settings", json.dumps(settings), "--task", "synthetic_needle_qa", "--out", out)
        return out.read_text()

    first, again, other = run(0, "a.jsonl"), run(0, "b.jsonl"), run(1, "c.jsonl")
    assert first == again != other
    records = [json.loads(line) for line in first.splitlines()]
    assert records == generate_records("synthetic_needle_qa", n=4, context_words=100, seed=0)
    assert run(0, "d.jsonl", max_samples=2).splitlines() == first.splitlines()[:2]


@pytest.mark.parametrize(
    ("source", "task", "message"),
    [
        ("synthetic", "hotpotqa", "not a synthetic task"),
        ("synthetic", "no_such_task", "not a synthetic task"),
        ("v1", "no_such_task", "unknown LongBench task 'no_such_task'"),
        ("v1", "synthetic_passkey", "is a synthetic task"),
    ],
)
def test_unknown_task_is_a_clear_error(tmp_path, source, task, message):
    settings = {
        "seed": 0,
        "longbench": {
            "source": source,
            "data_dir": str(tmp_path),
            "max_samples": None,
            "context_words": 100,
            "synthetic_records": 2,
        },
    }
    out = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=message):
        run_cli("task-records", "--settings", json.dumps(settings), "--task", task, "--out", out)
    assert not out.exists()
