"""`python -m sdtp tables`: per-job Parquet files → the workflow's tables, and the one place results are aggregated.

Writes into `--out-dir`:
- `latency.parquet`: every latency repeat (one row each, `sdtp.latency.LatencyRow`).
- `summary.parquet`: per (model, method, keep_ratio, length), medians over the `ok` repeats, spread (max − min), and
  speedups against the baseline of the same model and length: `prefill_speedup`, `e2e_speedup`, `decode_speedup`, next
  to `ideal_speedup` (FLOPs) and `measured_over_ideal`.
- `longbench.parquet`: one row per (model, method, keep_ratio, task) score with `delta_vs_baseline`.
- `saliency_sparsity.parquet`, `pruner_losses.parquet`: concatenated as they are.
A table with no inputs is written empty (no rows), so downstream figures can say "not configured".
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from sdtp.io import write_parquet

log = logging.getLogger(__name__)

SUMMARY_KEYS = ["model", "method", "keep_ratio", "length"]


def concat_parquet(paths: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(path) for path in paths]
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarize_latency(latency: pd.DataFrame) -> pd.DataFrame:
    """Medians per configuration and speedups vs the baseline at the same model and length."""
    if latency.empty:
        return pd.DataFrame()
    ok = latency[latency.status == "ok"]
    spread = lambda s: s.max() - s.min()  # noqa: E731
    summary = (
        ok.groupby(SUMMARY_KEYS)
        .agg(
            repeats=("repeat", "count"),
            prefill_s=("prefill_s", "median"),
            prefill_spread_s=("prefill_s", spread),
            decode_s=("decode_s", "median"),
            decode_spread_s=("decode_s", spread),
            total_s=("total_s", "median"),
            new_tokens=("new_tokens", "first"),
            ideal_speedup=("ideal_speedup", "first"),
            compression_ratio=("compression_ratio", "first"),
            kv_bytes=("kv_bytes", "first"),
            peak_memory_bytes=("peak_memory_bytes", "max"),
            device=("device", "first"),
            dtype=("dtype", "first"),
        )
        .reset_index()
    )
    failed = latency[latency.status != "ok"].groupby(SUMMARY_KEYS).status.first().reset_index()
    summary = summary.merge(failed, on=SUMMARY_KEYS, how="outer")
    summary["status"] = summary.status.fillna("ok")
    baseline = summary[summary.method == "baseline"].set_index(["model", "length"])
    for column, name in (("prefill_s", "prefill_speedup"), ("decode_s", "decode_speedup"), ("total_s", "e2e_speedup")):
        base = baseline[column].reindex(pd.MultiIndex.from_frame(summary[["model", "length"]])).to_numpy()
        summary[name] = base / summary[column]
    summary["measured_over_ideal"] = summary.prefill_speedup / summary.ideal_speedup
    return summary.sort_values(SUMMARY_KEYS, ignore_index=True)


def longbench_with_deltas(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores with `delta_vs_baseline` = score − the baseline's score on the same model and task."""
    if scores.empty:
        return scores
    baseline = scores[scores.method == "baseline"].set_index(["model", "task"]).score
    scores = scores.copy()
    scores["delta_vs_baseline"] = scores.score - baseline.reindex(
        pd.MultiIndex.from_frame(scores[["model", "task"]])
    ).to_numpy()
    return scores.sort_values(["model", "task", "method", "keep_ratio"], ignore_index=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name in ("latency", "scores", "losses", "sparsity"):
        parser.add_argument(f"--{name}", nargs="*", default=[], help=f"per-job {name} Parquet files")
    parser.add_argument("--out-dir", required=True)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    out = Path(args.out_dir)
    latency = concat_parquet(args.latency)
    tables = {
        "latency": latency,
        "summary": summarize_latency(latency),
        "longbench": longbench_with_deltas(concat_parquet(args.scores)),
        "saliency_sparsity": concat_parquet(args.sparsity),
        "pruner_losses": concat_parquet(args.losses),
    }
    for name, table in tables.items():
        write_parquet(table, out / f"{name}.parquet")
        log.info("%s: %d rows -> %s", name, len(table), out / f"{name}.parquet")
    return 0
