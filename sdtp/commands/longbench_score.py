"""`python -m sdtp longbench-score`: score one prediction file with the official LongBench metric, to Parquet (one
row; records that ran out of memory or that the method could not run score 0 and are counted in `oom_records` and
`error_records`)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

import pandas as pd

from sdtp.commands.outputs import write_parquet
from sdtp.kv_compression import canonical_method
from sdtp.longbench.records import read_jsonl
from sdtp.longbench.score import score_predictions
from sdtp.provenance import provenance

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", required=True, help="JSONL file written by longbench-predict")
    parser.add_argument("--model", required=True, help="model name (the config's model.name)")
    parser.add_argument("--method", required=True)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage (1.0 for baseline)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--out", required=True, help="Parquet file to write (one row)")


def main(args: argparse.Namespace) -> int:
    row = score_predictions(
        read_jsonl(args.predictions),
        model=args.model,
        method=canonical_method(args.method),  # kvpress-snapkv (the path label) -> kvpress:snapkv
        keep_ratio=args.ratio,
        task=args.task,
    )
    write_parquet(pd.DataFrame([{**dataclasses.asdict(row), **provenance()}]), args.out)
    log.info(
        "%s %s r=%s %s: %s = %.2f over %d samples (%d out of memory, %d the method could not run: scored 0) -> %s",
        row.model,
        row.method,
        row.keep_ratio,
        row.task,
        row.metric,
        row.score,
        row.n,
        row.oom_records,
        row.error_records,
        args.out,
    )
    return 0
