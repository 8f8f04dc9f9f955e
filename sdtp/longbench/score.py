"""`python -m sdtp longbench-score`: one prediction file -> one Parquet row with the official LongBench score.

The score is the official v1 `scorer` (`sdtp.longbench.metrics.score_task`: the task's metric, max over the reference
answers, first line only for trec/triviaqa/samsum/lsht, `round(100 * mean, 2)`), and the LongBench-E buckets by the
records' `length` field (`score_task_e`; NaN for an empty bucket). As in the official `eval.py`, the class list is
the records' `all_classes` (the same for every record of a task; the last one is used).

A record that ran out of memory (`status: "oom"`) or that the method could not run (`status: "error"`,
`sdtp.failures`) scores 0 and counts in `n`; `oom_records` and `error_records` say how many there were, and the run
means (prompt tokens, compression ratio, prefill seconds) are over the other records (NaN if none). A prediction file
written before rows had a `status` is read as all "ok". `press_uncompressed_records`: records in which the method's
press left a layer uncompressed (too short for its window or sinks; 0 without a press).

Columns (`ScoreRow`): model, method, keep_ratio, task, metric, score, n, oom_records, score_0_4k, score_4_8k,
score_8k_plus, mean_prompt_tokens, mean_compression_ratio, mean_prefill_s, chat_template, mean_kv_fraction (mean KV per
layer ÷ prompt tokens: the x of the quality-vs-KV-budget figure), kv_budget and press_compression_ratio (a KV-cache
press's budget and ratio: "" and 0.0 without one), error_records, press_uncompressed_records, weights (what the model's
weights were, from the predictions: e.g. "Q4_1 values dequantized to float32"; "unrecorded" for older predictions).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass

from sdtp.longbench.metrics import score_task, score_task_e
from sdtp.longbench.tasks import get_task

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("pred", "answers", "length", "prompt_tokens", "compression_ratio", "prefill_s")
STATUSES = ("ok", "oom", "error")


@dataclass
class ScoreRow:
    """One (model, method, keep ratio, task): scores on LongBench's 0–100 scale, n predictions (oom_records of them
    out of memory and error_records the method could not run, scored 0), run means over the others."""

    model: str
    method: str
    keep_ratio: float
    task: str
    metric: str
    score: float
    n: int
    oom_records: int
    score_0_4k: float
    score_4_8k: float
    score_8k_plus: float
    mean_prompt_tokens: float
    mean_compression_ratio: float
    mean_prefill_s: float
    chat_template: str  # how the prompts were wrapped (`longbench.chat_template`), from the predictions
    mean_kv_fraction: float = math.nan
    kv_budget: str = ""
    press_compression_ratio: float = 0.0
    error_records: int = 0
    press_uncompressed_records: int = 0
    weights: str = "unrecorded"


def score_predictions(predictions: list[dict], *, model: str, method: str, keep_ratio: float, task: str) -> ScoreRow:
    """Score the rows written by `longbench-predict` for `task`."""
    spec = get_task(task)
    if not predictions:
        raise ValueError(f"no predictions to score for task {task!r}")
    for i, row in enumerate(predictions):
        missing = [field for field in REQUIRED_FIELDS if field not in row]
        if missing:
            raise ValueError(f"prediction {i} of task {task!r} lacks the field(s) {', '.join(missing)}")
        if row.get("status", "ok") not in STATUSES:
            raise ValueError(f"prediction {i} of task {task!r} has status {row['status']!r}, not one of {STATUSES}")
    statuses = [row.get("status", "ok") for row in predictions]
    failed = [status != "ok" for status in statuses]
    ok_rows = [row for row, row_failed in zip(predictions, failed, strict=True) if not row_failed]
    preds = [row["pred"] for row in predictions]
    # No reference answer scores 0 (`score_sample`): a record out of memory or that the method could not run counts as
    # a wrong answer, whatever the metric would give its empty prediction.
    answers = [[] if row_failed else row["answers"] for row, row_failed in zip(predictions, failed, strict=True)]
    lengths = [row["length"] for row in predictions]
    all_classes = predictions[-1].get("all_classes")
    buckets = score_task_e(spec, preds, answers, lengths, all_classes)

    def mean_ok(field: str) -> float:
        return statistics.fmean(row[field] for row in ok_rows) if ok_rows else math.nan

    return ScoreRow(
        model=model,
        method=method,
        keep_ratio=float(keep_ratio),
        task=task,
        metric=spec.metric_name,
        score=score_task(spec, preds, answers, all_classes),
        n=len(predictions),
        oom_records=statuses.count("oom"),
        error_records=statuses.count("error"),
        press_uncompressed_records=sum(bool(row.get("press_uncompressed_layers")) for row in ok_rows),
        score_0_4k=buckets["0-4k"],
        score_4_8k=buckets["4-8k"],
        score_8k_plus=buckets["8k+"],
        mean_prompt_tokens=mean_ok("prompt_tokens"),
        mean_compression_ratio=mean_ok("compression_ratio"),
        mean_prefill_s=mean_ok("prefill_s"),
        chat_template=_chat_template(predictions, task),
        mean_kv_fraction=statistics.fmean(map(kv_fraction, ok_rows)) if ok_rows else math.nan,
        kv_budget=str(ok_rows[0].get("kv_budget", "")) if ok_rows else "",
        press_compression_ratio=mean_ok("press_compression_ratio")
        if ok_rows and "press_compression_ratio" in ok_rows[0]
        else 0.0,
        weights=", ".join(sorted({str(row.get("weights") or "unrecorded") for row in predictions})),
    )


def kv_fraction(row: dict) -> float:
    """Mean tokens cached per layer ÷ prompt tokens of one prediction (tokens per layer where it has no kv_lengths:
    written before presses existed, when the two were the same; 1 / its compression ratio where it has neither)."""
    lengths = row.get("kv_lengths") or row.get("tokens_per_layer")
    return statistics.fmean(lengths) / row["prompt_tokens"] if lengths else 1.0 / row["compression_ratio"]


def _chat_template(predictions: list[dict], task: str) -> str:
    """The one wrapping the predictions were made with; predictions written before it was recorded say "unrecorded"."""
    modes = {row.get("chat_template", "unrecorded") for row in predictions}
    if len(modes) > 1:
        raise ValueError(f"the predictions of task {task!r} mix chat templates {sorted(modes)}: rerun the prediction")
    return modes.pop()
