"""The workflow on a real single-node SLURM cluster, through `profiles/slurm` (what users run) plus
`tests/slurm/profile` (only this cluster's settings), with snakemake-executor-plugin-slurm.

Runs only where `.ci/slurm.sh` brought the cluster up (`tests/slurm/cluster.sh`: root, apt, 4 fake GPUs) and set
SDTP_SLURM_CLUSTER=1; everywhere else (the main suite) it skips and says so, so CI runs it exactly once. The runs, in
order, share one copy of the project (module-scoped), and each test checks one claim of them:

1. `configs/slurm-smoke.yaml` from scratch: every model job asks for one GPU;
2. the same again: nothing to do;
3. a keep ratio added (0.7), one of its latency jobs scancel'd while it runs: only that ratio's jobs are submitted;
4. again: the cancelled latency job (and what reads it) is resubmitted, and its Parquet is written whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runs import REPO, copy_project

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("SDTP_SLURM_CLUSTER") != "1" or shutil.which("sbatch") is None,
        reason="needs the single-node SLURM cluster `bash .ci/slurm.sh` brings up (root, apt); it sets "
        "SDTP_SLURM_CLUSTER=1 and runs this test",
    ),
]

RUN_TIMEOUT_S = 900  # per snakemake run: generous, a shared 2-core machine under load runs the first in ~7 min
MODEL = "smoke-qwen2"
RESULTS = "results-slurm-smoke"
GPU_RULES = {"verify", "verify_pruner", "saliency", "train_pruner", "latency", "predict"}
SUBMITTED = re.compile(
    r"has been submitted with SLURM jobid (\d+) \(log: .*/slurm_logs/rule_([a-z_]+)/(?:([^/]+)/)?\d+\.log"
)
ARTIFACTS = Path(os.environ.get("SDTP_SLURM_ARTIFACTS", "/tmp/sdtp-slurm/runs"))


class Run:
    """One `snakemake --profile profiles/slurm` run: its exit status, output and the jobs it submitted."""

    def __init__(self, name: str, proc: subprocess.CompletedProcess, seconds: float):
        self.name, self.returncode, self.output, self.seconds = name, proc.returncode, proc.stdout, seconds
        # (slurm job id, rule, wildcards joined by "_" as the plugin names its log folder; "" for a rule without)
        self.jobs = [(job_id, rule, wildcards) for job_id, rule, wildcards in SUBMITTED.findall(self.output)]

    def rules(self) -> list[str]:
        return sorted(rule for _, rule, _ in self.jobs)

    def job_names(self) -> set[str]:
        return {f"{rule}:{wildcards}" for _, rule, wildcards in self.jobs}


def snakemake_slurm(workdir: Path, name: str, configfile: str, on_start=None) -> Run:
    """Run the workflow through the user's profile plus the test cluster's; `timeout -k` because the slurm executor
    does not stop on SIGTERM alone. The full output (with each `sbatch` call: --verbose) lands in ARTIFACTS."""
    command = [
        "timeout", "-k", "15", str(RUN_TIMEOUT_S), sys.executable, "-m", "snakemake",
        "--profile", "profiles/slurm", "--workflow-profile", str(REPO / "tests" / "slurm" / "profile"),
        "--configfile", configfile, "--verbose",
    ]  # fmt: skip
    start = time.monotonic()
    thread = threading.Thread(target=on_start, daemon=True) if on_start else None
    if thread:
        thread.start()
    proc = subprocess.run(command, cwd=workdir, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if thread:
        thread.join(timeout=60)
    run = Run(name, subprocess.CompletedProcess(command, proc.returncode, proc.stdout + proc.stderr), 0.0)
    run.seconds = time.monotonic() - start
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.log").write_text(run.output)
    print(f"{name}: exit {run.returncode} in {run.seconds:.0f} s, {len(run.jobs)} sbatch jobs: {run.rules()}")
    return run


def squeue_all() -> dict[str, dict]:
    """Every job slurmctld still knows (finished ones for MinJobAge = 300 s): id -> name (the plugin's comment, which
    names rule and wildcards), state, start and end."""
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%k|%T|%S|%e"], capture_output=True, text=True, check=True
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, comment, state, start, end = line.split("|")
        jobs[job_id] = {"comment": comment, "state": state, "start": start, "end": end}
    return jobs


def cancel_first_running_latency_job(workdir: Path, ratio: str, cancelled: dict) -> None:
    """Wait until a latency job of keep ratio `ratio` runs its command (its log exists), then scancel it (what a
    preempted or killed job is)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S - 60
    while time.monotonic() < deadline:
        for job_id, job in squeue_all().items():
            comment = job["comment"]
            if job["state"] != "RUNNING" or not comment.startswith("rule_latency_") or f"_{ratio}_" not in comment:
                continue
            method = comment.removeprefix("rule_latency_wildcards_").split("_")[-3]
            log = workdir / RESULTS / "logs" / "latency" / MODEL / method / f"r{ratio}" / "L128.log"
            if log.exists():
                time.sleep(1)  # inside `python -m sdtp latency`
                subprocess.run(["scancel", job_id], check=True)
                cancelled.update(job_id=job_id, comment=comment)
                return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory):
    workdir = copy_project(tmp_path_factory.mktemp("slurm-project"))
    smoke = yaml.safe_load((workdir / "configs" / "slurm-smoke.yaml").read_text())
    (workdir / "configs" / "slurm-smoke-more.yaml").write_text(yaml.safe_dump({**smoke, "keep_ratios": [0.5, 0.7]}))
    runs = {"first": snakemake_slurm(workdir, "1-first", "configs/slurm-smoke.yaml")}
    runs["second"] = snakemake_slurm(workdir, "2-again", "configs/slurm-smoke.yaml")
    cancelled: dict = {}
    runs["ratio"] = snakemake_slurm(
        workdir,
        "3-ratio-0.7-scancel",
        "configs/slurm-smoke-more.yaml",
        lambda: cancel_first_running_latency_job(workdir, "0.7", cancelled),
    )
    runs["cancelled"] = cancelled
    runs["after_cancel"] = sorted(p.name for p in (workdir / RESULTS / "latency").rglob("*"))
    if cancelled:
        method = cancelled["comment"].removeprefix("rule_latency_wildcards_").split("_")[-3]
        killed = workdir / RESULTS / "latency" / MODEL / method / "r0.7" / "L128.parquet"
        runs["cancelled_parquet_existed"] = killed.exists()
    runs["resume"] = snakemake_slurm(workdir, "4-resume", "configs/slurm-smoke-more.yaml")
    runs["queue"] = squeue_all()
    return workdir, runs


