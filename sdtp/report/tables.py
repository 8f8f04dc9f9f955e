"""The aggregation behind the workflow's tables (`python -m sdtp tables` reads and writes them): pandas group-bys only.

- `summarize_latency`: per (model, method, keep_ratio, length), medians over the `ok` repeats, spread (max − min), and
  speedups against the baseline of the same model and length: `prefill_speedup`, `e2e_speedup`, `decode_speedup`. When
  every repeat timed a paired baseline beside it (`sdtp.latency`, `latency.paired_baseline`), a speedup is the median
  of the per-repeat ratios (`speedup_baseline` = "paired"); otherwise the baseline job's median ÷ this one's
  ("baseline job"). Next
  to their ideals: `prefill_ideal_speedup` (the FLOPs ratio, scorer FLOPs included; also `ideal_speedup`),
  `decode_ideal_speedup` and `e2e_ideal_speedup` (the roofline, `sdtp.roofline`, on the measured peaks of the row's
  device and dtype), `<phase>_measured_over_ideal` for each (`measured_over_ideal` is the prefill's), and the fraction
  of peak reached: `prefill_tflops_per_s`, `prefill_mfu` (analytic FLOPs ÷ time ÷ measured GEMM peak),
  `decode_gbytes_per_s`, `decode_mbu` (analytic bytes ÷ time ÷ measured copy bandwidth). Rows whose device has no
  measured peak get NaN there (and the log says so).
- `longbench_with_deltas`: one row per (model, method, keep_ratio, task) score with `delta_vs_baseline`, and
  `oom_records` and `error_records` (records that ran out of memory, or that the method could not run: scored 0; 0 for
  score files written before the columns existed).
- `pruner_heldout_table`: one row per (model, keep_ratio, layer) of what train-pruner measured on the held-out prompts
  (`sdtp.pruner_eval`): Spearman of the pruner's scores with |saliency|, the recall of salient tokens in its top r, and
  the Spearman of a context-free scorer (each token type's training percentile), the bar the pruner has to clear.
- `lm_eval_with_deltas`: one row per (model, method, keep_ratio, task, subtask, metric, filter) harness score with
  `delta_vs_baseline`.

`TABLES` names the tables, in the order the report lists them.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SUMMARY_KEYS = ["model", "method", "keep_ratio", "length"]
TABLES = ("latency", "summary", "longbench", "saliency_sparsity", "pruner_losses", "pruner_heldout", "lm_eval")
LM_EVAL_KEYS = ["model", "task", "subtask", "metric", "filter"]


# The roofline's inputs in latency rows (sdtp.latency.LatencyRow); NaN for rows written before they existed.
ROOFLINE_INPUTS = (
    "prefill_flops",
    "prefill_bytes",
    "decode_flops",
    "decode_bytes",
    "baseline_prefill_flops",
    "baseline_prefill_bytes",
    "baseline_decode_flops",
    "baseline_decode_bytes",
)


# A paired baseline's times in latency rows (sdtp.latency); NaN when unpaired or written before they existed.
PAIRED = ("paired_baseline_prefill_s", "paired_baseline_decode_s")
PHASES = ("prefill", "decode", "e2e")


def summarize_latency(latency: pd.DataFrame, peaks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Medians per configuration, speedups vs the baseline at the same model and length, next to their ideals (the
    roofline ones on `peaks`, the table `python -m sdtp peak` writes), and the fraction of peak reached."""
    if latency.empty:
        return pd.DataFrame()
    latency = latency.assign(**{c: np.nan for c in (*ROOFLINE_INPUTS, *PAIRED) if c not in latency.columns})
    ok = latency[latency.status == "ok"]
    paired_base_total = ok.paired_baseline_prefill_s + ok.paired_baseline_decode_s
    ok = ok.assign(
        paired_prefill_speedup=ok.paired_baseline_prefill_s / ok.prefill_s,
        paired_decode_speedup=ok.paired_baseline_decode_s / ok.decode_s,
        paired_e2e_speedup=paired_base_total / ok.total_s,
    )
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
            paired_repeats=("paired_prefill_speedup", "count"),
            **{f"paired_{phase}_speedup": (f"paired_{phase}_speedup", "median") for phase in PHASES},
            new_tokens=("new_tokens", "first"),
            ideal_speedup=("ideal_speedup", "first"),
            **{column: (column, "first") for column in ROOFLINE_INPUTS},
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
    paired = (summary.paired_repeats == summary.repeats) & (summary.repeats > 0)
    for column, phase in zip(("prefill_s", "decode_s", "total_s"), PHASES, strict=True):
        base = baseline[column].reindex(pd.MultiIndex.from_frame(summary[["model", "length"]])).to_numpy()
        summary[f"{phase}_speedup"] = np.where(paired, summary[f"paired_{phase}_speedup"], base / summary[column])
    summary["speedup_baseline"] = np.where(paired, "paired", "baseline job")
    summary = summary.drop(columns=[f"paired_{phase}_speedup" for phase in PHASES])
    summary["prefill_ideal_speedup"] = summary.ideal_speedup
    summary = _with_roofline(summary, peaks)
    for phase in ("prefill", "decode", "e2e"):
        summary[f"{phase}_measured_over_ideal"] = summary[f"{phase}_speedup"] / summary[f"{phase}_ideal_speedup"]
    summary["measured_over_ideal"] = summary.prefill_measured_over_ideal
    return summary.sort_values(SUMMARY_KEYS, ignore_index=True)


def _peak_device(device: str, known: set[str]) -> str:
    """The device a row's peak is looked up by: its name, or for a model spread over several (identical) GPUs, whose
    row names them all (`name, name`), the first: it runs one layer at a time, so its roofline is one GPU's."""
    device = str(device)
    return device if device in known else device.split(", ")[0]


