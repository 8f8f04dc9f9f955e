"""`python -m sdtp ruler-table`: the per-sample RULER scores of every job aggregated into `tables/ruler.parquet`
(model x method x keep ratio x task x length: score, standard error, n, KV fraction, failures;
`sdtp.ruler.table.aggregate`), and with `--figures-dir` the RULER figures as standalone HTML."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from sdtp.commands.outputs import write_parquet
from sdtp.io import atomic_path
from sdtp.report.ruler_figures import RULER_FIGURES
from sdtp.ruler.table import aggregate

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scores", nargs="*", default=[], help="per-job Parquet files written by ruler-score")
    parser.add_argument("--out", help="the table to write (tables/ruler.parquet)")
    parser.add_argument("--table", help="with --figures-dir: an existing table to draw instead of --scores")
    parser.add_argument("--figures-dir", default=None, help="write the RULER figures here (one HTML file each)")


def main(args: argparse.Namespace) -> int:
    if args.table is not None:
        table = pd.read_parquet(args.table)
    else:
        samples = [pd.read_parquet(path) for path in args.scores]
        table = aggregate(pd.concat(samples, ignore_index=True) if samples else pd.DataFrame())
        if args.out is None:
            raise ValueError("ruler-table needs --out (or --table with --figures-dir)")
        write_parquet(table, args.out)
        log.info("%d RULER cells from %d score files -> %s", len(table), len(args.scores), args.out)
    if args.figures_dir is not None:
        for name, figure in RULER_FIGURES.items():
            path = Path(args.figures_dir) / f"{name}.html"
            with atomic_path(path) as tmp:
                figure(table).write_html(tmp, include_plotlyjs=True, full_html=True)
            log.info("figure %s -> %s", name, path)
    return 0
