"""The aggregation behind the workflow's tables (`python -m sdtp tables` reads and writes them): pandas group-bys only.

- `summarize_latency`: per (model, method, keep_ratio, length), medians over the `ok` repeats, spread (max − min), and
  speedups against the baseline of the same model and length: `prefill_speedup`, `e2e_speedup`, `decode_speedup`, next
  to `ideal_speedup` (FLOPs) and `measured_over_ideal`.
- `longbench_with_deltas`: one row per (model, method, keep_ratio, task) score with `delta_vs_baseline`, and
  `oom_records` (records that ran out of memory, scored 0; 0 for score files written before the column existed).

`TABLES` names the tables, in the order the report lists them.
"""

from __future__ import annotations

import pandas as pd

SUMMARY_KEYS = ["model", "method", "keep_ratio", "length"]
TABLES = ("latency", "summary", "longbench", "saliency_sparsity", "pruner_losses")


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
    """Scores with `delta_vs_baseline` = score − the baseline's score on the same model and task; `oom_records` kept
    (0 where a score file predates it)."""
    if scores.empty:
        return scores
    baseline = scores[scores.method == "baseline"].set_index(["model", "task"]).score
    scores = scores.copy()
    oom = scores["oom_records"] if "oom_records" in scores else pd.Series(0, index=scores.index)
    scores["oom_records"] = oom.fillna(0).astype(int)
    scores["delta_vs_baseline"] = (
        scores.score - baseline.reindex(pd.MultiIndex.from_frame(scores[["model", "task"]])).to_numpy()
    )
    return scores.sort_values(["model", "task", "method", "keep_ratio"], ignore_index=True)
