"""`python -m sdtp verify`: before any measurement, check the engine on the user's model, dtype, attention kernel and
devices (`sdtp.verify`), write the report as JSON, and stop the workflow with the failed checks, their figures and what
to try when one fails.

The prompt is `--tokens` tokens of the configured training data (`--train`: the samples' ids one after another, as a
real prompt would read), or seeded random ids without it (a `weights: random` model: the checks compare two
computations of the same input, so any ids exercise them). It is pruned with the configured schedule at `--ratio` (the
rule passes the config's `verify.keep_ratio`); with `--pruner` (after stage 2) the trained SDTP pruner is checked
instead, at the ratio it was trained for. A failed run writes its report beside the output as `<out>.failed.json` and
exits non-zero, so Snakemake runs no job that depends on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import pandas as pd
import torch

from sdtp.commands.settings import add_settings_arguments, load_run_model, schedule_for
from sdtp.io import atomic_path
from sdtp.models import weights_of
from sdtp.provenance import provenance
from sdtp.scorers import get_scorer
from sdtp.verify import failure_message, verify_engine

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--tokens", type=int, default=512, help="prompt length of the checks (default 512)")
    parser.add_argument("--decode-steps", type=int, default=8, help="tokens decoded from the pruned cache (default 8)")
    parser.add_argument("--train", default=None, help="samples Parquet from prepare-train: the prompt's tokens")
    parser.add_argument("--pruner", default=None, help="a trained pruner: check method sdtp with it (after stage 2)")
    parser.add_argument(
        "--ratio",
        type=float,
        default=None,
        help="keep ratio to check (default: the smallest of the settings' keep_ratios)",
    )
    parser.add_argument("--out", required=True, help="JSON report to write when every check passes")


def _write_json(report: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


def _prompt(train: str | None, length: int, vocab_size: int, seed: int) -> torch.Tensor:
    """(1, length) ids: the training samples' tokens one after another (repeated if they are fewer), else seeded random
    ids."""
    if train is None:
        return torch.randint(0, vocab_size, (1, length), generator=torch.Generator().manual_seed(seed))
    samples = pd.read_parquet(train, columns=["input_ids"]).input_ids
    tokens = [int(t) for ids in samples for t in ids]
    if not tokens:
        raise ValueError(f"{train} holds no tokens to build the verification prompt from")
    tokens = (tokens * (length // len(tokens) + 1))[:length]
    return torch.tensor([tokens], dtype=torch.long)


def main(args: argparse.Namespace) -> int:
    settings, model, _ = load_run_model(args)
    # The rule passes `verify.keep_ratio` (config), or the ratio the pruner was trained for.
    keep_ratio = args.ratio if args.ratio is not None else min(settings.get("keep_ratios") or [0.5])
    scorers = {"sdtp": get_scorer("sdtp", checkpoint=args.pruner)} if args.pruner else None  # else 3 comparators
    schedule = schedule_for(settings, model, keep_ratio)
    limit = getattr(model.config, "max_position_embeddings", None) or args.tokens
    length = min(args.tokens, limit - args.decode_steps)
    ids = _prompt(args.train, length, model.config.vocab_size, settings.get("seed", 0))
    ids = ids.to(model.model.embed_tokens.weight.device)
    log.info("verifying the engine on %d tokens, keep ratio %s at layers %s", length, keep_ratio, schedule.layers)
    start = time.perf_counter()
    report = verify_engine(model, ids, schedule, scorers, decode_steps=args.decode_steps)
    seconds = time.perf_counter() - start
    for check in report.checks:
        log.info("%s", check.line())
    document = {**report.to_dict(), "model": settings["model"].get("name"), "weights": weights_of(model)}
    document.update(seconds=seconds, **provenance())
    out = Path(args.out)
    failed_path = out.with_name(out.name.removesuffix(".json") + ".failed.json")
    if not report.passed:
        _write_json(document, failed_path)
        raise SystemExit(f"{failure_message(report)}\n(report: {failed_path})")
    if failed_path.exists():
        os.remove(failed_path)
    _write_json(document, out)
    log.info("all %d checks passed in %.1f s; wrote %s", len(report.checks), seconds, out)
    return 0
