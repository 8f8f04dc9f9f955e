"""`python -m sdtp task-records`: one task's evaluation records in LongBench's format, as a JSONL file.

The rest of the pipeline (predict, score) reads only this file, whatever the source:

- `longbench.source: synthetic` — the offline demo's seeded tasks (`sdtp.data.synthetic`): `synthetic_records` records
  of `context_words` words each, drawn from `seed`. Record i is the same whatever the count, so `max_samples` (which
  keeps the first N) gives a prefix of the full set.
- `longbench.source: v1` — the official LongBench v1 JSONL of the task (`sdtp.longbench.data.load_task_records`), from
  `data_dir` or, when it is null, downloaded once from the Hugging Face Hub; the first `max_samples` records.

Settings (`--settings`): {"seed": int, "longbench": {"source", "data_dir", "max_samples", "context_words",
"synthetic_records"}}.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sdtp.io import atomic_path

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "v1")


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write one JSON object per line, atomically (UTF-8, non-ASCII kept as is)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, blank lines skipped; ValueError naming the file and line otherwise."""
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc.msg})") from None
    return records


def _synthetic_records(task: str, section: dict, seed: int) -> list[dict[str, Any]]:
    from sdtp.data.synthetic import SYNTHETIC_TASKS, generate_records

    if task not in SYNTHETIC_TASKS:
        raise ValueError(
            f"task {task!r} is not a synthetic task (longbench.source: synthetic knows {', '.join(SYNTHETIC_TASKS)}); "
            "set longbench.source: v1 for the LongBench v1 tasks, or list synthetic tasks in longbench.tasks"
        )
    n = section["synthetic_records"]
    if section.get("max_samples") is not None:
        n = min(n, section["max_samples"])
    context_words = section["context_words"]
    if isinstance(context_words, list):  # a [lo, hi] range from JSON
        context_words = tuple(context_words)
    return generate_records(task, n=n, context_words=context_words, seed=seed)


def _v1_records(task: str, section: dict) -> list[dict[str, Any]]:
    from sdtp.data.synthetic import SYNTHETIC_TASKS
    from sdtp.longbench.data import load_task_records
    from sdtp.longbench.tasks import get_task

    if task in SYNTHETIC_TASKS:
        raise ValueError(
            f"task {task!r} is a synthetic task: set longbench.source: synthetic, or list LongBench v1 tasks "
            "(narrativeqa, hotpotqa, ...) in longbench.tasks"
        )
    get_task(task)  # unknown names fail here, with the list of valid ones
    return load_task_records(task, section.get("data_dir"), section.get("max_samples"))


def task_records(task: str, settings: dict) -> list[dict[str, Any]]:
    """The records of `task` under the settings' `longbench.source` (see the module docstring)."""
    section = settings["longbench"]
    source = section.get("source", "synthetic")
    if source == "synthetic":
        return _synthetic_records(task, section, settings.get("seed", 0))
    if source == "v1":
        return _v1_records(task, section)
    raise ValueError(f"longbench.source = {source!r} must be one of {', '.join(SOURCES)}")
