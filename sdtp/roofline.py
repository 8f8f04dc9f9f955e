"""A roofline model of prefill and decode: what a pruned run can gain at best on a given device.

Each phase is one `Cost` — FLOPs (from `sdtp.flops`, multiply-add = 2) and bytes moved between memory and the chip,
both from the model's sizes as `sdtp.model_dims` reads them —
and its roofline time is `max(flops / peak_flops, bytes / peak_bandwidth)`: a phase can go no faster than its compute
at the device's peak FLOP/s, nor than its memory traffic at the peak bandwidth. For ONE sequence (batch 1), with
b = bytes per element of the dtype, d = hidden_size, n_l = tokens entering layer l (prefill) or cached at layer l
(decode), kv = 2 · num_key_value_heads · head_dim (keys and values, per token and layer):

- weights: every matrix of every layer (q, k, v, o, gate, up, down) and the LM head (vocab · d), read ONCE per forward
  pass — once per prefill, once per decode step (batch 1 reuses nothing across steps). With untied embeddings the
  embedding lookup reads one row per token. Norms and biases are ignored (< 0.1 % of a 7B model).
- prefill: the weights; the KV written, Σ_l n_l · kv · b; the activations, the hidden state read and written once per
  layer, Σ_l 2 · n_l · d · b (attention scores are not materialised by SDPA/flash kernels; other intermediates stay
  in caches at the sizes that matter). Prefill of a long prompt is compute-bound: its bytes matter only when short.
- one decode step at cache lengths n_l: the weights; attention reading the KV, Σ_l (n_l + 1) · kv · b (the cache and
  the new token); the cache update; activations of one token (2 · d · b per layer). The update depends on the cache
  (`kv_update`):
  - "copy" (the default): transformers' `DynamicCache`, which the engine decodes on (a ragged cache needs it) and
    `generate` uses by default. Its update is `torch.cat([cache, new])`: every step reads the layer's n_l cached
    tokens and writes all n_l + 1 anew, Σ_l (2 · n_l + 1) · kv · b. So the KV term is about three times the cache
    per step, and a pruned cache saves three times its size. (Timed on this project's CPU, the ideals without it
    fell below the measured decode speedups.) `tests/test_roofline.py` checks that the cache still copies.
  - "in_place": a preallocated cache (StaticCache, paged attention) writes only the new token, Σ_l kv · b.
- decode phase of N new tokens: the first comes from the prefill's logits, then N − 1 steps on the ragged cache, each
  growing every layer by one token (`sdtp.engine.decode_greedy`). Its roofline is taken over the phase's totals,
  max(Σ flops / peak_flops, Σ bytes / peak_bandwidth); both grow linearly with the step, and at batch 1 every step is
  bandwidth-bound, so this equals the sum of the per-step rooflines.
- End2End = roofline(prefill) + roofline(decode): the two phases run one after the other, each at its own bound.

Ideal speedups are baseline roofline time ÷ pruned roofline time per phase. For prefill on a compute-bound device this
is the FLOPs ratio (`sdtp.flops.ideal_speedup`); decode gains only the KV share of its bytes — at batch 1 a 7B model
reads ~14 GB of weights per step, so cutting a 16K cache by 62 % saves about a tenth of the bytes (DynamicCache's
copy included), not 10×.

`DATASHEET_PEAKS` holds NVIDIA's published bf16 dense Tensor Core FLOP/s and memory bandwidth for common GPUs (the
source named per entry); `sdtp.peaks` measures the device actually used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sdtp.flops import decode_step_flops, prefill_flops
from sdtp.model_dims import model_dims


@dataclass(frozen=True)
class DevicePeak:
    """A device's peak dense FLOP/s in one dtype and its peak memory bandwidth (bytes/s)."""

    name: str
    peak_flops: float
    peak_bandwidth: float
    source: str

    def __post_init__(self) -> None:
        for key in ("peak_flops", "peak_bandwidth"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"DevicePeak {self.name!r}: {key} = {value!r} must be a finite number > 0")


