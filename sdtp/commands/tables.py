"""`python -m sdtp tables`: per-job Parquet files → the workflow's tables (aggregated by `sdtp.report.tables`).

Writes into `--out-dir`:
- `latency.parquet`: every latency repeat (one row each, `sdtp.latency.LatencyRow`).
- `summary.parquet`: per (model, method, keep_ratio, length), medians over the `ok` repeats, spread (max − min), and
  speedups against the baseline of the same model and length: `prefill_speedup`, `e2e_speedup`, `decode_speedup`, next
  to their ideals (prefill: FLOPs; decode, End2End: the roofline on the `--peaks` measured), measured ÷ ideal for
  each, MFU and MBU (`sdtp.report.tables.summarize_latency`).
- `longbench.parquet`: one row per (model, method, keep_ratio, task) score with `delta_vs_baseline`.
- `saliency_sparsity.parquet`, `pruner_losses.parquet`: concatenated as they are.
- `pruner_heldout.parquet`: one row per (model, keep_ratio, layer) of the held-out figures train-pruner stored in each
  checkpoint (`--pruners`: the checkpoint directories; `sdtp.report.tables.pruner_heldout_table`).
- `lm_eval.parquet`: one row per (model, method, keep_ratio, task, subtask, metric, filter) harness score with its
  stderr and `delta_vs_baseline` (`--lm-eval`: the lm-eval-run files); a job that could not measure its task is one
  row with NaN scores, its `status` and `reason`.
A table with no inputs is written empty (no rows), so downstream figures can say "not configured".
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from sdtp.commands.outputs import write_parquet
from sdtp.pruner import PruningModule
from sdtp.report.tables import lm_eval_with_deltas, longbench_with_deltas, pruner_heldout_table, summarize_latency

log = logging.getLogger(__name__)


def concat_parquet(paths: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(path) for path in paths]
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name in ("latency", "scores", "losses", "sparsity", "lm-eval"):
        parser.add_argument(f"--{name}", nargs="*", default=[], help=f"per-job {name} Parquet files")
    parser.add_argument(
        "--peaks", nargs="*", default=[], help="measured device peaks (python -m sdtp peak), for the roofline columns"
    )
    parser.add_argument(
        "--pruners", nargs="*", default=[], help="trained pruner checkpoint directories, for their held-out figures"
    )
    parser.add_argument("--out-dir", required=True)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    out = Path(args.out_dir)
    latency = concat_parquet(args.latency)
    tables = {
        "latency": latency,
        "summary": summarize_latency(latency, concat_parquet(args.peaks)),
        "longbench": longbench_with_deltas(concat_parquet(args.scores)),
        "saliency_sparsity": concat_parquet(args.sparsity),
        "pruner_losses": concat_parquet(args.losses),
        "pruner_heldout": pruner_heldout_table([PruningModule.read_meta(path) for path in args.pruners]),
        "lm_eval": lm_eval_with_deltas(concat_parquet(args.lm_eval)),
    }
    for name, table in tables.items():
        write_parquet(table, out / f"{name}.parquet")
        log.info("%s: %d rows -> %s", name, len(table), out / f"{name}.parquet")
    return 0
