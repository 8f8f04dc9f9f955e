"""Scoring a prediction file: the task metric, LongBench-E length buckets and the means of the run's measurements."""

from __future__ import annotations

import math

import pytest

from sdtp.longbench.score import score_predictions


def test_score_of_handmade_predictions():
    def rows(preds, answers, lengths):
        return [
            {
                "pred": p,
                "answers": a,
                "length": n,
                "all_classes": None,
                "prompt_tokens": 10,
                "compression_ratio": 2.0,
                "prefill_s": 0.5,
            }
            for p, a, n in zip(preds, answers, lengths, strict=True)
        ]

    # triviaqa scores only the first line; F1 of "echo" against "echo foxtrot" is 2/3
    row = score_predictions(
        rows(["bravo\ncharlie", "echo", "x"], [["bravo"], ["echo foxtrot"], ["y"]], [100, 5000, 9000]),
        model="m",
        method="random",
        keep_ratio=0.5,
        task="triviaqa",
    )
    assert row.score == round(100 * (1 + 2 / 3 + 0) / 3, 2)
    assert (row.score_0_4k, row.score_4_8k, row.score_8k_plus) == (100.0, 66.67, 0.0)
    assert row.n == 3 and row.metric == "qa_f1_score" and row.keep_ratio == 0.5
    assert row.mean_compression_ratio == 2.0 and row.mean_prefill_s == 0.5
    with pytest.raises(ValueError, match="no predictions"):
        score_predictions([], model="m", method="baseline", keep_ratio=1.0, task="triviaqa")


def _row(pred, answers, length, status=None, prefill_s=0.5):
    row = {
        "pred": pred,
        "answers": answers,
        "length": length,
        "all_classes": None,
        "prompt_tokens": 10,
        "compression_ratio": 2.0 if status != "oom" else None,
        "prefill_s": prefill_s if status != "oom" else None,
    }
    if status is not None:
        row["status"] = status
    return row


def test_out_of_memory_records_score_zero_and_are_counted():
    """Two of four records ran out of memory: each scores 0 (even one whose prediction would match), counts in `n`
    and in `oom_records`, and stays out of the run means."""
    rows = [
        _row("bravo", ["bravo"], 100, "ok", prefill_s=1.0),
        _row("", ["charlie"], 200, "oom"),
        _row("delta", ["delta"], 5000, "oom"),  # a matching prediction still scores 0
        _row("echo", ["echo"], 5000, "ok", prefill_s=3.0),
    ]
    row = score_predictions(rows, model="m", method="sdtp", keep_ratio=0.5, task="hotpotqa")
    assert row.n == 4 and row.oom_records == 2
    assert row.score == 50.0 and (row.score_0_4k, row.score_4_8k) == (50.0, 50.0)
    assert row.mean_prefill_s == 2.0 and row.mean_compression_ratio == 2.0 and row.mean_prompt_tokens == 10
    every = score_predictions([_row("", ["x"], 100, "oom")], model="m", method="sdtp", keep_ratio=0.5, task="hotpotqa")
    assert every.score == 0.0 and every.oom_records == 1 and math.isnan(every.mean_prefill_s)
    with pytest.raises(ValueError, match="status 'exploded'"):
        score_predictions([_row("x", ["x"], 1, "exploded")], model="m", method="sdtp", keep_ratio=0.5, task="hotpotqa")


def test_records_the_method_could_not_run_score_zero_and_are_counted():
    """Status "error" (`sdtp.failures.CannotMeasure`: e.g. a press that failed on a layer): scored 0 like an
    out-of-memory record, counted in `n` and in `error_records`, out of the run means."""
    rows = [
        _row("bravo", ["bravo"], 100, "ok", prefill_s=1.0),
        {**_row("", ["charlie"], 200, "error", prefill_s=None), "reason": "SnapKVPress failed on layer 3"},
        _row("", ["delta"], 300, "oom"),
    ]
    row = score_predictions(rows, model="m", method="sdtp+snapkv", keep_ratio=0.5, task="hotpotqa")
    assert row.n == 3 and (row.oom_records, row.error_records) == (1, 1)
    assert row.score == round(100 / 3, 2) and row.mean_prefill_s == 1.0


def test_rows_without_status_are_ok():
    """Prediction files written before rows had a `status` score as before, with no OOM records."""
    old = [_row("bravo", ["bravo"], 100), _row("x", ["y"], 100)]
    row = score_predictions(old, model="m", method="baseline", keep_ratio=1.0, task="hotpotqa")
    assert row.oom_records == 0 and row.score == 50.0 and row.mean_prefill_s == 0.5


def test_the_score_row_records_how_prompts_were_wrapped():
    rows = [{**_row("a", ["a"], 100), "chat_template": "model"}, {**_row("b", ["b"], 100), "chat_template": "model"}]
    assert score_predictions(rows, model="m", method="baseline", keep_ratio=1.0, task="hotpotqa").chat_template == (
        "model"
    )
    old = [_row("a", ["a"], 100)]  # written before the wrapping was recorded
    assert score_predictions(old, model="m", method="baseline", keep_ratio=1.0, task="hotpotqa").chat_template == (
        "unrecorded"
    )
    mixed = [rows[0], {**rows[1], "chat_template": "none"}]
    with pytest.raises(ValueError, match=r"mix chat templates \['model', 'none'\]"):
        score_predictions(mixed, model="m", method="baseline", keep_ratio=1.0, task="hotpotqa")


def test_the_score_row_says_what_the_weights_were():
    """From the predictions' `weights` (`sdtp.models.weights_of`); older predictions say "unrecorded"."""
    gguf = "Q4_1 values (and 1 Q8_0) dequantized to float32"
    rows = [{**_row("a", ["a"], 100), "weights": gguf}, {**_row("b", ["b"], 100), "weights": gguf}]
    assert score_predictions(rows, model="m", method="sdtp", keep_ratio=0.7, task="hotpotqa").weights == gguf
    old = [_row("a", ["a"], 100)]
    assert score_predictions(old, model="m", method="sdtp", keep_ratio=0.7, task="hotpotqa").weights == "unrecorded"