def results(workdir: Path) -> Path:
    return workdir / RESULTS


def test_every_model_job_ran_as_a_slurm_job_with_one_gpu(cluster_runs):
    workdir, runs = cluster_runs
    first = runs["first"]
    assert first.returncode == 0, first.output[-4000:]
    submitted_rules = set(first.rules())
    assert submitted_rules >= GPU_RULES and {"tables", "figures", "report", "score"} <= submitted_rules
    # each GPU job's sbatch call asks for exactly one GPU, with one key (--gpus), and a memory request from the
    # estimate, not the fixed 64 GB of old
    calls = [line for line in first.output.splitlines() if line.startswith("sbatch call:")]
    assert len(calls) == len(first.jobs)
    for line in calls:
        rule = re.search(r"--comment rule_(\S+)", line).group(1).split("_wildcards_")[0]
        head = line.split("--wrap=")[0]
        mem_mb = int(re.search(r"--mem (\d+)", head).group(1))
        if rule in GPU_RULES:
            assert head.count("--gpus=1") == 1 and "--gres" not in head, head
            assert 2048 < mem_mb < 4000, head  # the tiny model's estimate + 2 GiB of headroom
        elif rule in ("peak", "demo_model"):  # a GPU (peaks of the latency jobs' device; training), no estimate
            assert head.count("--gpus=1") == 1 and "--gres" not in head and mem_mb == 4000, head
        else:
            assert "--gpus" not in head and "--gres" not in head, head
    # the jobs are the cluster's: slurmctld lists each (COMPLETED), under the rule and wildcards they ran
    queue = runs["queue"]
    for job_id, rule, wildcards in first.jobs:
        assert queue[job_id]["state"] == "COMPLETED", (job_id, rule, queue.get(job_id))
        assert queue[job_id]["comment"] == f"rule_{rule}" + (f"_wildcards_{wildcards}" if wildcards else "")


def test_rows_name_the_slurm_job_and_gpu_that_produced_them(cluster_runs):
    workdir, runs = cluster_runs
    # the job that wrote each output last: the first run's, the new ratio's, or the resubmitted one
    job_of = {f"{rule}:{name}": job_id for run in ("first", "ratio", "resume") for job_id, rule, name in runs[run].jobs}
    latency = pd.read_parquet(results(workdir) / "tables" / "latency.parquet")
    assert len(latency) == 5 and latency.slurm_job_id.notna().all()  # baseline; sdtp and random at 0.5 and 0.7
    for row in latency.itertuples():
        ratio = "1.0" if row.method == "baseline" else str(row.keep_ratio)
        assert row.slurm_job_id == job_of[f"latency:{MODEL}_{row.method}_{ratio}_128"]
        assert row.cuda_visible_devices in {"0", "1", "2", "3"}  # SLURM's fake GPU, one per job
    scores = pd.read_parquet(results(workdir) / "tables" / "longbench.parquet")
    assert len(scores) == 3 and scores.slurm_job_id.notna().all()
    for row in scores.itertuples():
        ratio = "1.0" if row.method == "baseline" else str(row.keep_ratio)
        assert row.slurm_job_id == job_of[f"score:{MODEL}_{row.method}_{ratio}_synthetic_passkey"]
    verify = json.loads((results(workdir) / "verify" / f"{MODEL}.json").read_text())
    assert verify["slurm_job_id"] == job_of[f"verify:{MODEL}"] and verify["cuda_visible_devices"] in {
        "0",
        "1",
        "2",
        "3",
    }