# bf16 dense (no 2:4 sparsity) Tensor Core FLOP/s and memory bandwidth, from NVIDIA's datasheets (the sparsity figure
# the datasheets print first is halved where it is the only one given).
DATASHEET_PEAKS: dict[str, DevicePeak] = {
    "h100-sxm": DevicePeak(
        "NVIDIA H100 SXM5 80GB", 989.4e12, 3.35e12,
        "NVIDIA H100 Tensor Core GPU datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity (989 dense); HBM3"
        " 3.35 TB/s",
    ),
    "h100-pcie": DevicePeak(
        "NVIDIA H100 PCIe 80GB", 756.0e12, 2.0e12,
        "NVIDIA H100 Tensor Core GPU datasheet: BF16 Tensor Core 1,513 TFLOPS with sparsity (756 dense); HBM2e 2 TB/s",
    ),
    "h200": DevicePeak(
        "NVIDIA H200 SXM 141GB", 989.4e12, 4.8e12,
        "NVIDIA H200 Tensor Core GPU datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity (989 dense); HBM3e"
        " 4.8 TB/s",
    ),
    "a100-40gb": DevicePeak(
        "NVIDIA A100 SXM4 40GB", 312.0e12, 1.555e12,
        "NVIDIA A100 Tensor Core GPU datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity); HBM2 1,555 GB/s",
    ),
    "a100-80gb": DevicePeak(
        "NVIDIA A100 SXM4 80GB", 312.0e12, 2.039e12,
        "NVIDIA A100 Tensor Core GPU datasheet: BF16 Tensor Core 312 TFLOPS (624 with sparsity); HBM2e 2,039 GB/s",
    ),
    "l40s": DevicePeak(
        "NVIDIA L40S 48GB", 362.05e12, 0.864e12,
        "NVIDIA L40S datasheet: BF16 Tensor Core 362.05 TFLOPS (733 with sparsity); GDDR6 864 GB/s",
    ),
    "rtx-4090": DevicePeak(
        "NVIDIA GeForce RTX 4090", 165.2e12, 1.008e12,
        "NVIDIA Ada GPU architecture whitepaper: BF16 Tensor (FP32 accumulate) 165.2 TFLOPS (330.4 with sparsity);"
        " GDDR6X 1,008 GB/s",
    ),
}  # fmt: skip


def datasheet_peak(name: str) -> DevicePeak:
    """The datasheet entry called `name` (e.g. `h100-sxm`), or a ValueError listing the known ones."""
    if name not in DATASHEET_PEAKS:
        raise ValueError(f"unknown device {name!r}; datasheet peaks exist for: {', '.join(DATASHEET_PEAKS)}")
    return DATASHEET_PEAKS[name]


@dataclass(frozen=True)
class Cost:
    """What one phase does: FLOPs (multiply-add = 2) and bytes moved to or from memory."""

    flops: float
    bytes: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def roofline_s(self, peak: DevicePeak) -> float:
        """Seconds at best on `peak`: max(flops / peak FLOP/s, bytes / peak bandwidth)."""
        return max(self.flops / peak.peak_flops, self.bytes / peak.peak_bandwidth)

    def bound(self, peak: DevicePeak) -> str:
        """Which roof binds on `peak`: "compute" or "memory"."""
        return "compute" if self.flops / peak.peak_flops >= self.bytes / peak.peak_bandwidth else "memory"


def _itemsize(dtype: torch.dtype) -> int:
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}: {dtype!r}")
    return dtype.itemsize


def weight_bytes(config, dtype: torch.dtype) -> int:
    """Bytes of the weights read by one forward pass: every layer's q/k/v/o and MLP matrices, and the LM head."""
    dims = model_dims(config)
    d = dims.hidden_size
    per_layer = d * dims.q_width + 2 * d * dims.kv_width + dims.q_width * d + 3 * d * dims.intermediate_size
    return (dims.num_layers * per_layer + dims.vocab_size * d) * _itemsize(dtype)


def prefill_cost(config, tokens_per_layer: list[int], dtype: torch.dtype, extra_flops: float = 0.0) -> Cost:
    """FLOPs and bytes of a prefill in which layer l processes `tokens_per_layer[l]` tokens (module docstring).

    Args:
        config: a transformers config of a decoder-only model.
        tokens_per_layer: [num_hidden_layers] tokens entering each layer (the prompt length without pruning).
        dtype: dtype of weights, activations and cache.
        extra_flops: FLOPs beyond the model's own (the scorer's: `sdtp.flops.scorer_flops`).
    """
    dims = model_dims(config)
    counts = dims.per_layer("tokens_per_layer", tokens_per_layer)
    b = _itemsize(dtype)
    kv_written = sum(counts) * 2 * dims.kv_width * b
    activations = sum(2 * n * dims.hidden_size * b for n in counts)
    embedding = 0 if dims.tied_embeddings else max(counts, default=0) * dims.hidden_size * b
    moved = weight_bytes(config, dtype) + kv_written + activations + embedding
    return Cost(prefill_flops(config, counts) + float(extra_flops), float(moved))


# How a decode step updates the KV cache (module docstring): "copy" is DynamicCache's torch.cat, the engine's.
KV_UPDATES = ("copy", "in_place")


def _check_kv_update(kv_update: str) -> None:
    if kv_update not in KV_UPDATES:
        raise ValueError(f"kv_update = {kv_update!r} must be one of {', '.join(KV_UPDATES)}")


