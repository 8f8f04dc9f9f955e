"""RULER's metrics (`scripts/eval/synthetic/constants.py`) and its prediction post-processing (`evaluate.py`).

Per sample, with references r_1..r_m and a prediction p (both compared lower-cased, by substring):

- `string_match_all`:  the fraction of references found in p (partial credit; niah, vt, cwe, fwe);
- `string_match_part`: 1 if any reference is found in p, else 0 (qa).

A task's score is 100 x the mean over samples, rounded to 2 decimals, as RULER prints it. The per-sample scores
(`sample_scores`) are what standard errors are computed from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sdtp.ruler.tasks import METRIC_NAMES, RulerTask, get_task

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f]")


def postprocess_prediction(prediction: str) -> str:
    """RULER's `postprocess_pred`: strip, turn every control character (newlines and tabs included) into a newline,
    strip again."""
    return _CONTROL_CHARACTERS.sub("\n", prediction.strip()).strip()


def _check_references(references: Sequence[str]) -> None:
    if isinstance(references, str) or len(references) == 0:
        raise ValueError(f"references must be a non-empty list of strings, got {references!r}")


def sample_match_all(prediction: str, references: Sequence[str]) -> float:
    """Fraction of `references` that occur in `prediction`, case-insensitively."""
    _check_references(references)
    found = prediction.lower()
    return sum([1.0 if r.lower() in found else 0.0 for r in references]) / len(references)


def sample_match_part(prediction: str, references: Sequence[str]) -> float:
    """1.0 if any of `references` occurs in `prediction`, case-insensitively, else 0.0."""
    _check_references(references)
    found = prediction.lower()
    return max([1.0 if r.lower() in found else 0.0 for r in references])


SAMPLE_METRICS = {"string_match_all": sample_match_all, "string_match_part": sample_match_part}


def sample_scores(metric: str, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Per-sample scores in [0, 1] of `metric` (one of `METRIC_NAMES`)."""
    if metric not in SAMPLE_METRICS:
        raise ValueError(f"metric {metric!r} is not one of {METRIC_NAMES}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("no predictions to score")
    return [SAMPLE_METRICS[metric](p, r) for p, r in zip(predictions, references, strict=True)]


def string_match_all(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """RULER's task score: 100 x mean of `sample_match_all`, rounded to 2 decimals."""
    return round(sum(sample_scores("string_match_all", predictions, references)) / len(predictions) * 100, 2)


def string_match_part(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """RULER's task score: 100 x mean of `sample_match_part`, rounded to 2 decimals."""
    return round(sum(sample_scores("string_match_part", predictions, references)) / len(predictions) * 100, 2)


def task_score(task: str | RulerTask, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """RULER's score of a task: its family's metric over post-processed predictions."""
    task = get_task(task) if isinstance(task, str) else task
    cleaned = [postprocess_prediction(p) for p in predictions]
    metric = string_match_all if task.family.metric == "string_match_all" else string_match_part
    return metric(cleaned, references)
