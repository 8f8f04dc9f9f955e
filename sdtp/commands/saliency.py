"""`python -m sdtp saliency`: stage 1 — the gradient saliency of every training token at each prune layer, and its
sparsity, to Parquet.

A sample that runs out of memory (`sdtp.oom.is_out_of_memory`) is skipped: it gets no rows, the log names it and, at
the end, counts the skipped samples (`train-pruner` trains without them). If every sample runs out of memory the job
fails.
"""

from __future__ import annotations

import argparse
import logging
import time

import pandas as pd
import torch

from sdtp.commands.outputs import write_parquet
from sdtp.commands.settings import add_settings_arguments, load_run_model, model_label, schedule_for
from sdtp.oom import describe, free_memory, is_out_of_memory
from sdtp.provenance import provenance
from sdtp.saliency import SaliencyConfig, sparsity, token_saliency

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--train", required=True, help="samples Parquet from `prepare-train`")
    parser.add_argument("--out", required=True, help="Parquet: one row per (sample, layer) with the saliency list")
    parser.add_argument("--sparsity", required=True, help="Parquet: per (sample, layer) sparsity")


def _sample_saliency(model, ids, labels, layers, config: SaliencyConfig, what: str) -> dict | None:
    """`token_saliency` of one sample, or None when it runs out of memory (logged, memory freed)."""
    try:
        return token_saliency(model, ids, layers, labels=labels, objective=config.objective, reduction=config.reduction)
    except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(error):
            raise
        log.warning("%s ran out of memory, skipped: %s", what, describe(error))
    free_memory()  # outside the except block: its traceback holds the failed backward pass's tensors
    return None


def main(args: argparse.Namespace) -> int:
    settings, model, _ = load_run_model(args, additive_mask=True)
    config = SaliencyConfig.from_dict(settings.get("saliency"))
    layers = schedule_for(settings, model, 1.0).layers
    device = next(model.parameters()).device
    samples = pd.read_parquet(args.train)
    log.info("saliency of %d samples at layers %s, %s", len(samples), layers, config)
    score_rows, sparsity_rows = [], []
    skipped: list[str] = []
    start = time.perf_counter()
    for i, sample in enumerate(samples.itertuples(index=False)):
        ids = torch.tensor([list(sample.input_ids)], device=device)
        labels = torch.tensor([list(sample.labels)], device=device)
        name = f"{sample.split} sample {sample.sample}"
        what = f"sample {i + 1}/{len(samples)} ({name}, {ids.shape[1]} tokens)"
        saliency = _sample_saliency(model, ids, labels, layers, config, what)
        if saliency is None:
            skipped.append(name)
            saliency = {}
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
                    **provenance(),
                )
            )
        if (i + 1) % 10 == 0 or i + 1 == len(samples):
            log.info(
                "saliency %d/%d samples (%d out of memory), %.1f s",
                i + 1,
                len(samples),
                len(skipped),
                time.perf_counter() - start,
            )
    named = f": {', '.join(skipped)}" if skipped else ""
    (log.warning if skipped else log.info)(
        "%d of %d samples ran out of memory and were skipped%s", len(skipped), len(samples), named
    )
    if skipped and len(skipped) == len(samples):
        raise RuntimeError(
            f"every one of the {len(samples)} samples ran out of memory: no saliency to write (use shorter training "
            "samples or a device with more memory)"
        )
    write_parquet(pd.DataFrame(score_rows), args.out)
    write_parquet(pd.DataFrame(sparsity_rows), args.sparsity)
    return 0
