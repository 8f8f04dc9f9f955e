"""The Snakemake workflow end to end: the smoke DAG in a temporary copy of the project, reruns, config errors.

The smoke run takes a few minutes on 2 cores; it runs once per session (module-scoped fixture) and the tests after it
only dry-run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from workflow_runs import REPO, copy_project, snakemake

SMOKE = ["--configfile", "configs/smoke.yaml"]
TABLES = ["latency", "summary", "longbench", "saliency_sparsity", "pruner_losses", "pruner_heldout"]


def planned_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, wildcards line) of every job a dry run plans."""
    jobs, rule = [], None
    for line in output.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):", line)
        if match:
            rule = match.group(1)
            jobs.append((rule, ""))
        elif rule and line.strip().startswith("wildcards:"):
            jobs[-1] = (rule, line.strip())
    return jobs


def override(workdir: Path, text: str) -> list[str]:
    """Config args: the smoke config plus a YAML override written into the work directory (what a user edits)."""
    path = workdir / "override.yaml"
    path.write_text(text)
    return ["--configfile", "configs/smoke.yaml", "override.yaml"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = copy_project(tmp_path_factory.mktemp("smoke"))
    snakemake(workdir, *SMOKE)
    return workdir


def test_smoke_dag_writes_every_table(smoke_run):
    tables = {name: pd.read_parquet(smoke_run / "results-smoke" / "tables" / f"{name}.parquet") for name in TABLES}
    assert set(tables["latency"].method) == {"baseline", "sdtp", "random", "streaming", "attention"}
    assert (tables["latency"].status == "ok").all()
    summary = tables["summary"]
    assert set(summary.columns) >= {"prefill_speedup", "ideal_speedup", "measured_over_ideal", "e2e_speedup"}
    assert summary.loc[summary.method == "baseline", "prefill_speedup"].tolist() == [1.0]
    # The roofline columns, on the peaks the `peak` rule measured on this CPU: finite for every ok row.
    roofline = [
        f"{phase}_{column}"
        for phase in ("prefill", "decode", "e2e")
        for column in ("ideal_speedup", "measured_over_ideal")
    ] + ["prefill_tflops_per_s", "prefill_mfu", "decode_gbytes_per_s", "decode_mbu"]
    ok = summary[summary.status == "ok"]
    assert len(ok) == len(summary) and ok[roofline].notna().all().all() and (ok[roofline] > 0).all().all()
    peaks = pd.read_parquet(smoke_run / "results-smoke" / "peak" / "cpu.parquet")
    assert set(peaks.device) == set(tables["latency"].device) and (peaks.gemm_flops_per_s > 0).all()
    assert set(tables["longbench"].method) == {"baseline", "sdtp", "random", "streaming", "attention", "oracle"}
    assert tables["longbench"].delta_vs_baseline.notna().all()
    assert len(tables["saliency_sparsity"]) > 0 and len(tables["pruner_losses"]) > 0
    # The pruner's held-out figures, one row per prune layer (schedule: layers 1 and 2, keep 0.5, 2 held-out prompts).
    heldout = tables["pruner_heldout"]
    assert heldout[["keep_ratio", "layer", "heldout_samples"]].values.tolist() == [[0.5, 1, 2], [0.5, 2, 2]]
    assert heldout.salient_recall.between(0, 1).all()
    assert (smoke_run / "results-smoke" / "report" / "index.html").is_file()
    # Every rule logged, and nothing half-written is left behind.
    assert not list((smoke_run / "results-smoke").rglob("*.tmp*"))


def test_nothing_to_do_after_a_run(smoke_run):
    proc = snakemake(smoke_run, *SMOKE, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_snakemake_report_zip(smoke_run):
    import zipfile

    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *SMOKE, "--report", "report.zip"],
        cwd=smoke_run, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = zipfile.ZipFile(smoke_run / "report.zip").namelist()
    assert any(name.endswith("report.html") for name in names)
    assert any(name.endswith("speedup_vs_ideal.html") for name in names)


def test_changing_one_keep_ratio_plans_only_that_ratio(smoke_run):
    proc = snakemake(smoke_run, "-n", *override(smoke_run, "keep_ratios: [0.6]\n"))
    jobs = planned_jobs(proc.stdout)
    rules = {rule for rule, _ in jobs}
    # The new ratio's pruner is verified before its jobs; the engine's own `verify` does not rerun (its keep ratio is
    # `verify.keep_ratio`, not the list of keep ratios), so nothing else reruns.
    assert rules == {
        "train_pruner",
        "verify_pruner",
        "latency",
        "predict",
        "score",
        "tables",
        "figures",
        "report",
        "all",
    }
    for rule, wildcards in jobs:
        if rule in ("train_pruner", "latency", "predict", "score"):
            assert "ratio=0.6" in wildcards, (rule, wildcards)
    # Baseline (ratio 1.0), the model, data and saliency are untouched.
    assert not any("method=baseline" in wildcards for _, wildcards in jobs)


def test_adding_a_length_plans_only_latency_jobs_of_that_length(smoke_run):
    text = (
        "latency: {methods: [baseline, sdtp, random, streaming, attention], lengths: [128, 96], "
        "warmup: 0, repeats: 1, new_tokens: 4}\n"
    )
    proc = snakemake(smoke_run, "-n", *override(smoke_run, text))
    jobs = planned_jobs(proc.stdout)
    latency = [wildcards for rule, wildcards in jobs if rule == "latency"]
    assert len(latency) == 5 and all("length=96" in w for w in latency), jobs
    assert {rule for rule, _ in jobs} == {"latency", "tables", "figures", "report", "all"}


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("seed: abc\n", r"instance\['seed'\]"),
        ("methods: [baseline, magic]\n", r"instance\['methods'\]\[1\]"),
        ("keep_ratios: [1.5]\n", r"instance\['keep_ratios'\]\[0\]"),
        ("latency: {lenghts: [128]}\n", r"lenghts"),
        ("saliency: {reduction: max}\n", r"'max' is not one of \['sum', 'abs_sum'\]"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, bad, expected):
    workdir = copy_project(tmp_path)
    proc = snakemake(workdir, *override(workdir, bad), check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(expected, output), output[-3000:]
    assert "config" in output.lower()
    assert not (workdir / "results-smoke").exists()


def test_paper_config_plans_offline(tmp_path):
    workdir = copy_project(tmp_path)
    proc = snakemake(workdir, "-n", "--configfile", "configs/paper-qwen2-7b.yaml")
    jobs = planned_jobs(proc.stdout)
    latency = [w for rule, w in jobs if rule == "latency"]
    assert any("length=32768" in w for w in latency)
    assert {rule for rule, _ in jobs} >= {"saliency", "train_pruner", "latency", "predict", "score", "tables"}


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_changing_the_saliency_reruns_its_consumers_only(smoke_run):
    proc = snakemake(smoke_run, "-n", *override(smoke_run, "saliency: {objective: loss}\n"))
    jobs = planned_jobs(proc.stdout)
    assert {rule for rule, _ in jobs} == {
        "saliency",
        "train_pruner",
        "verify_pruner",
        "latency",
        "predict",
        "score",
        "tables",
        "figures",
        "report",
        "all",
    }, jobs
    # The pruner and everything that reads it, and the oracle (which marks tokens as stage 1 does); no other method.
    for rule, wildcards in jobs:
        if rule in ("latency", "predict", "score"):
            assert "method=sdtp" in wildcards or "method=oracle" in wildcards, (rule, wildcards)
    assert any(rule == "predict" and "method=oracle" in w for rule, w in jobs)


def test_schema_lists_exactly_the_demo_and_pruner_keys():
    import dataclasses

    import yaml

    from sdtp.demo_model import DEFAULT_DEMO_CONFIG
    from sdtp.pruner_training import PrunerTrainConfig

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())["properties"]
    assert set(schema["demo"]["properties"]) == set(DEFAULT_DEMO_CONFIG)
    assert set(schema["pruner"]["properties"]) == {f.name for f in dataclasses.fields(PrunerTrainConfig)}
    from sdtp.saliency import SaliencyConfig

    saliency = schema["saliency"]["properties"]
    assert {key: spec["default"] for key, spec in saliency.items()} == dataclasses.asdict(SaliencyConfig())


def flatten(mapping: dict, prefix: str = "") -> dict:
    """{"a.b": value} for every leaf of a nested mapping (lists are leaves)."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def layered_configs(name: str) -> list[str]:
    """An overlay (a config without a `model:` section, e.g. paper-qwen2-7b-lm-eval.yaml) is layered after the config
    its name extends (paper-qwen2-7b.yaml); a complete config stands alone."""
    import yaml

    if "model" in yaml.safe_load((REPO / "configs" / name).read_text()):
        return [name]
    stems = [p.stem for p in (REPO / "configs").glob("*.yaml") if p.name != name and name.startswith(f"{p.stem}-")]
    assert stems, f"configs/{name} has no model: section and extends no other config by its name"
    return [f"{max(stems, key=len)}.yaml", name]


def deep_update(into: dict, update: dict) -> dict:
    """Snakemake's merge of several --configfile: nested mappings key by key, anything else replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_update(into[key], value)
        else:
            into[key] = value
    return into


def missing_extras(config: dict) -> list[str]:
    """The optional extras a config needs that this interpreter lacks (the Snakefile refuses it without them)."""
    import importlib.util

    methods = [*config.get("methods", []), *config.get("latency", {}).get("methods", [])]
    methods += config.get("lm_eval", {}).get("methods") or []
    needs = {
        "lm_eval": bool(config.get("lm_eval", {}).get("tasks")),
        "kvpress": any(m.startswith("kvpress") or "+" in m for m in methods),
    }
    # (a test folder on the tests' pythonpath, tests/kvpress, imports as a namespace package: no origin)
    installed = {
        name: (spec := importlib.util.find_spec(name)) is not None and spec.origin is not None for name in needs
    }
    return [f"the {name} extra" for name, needed in needs.items() if needed and not installed[name]]


@pytest.mark.parametrize("config_file", [None, *sorted(path.name for path in (REPO / "configs").glob("*.yaml"))])
def test_effective_config_is_the_file_over_the_schema_defaults(tmp_path, config_file):
    """Each experiment config is complete on its own: what the jobs see (the report job's --config, as Snakemake
    resolved it) is that file over the schema's defaults, key by key — no demo value from config.yaml leaks in."""
    import copy
    import json
    import shlex

    import yaml
    from snakemake.utils import validate

    workdir = copy_project(tmp_path)
    files = [f"configs/{name}" for name in layered_configs(config_file)] if config_file else []
    source = {}
    for file in files or ["config.yaml"]:
        deep_update(source, yaml.safe_load((workdir / file).read_text()))
    missing = missing_extras(source)
    if missing:
        pytest.skip(f"{config_file} needs {', '.join(missing)}, not installed here (the extras' own CI scripts run it)")
    args = ["--configfile", *files] if files else []
    proc = snakemake(workdir, *args, "-n", "-p")
    line = next(line for line in proc.stdout.splitlines() if "-m sdtp report " in line and "--config " in line)
    effective = json.loads(shlex.split(line.split("--config ", 1)[1])[0])
    expected = copy.deepcopy(source)
    validate(expected, str(REPO / "schemas" / "config.schema.yaml"), set_default=True)
    assert flatten(effective) == flatten(json.loads(json.dumps(expected)))


def test_random_weights_get_their_own_paths_and_no_scores(tmp_path):
    """`weights: random` (latency without downloading) never writes over, or passes for, the pretrained model's
    results, and refuses LongBench jobs, whose scores would mean nothing."""
    workdir = copy_project(tmp_path)
    paper_with_override = ["--configfile", "configs/paper-qwen2-7b.yaml", "override.yaml"]
    (workdir / "override.yaml").write_text("model: {weights: random}\nmethods: []\n")  # latency only
    proc = snakemake(workdir, "-n", "-p", *paper_with_override)
    jobs = planned_jobs(proc.stdout)
    rules = {rule for rule, _ in jobs}
    assert rules >= {"latency", "tables"} and not rules & {"predict", "score"}
    latency = [wildcards for rule, wildcards in jobs if rule == "latency"]
    assert latency and all("model=qwen2-7b-instruct-random-weights" in w for w in latency)
    assert "results/latency/qwen2-7b-instruct/" not in proc.stdout
    (workdir / "override.yaml").write_text("model: {weights: random}\n")  # LongBench methods left on
    proc = snakemake(workdir, "-n", *paper_with_override, check=False)
    assert proc.returncode != 0 and "scores of a random-weight model are meaningless" in proc.stdout + proc.stderr


@pytest.mark.parametrize("config_args", [[], ["--configfile", "configs/paper-qwen2-7b.yaml"]])
def test_every_model_job_waits_for_verify(tmp_path, config_args):
    """`verify` runs before any job that loads the model: each one lists the verification report among its inputs."""
    workdir = copy_project(tmp_path)
    proc = snakemake(workdir, "-n", *config_args)
    blocks = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", proc.stdout, flags=re.MULTILINE)
    model_jobs = [(rule, body) for rule, body in blocks if rule in ("latency", "predict", "saliency", "train_pruner")]
    assert [rule for rule, _ in blocks].count("verify") == 1 and len(model_jobs) > 10
    for rule, body in model_jobs:
        inputs = next(line for line in body.splitlines() if line.strip().startswith("input:"))
        assert "/verify/" in inputs, (rule, inputs)
        # sdtp's jobs also wait for its pruner's verification, except latency jobs on the latency model's own shape
        # (`latency.model`): they time a seeded random-init pruning module of that shape and load no trained pruner.
        own_shape = rule == "latency" and "-random-weights/" in body
        if "sdtp/r" in body and rule in ("latency", "predict") and not own_shape:
            assert re.search(r"/verify/[^/]+/sdtp-r[0-9.]+\.json", inputs), (rule, inputs)
        if own_shape:
            assert "/pruner/" not in inputs, (rule, inputs)
