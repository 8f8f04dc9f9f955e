"""RULER through the workflow, end to end on CPU and offline: a tiny 4-layer Qwen2 with a byte-level BPE tokenizer
(a local directory as `model.id`), `ruler.essays_dir` pointing at essays written here, two tasks (an essay needle and
variable tracking) at one length, two samples, methods baseline and streaming; only the RULER table and figures are
asked for (`snakemake <targets>`), so the LongBench and latency jobs do not run."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from ruler_bpe import ESSAY_PARAGRAPHS, save_bpe_model
from workflow_runs import copy_project, snakemake

TASKS = ["niah_single_2", "vt"]
LENGTH = 1024  # vt's smallest sample (a worked example and the chain) needs ~800 tokens
SAMPLES = 2
CONFIG = f"""
seed: 0
results: results
model: {{name: tiny-bpe, source: hub, id: tiny-bpe-model, dtype: float32, attn_implementation: sdpa, device: cpu}}
schedule: {{start: 1, step: 1, stages: 2, min_local: 8}}
keep_ratios: [0.5]
methods: [baseline, streaming]
train_data: {{source: synthetic, samples: 2, heldout_samples: 1, max_tokens: 256, context_words: [40, 60]}}
latency: {{methods: [], lengths: [128], warmup: 0, repeats: 1, new_tokens: 2}}
longbench: {{source: synthetic, tasks: [synthetic_passkey], synthetic_records: 2, context_words: 40,
            max_input_tokens: 256}}
verify: {{tokens: 64}}
ruler: {{tasks: [{", ".join(TASKS)}], lengths: [{LENGTH}], samples: {SAMPLES}, seed: 7, chat_template: none,
        essays_dir: essays}}
resources: {{gpu: 0}}
"""


@pytest.fixture(scope="module")
def ruler_run(tmp_path_factory):
    workdir = copy_project(tmp_path_factory.mktemp("ruler"))
    save_bpe_model(workdir / "tiny-bpe-model")
    essays = workdir / "essays"
    essays.mkdir()
    for i, paragraph in enumerate(ESSAY_PARAGRAPHS):
        (essays / f"essay{i}.txt").write_text(paragraph + "\n\n")
    (workdir / "ruler.yaml").write_text(CONFIG)
    targets = ["results/tables/ruler.parquet", "results/report/figures/ruler_score_vs_length.html"]
    snakemake(workdir, "--configfile", "ruler.yaml", "--", *targets)
    return workdir


@pytest.mark.slow
def test_ruler_runs_every_method_task_and_length_into_one_table(ruler_run):
    table = pd.read_parquet(ruler_run / "results" / "tables" / "ruler.parquet")
    cells = set(zip(table.method, table.keep_ratio, table.task, table.max_seq_length, strict=True))
    assert cells == {(m, r, t, LENGTH) for m, r in (("baseline", 1.0), ("streaming", 0.5)) for t in TASKS}
    assert set(table.model) == {"tiny-bpe"} and (table.n == SAMPLES).all()
    assert table.score.between(0, 100).all() and table.score_se.map(math.isfinite).all()
    assert (table.oom_count == 0).all() and set(table.chat_template) == {"none"} and set(table.seed) == {7}
    baseline = table[table.method == "baseline"]
    streaming = table[table.method == "streaming"]
    assert (baseline.kv_fraction == 1.0).all() and (streaming.kv_fraction < 1.0).all()
    assert (ruler_run / "results" / "report" / "figures" / "ruler_score_vs_length.html").is_file()


@pytest.mark.slow
def test_ruler_records_are_generated_once_and_fed_to_every_method(ruler_run):
    records = ruler_run / "results" / "ruler" / "records" / "tiny-bpe"
    assert sorted(p.parent.name for p in records.glob("*/L*.jsonl")) == sorted(TASKS)
    niah = [json.loads(line) for line in (records / "niah_single_2" / f"L{LENGTH}.jsonl").read_text().splitlines()]
    assert len(niah) == SAMPLES and all(r["length"] <= LENGTH for r in niah)
    for method, ratio in (("baseline", "1.0"), ("streaming", "0.5")):
        path = ruler_run / "results" / "ruler" / "tiny-bpe" / method / f"r{ratio}" / f"niah_single_2/L{LENGTH}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["prompt_tokens"] for r in rows] == [r["input_tokens"] for r in niah]
        assert all(0 < r["new_tokens"] <= r["tokens_to_generate"] for r in rows)


def test_ruler_is_off_by_default_and_offline_qa_tasks_stop_the_plan(tmp_path, monkeypatch):
    """The demo plans no RULER job; offline (HF_HUB_OFFLINE=1), qa_2 without its data stops the workflow before any
    job, with the library's message (where HotpotQA comes from and the config key to set)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    workdir = copy_project(tmp_path)
    assert "rule ruler_" not in snakemake(workdir, "-n").stdout
    (workdir / "qa.yaml").write_text("ruler: {tasks: [vt, qa_2]}\n")
    proc = snakemake(workdir, "-n", "--configfile", "configs/smoke.yaml", "qa.yaml", check=False)
    assert proc.returncode != 0
    assert "config: ruler.tasks: RULER task 'qa_2' needs the HotpotQA" in proc.stdout + proc.stderr