def test_jobs_that_ran_at_the_same_time_had_different_gpus(cluster_runs):
    workdir, runs = cluster_runs
    devices = {}  # slurm job id -> CUDA_VISIBLE_DEVICES, from every output that records it
    for path in (results(workdir) / "latency").rglob("*.parquet"):
        frame = pd.read_parquet(path)
        devices.update(zip(frame.slurm_job_id, frame.cuda_visible_devices, strict=True))
    for path in (results(workdir) / "verify").rglob("*.json"):
        report = json.loads(path.read_text())
        devices[report["slurm_job_id"]] = report["cuda_visible_devices"]
    for path in (results(workdir) / "longbench").rglob("*.jsonl"):
        record = json.loads(path.read_text().splitlines()[0])
        devices[record["slurm_job_id"]] = record["cuda_visible_devices"]
    queue = runs["queue"]
    span = {
        job_id: (datetime.fromisoformat(queue[job_id]["start"]), datetime.fromisoformat(queue[job_id]["end"]))
        for job_id in devices
    }
    overlapping = [
        (a, b) for a in devices for b in devices if a < b and span[a][0] < span[b][1] and span[b][0] < span[a][1]
    ]
    assert overlapping, f"no two GPU jobs ran at the same time: {span}"
    for a, b in overlapping:
        assert devices[a] != devices[b], (a, b, devices[a], span[a], span[b])


def test_the_gpu_pool_stood_aside_inside_slurm_jobs(cluster_runs):
    workdir, _ = cluster_runs
    logs = {path: path.read_text() for rule in GPU_RULES for path in (results(workdir) / "logs" / rule).rglob("*.log")}
    if not logs:
        pytest.fail("no GPU job logs")
    for path, text in logs.items():
        # the executor plugin runs each job in an `srun` step: SLURM_STEP_ID is a step number there
        assert re.search(r"inside SLURM job \d+ step \d+: devices are pinned by the allocation", text), path
        assert "claimed GPU" not in text, path
    assert not (workdir / ".snakemake" / "gpu-locks").exists()


def test_tables_and_report_are_written_and_a_second_run_has_nothing_to_do(cluster_runs):
    workdir, runs = cluster_runs
    for name in ("latency", "summary", "longbench", "saliency_sparsity", "pruner_losses"):
        assert (results(workdir) / "tables" / f"{name}.parquet").stat().st_size > 0
    assert (results(workdir) / "report" / "index.html").stat().st_size > 0
    second = runs["second"]
    assert second.returncode == 0 and second.jobs == [], second.output[-3000:]
    assert "Nothing to be done" in second.output


def test_a_new_keep_ratio_submits_only_that_ratios_jobs(cluster_runs):
    _, runs = cluster_runs
    ratio = runs["ratio"]
    expected = {
        f"train_pruner:{MODEL}_0.7",
        f"verify_pruner:{MODEL}_0.7",
        f"latency:{MODEL}_sdtp_0.7_128",
        f"latency:{MODEL}_random_0.7_128",
        f"predict:{MODEL}_sdtp_0.7_synthetic_passkey",
        f"score:{MODEL}_sdtp_0.7_synthetic_passkey",
    }
    downstream = {"tables:", "figures:", "report:"}  # they read every table; they ran unless the cancel stopped them
    names = ratio.job_names()
    assert expected <= names, names
    assert {name for name in names - expected if not any(name.startswith(d) for d in downstream)} == set(), names


def test_a_cancelled_latency_job_leaves_no_parquet_and_is_resubmitted(cluster_runs):
    workdir, runs = cluster_runs
    cancelled = runs["cancelled"]
    assert cancelled, "no running latency job of ratio 0.7 to cancel was seen"
    wildcards = cancelled["comment"].removeprefix("rule_latency_wildcards_")
    method = wildcards.split("_")[-3]
    assert runs["ratio"].returncode != 0  # the cancelled job failed the run (keep-going finished the others)
    assert not runs["cancelled_parquet_existed"]  # the killed job wrote nothing under its output's name
    leftovers = [name for name in runs["after_cancel"] if name.startswith(".") or name.endswith(".tmp")]
    assert leftovers == [], leftovers  # no temporary file of the atomic write
    resume = runs["resume"]
    assert resume.returncode == 0, resume.output[-4000:]
    assert f"latency:{wildcards}" in resume.job_names(), resume.job_names()
    assert not {name for name in resume.job_names() if name.startswith(("train_pruner", "predict", "verify"))}
    frame = pd.read_parquet(results(workdir) / "latency" / MODEL / method / "r0.7" / "L128.parquet")
    assert len(frame) == 1 and frame.status.tolist() == ["ok"]
    assert frame.slurm_job_id.tolist() == [next(j for j, r, w in resume.jobs if r == "latency" and w == wildcards)]
