"""`python -m sdtp ruler-score`: score one RULER prediction file with RULER's metric, one Parquet row per sample
(`sdtp.ruler.table.sample_rows`; records that could not be measured score 0 and keep their status)."""

from __future__ import annotations

import argparse
import logging

from sdtp.commands.outputs import write_parquet
from sdtp.kv_compression import canonical_method
from sdtp.longbench.records import read_jsonl
from sdtp.ruler.table import sample_rows

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", required=True, help="JSONL file written by ruler-predict")
    parser.add_argument("--model", required=True, help="model name (the config's model.name)")
    parser.add_argument("--method", required=True)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage (1.0 for baseline)")
    parser.add_argument("--out", required=True, help="Parquet file to write (one row per sample)")


def main(args: argparse.Namespace) -> int:
    samples = sample_rows(read_jsonl(args.predictions), args.model, canonical_method(args.method), args.ratio)
    write_parquet(samples, args.out)
    log.info("%s %s r=%s %s L%s: %.2f over %d samples (%d not measured: scored 0) -> %s", args.model, args.method,
             args.ratio, samples.task.iloc[0], samples.max_seq_length.iloc[0], samples.score.mean(), len(samples),
             int((samples.status != "ok").sum()), args.out)  # fmt: skip
    return 0
