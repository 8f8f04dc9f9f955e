"""LongBench v1 metrics, reproducing the official harness (THUDM/LongBench `metrics.py` and `eval.py`).

Per sample: for trec, triviaqa, samsum and lsht the prediction is first cut to its first line
(`pred.lstrip("\\n").split("\\n")[0]`); the sample's score is the maximum of the task's metric over all reference
answers (0 when there are none). A task's score is `round(100 * mean, 2)`.

Choices where the official code leaves room, all documented at the function concerned:
- `code_sim_score` uses fuzzywuzzy's `fuzz.ratio` *with python-Levenshtein installed* (the InDel ratio, rounded to an
  int); we compute it with rapidfuzz, which gives identical values. Without python-Levenshtein fuzzywuzzy falls back to
  difflib's Ratcliff/Obershelp ratio, which gives different (never higher) numbers; see THUDM/LongBench issue #96.
- `score_task_e` returns NaN for a length bucket without samples, as the official `scorer_e` does (`np.mean([])`).
- Chinese metrics segment words with jieba, as the official code does (imported on first use: loading takes ~1 s).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from rapidfuzz import fuzz
from rouge import Rouge

from sdtp.longbench.tasks import TaskSpec, get_task

_PUNCTUATION = frozenset(string.punctuation)
# The official Chinese punctuation list (note: it has "》" but not "《"; kept as is).
_ZH_PUNCTUATION = _PUNCTUATION | frozenset(
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."
)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ROUGE = Rouge()  # stateless; default metrics as in the official code, so its errors are the same

E_BUCKETS = ("0-4k", "4-8k", "8k+")


@functools.cache
def _jieba():
    """jieba, imported on first use (loading its dictionary takes about a second)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the whole words a/an/the, collapse whitespace (official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def normalize_zh_answer(text: str) -> str:
    """Lower-case, drop ASCII and Chinese punctuation, remove all whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _ZH_PUNCTUATION)
    return "".join(text.split())


def token_f1(prediction_tokens: Sequence[str], reference_tokens: Sequence[str]) -> float:
    """F1 of the multiset overlap of two token lists (0 when they share no token)."""
    common = Counter(prediction_tokens) & Counter(reference_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_f1_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """Token F1 after `normalize_answer`, tokens split on whitespace."""
    return token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def qa_f1_zh_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """Token F1 over jieba words, each normalized with `normalize_zh_answer`; words that normalize to "" dropped."""
    jieba = _jieba()

    def words(text: str) -> list[str]:
        normalized = (normalize_zh_answer(w) for w in jieba.cut(text, cut_all=False))
        return [w for w in normalized if w]

    return token_f1(words(prediction), words(ground_truth))


def rouge_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """ROUGE-L F of the `rouge` package (`Rouge().get_scores([pred], [ref], avg=True)["rouge-l"]["f"]`).

    Any error of the package (empty hypothesis or reference, e.g. an empty prediction or one made only of dots) gives
    0.0, as the official bare `except` does.
    """
    try:
        scores = _ROUGE.get_scores([prediction], [ground_truth], avg=True)
    except Exception:  # noqa: BLE001  (the official code uses a bare except)
        return 0.0
    return scores["rouge-l"]["f"]


def rouge_zh_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """`rouge_score` over jieba words joined by spaces."""
    jieba = _jieba()
    return rouge_score(" ".join(jieba.cut(prediction, cut_all=False)), " ".join(jieba.cut(ground_truth, cut_all=False)))


def classification_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """1 / (number of matched classes) if the ground truth is among the matched classes, else 0.

    Matched classes are the class names that occur as substrings of the prediction, in `all_classes` order. Then, as
    in the official code, matches that are substrings of the ground truth without being equal to it are dropped while
    walking the list, and the walk skips the element right after each drop (the official loop removes from the list
    it iterates over). We reproduce that skip so that scores match exactly.
    """
    if all_classes is None:
        raise ValueError("classification_score needs all_classes (the task's class names)")
    matches = [name for name in all_classes if name in prediction]
    i = 0
    while i < len(matches):
        term = matches[i]
        if term in ground_truth and term != ground_truth:
            matches.remove(term)
        i += 1
    return 1.0 / len(matches) if ground_truth in matches else 0.0


def _share_of_numbers_equal(prediction: str, number: str) -> float:
    """Fraction of the digit runs in `prediction` that equal `number` (0 when there are none)."""
    numbers = re.findall(r"\d+", prediction)
    if not numbers:
        return 0.0
    return sum(n == number for n in numbers) / len(numbers)


def _paragraph_number(ground_truth: str, pattern: str) -> str:
    match = re.search(pattern, ground_truth)
    if match is None:
        raise ValueError(f"ground truth {ground_truth!r} names no paragraph (expected the pattern {pattern!r})")
    return match.group(1)


def retrieval_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """Share of the numbers in the prediction equal to N of the ground truth's "Paragraph N"."""
    return _share_of_numbers_equal(prediction, _paragraph_number(ground_truth, r"Paragraph (\d+)"))


def retrieval_zh_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """Share of the numbers in the prediction equal to N of the ground truth's "段落N"."""
    return _share_of_numbers_equal(prediction, _paragraph_number(ground_truth, r"段落(\d+)"))


def count_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """Share of the numbers in the prediction equal to the ground truth."""
    return _share_of_numbers_equal(prediction, str(ground_truth))


def fuzz_ratio(a: str, b: str) -> int:
    """fuzzywuzzy's `fuzz.ratio` (with python-Levenshtein): round(100 * InDel similarity), an int in 0..100.

    100 for equal strings (two empty ones included), 0 when exactly one is empty; Python's `round` as fuzzywuzzy's
    `utils.intr`.
    """
    return round(fuzz.ratio(a, b))


def code_sim_score(prediction: str, ground_truth: str, all_classes=None) -> float:
    """`fuzz_ratio / 100` between the ground truth and the first prediction line (after stripping leading newlines)
    that contains none of "`", "#", "//"; an empty string when no line qualifies."""
    first_code_line = ""
    for line in prediction.lstrip("\n").split("\n"):
        if "`" not in line and "#" not in line and "//" not in line:
            first_code_line = line
            break
    return fuzz_ratio(first_code_line, ground_truth) / 100


METRICS: dict[str, Callable[..., float]] = {
    "qa_f1_score": qa_f1_score,
    "qa_f1_zh_score": qa_f1_zh_score,
    "rouge_score": rouge_score,
    "rouge_zh_score": rouge_zh_score,
    "classification_score": classification_score,
    "retrieval_score": retrieval_score,
    "retrieval_zh_score": retrieval_zh_score,
    "count_score": count_score,
    "code_sim_score": code_sim_score,
}


def _spec(task: str | TaskSpec) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def score_sample(task: str | TaskSpec, prediction: str, answers: Sequence[str], all_classes=None) -> float:
    """One sample's score in [0, 1]: the task's metric, maximised over the reference answers (0 if there are none).

    For tasks with `first_line_only` (trec, triviaqa, samsum, lsht) only the prediction's first line is scored.
    """
    spec = _spec(task)
    metric = METRICS[spec.metric_name]
    if spec.first_line_only:
        prediction = prediction.lstrip("\n").split("\n")[0]
    score = 0.0
    for ground_truth in answers:
        score = max(score, metric(prediction, ground_truth, all_classes=all_classes))
    return score


def _check_inputs(predictions: Sequence[str], answers: Sequence[Sequence[str]], lengths=None) -> None:
    if isinstance(predictions, str):
        raise TypeError("predictions must be a list of strings, not one string")
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists")
    if lengths is not None and len(lengths) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions but {len(lengths)} lengths")
    if not predictions:
        raise ValueError("no predictions to score")


def score_task(
    task: str | TaskSpec, predictions: Sequence[str], answers: Sequence[Sequence[str]], all_classes=None
) -> float:
    """The task's LongBench score: round(100 * mean sample score, 2), as the official `scorer`.

    `all_classes` is the task's class list (the records' `all_classes` field), needed by trec and lsht.
    """
    spec = _spec(task)
    _check_inputs(predictions, answers)
    total = 0.0
    for prediction, ground_truths in zip(predictions, answers, strict=True):
        # A running sum, not sum(): Python >= 3.12 sums floats with compensation, the official loop does not.
        total += score_sample(spec, prediction, ground_truths, all_classes)
    return round(100 * total / len(predictions), 2)


def length_bucket(length: int) -> str:
    """LongBench-E bucket of a record's `length` field: "0-4k" (< 4000), "4-8k" (< 8000) or "8k+"."""
    if length < 4000:
        return "0-4k"
    if length < 8000:
        return "4-8k"
    return "8k+"


def score_task_e(
    task: str | TaskSpec,
    predictions: Sequence[str],
    answers: Sequence[Sequence[str]],
    lengths: Sequence[int],
    all_classes=None,
) -> dict[str, float]:
    """The task's score per length bucket, as the official `scorer_e`: {"0-4k", "4-8k", "8k+"} -> round(100 * mean, 2).

    All three keys are always present; a bucket without samples is NaN (the official `np.mean([])` gives NaN too).
    """
    spec = _spec(task)
    _check_inputs(predictions, answers, lengths)
    buckets: dict[str, list[float]] = {name: [] for name in E_BUCKETS}
    for prediction, ground_truths, length in zip(predictions, answers, lengths, strict=True):
        buckets[length_bucket(length)].append(score_sample(spec, prediction, ground_truths, all_classes))
    # np.mean and numpy's round, exactly as the official scorer_e (they can differ from sum/len and Python's round).
    return {name: float(round(100 * np.mean(scores), 2)) if scores else math.nan for name, scores in buckets.items()}
