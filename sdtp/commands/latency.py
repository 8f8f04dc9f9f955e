"""`python -m sdtp latency`: one latency job = one (model, method, keep ratio, prompt length), measured by
`sdtp.latency.measure_latency`, one Parquet row per repeat."""

from __future__ import annotations

import argparse
import logging

from sdtp.commands.outputs import write_parquet
from sdtp.commands.settings import add_settings_arguments, load_run_model, model_label, schedule_for, scorer_for
from sdtp.latency import measure_latency, rows_to_frame

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--method", required=True)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage (1.0 for baseline)")
    parser.add_argument("--length", type=int, required=True, help="prompt length in tokens")
    parser.add_argument("--pruner", default=None, help="pruner checkpoint directory (method sdtp)")
    parser.add_argument("--out", required=True, help="Parquet file to write")


def main(args: argparse.Namespace) -> int:
    settings, model, _ = load_run_model(args)
    latency = settings["latency"]
    schedule = schedule_for(settings, model, args.ratio)
    scorer = scorer_for(settings, args.method, args.pruner)
    rows = measure_latency(
        model,
        model_name=model_label(settings),
        method=args.method,
        scorer=scorer,
        schedule=schedule,
        length=args.length,
        warmup=latency["warmup"],
        repeats=latency["repeats"],
        new_tokens=latency["new_tokens"],
        seed=settings["seed"],
    )
    write_parquet(rows_to_frame(rows), args.out)
    log.info("wrote %d rows to %s", len(rows), args.out)
    return 0
