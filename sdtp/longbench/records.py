"""`python -m sdtp task-records`: one task's evaluation records in LongBench's format, as a JSONL file.

The rest of the pipeline (predict, score) reads only this file, whatever the source:

- `longbench.source: synthetic` — the offline demo's seeded tasks (`sdtp.data.synthetic`): `synthetic_records` records
  of `context_words` words each, drawn from `seed`. Record i is the same whatever the count, so `max_samples` (which
  keeps the first N) gives a prefix of the full set.
- `longbench.source: v1` — the official LongBench v1 JSONL of the task (`sdtp.longbench.data.load_task_records`), from
  `data_dir` or, when it is null, downloaded once from the Hugging Face Hub; the first `max_samples` records.

Settings (`--settings`): {"seed": int, "longbench": {"source", "data_dir", "max_samples", "context_words",
"synthetic_records"}}.

Also the JSONL helpers of the jobs that read and write such files: `write_jsonl` (atomic), `read_jsonl`, and for a job
that writes one line per record as it goes (`longbench-predict`) `partial_path`, `appending_jsonl` and
`resume_partial`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
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


def partial_path(path: str | Path) -> Path:
    """Where a job that writes `path` line by line keeps its lines until it is done: `<path>.partial`."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def resume_partial(path: str | Path, job_key: str, ids: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows an interrupted job left in the `.partial` file `path` that a rerun can keep; the file then holds
    exactly those.

    Row i is kept when its `job_key` field is `job_key` (written with the same settings) and its `_id` is `ids[i]` (the
    records, in order), up to the first row that is not: a file written with other settings (first row) is deleted,
    and a last line cut short by the kill is dropped; either is logged. A missing file gives [].
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    complete, tail = lines[:-1], lines[-1]  # text after the last newline is a line the kill cut short
    rows: list[dict[str, Any]] = []
    reason = "a line cut short" if tail.strip() else ""
    for line_no, line in enumerate(complete, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            reason = f"line {line_no} is not valid JSON"
            break
        if not isinstance(row, dict) or row.get("job_key") != job_key:
            reason = f"line {line_no} was written with other settings (or by another version)"
            break
        if len(rows) >= len(ids) or row.get("_id") != ids[len(rows)]:
            reason = f"line {line_no} is not the record at its position"
            break
        rows.append(row)
    if not rows:
        log.info("%s: discarded (%s); starting from the first record", path, reason or "empty")
        path.unlink()
        return []
    if reason:
        log.info("%s: keeping its first %d rows, dropping the rest (%s)", path, len(rows), reason)
        write_jsonl(rows, path)
    return rows


@contextlib.contextmanager
def appending_jsonl(path: str | Path) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Yield `append(row)`, which writes one JSON line to the end of `path` and flushes it at once (a killed job
    loses at most the line being written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:

        def append(row: dict[str, Any]) -> None:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()

        yield append


def resumable_predictions(
    out: str | Path, job_key: str, ids: Sequence[Any], predict_remaining: Callable[[int, Path], None]
) -> list[dict[str, Any]]:
    """The resumable prediction protocol of a job that writes one row per record (`_id` = the record's id): keep the
    rows of `<out>.partial` written with the same `job_key`, call `predict_remaining(done, partial)` to append the
    rest, check there is one row per record in record order, then rename the partial file to `out`. Returns the rows.
    """
    out = Path(out)
    partial = partial_path(out)
    done = len(resume_partial(partial, job_key, ids))
    if done:
        log.info("resuming from %s: %d of %d records already predicted with these settings", partial, done, len(ids))
    if done < len(ids):
        predict_remaining(done, partial)
    rows = read_jsonl(partial)
    if [row.get("_id") for row in rows] != list(ids):  # every record once, in record order
        raise RuntimeError(f"{partial} does not hold one row per record in record order; delete it and rerun")
    partial.replace(out)
    return rows


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
