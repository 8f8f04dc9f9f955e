"""Scoring a prediction file: the task metric, LongBench-E length buckets and the means of the run's measurements."""

from __future__ import annotations

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
