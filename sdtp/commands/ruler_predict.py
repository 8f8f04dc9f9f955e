"""`python -m sdtp ruler-predict`: greedy predictions of one RULER task at one length with one method and keep ratio,
as JSONL (`sdtp.ruler.predict.predict_records`).

Resumable as `longbench-predict` is: each row is appended to `<out>.partial` (flushed) with the job's key
(`longbench_predict.job_key`: settings, method, ratio, task, the records file's hash, the model/pruner files); only
when every record has its row is the file renamed to `<out>`. A rerun keeps the rows of its `.partial` and predicts the
rest; a `.partial` written with other settings is discarded. A record that runs out of memory (or that the method's
press cannot run on) is a row with `status` "oom" ("error") and its `reason`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sdtp.commands.longbench_predict import add_prediction_arguments, job_key
from sdtp.commands.settings import (
    kv_compression_job,
    load_run_model,
    schedule_for,
    scorer_for,
)
from sdtp.kv_compression import parse_method
from sdtp.longbench.predict import ensure_eos
from sdtp.longbench.records import appending_jsonl, read_jsonl, resumable_predictions
from sdtp.provenance import provenance
from sdtp.ruler.predict import predict_records

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_prediction_arguments(parser, "RULER task name", "the task's records at one length (JSONL, ruler-generate)")


def main(args: argparse.Namespace) -> int:
    if args.settings["model"].get("weights") == "random":
        raise ValueError("model.weights is random: RULER predictions of a random-weight model are meaningless")
    records = read_jsonl(args.records)
    if not records:
        raise ValueError(f"{args.records} holds no records for task {args.task!r}")
    if {record["task"] for record in records} != {args.task}:
        raise ValueError(f"{args.records} holds records of other tasks than {args.task!r}")
    out = Path(args.out)
    key = job_key(args)
    ids = [record["index"] for record in records]
    rows = resumable_predictions(out, key, ids, lambda done, partial: _predict(args, records, done, partial, key))
    failed = sum(row.get("status", "ok") != "ok" for row in rows)
    log.info("wrote %d predictions to %s (%d could not be measured)", len(rows), out, failed)
    return 0


def _predict(args: argparse.Namespace, records: list[dict], done: int, partial: Path, key: str) -> None:
    settings, model, tokenizer = load_run_model(args)
    if tokenizer is None:
        raise ValueError(f"model {settings['model'].get('name')!r} has no tokenizer: RULER prompts cannot be encoded")
    ensure_eos(model, tokenizer)
    scorer = scorer_for(settings, args.method, args.pruner)
    pressed = parse_method(args.method).press is not None
    keep_ratio = args.ratio if scorer.prunes or pressed else 1.0
    schedule = schedule_for(settings, model, keep_ratio)
    kv_compression = kv_compression_job(settings, args.method, keep_ratio, schedule)
    log.info("%s on %s: %d records (%d to predict), keep ratio %s at layers %s, up to %d new tokens", args.method,
             args.task, len(records), len(records) - done, keep_ratio, schedule.layers if scorer.prunes else [],
             records[0]["tokens_to_generate"])  # fmt: skip
    with appending_jsonl(partial) as append:
        predict_records(
            model,
            tokenizer,
            records,
            schedule,
            scorer,
            done=done,
            kv_compression=kv_compression,
            label=f"{args.method} r={keep_ratio} ",
            on_row=lambda row: append({**row, "job_key": key, **provenance()}),
        )
