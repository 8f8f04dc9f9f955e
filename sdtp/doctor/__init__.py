"""What a machine offers the pipeline, and whether a model fits it: the checks behind `python -m sdtp doctor`.

Every check returns `Check`s, one line of the report each: `ok`, or a `PROBLEM` with what to do about it. Nothing
here reads the workflow's config or writes a file (the command does both, and the two checks that need the GPU pool);
the only I/O is one HEAD request to the hub (`storage.hub_status`), skipped under `HF_HUB_OFFLINE=1`.

One module per group of lines in the report:
- `packages`: Python and the packages, against the declared ranges and the tested versions;
- `machine`: CUDA and each device, or the CPU; the attention kernels; SLURM;
- `storage`: the hub (cache, token, reachability) and free disk;
- `fit`: `sdtp.memory`'s estimates of a config's jobs against each device.
"""

from sdtp.doctor.checks import Check, count
from sdtp.doctor.fit import RESERVE_BYTES, RESERVE_FRACTION, memory_fit, usable_bytes
from sdtp.doctor.machine import Device, attention_backends, cpu_summary, cuda_devices, devices, slurm
from sdtp.doctor.packages import (
    CONSTRAINTS,
    EXTRA_PACKAGES,
    EXTRAS_CONSTRAINTS,
    PACKAGES,
    DeclaredRange,
    declared_ranges,
    package_check,
    read_constraints,
    versions,
)
from sdtp.doctor.storage import HUB_TIMEOUT_S, HubStatus, disk, existing_parent, hub, hub_cache_dir, hub_status
from sdtp.memory import GIB, gib

__all__ = [
    "CONSTRAINTS",
    "EXTRAS_CONSTRAINTS",
    "EXTRA_PACKAGES",
    "GIB",
    "HUB_TIMEOUT_S",
    "PACKAGES",
    "RESERVE_BYTES",
    "RESERVE_FRACTION",
    "Check",
    "DeclaredRange",
    "Device",
    "HubStatus",
    "attention_backends",
    "count",
    "cpu_summary",
    "cuda_devices",
    "declared_ranges",
    "devices",
    "disk",
    "existing_parent",
    "gib",
    "hub",
    "hub_cache_dir",
    "hub_status",
    "memory_fit",
    "package_check",
    "read_constraints",
    "slurm",
    "usable_bytes",
    "versions",
]
