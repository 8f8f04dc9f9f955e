"""A GPU pool for concurrent Snakemake jobs on one machine: each job claims its devices with file locks.

Snakemake's `resources: gpu=N` bounds how many GPUs the running jobs hold together but does not say *which* GPUs a job
gets. Each job therefore calls `claim_devices(N)` before torch touches CUDA: it takes an exclusive, non-blocking
`fcntl.flock` on `<lock_dir>/gpu-<id>.lock` for N free devices (all or none, so two jobs never deadlock on halves),
pins itself to them through `CUDA_VISIBLE_DEVICES`, and keeps the locks' file descriptors open for the rest of the
process. The kernel drops the lock when the process ends, however it
ends (SIGKILL included), so a crashed job never leaks a device.

Inside a SLURM job step SLURM has already bound the job's GPUs, and the pool stands aside. `job_devices` answers, in
both cases, which GPUs the job computes on: what a command spreads its model over.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "SDTP_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = ".snakemake/gpu-locks"

# Open lock files of this process, by device id; kept referenced so the locks live as long as the process.
_held: dict[str, int] = {}


def _listed_devices(cuda_visible_devices: str) -> list[str]:
    """The device ids a `CUDA_VISIBLE_DEVICES` value lists (empty or -1: none)."""
    return [d.strip() for d in cuda_visible_devices.split(",") if d.strip() and d.strip() != "-1"]


def visible_devices() -> list[str]:
    """Devices this process may use: `CUDA_VISIBLE_DEVICES` as given (CUDA is not initialised), else `nvidia-smi -L`."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return _listed_devices(env)
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


# SLURM's step ids for the batch script, the extern step and an interactive step: not an `srun` job step.
_NON_JOB_STEPS = {4294967292, 4294967293, 4294967294, 4294967295}


def slurm_step_pins_devices() -> bool:
    """True inside an `srun` job step of a SLURM job: its GPUs are bound by SLURM (snakemake-executor-plugin-slurm
    runs each job as such a step, through its jobstep plugin). False outside SLURM and in an allocation's shell or
    batch script (`salloc`, `sbatch`), where several local jobs share the allocated GPUs and must pool them.

    Seen on a real cluster (tests/slurm, plugin 2.8 with its jobstep plugin 0.6): the batch script has SLURM_JOB_ID
    and no SLURM_STEP_ID; the job's command runs under `srun -n1 …` with SLURM_STEP_ID=0 and SLURM's
    CUDA_VISIBLE_DEVICES."""
    step = os.environ.get("SLURM_STEP_ID", "")
    return bool(os.environ.get("SLURM_JOB_ID")) and step.isdigit() and int(step) not in _NON_JOB_STEPS


