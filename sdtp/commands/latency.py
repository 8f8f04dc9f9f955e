"""`python -m sdtp latency`: one latency job = one (model, method, keep ratio, prompt length), measured by
`sdtp.latency.measure_latency`, one Parquet row per repeat."""

from __future__ import annotations

import argparse
import logging

import torch

from sdtp.commands.outputs import write_parquet
from sdtp.commands.settings import (
    add_settings_arguments,
    kv_compression_job,
    load_run_model,
    model_label,
    schedule_for,
    scorer_for,
)
from sdtp.kv_compression import canonical_method, parse_method
from sdtp.latency import measure_latency, rows_to_frame
from sdtp.pruner import PruningModule
from sdtp.scorers import SdtpScorer

log = logging.getLogger(__name__)


def random_init_pruner(model, schedule, seed: int) -> SdtpScorer:
    """An SDTP scorer whose pruning module has the model's hidden size and the schedule's layers, seeded random
    weights: a trained one's cost and token counts per stage, for timing a model shape that has no trained pruner."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SdtpScorer(PruningModule(list(schedule.layers), model.config.hidden_size))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--method", required=True)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage (1.0 for baseline)")
    parser.add_argument("--length", type=int, required=True, help="prompt length in tokens")
    parser.add_argument("--pruner", default=None, help="pruner checkpoint directory (method sdtp)")
    parser.add_argument(
        "--pruner-init",
        choices=["random"],
        default=None,
        help="method sdtp without a trained pruner: a pruning module of the model's size with seeded random weights "
        "(timing only: the same token counts per stage, meaningless choices; for a latency.model shape)",
    )
    parser.add_argument("--out", required=True, help="Parquet file to write")


def main(args: argparse.Namespace) -> int:
    settings, model, _ = load_run_model(args)
    latency = settings["latency"]
    schedule = schedule_for(settings, model, args.ratio)
    pruner_weights = ""
    if parse_method(args.method).scorer == "sdtp" and args.pruner_init == "random":
        scorer, pruner_weights = random_init_pruner(model, schedule, settings["seed"]), "random-init (timing only)"
        log.info("sdtp with a random-init pruning module (d=%d): timing only", model.config.hidden_size)
    else:
        scorer = scorer_for(settings, args.method, args.pruner)
        pruner_weights = "trained" if scorer.name == "sdtp" else ""
    rows = measure_latency(
        model,
        model_name=model_label(settings),
        method=canonical_method(args.method),  # kvpress-snapkv (the path label) -> kvpress:snapkv
        scorer=scorer,
        schedule=schedule,
        length=args.length,
        warmup=latency["warmup"],
        repeats=latency["repeats"],
        new_tokens=latency["new_tokens"],
        seed=settings["seed"],
        pruner_weights=pruner_weights,
        kv_compression=kv_compression_job(settings, args.method, args.ratio, schedule),
        paired_baseline=latency.get("paired_baseline", False),  # the workflow passes it to all but baseline jobs
    )
    write_parquet(rows_to_frame(rows), args.out)
    log.info("wrote %d rows to %s", len(rows), args.out)
    return 0
