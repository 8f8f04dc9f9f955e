"""`python -m sdtp demo-model`: build the offline demo's tiny Qwen2 (`sdtp.demo_model`) into a directory."""

from __future__ import annotations

import argparse
import json
import logging

from sdtp.commands.settings import add_settings_arguments
from sdtp.demo_model import train_demo_model

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--out", required=True, help="directory to write the model, tokenizer and metrics.json into")


def main(args: argparse.Namespace) -> int:
    """`python -m sdtp demo-model`: the config's `demo:` section overrides `DEFAULT_DEMO_CONFIG` (seed from `seed`)."""
    overrides = {"seed": args.settings.get("seed", 0), **args.settings.get("demo", {})}
    metrics = train_demo_model(args.out, overrides)
    log.info(
        "demo model written to %s: %d parameters, trained in %.0f s, held-out exact match %s",
        args.out, metrics["num_parameters"], metrics["train_s"], json.dumps(metrics["exact_match"]),
    )  # fmt: skip
    return 0