def _with_roofline(summary: pd.DataFrame, peaks: pd.DataFrame | None) -> pd.DataFrame:
    """Add each row's measured peaks (by device name and dtype), roofline times, decode and End2End ideals, MFU, MBU."""
    columns = {"gemm_flops_per_s": "peak_flops_per_s", "copy_bytes_per_s": "peak_bytes_per_s"}
    known = set(peaks.device) if peaks is not None and not peaks.empty else set()
    keys = summary.device.map(lambda device: _peak_device(device, known)).to_frame("device")
    keys = keys.assign(dtype=summary.dtype)
    if known:
        table = peaks.drop_duplicates(["device", "dtype"]).set_index(["device", "dtype"])[list(columns)]
        matched = table.reindex(pd.MultiIndex.from_frame(keys)).rename(columns=columns).reset_index(drop=True)
    else:
        matched = pd.DataFrame(np.nan, index=range(len(summary)), columns=list(columns.values()))
    missing = sorted(set(map(tuple, keys[matched.peak_flops_per_s.isna().to_numpy()].to_numpy())))
    if missing:
        log.warning("no measured peak for %s: their roofline ideals, MFU and MBU are NaN", missing)
    summary = pd.concat([summary.reset_index(drop=True), matched], axis=1)
    flops, bandwidth = summary.peak_flops_per_s, summary.peak_bytes_per_s

    def roofline_s(prefix: str, phase: str) -> pd.Series:
        return np.maximum(summary[f"{prefix}{phase}_flops"] / flops, summary[f"{prefix}{phase}_bytes"] / bandwidth)

    for prefix in ("", "baseline_"):
        for phase in ("prefill", "decode"):
            summary[f"{prefix}{phase}_roofline_s"] = roofline_s(prefix, phase)
    summary["decode_ideal_speedup"] = summary.baseline_decode_roofline_s / summary.decode_roofline_s
    summary["e2e_ideal_speedup"] = (summary.baseline_prefill_roofline_s + summary.baseline_decode_roofline_s) / (
        summary.prefill_roofline_s + summary.decode_roofline_s
    )
    summary["prefill_tflops_per_s"] = summary.prefill_flops / summary.prefill_s / 1e12
    summary["prefill_mfu"] = summary.prefill_flops / summary.prefill_s / flops
    summary["decode_gbytes_per_s"] = summary.decode_bytes / summary.decode_s / 1e9
    summary["decode_mbu"] = summary.decode_bytes / summary.decode_s / bandwidth
    return summary


def longbench_with_deltas(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores with `delta_vs_baseline` = score − the baseline's score on the same model and task; `oom_records` and
    `error_records` kept (0 where a score file predates them)."""
    if scores.empty:
        return scores
    baseline = scores[scores.method == "baseline"].set_index(["model", "task"]).score
    scores = scores.copy()
    for failed in ("oom_records", "error_records"):
        counts = scores[failed] if failed in scores else pd.Series(0, index=scores.index)
        scores[failed] = counts.fillna(0).astype(int)
    scores["delta_vs_baseline"] = (
        scores.score - baseline.reindex(pd.MultiIndex.from_frame(scores[["model", "task"]])).to_numpy()
    )
    return scores.sort_values(["model", "task", "method", "keep_ratio"], ignore_index=True)


def lm_eval_with_deltas(scores: pd.DataFrame) -> pd.DataFrame:
    """Harness scores with `delta_vs_baseline` = score − the baseline's on the same model, task, subtask, metric and
    filter (NaN without a baseline row)."""
    if scores.empty:
        return scores
    baseline = scores[scores.method == "baseline"].set_index(LM_EVAL_KEYS).score
    baseline = baseline[~baseline.index.duplicated()]
    scores = scores.copy()
    scores["delta_vs_baseline"] = (
        scores.score - baseline.reindex(pd.MultiIndex.from_frame(scores[LM_EVAL_KEYS])).to_numpy()
    )
    return scores.sort_values([*LM_EVAL_KEYS, "method", "keep_ratio"], ignore_index=True)


# Held-out figures in a pruner checkpoint's meta (sdtp.commands.train_pruner), by table column.
HELDOUT_FIGURES = {
    "spearman": "heldout_spearman",
    "salient_recall": "heldout_salient_recall",
    "token_type_spearman": "heldout_token_type_spearman",
}
HELDOUT_COLUMNS = ["model", "keep_ratio", "layer", *HELDOUT_FIGURES, "train_samples", "heldout_samples"]


def pruner_heldout_table(metas: list[dict]) -> pd.DataFrame:
    """One row per (model, keep_ratio, layer) from the pruner checkpoints' meta; NaN where a figure was not finite (or
    the checkpoint predates it). Checkpoints trained without held-out samples give no rows."""
    rows = []
    for meta in metas:
        layers = sorted({int(layer) for key in HELDOUT_FIGURES.values() for layer in (meta.get(key) or {})})
        for layer in layers:
            row = dict(model=meta.get("base_model"), keep_ratio=float(meta["keep_ratio"]), layer=layer)
            for column, key in HELDOUT_FIGURES.items():
                value = (meta.get(key) or {}).get(str(layer))
                row[column] = float("nan") if value is None else float(value)
            row["train_samples"] = meta.get("train_samples")
            row["heldout_samples"] = meta.get("heldout_samples")
            rows.append(row)
    table = pd.DataFrame(rows, columns=HELDOUT_COLUMNS)
    return table.sort_values(["model", "keep_ratio", "layer"], ignore_index=True)
