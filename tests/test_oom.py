"""`sdtp.oom`: which errors are out-of-memory errors, and freeing memory after one."""

from __future__ import annotations

import pytest
import torch

from sdtp import oom


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB"),
        getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)("CUDA out of memory."),
        RuntimeError("CUDA error: out of memory"),  # cuBLAS / FlashAttention
        RuntimeError("MPS backend out of memory (MPS allocated: 1.00 GB)"),
        RuntimeError("CUDA error: Out Of Memory\nCUDA kernel errors might be asynchronously reported"),
    ],
)
def test_out_of_memory_errors(error):
    assert oom.is_out_of_memory(error)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
        RuntimeError("CUDA error: device-side assert triggered"),
        ValueError("out of memory"),  # not a RuntimeError: not torch's
        KeyboardInterrupt(),
    ],
)
def test_other_errors(error):
    assert not oom.is_out_of_memory(error)


def test_describe_gives_the_first_line():
    assert oom.describe(RuntimeError("CUDA error: out of memory\nCompile with TORCH_USE_CUDA_DSA")) == (
        "CUDA error: out of memory"
    )
    assert oom.describe(torch.cuda.OutOfMemoryError()) == "OutOfMemoryError"


def test_free_memory_collects_then_empties_the_cuda_cache(monkeypatch):
    calls = []
    monkeypatch.setattr(oom.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    oom.free_memory()
    assert calls == ["collect", "empty_cache"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls.clear()
    oom.free_memory()
    assert calls == ["collect"]
