"""Whether a config's jobs fit the devices: `sdtp.memory`'s estimates (weights + KV cache + activations) against each
device, or a group of devices a model is spread over, or the RAM without CUDA.

A device's usable memory keeps `RESERVE_FRACTION` of it plus `RESERVE_BYTES` back for the CUDA context, cuBLAS
workspaces and the caching allocator's fragmentation.
"""

from __future__ import annotations

from collections.abc import Sequence

import psutil

from sdtp.doctor.checks import Check
from sdtp.doctor.machine import Device
from sdtp.memory import GIB, MemoryEstimate, gib

RESERVE_FRACTION = 0.05
RESERVE_BYTES = 1 * GIB


def usable_bytes(device: Device) -> int:
    """What a job may use of `device`: its memory less RESERVE_FRACTION and RESERVE_BYTES."""
    return max(0, int(device.total_memory * (1 - RESERVE_FRACTION)) - RESERVE_BYTES)


def _fit_advice(short: Sequence[MemoryEstimate], found: Sequence[Device], gpus_per_job: int) -> str:
    need = max(e.total_bytes for e in short)
    advice = []
    if any(e.dtype == "float32" for e in short) and found and all(d.bf16 for d in found):
        advice.append("set model.dtype: bfloat16 (halves weights, cache and activations)")
    if found:
        capacities = sorted((usable_bytes(d) for d in found), reverse=True)
        total = 0
        for k, capacity in enumerate(capacities, start=1):
            total += capacity
            if total >= need:
                if k > max(1, gpus_per_job):
                    advice.append(f"set resources.gpu: {k} to spread the model over {k} devices")
                break
    advice.extend(dict.fromkeys(e.remedy for e in short if e.remedy))
    return "; or ".join(advice) or "use a machine with more memory"


def memory_fit(
    estimates: Sequence[MemoryEstimate],
    found: Sequence[Device] = (),
    gpus_per_job: int = 1,
    ram_available: int | None = None,
) -> list[Check]:
    """Does each job fit: per device (a job on one GPU), per group of `gpus_per_job` devices (a model spread over
    them: their usable memory added up, which assumes accelerate balances it), or in RAM without CUDA.

    A device's usable memory is `usable_bytes` (RESERVE_FRACTION and RESERVE_BYTES kept back).
    """
    if not estimates:
        return []
    largest = max(estimates, key=lambda e: e.total_bytes)
    groups: list[tuple[str, str, int]] = []  # (item, description, usable bytes)
    if found and gpus_per_job > 1:
        chosen = sorted(found, key=lambda d: d.total_memory)[:gpus_per_job]
        item = "+".join(d.label for d in sorted(chosen, key=lambda d: d.index))
        groups.append(
            (
                item,
                f"{len(chosen)} devices spread by device_map: auto, {gib(sum(d.total_memory for d in chosen))}",
                sum(usable_bytes(d) for d in chosen),
            )
        )
    elif found:
        for d in found:
            groups.append((d.label, f"{d.name}, {gib(d.total_memory)}", usable_bytes(d)))
    else:
        available = psutil.virtual_memory().available if ram_available is None else ram_available
        groups.append(("ram", "no CUDA, the machine's available RAM", available))

    checks = []
    for item, description, usable in groups:
        short = [e for e in estimates if e.total_bytes > usable]
        data = {"usable": usable, "largest_job": largest.job, "largest_bytes": largest.total_bytes}
        data["short"] = [e.job for e in short]
        if short:
            worst = max(short, key=lambda e: e.total_bytes)
            needs = ", ".join(f"{e.job} {gib(e.total_bytes)}" for e in short)
            checks.append(
                Check(
                    f"fit {item}",
                    False,
                    f"{description}, {gib(usable)} usable: too small for {needs} "
                    f"(short by {gib(worst.total_bytes - usable)})",
                    _fit_advice(short, found, gpus_per_job),
                    data,
                )
            )
        else:
            checks.append(
                Check(
                    f"fit {item}",
                    True,
                    f"{description}, {gib(usable)} usable: fits every job; the largest, {largest.job}, needs "
                    f"{gib(largest.total_bytes)} (headroom {gib(usable - largest.total_bytes)})",
                    data=data,
                )
            )
    return checks
