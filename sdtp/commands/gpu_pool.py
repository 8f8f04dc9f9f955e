"""A GPU pool for concurrent Snakemake jobs on one machine: each job claims one device with a file lock.

Snakemake's `resources: gpu=1` bounds how many GPU jobs run at once but does not say *which* GPU a job gets. Each job
therefore calls `claim_device()` before torch touches CUDA: it takes an exclusive, non-blocking `fcntl.flock` on
`<lock_dir>/gpu-<id>.lock` for the first free device, pins itself to it through `CUDA_VISIBLE_DEVICES`, and keeps the
lock's file descriptor open for the rest of the process. The kernel drops the lock when the process ends, however it
ends (SIGKILL included), so a crashed job never leaks a device.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "SDTP_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = ".snakemake/gpu-locks"

# Open lock files of this process, by device id; kept referenced so the locks live as long as the process.
_held: dict[str, int] = {}


def visible_devices() -> list[str]:
    """Devices this process may use: `CUDA_VISIBLE_DEVICES` as given (CUDA is not initialised), else `nvidia-smi -L`."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def _lock_dir(lock_dir: str | os.PathLike | None) -> Path:
    return Path(lock_dir or os.environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)


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


def claim_device(
    lock_dir: str | os.PathLike | None = None, timeout_s: float | None = None, poll_s: float = 1.0
) -> str | None:
    """Claim one free GPU for this process and pin it via `CUDA_VISIBLE_DEVICES`; return its id, or None.

    None (and nothing changed) on a machine without GPUs and inside a SLURM job, whose allocation already pins devices.
    When every device is taken, waits (logging) until one frees up, or raises `TimeoutError` after `timeout_s`.
    Calling it again in the same process returns the device it already holds.
    """
    if os.environ.get("SLURM_JOB_ID"):
        log.info("inside SLURM job %s: devices are pinned by the allocation", os.environ["SLURM_JOB_ID"])
        return None
    if _held:
        return next(iter(_held))
    devices = visible_devices()
    if not devices:
        return None
    directory = _lock_dir(lock_dir)
    directory.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    warned = False
    while True:
        for device in devices:
            fd = _try_lock(directory / f"gpu-{device}.lock")
            if fd is not None:
                _held[device] = fd
                os.environ["CUDA_VISIBLE_DEVICES"] = device
                log.info("claimed GPU %s (lock in %s)", device, directory)
                return device
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise TimeoutError(f"all GPUs {devices} are claimed (locks in {directory}) after {timeout_s} s")
        if not warned:
            log.warning("all GPUs %s are claimed by other jobs (locks in %s); waiting", devices, directory)
            warned = True
        time.sleep(poll_s)


def release_device() -> None:
    """Give back the device this process holds (normally unnecessary: the lock ends with the process)."""
    while _held:
        _, fd = _held.popitem()
        os.close(fd)
