"""Synchronised wall-clock timing: warm-ups, then repeats, the device drained before and after every timed region."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued kernels on `device` (a no-op on CPU)."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device | str | None) -> tuple[float, object]:
    """(seconds, result) of one call of `fn`, synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def repeat_timed(fn: Callable[[], object], device, warmup: int, repeats: int) -> list[float]:
    """Seconds of `repeats` synchronised calls of `fn` after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn, device)[0] for _ in range(repeats)]


def median(values: list[float]) -> float:
    return statistics.median(values)