def lock_dir_of(lock_dir: str | os.PathLike | None = None) -> Path:
    """Where this host's GPU locks live: `lock_dir`, else $SDTP_GPU_LOCK_DIR, else a per-host folder under
    `.snakemake` (which may sit on a filesystem shared by several nodes, each with its own GPU 0)."""
    return Path(lock_dir or os.environ.get(LOCK_DIR_ENV) or Path(DEFAULT_LOCK_DIR) / platform.node())


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def claim_devices(
    count: int = 1, lock_dir: str | os.PathLike | None = None, timeout_s: float | None = None, poll_s: float = 1.0
) -> list[str] | None:
    """Claim `count` free GPUs for this process and pin them via `CUDA_VISIBLE_DEVICES`; return their ids, or None.

    None (and nothing changed) when `count` is 0, on a machine without GPUs, and inside a SLURM job step
    (`slurm_step_pins_devices`: what snakemake-executor-plugin-slurm's jobs run as), whose allocation already pins
    devices. Inside an allocation but outside a step — the gpu-box profile run in an `salloc` shell or an sbatch
    script — the pool works as on any GPU box. When fewer than `count` are free, waits (logging) until enough free
    up, or raises `TimeoutError` after `timeout_s`; asking for more than the machine has is an error at once. Calling
    it again in the same process returns the devices it already holds.
    """
    if count < 1:
        return None
    if slurm_step_pins_devices():
        log.info(
            "inside SLURM job %s step %s: devices are pinned by the allocation",
            os.environ.get("SLURM_JOB_ID"),
            os.environ.get("SLURM_STEP_ID"),
        )
        return None
    if _held:
        return list(_held)
    devices = visible_devices()
    if not devices:
        return None
    if count > len(devices):
        raise ValueError(
            f"a job asks for {count} GPUs (config resources.gpu) but only {len(devices)} are visible: {devices}"
        )
    directory = lock_dir_of(lock_dir)
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    warned = False
    while True:
        taken: dict[str, int] = {}
        for device in devices:
            fd = _try_lock(directory / f"gpu-{device}.lock")
            if fd is not None:
                taken[device] = fd
                if len(taken) == count:
                    _held.update(taken)
                    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(taken)
                    log.info("claimed GPU(s) %s (locks in %s)", ",".join(taken), directory)
                    return list(taken)
        for fd in taken.values():  # not enough: give back what was taken, so no two jobs hold halves
            os.close(fd)
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise TimeoutError(
                f"fewer than {count} of the GPUs {devices} are free (locks in {directory}) after {timeout_s} s"
            )
        if not warned:
            log.warning("fewer than %d of the GPUs %s are free (locks in %s); waiting", count, devices, directory)
            warned = True
        time.sleep(poll_s)


def job_devices(count: int) -> list[str]:
    """The GPUs this job computes on, by id, pinned through `CUDA_VISIBLE_DEVICES` before torch touches CUDA.

    Inside a SLURM job step (`slurm_step_pins_devices`): the devices SLURM bound to the step (its
    `CUDA_VISIBLE_DEVICES`; never `nvidia-smi`, which may list GPUs other jobs hold): the first `count` of them, or all
    of them when `count` is 0 (a rule that asks SLURM with `gres` passes `--gpus 0`, README "On a SLURM cluster").
    Elsewhere: the `count` devices claimed from the pool (`claim_devices`). [] without GPUs or with `count` 0 outside
    SLURM.
    """
    if not slurm_step_pins_devices():
        return claim_devices(count) or []
    env = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    bound = _listed_devices(env)
    log.info(
        "inside SLURM job %s step %s: devices are pinned by the allocation (CUDA_VISIBLE_DEVICES=%s)",
        os.environ.get("SLURM_JOB_ID"),
        os.environ.get("SLURM_STEP_ID"),
        env,
    )
    if count < 1 or not bound:
        return bound
    if count > len(bound):
        raise ValueError(
            f"a job asks for {count} GPUs (config resources.gpu) but SLURM job {os.environ.get('SLURM_JOB_ID')} step "
            f"{os.environ.get('SLURM_STEP_ID')} binds only {len(bound)}: CUDA_VISIBLE_DEVICES={env}; ask SLURM for "
            "resources.gpu GPUs per job (profiles/slurm/config.yaml: the rule's `gpu` or `gres` resource)"
        )
    if count < len(bound):  # more than asked (e.g. an exclusive node): use the first `count`, as the pool would
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(bound[:count])
        log.info("SLURM bound GPU(s) %s; this job uses %s (config resources.gpu)", env, ",".join(bound[:count]))
    return bound[:count]


def claim_device(
    lock_dir: str | os.PathLike | None = None, timeout_s: float | None = None, poll_s: float = 1.0
) -> str | None:
    """Claim one free GPU (`claim_devices(1)`); return its id, or None."""
    claimed = claim_devices(1, lock_dir, timeout_s, poll_s)
    return claimed[0] if claimed else None


def release_device() -> None:
    """Give back the device this process holds (normally unnecessary: the lock ends with the process)."""
    while _held:
        _, fd = _held.popitem()
        os.close(fd)
