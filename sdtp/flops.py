"""Analytic cost model of prefill and decode for decoder-only HF LLMs (Qwen2 / Llama / Mistral family).

Units: FLOPs, counting one multiply-add as 2 FLOPs; bytes for the KV cache. All counts are for ONE sequence
(batch size 1); they scale linearly with the batch size.

What is counted (a norm-free approximation): only the matrix multiplications, which dominate the cost.
Per decoder layer with n tokens (d = hidden_size, H = num_attention_heads, Hkv = num_key_value_heads,
h = head_dim, I = intermediate_size):

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class _Dims:
    """The sizes of a decoder-only model that its matmul FLOPs depend on."""

    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    num_layers: int
    vocab_size: int

    @property
    def q_width(self) -> int:
        """Width of the query projection (and input width of the output projection)."""
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Width of each of the key and value projections."""
        return self.num_kv_heads * self.head_dim


def _dims(config) -> _Dims:
    """Read the sizes from a transformers config (the text config of a multimodal one)."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    num_heads = config.num_attention_heads
    num_kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // num_heads
    return _Dims(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        num_layers=config.num_hidden_layers,
        vocab_size=config.vocab_size,
    )


def _checked_counts(name: str, values: Iterable[int], expected_len: int | None = None) -> list[int]:
    """Return `values` as a list of non-negative Python ints, or raise ValueError naming the bad entry."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of integers, got {type(values).__name__}: {values!r}")
    values = list(values)
    if expected_len is not None and len(values) != expected_len:
        raise ValueError(
            f"{name} has {len(values)} entries but the model has num_hidden_layers={expected_len}; "
            f"give one count per decoder layer"
        )
    counts = []
    for i, value in enumerate(values):
        try:
            count = operator.index(value)
        except TypeError:
            raise ValueError(f"{name}[{i}] = {value!r} is not an integer") from None
        if count < 0:
            raise ValueError(f"{name}[{i}] = {count} is negative; counts must be >= 0")
        counts.append(count)
    return counts


def _linear_flops_per_token(dims: _Dims) -> int:
    """FLOPs of the q/k/v/o projections and the gated MLP for one token in one layer."""
    d = dims.hidden_size
    projections = 2 * d * dims.q_width + 2 * (2 * d * dims.kv_width) + 2 * dims.q_width * d
    mlp = 3 * 2 * d * dims.intermediate_size
    return projections + mlp


def _attention_flops_per_pair(dims: _Dims) -> int:
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
    dims = _dims(config)
    counts = _checked_counts("tokens_per_layer", tokens_per_layer, dims.num_layers)
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
    dims = _dims(config)
    lengths = _checked_counts("kv_lengths_per_layer", kv_lengths_per_layer, dims.num_layers)
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
    counts = _checked_counts("tokens_per_stage", tokens_per_stage)
    bottleneck = d // 4
    per_token = 2 * d * bottleneck + 2 * bottleneck * 1
    return float(sum(n * per_token for n in counts))


def attention_scorer_flops(config, tokens_per_stage: list[int]) -> float:
    """Analytic FLOPs of the `attention` comparator: per stage, the layer's q projection of the last token, the k
    projection of every alive token and one row of attention logits (heads × n). Norms, RoPE and softmax ignored."""
    dims = _dims(config)
    counts = _checked_counts("tokens_per_stage", tokens_per_stage)
    d = dims.hidden_size
    per_stage = (2 * d * dims.q_width + n * (2 * d * dims.kv_width + 2 * dims.q_width) for n in counts)
    return float(sum(per_stage))


def scorer_flops(method: str, config, tokens_per_stage: list[int]) -> float:
    """FLOPs a comparator spends scoring tokens during a pruned prefill, to count in that run's FLOPs (and so in its
    ideal speedup): the SDTP pruning modules, the attention row of `attention`; 0 for scorers that do no matmuls
    (`random`, `streaming`, `baseline`). The `oracle`'s backward pass is not a speed method and is not counted."""
    if method == "sdtp":
        return pruner_flops(_dims(config).hidden_size, tokens_per_stage)
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
    dims = _dims(config)
    lengths = _checked_counts("kv_lengths_per_layer", kv_lengths_per_layer, dims.num_layers)
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
    counts = _checked_counts("tokens_per_layer", tokens_per_layer)
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
