"""Synchronised wall-clock timing: warm-ups, then repeats, every device drained before and after every timed region.

A model dispatched over several GPUs (`device_map`) ends its forward on the last one (the LM head): synchronising only
the first GPU would stop the clock before the work is done. So the timed functions take the list of every device the
model spans (`model_devices`), and each is synchronised. `recorded_synchronisations` lets `python -m sdtp verify` see
which devices a timed region really drained, on the user's model and GPUs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

Devices = torch.device | str | Iterable[torch.device | str] | None


def model_devices(model: nn.Module) -> list[torch.device]:
    """Every device holding a parameter or buffer of `model`, in a fixed order (CPU first, then CUDA by index)."""
    devices = {t.device for t in model.parameters()} | {t.device for t in model.buffers()}
    return sorted(devices, key=lambda d: (d.type != "cpu", d.type, -1 if d.index is None else d.index))


def _as_list(devices: Devices) -> list[torch.device]:
    if devices is None:
        return []
    if isinstance(devices, (str, torch.device)):
        return [torch.device(devices)]
    return [torch.device(d) for d in devices]


def synchronize(devices: Devices) -> None:
    """Wait for queued kernels on each CUDA device in `devices` (one device or several; a no-op on CPU)."""
    for device in _as_list(devices):
        if device.type == "cuda":
            torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], devices: Devices) -> tuple[float, object]:
    """(seconds, result) of one call of `fn`, every device in `devices` synchronised on both sides."""
    synchronize(devices)
    start = time.perf_counter()
    result = fn()
    synchronize(devices)
    return time.perf_counter() - start, result


def repeat_timed(fn: Callable[[], object], devices: Devices, warmup: int, repeats: int) -> list[float]:
    """Seconds of `repeats` synchronised calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn, devices)[0] for _ in range(repeats)]


@contextmanager
def recorded_synchronisations() -> Iterator[list[torch.device]]:
    """Within the block every `torch.cuda.synchronize` call still runs, and its device is appended to the yielded list
    (`cuda` without an index: a call for the current device). Records the calls themselves, not what a function says
    it would synchronise, so that a wrong device list or a broken `synchronize` shows."""
    drained: list[torch.device] = []
    real_synchronize = torch.cuda.synchronize

    def recording_synchronize(device=None):
        drained.append(torch.device("cuda", device) if isinstance(device, int) else torch.device(device or "cuda"))
        return real_synchronize(device)

    torch.cuda.synchronize = recording_synchronize
    try:
        yield drained
    finally:
        torch.cuda.synchronize = real_synchronize


def reset_peak_memory(devices: Devices) -> None:
    """Start a new peak-memory window on each CUDA device in `devices`."""
    for device in _as_list(devices):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)


def peak_memory_per_device(devices: Devices) -> list[int]:
    """Peak bytes allocated by torch on each CUDA device in `devices` since `reset_peak_memory` (none on CPU)."""
    return [int(torch.cuda.max_memory_allocated(d)) for d in _as_list(devices) if d.type == "cuda"]


def median(values: list[float]) -> float:
    return statistics.median(values)
