"""The sizes of a decoder-only model that its costs depend on, and the per-layer token counts those costs are given.

The one home of both for every cost model: `sdtp.flops` (FLOPs), `sdtp.roofline` (bytes moved), `sdtp.memory`
(memory estimates) and `sdtp.job_resources` (scheduler requests) read a model's sizes with `model_dims` and check
their token counts with `checked_counts`, so a size is read one way everywhere. Nothing here imports torch: the
Snakefile uses `sdtp.memory` at DAG time.

Sizes (the names the cost formulas use): d = hidden_size, I = intermediate_size, H = num_heads, Hkv = num_kv_heads,
h = head_dim, L = num_layers, V = vocab_size; q = H·h and kv = Hkv·h the widths of the query projection and of each
of the key and value projections (GQA-aware).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace


def text_config(model_config):
    """A transformers config, or a model's `config.json` read as a dict (attribute access either way); the text
    config of a multimodal one."""
    if isinstance(model_config, Mapping):
        model_config = SimpleNamespace(**model_config.get("text_config", model_config))
    if hasattr(model_config, "get_text_config"):
        model_config = model_config.get_text_config()
    return model_config


@dataclass(frozen=True)
class ModelDims:
    """The sizes of a decoder-only model (Qwen2 / Llama / Mistral family) that its FLOPs, bytes and memory depend on."""

    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    num_layers: int
    vocab_size: int
    tied_embeddings: bool  # the LM head is the embedding matrix (read once per forward pass, not twice)

    @property
    def q_width(self) -> int:
        """Width of the query projection (and input width of the output projection): H·h."""
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Width of each of the key and value projections: Hkv·h."""
        return self.num_kv_heads * self.head_dim

    def per_layer(self, name: str, values: Iterable[int]) -> list[int]:
        """`values` checked as one non-negative count per decoder layer ([num_layers] ints), or a ValueError."""
        return checked_counts(name, values, self.num_layers)


def model_dims(model_config) -> ModelDims:
    """Read the sizes from a transformers config or a `config.json` dict (the text config of a multimodal one).
    Missing `num_key_value_heads` means multi-head attention (Hkv = H); missing `head_dim` means d / H."""
    config = text_config(model_config)
    num_heads = config.num_attention_heads
    return ModelDims(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_heads=num_heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or num_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // num_heads,
        num_layers=config.num_hidden_layers,
        vocab_size=config.vocab_size,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
    )


def checked_counts(name: str, values: Iterable[int], expected_len: int | None = None) -> list[int]:
    """`values` (tokens per layer, per stage, cache lengths…) as a list of non-negative Python ints, of
    `expected_len` entries when given; otherwise a ValueError naming `name` and the bad entry."""
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
