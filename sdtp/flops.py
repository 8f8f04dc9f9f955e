"""Analytic cost model of prefill and decode for decoder-only HF LLMs (Qwen2 / Llama / Mistral family).

Units: FLOPs, counting one multiply-add as 2 FLOPs; bytes for the KV cache. All counts are for ONE sequence
(batch size 1); they scale linearly with the batch size.

What is counted (a norm-free approximation): only the matrix multiplications, which dominate the cost.
Per decoder layer with n tokens (d = hidden_size, H = num_attention_heads, Hkv = num_key_value_heads,
h = head_dim, I = intermediate_size; read by `sdtp.model_dims`, the home of the sizes every cost model shares):

- projections q, k, v, o: 2·n·d·(H·h) + 2 · 2·n·d·(Hkv·h) + 2·n·(H·h)·d   (GQA-aware: k and v are Hkv·h wide)
- causal attention, for each of the two matmuls Q·Kᵀ and A·V: 2·h FLOPs per query-key pair per head, over the
  n·(n+1)/2 pairs of the causal triangle, i.e. 2 · H · 2·h · n(n+1)/2
- gated MLP (gate, up, down): 3 · 2·n·d·I
- the LM head for the last position only: 2·d·vocab_size (the embedding lookup costs nothing)

Ignored: RMSNorm, RoPE, softmax, activations, residual adds, biases. Also not modelled: sliding-window attention
(every layer is assumed to attend over its full causal prefix) and attention kernels that skip no work.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

from sdtp.model_dims import ModelDims, checked_counts, model_dims


def _linear_flops_per_token(dims: ModelDims) -> int:
    """FLOPs of the q/k/v/o projections and the gated MLP for one token in one layer."""
    d = dims.hidden_size
    projections = 2 * d * dims.q_width + 2 * (2 * d * dims.kv_width) + 2 * dims.q_width * d
    mlp = 3 * 2 * d * dims.intermediate_size
    return projections + mlp


def _attention_flops_per_pair(dims: ModelDims) -> int:
    """FLOPs of Q·Kᵀ plus A·V for one query-key pair, summed over all query heads."""
    return 2 * dims.num_heads * 2 * dims.head_dim


def prefill_flops(config, tokens_per_layer: list[int]) -> float:
    """Analytic FLOPs of a prefill of one sequence, with the LM head applied to the last position only.

    Args:
        config: a transformers config of a decoder-only model (Qwen2 / Llama / Mistral family).
        tokens_per_layer: [num_hidden_layers] number of tokens entering each decoder layer (all equal to the
            prompt length without pruning; shrinking across layers with token pruning).

    Returns:
        FLOPs (multiply-add = 2), as a float.
    """
    dims = model_dims(config)
    counts = dims.per_layer("tokens_per_layer", tokens_per_layer)
    per_token = _linear_flops_per_token(dims)
    per_pair = _attention_flops_per_pair(dims)
    total = sum(n * per_token + per_pair * n * (n + 1) // 2 for n in counts)
    total += 2 * dims.hidden_size * dims.vocab_size
    return float(total)


def decode_step_flops(config, kv_lengths_per_layer: list[int]) -> float:
    """Analytic FLOPs of one decode step: one new token through every layer and the LM head.

    Args:
        config: a transformers config of a decoder-only model.
        kv_lengths_per_layer: [num_hidden_layers] number of tokens already cached at each layer; the new token
            attends to those plus itself (kv_length + 1 keys).

    Returns:
        FLOPs (multiply-add = 2), as a float.
    """
    dims = model_dims(config)
    lengths = dims.per_layer("kv_lengths_per_layer", kv_lengths_per_layer)
    per_token = _linear_flops_per_token(dims)
    per_pair = _attention_flops_per_pair(dims)
    total = sum(per_token + per_pair * (kv_length + 1) for kv_length in lengths)
    total += 2 * dims.hidden_size * dims.vocab_size
    return float(total)


def pruner_flops(hidden_size: int, tokens_per_stage: list[int]) -> float:
    """Analytic FLOPs of the SDTP pruning modules, `Linear(d, d//4) → GELU → Linear(d//4, 1)` per stage.

    Args:
        hidden_size: d, the model's hidden size.
        tokens_per_stage: [num_stages] number of tokens scored at each stage (those entering it).

    Returns:
        FLOPs (multiply-add = 2) of both linear layers over all stages, as a float; GELU and biases ignored.
    """
    try:
        d = operator.index(hidden_size)
    except TypeError:
        raise ValueError(f"hidden_size = {hidden_size!r} is not an integer") from None
    if d < 4:
        raise ValueError(f"hidden_size = {d} is too small; the pruning module needs hidden_size >= 4")
    counts = checked_counts("tokens_per_stage", tokens_per_stage)
    bottleneck = d // 4
    per_token = 2 * d * bottleneck + 2 * bottleneck * 1
    return float(sum(n * per_token for n in counts))


def attention_scorer_flops(config, tokens_per_stage: list[int]) -> float:
    """Analytic FLOPs of the `attention` comparator: per stage, the layer's q projection of the last token, the k
    projection of every alive token and one row of attention logits (heads × n). Norms, RoPE and softmax ignored."""
    dims = model_dims(config)
    counts = checked_counts("tokens_per_stage", tokens_per_stage)
    d = dims.hidden_size
    per_stage = (2 * d * dims.q_width + n * (2 * d * dims.kv_width + 2 * dims.q_width) for n in counts)
    return float(sum(per_stage))


def scorer_flops(method: str, config, tokens_per_stage: list[int]) -> float:
    """FLOPs a comparator spends scoring tokens during a pruned prefill, to count in that run's FLOPs (and so in its
    ideal speedup): the SDTP pruning modules, the attention row of `attention`; 0 for scorers that do no matmuls
    (`random`, `streaming`, `baseline`). The `oracle`'s backward pass is not a speed method and is not counted."""
    if method == "sdtp":
        return pruner_flops(model_dims(config).hidden_size, tokens_per_stage)
    if method == "attention":
        return attention_scorer_flops(config, tokens_per_stage)
    return 0.0


