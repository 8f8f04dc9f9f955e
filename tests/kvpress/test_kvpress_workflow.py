"""The workflow with press methods: a small DAG in a temporary copy of the project (with the extra), and the error a
config with press methods gets before any job (without it)."""

from __future__ import annotations

import re

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


# Overlays that add presses to an experiment config (no `model:` section; layered after the config they extend).
PRESS_OVERLAYS = {"paper-qwen2-7b-kvpress.yaml": "paper-qwen2-7b.yaml", "smollm2-kvpress.yaml": "smollm2.yaml"}
REUSED_RULES = ("predict", "score", "ruler_predict", "ruler_score", "latency", "train_pruner", "saliency", "gguf_model")
PRESS_METHOD = re.compile(r"--method (kvpress-\S+|\S+\+snapkv) ")  # press methods as the commands spell them


def planned_commands(output: str) -> dict[str, set[str]]:
    """rule -> the shell commands a dry run (`-n -p`) prints for its jobs."""
    commands, rule = {}, None
    for line in output.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif rule and (command := re.match(r"^(?:Shell command: )?(python -m sdtp .*)$", line)):
            commands.setdefault(rule, set()).add(command.group(1))
            rule = None
    return commands


@pytest.mark.skipif(not kvpress_installed(), reason="the kvpress extra is not installed: pip install -e '.[kvpress]'")
@pytest.mark.parametrize("overlay, base", PRESS_OVERLAYS.items())
def test_a_press_overlay_reuses_every_job_of_the_config_it_extends(tmp_path, overlay, base):
    """Layered after its config, an overlay plans the config's own jobs with the very same commands (so a finished
    run's jobs are reused) and adds only jobs of press methods."""
    workdir = copy_project(tmp_path)
    alone = planned_commands(snakemake(workdir, "-n", "-p", "--configfile", f"configs/{base}").stdout)
    layered = planned_commands(
        snakemake(workdir, "-n", "-p", "--configfile", f"configs/{base}", f"configs/{overlay}").stdout
    )
    assert alone.get("ruler_predict") or alone.get("predict")
    for rule in REUSED_RULES:
        assert alone.get(rule, set()) <= layered.get(rule, set()), rule
        added = layered.get(rule, set()) - alone.get(rule, set())
        assert all(PRESS_METHOD.search(c) for c in added), (rule, added)
    predictions = layered.get("ruler_predict", set()) | layered.get("predict", set())
    assert any(
        "--method kvpress-" in c for c in predictions - alone.get("ruler_predict", set()) - alone.get("predict", set())
    )
