"""`python -m sdtp longbench-predict`: greedy predictions of one task with one method and keep ratio, as JSONL."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from sdtp.commands.settings import add_settings_arguments, load_run_model, schedule_for, scorer_for
from sdtp.longbench.predict import ensure_eos, predict_task
from sdtp.longbench.records import read_jsonl, write_jsonl
from sdtp.longbench.tasks import get_task

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--pruner", default=None, help="pruner checkpoint directory (method sdtp)")
    parser.add_argument("--method", required=True)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage (1.0 for baseline)")
    parser.add_argument("--task", required=True, help="task name (LongBench v1 or synthetic)")
    parser.add_argument("--records", required=True, help="the task's records (JSONL, from task-records)")
    parser.add_argument("--out", required=True, help="JSONL file to write")


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
    settings, model, tokenizer = load_run_model(args)
    if tokenizer is None:
        raise ValueError(
            f"model {settings['model'].get('name')!r} has no tokenizer: LongBench prompts cannot be encoded"
        )
    ensure_eos(model, tokenizer)
    scorer = scorer_for(settings, args.method, args.pruner)
    keep_ratio = args.ratio if scorer.prunes else 1.0
    schedule = schedule_for(settings, model, keep_ratio)
    log.info(
        "%s on %s: %d records, keep ratio %s at layers %s, max %d input tokens, max %d new tokens",
        args.method,
        task.name,
        len(records),
        keep_ratio,
        schedule.layers if scorer.prunes else [],
        settings["longbench"]["max_input_tokens"],
        task.max_new_tokens,
    )
    rows = predict_task(
        model,
        tokenizer,
        task,
        records,
        schedule,
        scorer,
        settings["longbench"]["max_input_tokens"],
        label=f"{args.method} r={keep_ratio} ",
    )
    write_jsonl((dataclasses.asdict(row) for row in rows), args.out)
    log.info("wrote %d predictions to %s", len(rows), args.out)
    return 0
