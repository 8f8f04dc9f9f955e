"""How much memory one job of a model needs: weights + KV cache + activations, from the model's config alone.

`python -m sdtp doctor` prints these estimates against each device, and the workflow's rules request them from a
cluster scheduler (`sdtp.job_resources`: SLURM's `--mem`). Nothing here imports torch at module level, so the
Snakefile can use it at DAG time without the cost of loading torch; the meta-device `parameter_count` imports it.

Memory estimates, in bytes, for one sequence (batch 1). b = bytes per element of the model's dtype, n = tokens,
d = hidden size, I = intermediate size, q = H·head_dim and kv = Hkv·head_dim the widths of the query projection and of
each of the key/value projections, H the attention heads, V the vocabulary, L the decoder layers:

- weights = parameters · b; the parameters are counted on the meta device from the config alone (nothing allocated),
  or, without torch, by `dense_parameter_count` (the same count for the dense Qwen2 / Llama / Mistral families).
- KV cache = Σ_layers 2 · kv · (prompt + new tokens) · b (as `sdtp.flops.kv_bytes_per_layer`), unpruned: the baseline's.
- inference activations (`memory_estimate`): the peak inside one decoder layer at prefill of the whole prompt (the
  layers run one after another and free their temporaries):

      n · (2·d + max(3·q + 3·kv, 3·I)) · b

  the residual stream and its normalised copy, plus either the attention block (q, k and v, the rotated q and k, the
  attention output) or the gated MLP (gate activation, up projection, their product), never both at once. `eager`
  attention adds its H × n × n scores in the dtype and their float32 softmax, H·n²·(b + 4); SDPA with a causal mask
  and FlashAttention-2 never hold them.
- gradient jobs (`gradient_memory_estimate`), over the L_g layers from the lowest prune layer on. A layer's forward
  activations kept for its backward are n·(2·d + 3·q + 3·kv + 4·I)·b (the MLP keeps four n × I tensors), the gradients
  flowing back through it n·(d + 2·I)·b.
  - checkpointed (stage-1 saliency, the oracle; `sdtp.saliency.token_saliency`): the layers' inputs (L_g + 1)·n·d·b,
    plus one layer's backward (kept activations + gradients), plus one chunk of float32 logits LOGIT_CHUNK·V·4.
  - not checkpointed (stage-2 pruner training, the LM loss under simulated pruning): every layer's kept activations
    L_g·n·(2·d + 3·q + 3·kv + 4·I)·b, the gradients n·(d + 2·I)·b, the (1, 1, n, n) additive mask n²·b, and the
    logits at the labelled positions, bounded by n·V·(b + 4) (in the dtype and in float32).

Not counted: the CUDA context, cuBLAS workspaces and the caching allocator's fragmentation (`sdtp.doctor.memory_fit`
keeps a reserve of each device for them). These are estimates to plan with, not guarantees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdtp.model_dims import model_dims, text_config

GIB = 2**30

# Bytes per element of the dtypes a model may be loaded in (schema: model.dtype).
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# Families whose q, k and v projections carry a bias without saying so in the config (`attention_bias`).
_QKV_BIAS_FAMILIES = {"qwen2"}


def gib(num_bytes: float) -> str:
    """Bytes as GiB with one decimal ("15.2 GiB"), or MiB below 1 GiB ("3.4 MiB")."""
    if abs(num_bytes) < GIB:
        return f"{num_bytes / 2**20:.1f} MiB"
    return f"{num_bytes / GIB:.1f} GiB"


def parameter_count(model_config) -> int:
    """Parameters of the causal LM `model_config` (a transformers config) describes, counted on the meta device
    (nothing is allocated); tied embeddings are counted once."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    return sum(p.numel() for p in model.parameters())


