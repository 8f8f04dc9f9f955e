"""`python -m sdtp train-pruner`: stage 2 for one keep ratio — train the pruning modules on the stage-1 saliency,
evaluate them on the held-out split, write the checkpoint (`pruner.json` records the evaluation) and the losses."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import time

import numpy as np
import pandas as pd

from sdtp.commands.outputs import write_parquet
from sdtp.commands.settings import add_settings_arguments, load_run_model, model_label, schedule_for
from sdtp.provenance import provenance
from sdtp.pruner_eval import evaluate_heldout, token_type_spearman
from sdtp.pruner_training import PrunerTrainConfig, load_samples, train_pruner

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage the pruner is trained for")
    parser.add_argument("--train", required=True, help="samples Parquet from `prepare-train`")
    parser.add_argument("--saliency", required=True, help="Parquet from `saliency`: split, sample, layer, scores")
    parser.add_argument("--out", required=True, help="pruner checkpoint directory to write")
    parser.add_argument("--losses", required=True, help="Parquet: one row per optimisation step")


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def with_saliency(rows: pd.DataFrame, saliency: pd.DataFrame) -> pd.DataFrame:
    """The samples (train.parquet rows) that have saliency rows: the saliency job skips a sample that runs out of
    memory, and the pruner trains and is evaluated without it (logged)."""
    keys = set() if saliency.empty else set(zip(saliency["split"], saliency["sample"].astype(int), strict=True))
    has = [(split, int(sample)) in keys for split, sample in zip(rows["split"], rows["sample"], strict=True)]
    missing = rows[[not h for h in has]]
    if len(missing):
        log.warning(
            "%d of %d samples have no saliency (skipped by the saliency job: out of memory) and are left out: %s",
            len(missing),
            len(rows),
            ", ".join(f"{s} sample {n}" for s, n in zip(missing["split"], missing["sample"], strict=True)),
        )
    return rows[has]


def main(args: argparse.Namespace) -> int:
    settings, model, _ = load_run_model(args, additive_mask=True)
    config = PrunerTrainConfig.from_dict(settings.get("pruner"))
    schedule = schedule_for(settings, model, args.ratio)
    model_name = model_label(settings)
    train_rows = pd.read_parquet(args.train)
    saliency = pd.read_parquet(args.saliency)
    train_rows = with_saliency(train_rows, saliency)
    if not (train_rows.split == "train").any():
        raise ValueError(f"no training sample has saliency in {args.saliency}: nothing to train the pruner on")
    train_samples = load_samples(train_rows[train_rows.split == "train"], saliency, schedule.layers)
    heldout_rows = train_rows[train_rows.split == "heldout"]
    log.info(
        "training the pruner for layers %s at keep ratio %s on %d samples (%d held out), %s",
        schedule.layers,
        args.ratio,
        len(train_samples),
        len(heldout_rows),
        config,
    )
    start = time.perf_counter()
    pruner, losses = train_pruner(model, train_samples, schedule, config, seed=settings["seed"], model_name=model_name)
    train_s = time.perf_counter() - start
    heldout, recall = (
        evaluate_heldout(model, pruner, heldout_rows, saliency, schedule.layers, args.ratio)
        if len(heldout_rows) else ({}, {})
    )  # fmt: skip
    finite = [v for v in heldout.values() if math.isfinite(v)]
    heldout_mean = float(np.mean(finite)) if finite else float("nan")
    for layer, value in heldout.items():
        log.info("held-out Spearman(pruner, |saliency|) at layer %d: %.3f", layer, value)
    if heldout:
        log.info("held-out Spearman, mean over layers: %.3f", heldout_mean)
    for layer, value in recall.items():
        log.info(
            "held-out recall of salient tokens in the pruner's top %.0f%% at layer %d: %.3f",
            100 * args.ratio,
            layer,
            value,
        )
    context_free = (
        token_type_spearman(train_samples, load_samples(heldout_rows, saliency, schedule.layers), schedule.layers)
        if len(heldout_rows) else {}
    )  # fmt: skip
    for layer, value in context_free.items():
        log.info(
            "held-out Spearman of a context-free scorer (each token type's mean |saliency| percentile in training) "
            "at layer %d: %.3f",
            layer,
            value,
        )
    # How the training prompts were encoded (prepare-train: as the evaluation encodes them for this model).
    formats = sorted(set(train_rows["chat_template"])) if "chat_template" in train_rows else ["unrecorded"]
    meta = dict(
        base_model=model_name,
        model_dir=args.model_dir,
        train_prompt_chat_template=", ".join(formats),
        keep_ratio=float(args.ratio),
        layers=schedule.layers,
        schedule=dict(sink_tokens=schedule.sink_tokens, local_ratio=schedule.local_ratio, min_local=schedule.min_local),
        config=dataclasses.asdict(config),
        seed=settings["seed"],
        train_samples=len(train_samples),
        heldout_samples=len(heldout_rows),
        steps=len(losses),
        heldout_spearman={str(layer): _finite_or_none(value) for layer, value in heldout.items()},
        heldout_spearman_mean=_finite_or_none(heldout_mean),
        heldout_salient_recall={str(layer): _finite_or_none(value) for layer, value in recall.items()},
        heldout_token_type_spearman={str(layer): _finite_or_none(value) for layer, value in context_free.items()},
        train_s=train_s,
    )
    pruner.save(args.out, meta=meta)
    write_parquet(losses.assign(**provenance()), args.losses)
    log.info("wrote %s and %s (%d steps, %.1f s)", args.out, args.losses, len(losses), train_s)
    return 0
