"""`sdtp.model_dims`: one reading of a model's sizes for every cost model, from a config object or its config.json."""

from __future__ import annotations

import pytest
from tiny_models import qwen2_7b_config

from sdtp.model_dims import ModelDims, checked_counts, model_dims


def test_a_config_and_its_config_json_give_the_same_dims():
    config = qwen2_7b_config()
    dims = model_dims(config)
    assert dims == model_dims(config.to_dict()) == model_dims({"text_config": config.to_dict()})
    assert dims == ModelDims(
        hidden_size=3584, intermediate_size=18944, num_heads=28, num_kv_heads=4, head_dim=128, num_layers=28,
        vocab_size=152064, tied_embeddings=False,
    )  # fmt: skip
    assert (dims.q_width, dims.kv_width) == (3584, 512)


def test_missing_kv_heads_and_head_dim_mean_multi_head_attention():
    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=10)
    dims = model_dims(shape)
    assert (dims.num_kv_heads, dims.head_dim, dims.kv_width) == (4, 16, 64) and not dims.tied_embeddings


def test_counts_are_checked_per_layer():
    dims = model_dims(qwen2_7b_config(num_hidden_layers=2))
    assert dims.per_layer("tokens_per_layer", (5, 3)) == [5, 3]
    with pytest.raises(ValueError, match="3 entries but the model has num_hidden_layers=2"):
        dims.per_layer("tokens_per_layer", [1, 2, 3])
    with pytest.raises(ValueError, match=r"tokens_per_stage\[1\] = -1 is negative"):
        checked_counts("tokens_per_stage", [4, -1])
