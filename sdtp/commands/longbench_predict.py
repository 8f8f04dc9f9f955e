"""`python -m sdtp longbench-predict`: greedy predictions of one task with one method and keep ratio, as JSONL.

Resumable: each record's row is appended to `<out>.partial` (and flushed) as soon as it is predicted, with the job's
key (`job_key`: a hash of the settings, method, ratio, task, the records file and the model/pruner files); only when
every record has its row is the file renamed to `<out>`, so the workflow never takes a partial file for a result. A
rerun of the same job keeps the rows of its `.partial` and predicts the remaining records; a `.partial` written with
other settings is discarded (logged). A record that cannot be measured is a row with its `status` ("oom": out of
memory; "error": the method cannot run on it, e.g. its press fails on a layer) and `reason` (`sdtp.failures`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
from pathlib import Path

from sdtp.commands.settings import (
    add_settings_arguments,
    kv_compression_job,
    load_run_model,
    schedule_for,
    scorer_for,
    wrapping_name,
)
from sdtp.kv_compression import parse_method
from sdtp.longbench.predict import ensure_eos, predict_task
from sdtp.longbench.prompts import PromptFormat
from sdtp.longbench.records import appending_jsonl, read_jsonl, resumable_predictions
from sdtp.longbench.tasks import get_task
from sdtp.provenance import provenance

log = logging.getLogger(__name__)


def add_prediction_arguments(parser: argparse.ArgumentParser, task_help: str, records_help: str) -> None:
    """The arguments of a resumable prediction job (this command's and `ruler-predict`'s): settings, pruner, method,
    keep ratio, task, its records and the output file."""
    add_settings_arguments(parser)
    parser.add_argument("--pruner", default=None, help="pruner checkpoint directory (method sdtp)")
    parser.add_argument("--method", required=True)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage (1.0 for baseline)")
    parser.add_argument("--task", required=True, help=task_help)
    parser.add_argument("--records", required=True, help=records_help)
    parser.add_argument("--out", required=True, help="JSONL file to write")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_prediction_arguments(
        parser, "task name (LongBench v1 or synthetic)", "the task's records (JSONL, from task-records)"
    )


def _files_stamp(path: str | None) -> list | None:
    """(relative name, size, mtime) of every file under `path`: changes when the model or pruner is rebuilt, and
    costs no read of a large checkpoint."""
    if path is None:
        return None
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [[str(p.relative_to(root)) if p != root else p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def job_key(args: argparse.Namespace) -> str:
    """What a prediction row depends on, hashed: a `.partial` row with another key came from another job."""
    parts = {
        "settings": args.settings,
        "method": args.method,
        "ratio": float(args.ratio),
        "task": args.task,
        "records": hashlib.sha256(Path(args.records).read_bytes()).hexdigest(),
        "model_dir": _files_stamp(args.model_dir),
        "pruner": _files_stamp(args.pruner),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def main(args: argparse.Namespace) -> int:
    if args.settings["model"].get("weights") == "random":
        raise ValueError(
            "model.weights is random: LongBench predictions of a random-weight model are meaningless; use pretrained "
            "weights (random weights are for latency runs)"
        )
    task = get_task(args.task)  # fail on a bad task name before loading the model
    records = read_jsonl(args.records)
    if not records:
        raise ValueError(f"{args.records} holds no records for task {args.task!r}")
    out = Path(args.out)
    key = job_key(args)
    ids = [record["_id"] for record in records]
    rows = resumable_predictions(out, key, ids, lambda done, partial: _predict(args, task, records, done, partial, key))
    oom = sum(row.get("status", "ok") == "oom" for row in rows)
    errors = sum(row.get("status", "ok") == "error" for row in rows)
    uncompressed = sum(bool(row.get("press_uncompressed_layers")) for row in rows)
    log.info(
        "wrote %d predictions to %s (%d out of memory, %d the method could not run, %d with layers too short for the "
        "press, left uncompressed)", len(rows), out, oom, errors, uncompressed,
    )  # fmt: skip
    return 0


def prompt_format_for(settings: dict) -> PromptFormat:
    """The job's `PromptFormat`: longbench.max_input_tokens and chat_template, and the name the official wrappers
    match on (`wrapping_name`)."""
    section = settings["longbench"]
    return PromptFormat(section["max_input_tokens"], section.get("chat_template", "official"), wrapping_name(settings))


def _predict(args: argparse.Namespace, task, records: list[dict], done: int, partial: Path, key: str) -> None:
    """Predict `records[done:]`, appending each row to `partial` as it comes."""
    settings, model, tokenizer = load_run_model(args)
    if tokenizer is None:
        raise ValueError(
            f"model {settings['model'].get('name')!r} has no tokenizer: LongBench prompts cannot be encoded"
        )
    ensure_eos(model, tokenizer)
    scorer = scorer_for(settings, args.method, args.pruner)
    pressed = parse_method(args.method).press is not None
    keep_ratio = args.ratio if scorer.prunes or pressed else 1.0
    schedule = schedule_for(settings, model, keep_ratio)
    kv_compression = kv_compression_job(settings, args.method, keep_ratio, schedule)
    log.info(
        "%s on %s: %d records (%d to predict), keep ratio %s at layers %s, max %d input tokens, max %d new tokens, "
        "chat template %s",
        args.method,
        task.name,
        len(records),
        len(records) - done,
        keep_ratio,
        schedule.layers if scorer.prunes else [],
        settings["longbench"]["max_input_tokens"],
        task.max_new_tokens,
        prompt_format_for(settings).chat_template,
    )
    with appending_jsonl(partial) as append:
        predict_task(
            model,
            tokenizer,
            task,
            records,
            schedule,
            scorer,
            prompt_format_for(settings),
            label=f"{args.method} r={keep_ratio} ",
            done=done,
            kv_compression=kv_compression,
            on_row=lambda row: append({**dataclasses.asdict(row), "job_key": key, **provenance()}),
        )
