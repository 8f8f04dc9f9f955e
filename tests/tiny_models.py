"""Tiny causal LMs built from configs inside the tests (no hub), deterministic."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

TINY = dict(
    vocab_size=101,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=5,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)

FAMILIES = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": None}),
}


def make_tiny_model(family: str = "qwen2", attn: str = "eager", dtype=torch.float32, seed: int = 0, **overrides):
    """A tiny random causal LM of `family` with weights scaled up so that attention is far from uniform."""
    config_cls, model_cls, extra = FAMILIES[family]
    config = config_cls(**{**TINY, **extra, **overrides})
    config._attn_implementation = attn
    torch.manual_seed(seed)
    model = model_cls(config)
    with torch.no_grad():
        # Default init (std 0.02) gives near-uniform attention; larger weights make pruning choices matter.
        for name, param in model.named_parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.15)
    return model.to(dtype).eval().requires_grad_(False)




# The `model:` settings section a command receives for a tiny model saved into a local directory (`--model-dir`).
TINY_MODEL_SETTINGS = {"name": "tiny", "source": "demo", "dtype": "float32", "attn_implementation": "sdpa", "device": "cpu"}


def save_tiny_model(directory, family: str = "qwen2", **overrides):
    """Save a tiny SDPA model with `save_pretrained` into `directory` (for commands run with `--model-dir`)."""
    model = make_tiny_model(family, "sdpa", **overrides)
    model.save_pretrained(directory)
    return model