def decode_step_cost(config, kv_lengths_per_layer: list[int], dtype: torch.dtype, kv_update: str = "copy") -> Cost:
    """FLOPs and bytes of one decode step with `kv_lengths_per_layer[l]` tokens cached at layer l before the step;
    `kv_update` says how the cache takes the new token (module docstring)."""
    _check_kv_update(kv_update)
    dims = model_dims(config)
    lengths = dims.per_layer("kv_lengths_per_layer", kv_lengths_per_layer)
    b = _itemsize(dtype)
    kv_per_token = 2 * dims.kv_width * b
    kv_read = sum(length + 1 for length in lengths) * kv_per_token
    if kv_update == "copy":  # torch.cat reads the n cached tokens and writes n + 1
        kv_written = sum(2 * length + 1 for length in lengths) * kv_per_token
    else:
        kv_written = dims.num_layers * kv_per_token
    activations = dims.num_layers * 2 * dims.hidden_size * b
    embedding = 0 if dims.tied_embeddings else dims.hidden_size * b
    moved = weight_bytes(config, dtype) + kv_read + kv_written + activations + embedding
    return Cost(decode_step_flops(config, lengths), float(moved))


def decode_cost(
    config, kv_lengths_per_layer: list[int], new_tokens: int, dtype: torch.dtype, kv_update: str = "copy"
) -> Cost:
    """The decode phase of `new_tokens` greedy tokens after a prefill that left `kv_lengths_per_layer` cached: the
    first token comes from the prefill's logits, then new_tokens − 1 steps, each layer's cache growing by one."""
    if not isinstance(new_tokens, int) or isinstance(new_tokens, bool) or new_tokens < 1:
        raise ValueError(f"new_tokens = {new_tokens!r} must be an integer >= 1")
    _check_kv_update(kv_update)
    dims = model_dims(config)
    lengths = dims.per_layer("kv_lengths_per_layer", kv_lengths_per_layer)
    total = Cost(0.0, 0.0)
    for step in range(new_tokens - 1):
        total = total + decode_step_cost(config, [length + step for length in lengths], dtype, kv_update)
    return total


@dataclass(frozen=True)
class RooflineIdeal:
    """Roofline times (s) of the baseline and the pruned run, per phase, and the ideal speedups they imply."""

    prefill_s: float
    decode_s: float
    baseline_prefill_s: float
    baseline_decode_s: float

    @property
    def prefill_speedup(self) -> float:
        return self.baseline_prefill_s / self.prefill_s

    @property
    def decode_speedup(self) -> float:
        return self.baseline_decode_s / self.decode_s if self.decode_s > 0 else 1.0

    @property
    def e2e_speedup(self) -> float:
        return (self.baseline_prefill_s + self.baseline_decode_s) / (self.prefill_s + self.decode_s)


def roofline_ideal(
    prefill: Cost, decode: Cost, baseline_prefill: Cost, baseline_decode: Cost, peak: DevicePeak
) -> RooflineIdeal:
    """Ideal prefill, decode and End2End speedups of a pruned run over the baseline on `peak`."""
    return RooflineIdeal(
        prefill_s=prefill.roofline_s(peak),
        decode_s=decode.roofline_s(peak),
        baseline_prefill_s=baseline_prefill.roofline_s(peak),
        baseline_decode_s=baseline_decode.roofline_s(peak),
    )


@dataclass(frozen=True)
class RunCosts:
    """The analytic costs of one pruned run and of the unpruned baseline at the same prompt length and new tokens."""

    prefill: Cost
    decode: Cost
    baseline_prefill: Cost
    baseline_decode: Cost

    def ideal(self, peak: DevicePeak) -> RooflineIdeal:
        return roofline_ideal(self.prefill, self.decode, self.baseline_prefill, self.baseline_decode, peak)


def run_costs(
    config,
    length: int,
    tokens_per_layer: list[int],
    new_tokens: int,
    dtype: torch.dtype,
    scorer_flops: float = 0.0,
    kv_update: str = "copy",
) -> RunCosts:
    """Costs of a run on a prompt of `length` tokens whose prefill sends `tokens_per_layer[l]` tokens through layer l
    (and caches them there), then decodes `new_tokens`, next to the unpruned baseline's (`length` tokens at every
    layer). The length is given, not taken as max(tokens_per_layer): a schedule that prunes before layer 0 sends
    fewer than `length` tokens through every layer. `kv_update`: how decode steps update the cache (module
    docstring)."""
    dims = model_dims(config)
    counts = dims.per_layer("tokens_per_layer", tokens_per_layer)
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length = {length!r} must be an integer >= 1")
    if max(counts) > length:
        raise ValueError(f"tokens_per_layer {counts} exceed the prompt length {length}: pruning only removes tokens")
    full = [length] * dims.num_layers
    return RunCosts(
        prefill=prefill_cost(config, counts, dtype, scorer_flops),
        decode=decode_cost(config, counts, new_tokens, dtype, kv_update),
        baseline_prefill=prefill_cost(config, full, dtype),
        baseline_decode=decode_cost(config, full, new_tokens, dtype, kv_update),
    )


# Shapes the `roofline` command knows by name, so it runs offline without a config.json (values from the models'
# published config.json files; norms and biases do not enter the roofline).
KNOWN_SHAPES: dict[str, dict] = {
    "qwen2-7b": dict(
        model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
    ),
    "mistral-7b": dict(
        model_type="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False,
    ),
}  # fmt: skip