def dense_parameter_count(model_config) -> int:
    """Parameters of a dense Qwen2 / Llama / Mistral-style decoder counted from its sizes alone (no torch): the
    embedding, the LM head unless tied, per layer q/k/v/o (biases: Qwen2's q/k/v, or `attention_bias`), the gated MLP
    (`mlp_bias`) and two RMSNorms, and the final norm. Equal to `parameter_count` for those families (tested)."""
    config = text_config(model_config)
    dims = model_dims(config)
    d, inter, q, kv = dims.hidden_size, dims.intermediate_size, dims.q_width, dims.kv_width
    qkv_bias = getattr(config, "model_type", "") in _QKV_BIAS_FAMILIES or bool(getattr(config, "attention_bias", False))
    o_bias = bool(getattr(config, "attention_bias", False))
    mlp_bias = bool(getattr(config, "mlp_bias", False))
    attention = d * q + 2 * d * kv + q * d + (q + 2 * kv if qkv_bias else 0) + (d if o_bias else 0)
    mlp = 3 * d * inter + (2 * inter + d if mlp_bias else 0)
    per_layer = attention + mlp + 2 * d
    embeddings = dims.vocab_size * d * (1 if dims.tied_embeddings else 2)
    return embeddings + dims.num_layers * per_layer + d


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak memory of one job (the formulas are in the module docstring).

    Fields:
        job: what runs ("prefill + decode", "oracle saliency", …).
        tokens: tokens in the sequence (prompt + new tokens).
        dtype: the model's dtype.
        params: parameters of the model.
        weights_bytes, kv_bytes, activation_bytes: the three parts; kv_bytes is 0 for jobs that keep no cache.
        remedy: what shrinks this job (config keys), for the advice when it does not fit.
    """

    job: str
    tokens: int
    dtype: str
    params: int
    weights_bytes: int
    kv_bytes: int
    activation_bytes: int
    remedy: str = ""

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.activation_bytes

    def describe(self) -> str:
        parts = [f"weights {gib(self.weights_bytes)}"]
        if self.kv_bytes:
            parts.append(f"KV cache {gib(self.kv_bytes)}")
        parts.append(f"activations {gib(self.activation_bytes)}")
        return f"{self.job} at {self.tokens:,} tokens in {self.dtype}: {gib(self.total_bytes)} = {' + '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "tokens": self.tokens,
            "dtype": self.dtype,
            "params": self.params,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "activation_bytes": self.activation_bytes,
            "total_bytes": self.total_bytes,
        }


def dtype_name(dtype) -> str:
    """ "bfloat16" for torch.bfloat16 or "bfloat16"; a name torch does not know as a model dtype is an error."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown model dtype {dtype!r}: expected one of {sorted(DTYPE_BYTES)}")
    return name


def memory_estimate(
    model_config,
    dtype,
    length: int,
    new_tokens: int,
    attn_implementation: str = "sdpa",
    params: int | None = None,
    job: str = "prefill + decode",
    remedy: str = "",
) -> MemoryEstimate:
    """Weights + KV cache + inference activations of a `length`-token prompt decoded for `new_tokens` more tokens.

    `dtype`: a torch dtype or its name. Activations: n · (2·d + max(3·q + 3·kv, 3·I)) · b at prefill (n = length),
    plus H·n²·(b + 4) for eager attention (see the module docstring). `params` skips the meta-device count when known.
    """
    name = dtype_name(dtype)
    b = DTYPE_BYTES[name]
    dims = model_dims(model_config)
    d, inter, q, kv = dims.hidden_size, dims.intermediate_size, dims.q_width, dims.kv_width
    params = parameter_count(model_config) if params is None else params
    n, tokens = int(length), int(length) + int(new_tokens)
    kv_bytes = dims.num_layers * 2 * kv * tokens * b
    activations = n * (2 * d + max(3 * q + 3 * kv, 3 * inter)) * b
    if attn_implementation == "eager":
        activations += dims.num_heads * n * n * (b + 4)
    return MemoryEstimate(job, tokens, name, params, params * b, kv_bytes, activations, remedy)


def gradient_memory_estimate(
    model_config,
    dtype,
    length: int,
    first_layer: int = 0,
    checkpointed: bool = True,
    params: int | None = None,
    job: str = "gradient saliency",
    remedy: str = "",
    logit_chunk: int | None = None,
) -> MemoryEstimate:
    """Weights + activations of a forward and backward pass over a `length`-token sequence, from decoder layer
    `first_layer` on (the frozen model builds no graph below it). `checkpointed`: as stage-1 saliency and the oracle
    run (layers' inputs kept, one layer recomputed at a time); otherwise as stage-2 pruner training (every layer's
    activations kept). `logit_chunk`: positions per chunk of the LM head (default `sdtp.saliency.LOGIT_CHUNK`, which
    imports torch). The formulas are in the module docstring."""
    name = dtype_name(dtype)
    b = DTYPE_BYTES[name]
    dims = model_dims(model_config)
    d, inter, q, kv, vocab = dims.hidden_size, dims.intermediate_size, dims.q_width, dims.kv_width, dims.vocab_size
    params = parameter_count(model_config) if params is None else params
    n = int(length)
    layers = max(1, dims.num_layers - int(first_layer))
    kept = n * (2 * d + 3 * q + 3 * kv + 4 * inter) * b
    gradients = n * (d + 2 * inter) * b
    if checkpointed:
        if logit_chunk is None:
            from sdtp.saliency import LOGIT_CHUNK as logit_chunk
        activations = (layers + 1) * n * d * b + kept + gradients + min(n, logit_chunk) * vocab * 4
    else:
        activations = layers * kept + gradients + n * n * b + n * vocab * (b + 4)
    return MemoryEstimate(job, n, name, params, params * b, 0, activations, remedy)
