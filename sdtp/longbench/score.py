"""`python -m sdtp longbench-score`: one prediction file -> one Parquet row with the official LongBench score.

The score is the official v1 `scorer` (`sdtp.longbench.metrics.score_task`: the task's metric, max over the reference
answers, first line only for trec/triviaqa/samsum/lsht, `round(100 * mean, 2)`), and the LongBench-E buckets by the
records' `length` field (`score_task_e`; NaN for an empty bucket). As in the official `eval.py`, the class list is
the records' `all_classes` (the same for every record of a task; the last one is used).

Columns (`ScoreRow`): model, method, keep_ratio, task, metric, score, n, score_0_4k, score_4_8k, score_8k_plus,
mean_prompt_tokens, mean_compression_ratio, mean_prefill_s.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass

from sdtp.longbench.metrics import score_task, score_task_e
from sdtp.longbench.tasks import get_task

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("pred", "answers", "length", "prompt_tokens", "compression_ratio", "prefill_s")


@dataclass
class ScoreRow:
    """One (model, method, keep ratio, task): scores on LongBench's 0–100 scale, n predictions, run means."""

    model: str
    method: str
    keep_ratio: float
    task: str
    metric: str
    score: float
    n: int
    score_0_4k: float
    score_4_8k: float
    score_8k_plus: float
    mean_prompt_tokens: float
    mean_compression_ratio: float
    mean_prefill_s: float


def score_predictions(predictions: list[dict], *, model: str, method: str, keep_ratio: float, task: str) -> ScoreRow:
    """Score the rows written by `longbench-predict` for `task`."""
    spec = get_task(task)
    if not predictions:
        raise ValueError(f"no predictions to score for task {task!r}")
    for i, row in enumerate(predictions):
        missing = [field for field in REQUIRED_FIELDS if field not in row]
        if missing:
            raise ValueError(f"prediction {i} of task {task!r} lacks the field(s) {', '.join(missing)}")
    preds = [row["pred"] for row in predictions]
    answers = [row["answers"] for row in predictions]
    lengths = [row["length"] for row in predictions]
    all_classes = predictions[-1].get("all_classes")
    buckets = score_task_e(spec, preds, answers, lengths, all_classes)
    return ScoreRow(
        model=model,
        method=method,
        keep_ratio=float(keep_ratio),
        task=task,
        metric=spec.metric_name,
        score=score_task(spec, preds, answers, all_classes),
        n=len(predictions),
        score_0_4k=buckets["0-4k"],
        score_4_8k=buckets["4-8k"],
        score_8k_plus=buckets["8k+"],
        mean_prompt_tokens=statistics.fmean(row["prompt_tokens"] for row in predictions),
        mean_compression_ratio=statistics.fmean(row["compression_ratio"] for row in predictions),
        mean_prefill_s=statistics.fmean(row["prefill_s"] for row in predictions),
    )
