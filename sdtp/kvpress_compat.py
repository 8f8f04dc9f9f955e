"""kvpress's own press hooks on this transformers release: the keyword arguments its hook reads, supplied when missing.

kvpress 0.5.2's `BasePress.forward_hook` (run after each layer's `self_attn`) reads `kwargs["past_key_values"]` and
`kwargs["cache_position"]`. transformers 5.2x calls attention with `cache=` (`past_key_values` is a deprecated alias,
renamed before the hook sees it) and passes no `cache_position`, so every press fails with a KeyError there.
`applied(press, model)` runs the press's own context manager (`with press(model)`: its post-init, its hooks, their
removal) with its hook wrapped so that the hook sees
- `past_key_values`: the layer's cache (what transformers now passes as `cache`);
- `cache_position`: the cache slots this call wrote, `arange(past, past + q_len)` with `past` taken from **this
  layer's** cache length (layer 0's would be wrong on a ragged cache: later layers would then look like decode steps
  and stay uncompressed). A pruned prefill has gaps in its RoPE positions; cache slots have none, and slots are what
  the hook compares with `q_len` to tell prefill from decode.
The attention forward itself is never touched. The wrapper is installed only when the installed kvpress's hook reads
one of these keys (`hook_needs_kwargs`), and adds only keys that are missing; `tests/kvpress/test_kvpress_compat.py`
fails (strict xfail) once plain kvpress works on this transformers, i.e. when this module can go.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# What kvpress's hook reads that transformers 5.2x no longer passes to attention modules.
HOOK_KWARGS = ("past_key_values", "cache_position")


def hook_needs_kwargs(press) -> tuple[str, ...]:
    """The keys of `HOOK_KWARGS` that the press's `forward_hook` source reads (empty: no wrapper is needed)."""
    return _hook_reads(type(press))


@functools.cache
def _hook_reads(press_type: type) -> tuple[str, ...]:
    """Once per press class: reading a hook's source takes milliseconds, a tiny model's whole prefill."""
    try:
        source = inspect.getsource(press_type.forward_hook)
    except (OSError, TypeError):  # no source (compiled, zipped): assume the hook reads what 0.5.2's reads
        return HOOK_KWARGS
    return tuple(key for key in HOOK_KWARGS if f'"{key}"' in source or f"'{key}'" in source)


def completed_kwargs(module: nn.Module, kwargs: dict) -> dict:
    """`kwargs` of a finished `self_attn` call plus the missing `past_key_values` and `cache_position` (a copy).

    kwargs: as the attention module received them: `hidden_states` (1, q_len, d) and `cache` or `past_key_values`.
    Returns: the same keys, with `past_key_values` (the Cache) and `cache_position` (q_len,) LongTensor of the slots
    this call wrote into `module.layer_idx`'s cache (the cache has already grown by q_len when a forward hook runs).
    """
    completed = dict(kwargs)
    cache = completed.get("past_key_values")
    if cache is None:
        cache = completed.get("cache")
        completed["past_key_values"] = cache
    if "cache_position" not in completed and cache is not None:
        hidden_states = completed["hidden_states"]
        q_len = hidden_states.shape[1]
        past = cache.get_seq_length(module.layer_idx) - q_len
        completed["cache_position"] = torch.arange(past, past + q_len, device=hidden_states.device)
    return completed


def _completing_hook(hook, module: nn.Module, args, kwargs: dict, output):
    return hook(module, args, completed_kwargs(module, kwargs), output)


@contextmanager
def applied(press, model: nn.Module) -> Iterator[None]:
    """`with press(model)`, kvpress's own context manager, with the press's hook given the kwargs it reads.

    The wrapper shadows `press.forward_hook` on this instance only for the duration of the context (the press's
    `__call__` looks the hook up on the instance when it registers it).
    """
    if not hook_needs_kwargs(press):
        with press(model):
            yield
        return
    press.forward_hook = functools.partial(_completing_hook, type(press).forward_hook.__get__(press))
    try:
        with press(model):
            yield
    finally:
        del press.forward_hook
