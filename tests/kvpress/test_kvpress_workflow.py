"""The workflow with press methods: a small DAG in a temporary copy of the project (with the extra), and the error a
config with press methods gets before any job (without it)."""

from __future__ import annotations

import pandas as pd
import pytest
from workflow_runs import copy_project, snakemake

from sdtp.kv_compression import kvpress_installed

# The smoke config (tiny demo model), no sdtp (no saliency or pruner training): a press alone and a combined method
# next to the baseline, for quality and latency.
PRESS_OVERRIDE = """
methods: [baseline, kvpress:streaming_llm, random+snapkv]
latency: {methods: [baseline, kvpress:snapkv, random+snapkv], lengths: [128], warmup: 0, repeats: 1, new_tokens: 4}
kvpress: {snapkv: {window_size: 4}}
"""


def press_config(workdir) -> list[str]:
    (workdir / "press.yaml").write_text(PRESS_OVERRIDE)
    return ["--configfile", "configs/smoke.yaml", "press.yaml"]


@pytest.mark.slow
@pytest.mark.skipif(not kvpress_installed(), reason="the kvpress extra is not installed: pip install -e '.[kvpress]'")
def test_a_dag_with_press_methods(tmp_path):
    workdir = copy_project(tmp_path)
    snakemake(workdir, *press_config(workdir))
    tables = workdir / "results-smoke" / "tables"
    latency = pd.read_parquet(tables / "latency.parquet")
    assert set(latency.method) == {"baseline", "kvpress:snapkv", "random+snapkv"} and set(latency.status) == {"ok"}
    assert (
        workdir / "results-smoke" / "latency" / "smoke-qwen2" / "kvpress-snapkv" / "r0.5" / "L128.parquet"
    ).is_file()
    pressed = latency[latency.method != "baseline"].set_index("method")
    assert pressed.kv_budget.to_dict() == {"kvpress:snapkv": "sdtp_mean_kv", "random+snapkv": "combined"}
    assert all(max(lengths) < 128 for lengths in pressed.kv_lengths)
    scores = pd.read_parquet(tables / "longbench.parquet").set_index("method")
    assert set(scores.index) == {"baseline", "kvpress:streaming_llm", "random+snapkv"}
    assert scores.mean_kv_fraction["baseline"] == 1.0
    assert scores.mean_kv_fraction["random+snapkv"] < scores.mean_kv_fraction["kvpress:streaming_llm"] < 1.0
    page = (workdir / "results-smoke" / "report" / "figures" / "quality_vs_compression.html").read_text()
    assert "KV compression" in page and "combined" in page and "kvpress:streaming_llm" in page
    proc = snakemake(workdir, *press_config(workdir), "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.skipif(kvpress_installed(), reason="kvpress is installed: the suite without the extra checks this error")
def test_press_methods_without_the_extra_fail_before_any_job(tmp_path):
    workdir = copy_project(tmp_path)
    proc = snakemake(workdir, *press_config(workdir), "-n", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "methods kvpress:snapkv, kvpress:streaming_llm, random+snapkv need NVIDIA kvpress" in output
    assert "pip install -e '.[kvpress]'" in output
    assert "rule " not in output  # no job was planned
