"""`python -m sdtp saliency`: stage 1 — the gradient saliency of every training token at each prune layer, and its
sparsity, to Parquet."""

from __future__ import annotations

import argparse
import logging
import time

import pandas as pd
import torch

from sdtp.commands.outputs import write_parquet
from sdtp.commands.settings import add_settings_arguments, load_run_model, model_label, schedule_for
from sdtp.saliency import SaliencyConfig, sparsity, token_saliency

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--train", required=True, help="samples Parquet from `prepare-train`")
    parser.add_argument("--out", required=True, help="Parquet: one row per (sample, layer) with the saliency list")
    parser.add_argument("--sparsity", required=True, help="Parquet: per (sample, layer) sparsity")


def main(args: argparse.Namespace) -> int:

    settings, model, _ = load_run_model(args, additive_mask=True)
    config = SaliencyConfig.from_dict(settings.get("saliency"))
    layers = schedule_for(settings, model, 1.0).layers
    device = next(model.parameters()).device
    samples = pd.read_parquet(args.train)
    log.info("saliency of %d samples at layers %s, %s", len(samples), layers, config)
    score_rows, sparsity_rows = [], []
    start = time.perf_counter()
    for i, sample in enumerate(samples.itertuples(index=False)):
        ids = torch.tensor([list(sample.input_ids)], device=device)
        labels = torch.tensor([list(sample.labels)], device=device)
        saliency = token_saliency(
            model, ids, layers, labels=labels, objective=config.objective, reduction=config.reduction
        )
        for layer, scores in saliency.items():
            score_rows.append(dict(split=sample.split, sample=sample.sample, layer=layer, scores=scores.tolist()))
            sparsity_rows.append(
                dict(
                    model=model_label(settings),
                    split=sample.split,
                    sample=sample.sample,
                    layer=layer,
                    tokens=len(scores),
                    sparsity=sparsity(scores),
                )
            )
        if (i + 1) % 10 == 0 or i + 1 == len(samples):
            log.info("saliency %d/%d samples, %.1f s", i + 1, len(samples), time.perf_counter() - start)
    write_parquet(pd.DataFrame(score_rows), args.out)
    write_parquet(pd.DataFrame(sparsity_rows), args.sparsity)
    return 0
