"""Out-of-memory errors: recognising them, and giving the memory back afterwards.

A job that sweeps records, samples or lengths records an out-of-memory error as a result (`status: "oom"`) and goes
on. PyTorch raises two forms: `torch.OutOfMemoryError` (`torch.cuda.OutOfMemoryError`, from the caching allocator)
and a plain `RuntimeError` whose text says "out of memory" (cuBLAS, cuDNN, FlashAttention, the MPS backend).

Free the memory *after* leaving the `except` block: inside it, the exception's traceback still references the frames
that held the large tensors, so they cannot be released yet. The pattern::

    oom = False
    try:
        run()
    except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(error):
            raise
        oom = True
    if oom:
        free_memory()
"""

from __future__ import annotations

import gc

import torch

# torch.OutOfMemoryError (torch >= 2.5) is the class torch.cuda.OutOfMemoryError names; older versions have only the
# latter.
OUT_OF_MEMORY_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an out-of-memory error: `torch.OutOfMemoryError`, or a RuntimeError saying "out of memory"."""
    if isinstance(error, OUT_OF_MEMORY_ERRORS):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def describe(error: BaseException) -> str:
    """The error's first line, for a log message (logging the exception object itself would keep its traceback, and
    with it the frames' tensors, alive for as long as a handler holds the record)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def free_memory() -> None:
    """Collect unreachable objects (the frames of the failed call among them), then return the CUDA caching
    allocator's unused blocks to the device. Call it outside the `except` block that caught the error."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