def kv_bytes_per_layer(config, kv_lengths_per_layer: list[int], dtype: torch.dtype) -> list[int]:
    """Bytes of keys plus values cached per layer: 2 · num_key_value_heads · head_dim · length · element size.

    Args:
        config: a transformers config of a decoder-only model.
        kv_lengths_per_layer: [num_hidden_layers] number of cached tokens at each layer.
        dtype: the dtype of the cache (e.g. torch.bfloat16 → 2 bytes per element).

    Returns:
        [num_hidden_layers] bytes per layer, for one sequence.
    """
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}: {dtype!r}")
    dims = model_dims(config)
    lengths = dims.per_layer("kv_lengths_per_layer", kv_lengths_per_layer)
    bytes_per_token = 2 * dims.kv_width * dtype.itemsize
    return [bytes_per_token * length for length in lengths]


def compression_ratio(original_length: int, tokens_per_layer: list[int]) -> float:
    """The SDTP paper's compression ratio: original tokens ÷ mean tokens over all layers (1.0 = no pruning).

    Args:
        original_length: number of tokens in the prompt.
        tokens_per_layer: [num_layers] number of tokens entering each decoder layer.
    """
    try:
        original = operator.index(original_length)
    except TypeError:
        raise ValueError(f"original_length = {original_length!r} is not an integer") from None
    if original < 1:
        raise ValueError(f"original_length = {original} must be >= 1")
    counts = checked_counts("tokens_per_layer", tokens_per_layer)
    if not counts:
        raise ValueError("tokens_per_layer is empty; give one count per decoder layer")
    for i, count in enumerate(counts):
        if count > original:
            raise ValueError(
                f"tokens_per_layer[{i}] = {count} exceeds original_length = {original}; pruning only removes tokens"
            )
    mean_tokens = sum(counts) / len(counts)
    if mean_tokens == 0:
        raise ValueError("tokens_per_layer is all zeros; the mean token count must be > 0")
    return original / mean_tokens


def ideal_speedup(baseline_flops: float, pruned_flops: float) -> float:
    """The compute-bound speedup a pruned run can reach: baseline FLOPs ÷ pruned FLOPs (dimensionless)."""
    for name, value in (("baseline_flops", baseline_flops), ("pruned_flops", pruned_flops)):
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} = {value!r} must be a finite number > 0")
    return baseline_flops / pruned_flops
