"""`python -m sdtp lm-eval-task`, `lm-eval-run` and `lm-eval` on the shipped demo model and the demo's harness task."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from harness_fixtures import HARNESS_MISSING
from tiny_models import run_cli

pytest.importorskip("lm_eval", reason=HARNESS_MISSING)

from sdtp.report.lm_eval_figures import lm_eval_scores_figure  # noqa: E402

DEMO_CHECKPOINT = Path(__file__).resolve().parents[2] / "sdtp" / "demo_checkpoint"
SETTINGS = {
    "seed": 0,
    "model": {"name": "demo", "source": "demo", "dtype": "float32", "attn_implementation": "sdpa", "device": "cpu"},
    "schedule": {"start": 0, "step": 1, "stages": 3, "sink_tokens": 4, "local_ratio": 0.1, "min_local": 16},
    "lm_eval": {"num_fewshot": None, "limit": 8, "offline": True},
}


@pytest.fixture(scope="module")
def demo_task(tmp_path_factory):
    out = tmp_path_factory.mktemp("harness-task") / "synthetic_needle_choice"
    settings = {"seed": 0, "lm_eval": {"synthetic_records": 8, "synthetic_context_words": 120}}
    run_cli("lm-eval-task", "--settings", json.dumps(settings), "--task", "synthetic_needle_choice", "--out-dir", out)
    return out


def run_job(demo_task, out, method, ratio):
    run_cli(
        "lm-eval-run", "--settings", json.dumps(SETTINGS), "--model-dir", DEMO_CHECKPOINT, "--gpus", "0",
        "--method", method, "--ratio", ratio, "--task", "synthetic_needle_choice", "--include-path", demo_task,
        "--out", out,
    )  # fmt: skip
    return pd.read_parquet(out)


@pytest.fixture(scope="module")
def job_rows(demo_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-eval-jobs")
    return {
        "baseline": (out / "baseline.parquet", run_job(demo_task, out / "baseline.parquet", "baseline", "1.0")),
        "streaming": (out / "streaming.parquet", run_job(demo_task, out / "streaming.parquet", "streaming", "0.5")),
    }


def test_demo_task_files(demo_task):
    config = (demo_task / "synthetic_needle_choice.yaml").read_text()
    data = demo_task / "synthetic_needle_choice.jsonl"
    assert f"test: {json.dumps(str(data.resolve()))}" in config
    assert len(data.read_text().splitlines()) == 8


def test_one_row_per_metric_with_stderr(job_rows):
    _, baseline = job_rows["baseline"]
    assert sorted(baseline.metric) == ["acc", "acc_norm"]
    assert (baseline.task == "synthetic_needle_choice").all() and (baseline.subtask == "synthetic_needle_choice").all()
    assert (baseline.model == "demo").all() and (baseline.method == "baseline").all()
    assert (baseline.keep_ratio == 1.0).all() and (baseline.mean_compression_ratio == 1.0).all()
    assert (baseline.samples == 8).all() and (baseline["filter"] == "none").all()
    assert (baseline.weights == "pretrained").all()  # sdtp.models.weights_of: no GGUF source
    for score, stderr in zip(baseline.score, baseline.stderr, strict=True):
        # the harness's stderr of a mean of 8 zero/one scores: sqrt(p (1 - p) / (n - 1))
        assert stderr == pytest.approx(math.sqrt(score * (1 - score) / 7))
    assert baseline.higher_is_better.all()
    # the demo model finds the needle: far above the 25% of a guess
    assert float(baseline.set_index("metric").score["acc"]) >= 0.75


def test_pruned_rows_carry_the_compression(job_rows):
    _, streaming = job_rows["streaming"]
    assert (streaming.keep_ratio == 0.5).all()
    # 3 stages at 0.5 from layer 0 of 6: mean tokens over layers ≈ (1/2 + 1/4 + 1/8 · 4) / 6 of the prompt, so ~4×
    assert 2.5 < float(streaming.mean_compression_ratio.iloc[0]) < 6


def test_ok_rows_say_so_and_count_the_prefills(job_rows):
    _, streaming = job_rows["streaming"]
    assert set(streaming.status) == {"ok"} and set(streaming.reason) == {""}
    assert (streaming.prefills == 8).all() and (streaming.press_uncompressed_prefills == 0).all()  # one per question


def test_a_job_that_cannot_measure_writes_a_status_row_the_tables_keep(demo_task, job_rows, tmp_path, monkeypatch):
    """A press failing inside the harness's evaluation (`sdtp.failures.CannotMeasure`) gives one row with NaN scores,
    status "error" and the reason, instead of a failed job; the tables and the figure are still built."""
    from sdtp.failures import CannotMeasure
    from sdtp.lm_eval import SdtpLM

    def failing_prefill(self, context):
        raise CannotMeasure("SnapKVPress failed on layer 2 (37 tokens): index out of range")

    monkeypatch.setattr(SdtpLM, "_prefill", failing_prefill)
    failed = run_job(demo_task, tmp_path / "random.parquet", "random", "0.5")
    assert len(failed) == 1 and failed.status[0] == "error" and math.isnan(failed.score[0])
    assert failed.reason[0] == "SnapKVPress failed on layer 2 (37 tokens): index out of range"
    assert (failed.task[0], failed.method[0], failed.keep_ratio[0]) == ("synthetic_needle_choice", "random", 0.5)
    paths = [str(path) for path, _ in job_rows.values()] + [str(tmp_path / "random.parquet")]
    run_cli("tables", "--lm-eval", *paths, "--out-dir", tmp_path)
    table = pd.read_parquet(tmp_path / "lm_eval.parquet")
    assert table.set_index("method").status.to_dict()["random"] == "error"
    assert {trace.name for trace in lm_eval_scores_figure(table).data} == {"baseline", "streaming"}


def test_tables_and_figure(job_rows, tmp_path):
    paths = [str(path) for path, _ in job_rows.values()]
    run_cli("tables", "--lm-eval", *paths, "--out-dir", tmp_path)
    table = pd.read_parquet(tmp_path / "lm_eval.parquet")
    assert len(table) == 4
    base = table[table.method == "baseline"].set_index("metric").score
    for row in table.itertuples():
        assert row.delta_vs_baseline == pytest.approx(row.score - base[row.metric])
    figure = lm_eval_scores_figure(table)
    assert {trace.name for trace in figure.data} == {"baseline", "streaming"}
    assert len(figure.data) == 4  # (baseline line + streaming points) × (acc, acc_norm)


def test_launcher_prints_the_harness_table(tiny_model_dir, task_dir, offline_env):
    """`python -m sdtp lm-eval` hands its arguments to the harness's CLI with model `sdtp` registered."""
    args = f"pretrained={tiny_model_dir},method=random,keep_ratio=0.5,start=0,step=1,stages=3,min_local=4"
    proc = subprocess.run(
        [sys.executable, "-m", "sdtp", "lm-eval", "--model", "sdtp", "--model_args", args,
         "--tasks", "tiny_mc", "--include_path", str(task_dir), "--limit", "4", "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env=offline_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("|") and "tiny_mc" in line]
    assert table and "acc" in table[0], proc.stdout[-3000:]
    assert "sdtp ({'pretrained': " in proc.stdout  # the harness's header names the model and its arguments
