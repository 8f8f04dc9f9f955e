"""RULER scores as tables: one row per sample (`sample_rows`, a score job's Parquet) and one per model x method x keep
ratio x task x length (`aggregate`, `tables/ruler.parquet`).

A sample's `score` is RULER's per-sample metric x 100 (`metrics.sample_scores` on the post-processed prediction); a
record that could not be measured (`status` "oom" or "error") scores 0, as a failed LongBench record does, and is
counted. A cell's `score` is the mean over its samples (RULER's task score, unrounded), `score_se` the standard error of
that mean (sample standard deviation / sqrt(n); NaN for n < 2), `kv_fraction` the mean KV budget used over the
measured samples (mean KV tokens per layer / prompt tokens; 1.0 without pruning). A press method's cell also has its
`kv_budget` and mean `press_compression_ratio` ("" and 0.0 without a press) and `press_uncompressed_records`: measured
samples in which the press left a layer uncompressed (too short for its window or sinks), as LongBench's table.
`weights` says what the model's weights were (e.g. "Q4_1 values (and 1 Q8_0) dequantized to float32" for a GGUF source).
"""

from __future__ import annotations

import math

import pandas as pd

from sdtp.ruler.metrics import postprocess_prediction, sample_scores
from sdtp.ruler.tasks import get_task

KEYS = ["model", "method", "keep_ratio", "task", "max_seq_length"]
PROVENANCE = ["host", "slurm_job_id", "cuda_visible_devices"]
PRESS_DEFAULTS = {"kv_budget": "", "press_compression_ratio": 0.0, "press_uncompressed": False}  # without a press
TABLE_COLUMNS = [*KEYS, "metric", "score", "score_se", "n", "kv_fraction", "compression_ratio", "kv_budget",
                 "press_compression_ratio", "press_uncompressed_records", "mean_prompt_tokens", "oom_count",
                 "error_count", "chat_template", "weights", "seed", *PROVENANCE]  # fmt: skip


def sample_rows(rows: list[dict], model: str, method: str, keep_ratio: float) -> pd.DataFrame:
    """One row per prediction row of a job (`sdtp.ruler.predict`): its keys, score (0-100), status and measurements."""
    if not rows:
        raise ValueError("no prediction rows to score")
    task = get_task(rows[0]["task"])
    predictions = [postprocess_prediction(row["pred"]) for row in rows]
    scores = sample_scores(task.family.metric, predictions, [row["outputs"] for row in rows])
    measured = [row.get("status", "ok") == "ok" for row in rows]
    return pd.DataFrame(
        {
            "model": model,
            "method": method,
            "keep_ratio": float(keep_ratio),
            "task": task.name,
            "max_seq_length": [int(row["max_seq_length"]) for row in rows],
            "index": [row["_id"] for row in rows],
            "metric": task.family.metric,
            "score": [100.0 * s if ok else 0.0 for s, ok in zip(scores, measured, strict=True)],
            "status": [row.get("status", "ok") for row in rows],
            "reason": [row.get("reason", "") for row in rows],
            "prompt_tokens": [row["prompt_tokens"] for row in rows],
            "kv_fraction": [row.get("kv_fraction") for row in rows],
            "compression_ratio": [row.get("compression_ratio") for row in rows],
            "kv_budget": [row.get("kv_budget", "") for row in rows],
            "press_compression_ratio": [row.get("press_compression_ratio", 0.0) for row in rows],
            "press_uncompressed": [bool(row.get("press_uncompressed_layers")) for row in rows],
            "new_tokens": [row["new_tokens"] for row in rows],
            "chat_template": [row["chat_template"] for row in rows],
            "weights": [row.get("weights") for row in rows],  # None in rows predicted before it was recorded
            "seed": [row["seed"] for row in rows],
            **{column: [row.get(column) for row in rows] for column in PROVENANCE},
        }
    )


def standard_error(values: pd.Series) -> float:
    """Standard error of the mean: sample standard deviation (ddof 1) / sqrt(n); NaN for fewer than 2 values."""
    n = len(values)
    return float(values.std(ddof=1) / math.sqrt(n)) if n >= 2 else float("nan")


def _joined(values: pd.Series) -> str | None:
    """Distinct non-null values, sorted and comma-joined (provenance of a cell that several jobs wrote)."""
    distinct = sorted({str(v) for v in values if v is not None and not pd.isna(v)})
    return ",".join(distinct) if distinct else None


def aggregate(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per model x method x keep ratio x task x length (`TABLE_COLUMNS`) from `sample_rows` frames."""
    if samples.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    missing = {k: v for k, v in PRESS_DEFAULTS.items() if k not in samples.columns}  # scored before presses counted
    samples = samples.assign(**missing)
    rows = []
    for key, cell in samples.groupby(KEYS, sort=True):
        ok = cell[cell.status == "ok"]
        rows.append(
            {
                **dict(zip(KEYS, key, strict=True)),
                "metric": cell.metric.iloc[0],
                "score": float(cell.score.mean()),
                "score_se": standard_error(cell.score),
                "n": len(cell),
                "kv_fraction": float(ok.kv_fraction.mean()) if len(ok) else float("nan"),
                "compression_ratio": float(ok.compression_ratio.mean()) if len(ok) else float("nan"),
                "kv_budget": ",".join(sorted({str(v) for v in ok.kv_budget if v})),
                "press_compression_ratio": float(ok.press_compression_ratio.fillna(0.0).mean()) if len(ok) else 0.0,
                "press_uncompressed_records": int(ok.press_uncompressed.sum()),
                "mean_prompt_tokens": float(cell.prompt_tokens.mean()),
                "oom_count": int((cell.status == "oom").sum()),
                "error_count": int((cell.status == "error").sum()),
                "chat_template": _joined(cell.chat_template),
                "weights": _joined(cell.weights) if "weights" in cell else None,
                "seed": int(cell.seed.iloc[0]),
                **{column: _joined(cell[column]) for column in PROVENANCE},
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def mean_over_tasks(table: pd.DataFrame) -> pd.DataFrame:
    """The mean RULER score per model x method x keep ratio x length (tasks weighted equally, as RULER averages), with
    the standard error of that mean (cells' errors combined: sqrt(sum se^2) / tasks) and the mean KV fraction."""
    keys = ["model", "method", "keep_ratio", "max_seq_length"]
    grouped = table.groupby(keys, sort=True)
    out = grouped.agg(score=("score", "mean"), kv_fraction=("kv_fraction", "mean"), tasks=("task", "nunique"),
                      n=("n", "sum"), oom_count=("oom_count", "sum"))  # fmt: skip
    out["score_se"] = grouped.score_se.apply(lambda se: math.sqrt((se**2).sum()) / len(se))
    return out.reset_index()
