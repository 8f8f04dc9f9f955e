"""RULER's metrics: equal to RULER's functions (`scripts/eval/synthetic/constants.py`, restated below as the oracle) on
hand cases; case-insensitive; partial credit; several references; RULER's post-processing."""

from __future__ import annotations

import pytest

from sdtp.ruler import metrics as M


def ruler_string_match_all(preds, refs):
    """RULER's definition: mean over samples of the fraction of references in the prediction, x100, 2 decimals."""
    per_sample = [
        sum([1.0 if r.lower() in pred.lower() else 0.0 for r in ref]) / len(ref)
        for pred, ref in zip(preds, refs)  # noqa: B905
    ]
    return round(sum(per_sample) / len(preds) * 100, 2)


def ruler_string_match_part(preds, refs):
    """RULER's definition: mean over samples of [any reference in the prediction], x100, 2 decimals."""
    per_sample = [max([1.0 if r.lower() in pred.lower() else 0.0 for r in ref]) for pred, ref in zip(preds, refs)]  # noqa: B905
    return round(sum(per_sample) / len(preds) * 100, 2)


CASES = [
    # (predictions, references)
    (["The special magic number is 1234567."], [["1234567"]]),
    (["nothing here"], [["1234567"]]),
    (["THE ANSWER: Apple-Pie"], [["apple-pie"]]),  # case-insensitive both ways
    (["1. ALPHA 2. beta"], [["alpha", "Beta", "gamma"]]),  # 2 of 3: partial credit
    (["a b c", "d", ""], [["a", "b"], ["x", "d", "y", "z"], ["q"]]),
    (["ZZB TZI ZQB", "NAPUF CCQDK"], [["ZZB", "TZI", "ZQB", "ZMW", "THG"], ["napuf", "ccqdk", "hwqdl"]]),
    (["Denver Broncos won", "in 1066"], [["Denver Broncos", "The Broncos"], ["1067", "year 1066"]]),
    (["x"] * 3, [["x"], ["y"], ["y"]]),  # 33.333... rounds to 33.33
    (["a", "a", "b"], [["a"], ["a"], ["a"]]),  # 66.666... rounds to 66.67
]


@pytest.mark.parametrize(("predictions", "references"), CASES)
def test_both_metrics_equal_rulers_functions(predictions, references):
    assert M.string_match_all(predictions, references) == ruler_string_match_all(predictions, references)
    assert M.string_match_part(predictions, references) == ruler_string_match_part(predictions, references)


def test_hand_computed_values():
    assert M.string_match_all(["1. ALPHA 2. beta"], [["alpha", "Beta", "gamma"]]) == 66.67
    assert M.string_match_part(["1. ALPHA 2. beta"], [["alpha", "Beta", "gamma"]]) == 100.0
    predictions, references = ["a b c", "d", ""], [["a", "b"], ["x", "d", "y", "z"], ["q"]]
    assert M.string_match_all(predictions, references) == round((1 + 0.25) / 3 * 100, 2)
    assert M.string_match_part(predictions, references) == 66.67
    assert M.sample_match_all("Berlin, paris", ["paris", "Rome"]) == 0.5
    assert M.sample_match_part("Berlin, paris", ["paris", "Rome"]) == 1.0
    assert M.sample_scores("string_match_all", ["a", "b"], [["a", "b"], ["b"]]) == [0.5, 1.0]


def test_postprocess_is_rulers():
    # strip, control characters (tab, newline, \x00..\x1f) to newlines, strip again
    assert M.postprocess_prediction("  7654321\tand\x01more\n\n") == "7654321\nand\nmore"
    assert M.postprocess_prediction("\n\x1f answer \x00") == "answer"
    assert M.postprocess_prediction("") == ""


def test_task_score_uses_the_familys_metric_on_postprocessed_predictions():
    preds, refs = ["Paris\tand Rome"], [["paris", "berlin"]]
    assert M.task_score("qa_1", preds, refs) == 100.0  # string_match_part
    assert M.task_score("niah_multivalue", preds, refs) == 50.0  # string_match_all


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [([], [], "no predictions"), (["a"], [["a"], ["b"]], "1 predictions but 2"), (["a"], [[]], "non-empty")],
)
def test_bad_inputs_are_named(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        M.string_match_all(predictions, references)


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="'f1'"):
        M.sample_scores("f1", ["a"], [["a"]])
