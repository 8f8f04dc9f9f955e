"""Where a result was produced: the host, the SLURM job and the GPUs, so a number can be traced to its job.

Every per-job Parquet row and JSON report carries `provenance()`'s three columns. Read them when the row is written:
the GPU pool (`sdtp.commands.gpu_pool`) sets `CUDA_VISIBLE_DEVICES` in the process when it claims devices.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

COLUMNS = ("host", "slurm_job_id", "cuda_visible_devices")


def host() -> str:
    """The machine's network name (`platform.node()`; SLURM's node name on a cluster)."""
    return platform.node()


def slurm_job_id() -> str | None:
    """The SLURM job this process runs in (`SLURM_JOB_ID`; an array task's own id), None outside SLURM."""
    return os.environ.get("SLURM_JOB_ID") or None


def cuda_visible_devices() -> str | None:
    """`CUDA_VISIBLE_DEVICES` as this process sees it (set by SLURM or by the GPU pool), None when unset."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def provenance() -> dict[str, str | None]:
    """The three provenance columns of a result row: host, slurm_job_id, cuda_visible_devices."""
    return {"host": host(), "slurm_job_id": slurm_job_id(), "cuda_visible_devices": cuda_visible_devices()}


VERSIONED = ("torch", "transformers", "accelerate")


def library_versions() -> dict[str, str | None]:
    """`<name>_version` of the libraries whose releases can change a measurement (kernels, Cache, dispatch): torch,
    transformers, accelerate; None for one that is not installed. Benchmark rows carry them, so numbers taken on
    different sets are never compared unawares (README: "Two installs")."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[f"{name}_version"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[f"{name}_version"] = None
    return versions
