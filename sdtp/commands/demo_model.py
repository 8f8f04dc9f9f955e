"""`python -m sdtp demo-model`: the offline demo's tiny Qwen2 (`sdtp.demo_model`) into a directory.

The config's `demo:` section overrides `DEFAULT_DEMO_CONFIG` (seed from `seed`). When that recipe is the one the
shipped checkpoint was trained with, the checkpoint is copied; otherwise (or with `--retrain`) the model is trained
here. `--retrain --out sdtp/demo_checkpoint` with the default config rebuilds the shipped checkpoint itself.
"""

from __future__ import annotations

import argparse
import json
import logging

from sdtp.commands.settings import add_settings_arguments
from sdtp.demo_model import build_demo_model

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--out", required=True, help="directory to write the model, tokenizer and metrics.json into")
    parser.add_argument(
        "--retrain", action="store_true", help="train even when the shipped checkpoint's recipe matches"
    )


def main(args: argparse.Namespace) -> int:
    overrides = {"seed": args.settings.get("seed", 0), **(args.settings.get("demo") or {})}
    if not args.retrain:
        log.info("looking for a shipped demo checkpoint trained with this recipe (else training one here)")
    metrics, trained = build_demo_model(args.out, overrides, retrain=args.retrain)
    how = f"trained here in {metrics['train_s']:.0f} s" if trained else "copied from the shipped checkpoint"
    log.info(
        "demo model written to %s (%s): %d parameters, held-out exact match %s",
        args.out, how, metrics["num_parameters"], json.dumps(metrics["exact_match"]),
    )  # fmt: skip
    return 0
