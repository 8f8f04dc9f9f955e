"""The GPU pool: distinct devices for concurrent processes, freed when a holder dies, no-op without GPUs / in SLURM."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sdtp.commands import gpu_pool

HOLDER = """
import os, sys, time
from sdtp.commands.gpu_pool import claim_device
device = claim_device(sys.argv[1], timeout_s=float(sys.argv[2]), poll_s=0.05)
print(device, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(60)
"""


def start_holder(lock_dir, devices="0,1,2,3", timeout_s=5.0):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": devices}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir), str(timeout_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_processes_get_distinct_devices_and_a_killed_holder_frees_its_device(tmp_path):
    holders = [start_holder(tmp_path) for _ in range(4)]
    try:
        claimed = []
        for proc in holders:
            device, pinned = proc.stdout.readline().split()
            assert device == pinned  # the process is pinned to the device it claimed
            claimed.append(device)
        assert sorted(claimed) == ["0", "1", "2", "3"]

        # A fifth process finds the pool full.
        fifth = start_holder(tmp_path, timeout_s=0.5)
        assert fifth.wait(timeout=30) != 0
        assert "TimeoutError" in fifth.stderr.read()

        # SIGKILL one holder: the kernel releases its lock, and a new process gets exactly that device.
        victim = holders[2]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        newcomer = start_holder(tmp_path, timeout_s=10)
        holders.append(newcomer)
        assert newcomer.stdout.readline().split()[0] == claimed[2]
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()


def test_waits_for_a_device_instead_of_failing(tmp_path):
    first = start_holder(tmp_path, devices="7")
    try:
        assert first.stdout.readline().split()[0] == "7"
        waiter = start_holder(tmp_path, devices="7", timeout_s=30)
        time.sleep(0.5)
        assert waiter.poll() is None  # still waiting
        first.kill()
        first.wait()
        assert waiter.stdout.readline().split()[0] == "7"
        waiter.kill()
        waiter.wait()
    finally:
        first.kill()
        first.wait()


def test_lock_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv(gpu_pool.LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    try:
        assert gpu_pool.claim_device() == "3"
        assert (tmp_path / "locks" / "gpu-3.lock").exists()
        assert gpu_pool.claim_device() == "3"  # idempotent within a process
    finally:
        gpu_pool.release_device()


def test_no_gpus_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_pool.claim_device(tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert gpu_pool.visible_devices() == []
    assert gpu_pool.claim_device(tmp_path) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_inside_a_slurm_job_step_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_STEP_ID", "0")  # an srun step, as the executor plugin's jobs run
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert gpu_pool.claim_device(tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert not any(tmp_path.iterdir())


def test_inside_a_slurm_job_step_the_job_has_the_devices_slurm_bound(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv(gpu_pool.LOCK_DIR_ENV, str(tmp_path))
    with caplog.at_level("INFO", logger=gpu_pool.__name__):
        assert gpu_pool.job_devices(2) == ["0", "1"] and gpu_pool.job_devices(0) == ["0", "1"]
    # the line the real-SLURM test (tests/slurm) finds in every GPU job's log
    assert "inside SLURM job 1234 step 0: devices are pinned by the allocation" in caplog.text
    assert gpu_pool.job_devices(1) == ["0"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert not any(tmp_path.iterdir())  # no pool locks inside a step
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a step without GPUs (nvidia-smi is never asked inside a step)
    assert gpu_pool.job_devices(1) == []


def test_outside_slurm_the_job_has_the_devices_it_claimed_from_the_pool(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,4")
    monkeypatch.setenv(gpu_pool.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(gpu_pool, "_held", {})
    try:
        assert gpu_pool.job_devices(2) == ["2", "3"] and os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
        assert (tmp_path / "gpu-2.lock").exists()
    finally:
        gpu_pool.release_device()
    assert gpu_pool.job_devices(0) == []


@pytest.mark.parametrize("step", [None, "4294967294"])  # an salloc shell (no step); an sbatch script (batch step)
def test_inside_an_allocation_but_not_a_step_the_pool_works(tmp_path, monkeypatch, step):
    """The gpu-box profile run inside `salloc`/`sbatch`: SLURM_JOB_ID is set, but several local jobs share the
    allocated GPUs, so each must still claim its own."""
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    if step is None:
        monkeypatch.delenv("SLURM_STEP_ID", raising=False)
    else:
        monkeypatch.setenv("SLURM_STEP_ID", step)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr(gpu_pool, "_held", {})
    assert gpu_pool.claim_device(tmp_path) == "2"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    gpu_pool.release_device()


def test_locks_live_in_a_directory_per_host(monkeypatch):
    monkeypatch.delenv(gpu_pool.LOCK_DIR_ENV, raising=False)
    import platform

    assert gpu_pool.lock_dir_of() == gpu_pool.Path(gpu_pool.DEFAULT_LOCK_DIR) / platform.node()


@pytest.mark.parametrize(
    "listing, expected", [("GPU 0: NVIDIA H100 (UUID: x)\nGPU 1: NVIDIA H100 (UUID: y)\n", ["0", "1"])]
)
def test_nvidia_smi_listing(tmp_path, monkeypatch, listing, expected):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    fake.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert gpu_pool.visible_devices() == expected


PAIR_HOLDER = """
import os, sys, time
from sdtp.commands.gpu_pool import claim_devices
devices = claim_devices(2, sys.argv[1], timeout_s=float(sys.argv[2]), poll_s=0.05)
print(",".join(devices), os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(60)
"""


def test_a_job_claims_several_distinct_devices_all_or_none(tmp_path):
    """gpus_per_job = 2 on a 4-GPU box: two jobs get disjoint pairs, a third waits (here: times out) and holds none."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    env.pop("SLURM_JOB_ID", None)

    def start(timeout_s):
        return subprocess.Popen(
            [sys.executable, "-c", PAIR_HOLDER, str(tmp_path), str(timeout_s)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    holders = [start(5.0), start(5.0)]
    try:
        pairs = []
        for proc in holders:
            claimed, pinned = proc.stdout.readline().split()
            assert claimed == pinned and len(claimed.split(",")) == 2
            pairs.append(set(claimed.split(",")))
        assert pairs[0].isdisjoint(pairs[1]) and pairs[0] | pairs[1] == {"0", "1", "2", "3"}
        third = start(0.5)
        assert third.wait(timeout=30) != 0 and "TimeoutError" in third.stderr.read()
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()


def test_asking_for_more_gpus_than_visible_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(gpu_pool, "_held", {})
    with pytest.raises(ValueError, match="asks for 3 GPUs .* only 2 are visible"):
        gpu_pool.claim_devices(3, tmp_path)
    assert gpu_pool.claim_devices(0, tmp_path) is None


def test_a_multi_gpu_job_spreads_its_model_over_the_claimed_devices(monkeypatch, tmp_path):
    import argparse

    from sdtp.commands import settings as settings_module

    asked = []
    monkeypatch.setattr(gpu_pool, "claim_devices", lambda count: [str(i) for i in range(count)])
    monkeypatch.setattr(settings_module, "load_model", lambda spec: asked.append(spec) or (FakeModel(), None))
    model_section = {"name": "m", "id": "org/model", "device": "cuda"}
    for gpus, device_map in [(2, "auto"), (1, None)]:
        args = argparse.Namespace(settings={"model": model_section}, model_dir=None, gpus=gpus)
        settings_module.load_run_model(args)
        assert asked[-1].get("device_map") == device_map


class FakeModel:
    class config:  # noqa: N801 - stands in for a transformers config
        _attn_implementation = "sdpa"
