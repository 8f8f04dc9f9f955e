"""What works, and what says how to install the harness, without it: the missing-extra errors (the harness hidden
with `sys.modules['lm_eval'] = None` where it is installed), the demo task's docs, the table and the figure."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest
from workflow_runs import BARE_PATH, copy_project

import sdtp.lm_eval as sdtp_lm_eval
from sdtp.data.harness_task import needle_choice_docs
from sdtp.data.synthetic import SLOTS, build_prompt, generate_records
from sdtp.report.lm_eval_figures import lm_eval_scores_figure
from sdtp.report.tables import lm_eval_with_deltas

INSTALL = 'pip install -e ".[lm-eval]"'


def test_model_without_harness_names_the_install_command(monkeypatch):
    monkeypatch.setattr(sdtp_lm_eval, "HARNESS_ERROR", ImportError("No module named 'lm_eval'"))
    with pytest.raises(ImportError, match=r"not installed .*No module named 'lm_eval'.*" + '"\\.\\[lm-eval\\]"'):
        sdtp_lm_eval.SdtpLM(pretrained="anything", method="baseline")


def test_the_default_dtype_is_the_checkpoints():
    """Built directly, `SdtpLM` loads the checkpoint's own dtype ("auto"), as the harness's `hf` model does (bfloat16
    for Qwen2-7B), not float32."""
    import inspect

    assert inspect.signature(sdtp_lm_eval.SdtpLM.__init__).parameters["dtype"].default == "auto"


def test_launcher_without_harness_names_the_install_command(monkeypatch):
    from sdtp.commands.cli import main

    monkeypatch.setattr(sdtp_lm_eval, "HARNESS_ERROR", ImportError("No module named 'lm_eval'"))
    with pytest.raises(SystemExit, match=r"lm-eval: lm-evaluation-harness .* not installed"):
        main(["lm-eval", "--model", "sdtp", "--tasks", "x"])


def dry_run(project, *args):
    """`snakemake -n` in a subprocess in which `lm_eval` cannot be imported (whether or not it is installed)."""
    code = (
        "import sys; sys.modules['lm_eval'] = None; from snakemake.cli import main; "
        f"sys.argv = ['snakemake', '-n', '--cores', '1', *{list(args)!r}]; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=300,
        env={"PATH": BARE_PATH, "HOME": str(project)},
    )  # fmt: skip


@pytest.mark.slow
def test_workflow_refuses_lm_eval_tasks_without_harness_and_the_demo_plans_none(tmp_path):
    project = copy_project(tmp_path)
    default = dry_run(project, "--config", "results=results-x")
    assert default.returncode == 0, default.stderr[-3000:]
    assert re.search(r"^rule lm_eval", default.stdout, re.M) is None  # no harness job planned…
    assert re.search(r"^rule tables:", default.stdout, re.M)  # …in a plan that has the others
    refused = dry_run(project, "--configfile", "configs/demo-lm-eval.yaml")
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr
    assert "lm_eval.tasks is set (synthetic_needle_choice)" in message and INSTALL in message, message[-3000:]


def test_needle_choice_docs():
    docs = needle_choice_docs(20, 120, seed=3)
    assert docs == needle_choice_docs(20, 120, seed=3)  # seeded
    records = generate_records("synthetic_needle_qa", 20, 120, 3)
    labels = set()
    for doc, record in zip(docs, records, strict=True):
        assert doc["query"] == build_prompt(record) and doc["_id"] == record["_id"]
        assert doc["choices"][doc["label"]] == record["answers"][0]
        assert len(set(doc["choices"])) == 4
        slot = "colour" if "colour" in record["input"] else "animal"
        assert all(choice in SLOTS[slot] for choice in doc["choices"])  # every choice is a plausible value
        labels.add(doc["label"])
    assert len(labels) > 1  # the answer's position is shuffled


def rows(method, ratio, acc, norm):
    base = {"model": "m", "method": method, "keep_ratio": ratio, "task": "t", "subtask": "t", "filter": "none"}
    return [{**base, "metric": "acc", "score": acc, "stderr": 0.01}, {**base, "metric": "acc_norm", "score": norm}]


def test_table_deltas_and_figure():
    scores = pd.DataFrame(rows("baseline", 1.0, 0.8, 0.7) + rows("sdtp", 0.7, 0.75, 0.72) + rows("sdtp", 0.5, 0.5, 0.4))
    table = lm_eval_with_deltas(scores)
    deltas = table.set_index(["method", "keep_ratio", "metric"]).delta_vs_baseline
    assert deltas[("sdtp", 0.5, "acc")] == pytest.approx(-0.3)
    assert deltas[("sdtp", 0.7, "acc_norm")] == pytest.approx(0.02)
    assert deltas[("baseline", 1.0, "acc")] == 0
    figure = lm_eval_scores_figure(table)
    sdtp_acc = next(t for t in figure.data if t.name == "sdtp" and t.xaxis == "x")
    assert list(sdtp_acc.x) == [0.5, 0.7] and list(sdtp_acc.y) == [0.5, 0.75]
    baseline = next(t for t in figure.data if t.name == "baseline" and t.xaxis == "x")
    assert list(baseline.y) == [0.8, 0.8]
    assert lm_eval_scores_figure(pd.DataFrame()) is None
