"""Calling a transformers decoder's own modules one layer at a time: what the engine, the masked pruning simulation
and the saliency diagnostics share (devices, the sliding-window guard, the backend's causal mask, one layer call).

A decoder layer is called with keyword arguments, as transformers' own model forward calls it; when a release changes
that call, only this module changes.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn
from transformers.masking_utils import create_causal_mask


@functools.cache
def cache_keyword(function) -> str:
    """The keyword `function` takes the Cache by: `cache` since transformers 5.2x, `past_key_values` before (5.24
    still accepts it, with a FutureWarning; 5.40 drops it). Read from the signature, so each release gets its own."""
    return "cache" if "cache" in inspect.signature(function).parameters else "past_key_values"


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (under accelerate's device_map, each layer has its own)."""
    return next(module.parameters()).device


def synchronize(device: torch.device) -> None:
    """Wait for `device`'s queued kernels (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_window(model: nn.Module, length: int) -> None:
    """Sliding-window layers would count alive tokens, not original positions; refuse prompts longer than the window."""
    config = model.config
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or []
    windowed = window is not None and (not layer_types or "sliding_attention" in layer_types)
    if windowed and length > window:
        raise NotImplementedError(
            f"prompt of {length} tokens exceeds the model's sliding window ({window}); the pruning engine supports "
            "full attention only — set `sliding_window: null` in the model's config_overrides to run it with full "
            "attention"
        )


def causal_mask(model: nn.Module, hidden_states: torch.Tensor):
    """The backend's causal mask for a fresh sequence of hidden_states' length (None where SDPA/flash are causal)."""
    # position_ids=None on purpose: pruned positions have gaps, which the mask helpers would read as packed sequences.
    return create_causal_mask(
        config=model.config,
        inputs_embeds=hidden_states,
        attention_mask=None,
        position_ids=None,
        **{cache_keyword(create_causal_mask): None},
    )


def rotary(decoder: nn.Module, hidden: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own rotary (cos, sin) for `positions` (m,), on `hidden`'s device: under accelerate's device_map the
    rotary embedding is a placed module of its own (on the last GPU), not on the layer's device."""
    return tuple(t.to(hidden.device) for t in decoder.rotary_emb(hidden, positions[None]))


def run_decoder_layer(layer: nn.Module, hidden, mask, positions, cache, position_embeddings) -> torch.Tensor:
    """One decoder layer on (1, m, d) `hidden` at original `positions` (m,), caching into `cache` when given."""
    out = layer(
        hidden,
        attention_mask=mask,
        position_ids=positions[None],
        use_cache=cache is not None,
        **{cache_keyword(type(layer).forward): cache},
        position_embeddings=position_embeddings,
    )
    return out[0] if isinstance(out, tuple) else out
