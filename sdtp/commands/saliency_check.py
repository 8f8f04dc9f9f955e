"""`python -m sdtp saliency-check`: does gradient saliency rank tokens by what removing them costs?

Compares each saliency reduction (`sum`, `abs_sum`) with the removal effect (`sdtp.faithfulness`) on held-out samples:
Spearman over the prompt tokens, and where the *decisive* tokens — effect above 10% of the sample's largest — rank
under the saliency (median rank / prompt length, 0 = top; recall in the top half).
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from sdtp.commands.outputs import write_parquet
from sdtp.commands.settings import add_settings_arguments, load_run_model, schedule_for
from sdtp.faithfulness import check_samples
from sdtp.saliency import SaliencyConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--train", required=True, help="samples Parquet from `prepare-train`")
    parser.add_argument("--samples", type=int, default=8, help="held-out samples to check (default 8)")
    parser.add_argument("--batch-size", type=int, default=32, help="removed tokens per batched forward")
    parser.add_argument("--out", required=True, help="Parquet: one row per (sample, layer, reduction)")


def main(args: argparse.Namespace) -> int:
    settings, model, _ = load_run_model(args, additive_mask=True)
    config = SaliencyConfig.from_dict(settings.get("saliency"))
    layers = schedule_for(settings, model, 1.0).layers
    rows = pd.read_parquet(args.train)
    heldout = rows[rows.split == "heldout"].head(args.samples)
    if heldout.empty:
        raise ValueError(f"{args.train} has no held-out samples (split == 'heldout'); raise train_data.heldout_samples")
    table = check_samples(model, heldout, layers, config.objective, args.batch_size)
    summary = table.groupby(["layer", "reduction"]).agg(
        spearman=("spearman", "mean"),
        decisive_median_relative_rank=("decisive_median_relative_rank", "median"),
        decisive_recall_top_half=("decisive_recall_top_half", "mean"),
    )
    log.info(
        "objective %s, %d held-out samples, mean over samples:\n%s",
        config.objective,
        len(heldout),
        summary.round(3).to_string(),
    )
    write_parquet(table, args.out)
    return 0
