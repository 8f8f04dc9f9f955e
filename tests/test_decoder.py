"""`sdtp.decoder`: one decoder layer called as transformers' own model forward calls it."""

from __future__ import annotations

import warnings

import pytest
import torch
from tiny_models import make_tiny_model, random_ids
from transformers import DynamicCache

from sdtp.decoder import cache_keyword, causal_mask, check_window, device_of, run_decoder_layer


@pytest.mark.parametrize("family", ["qwen2", "llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_layer_fills_the_cache_it_is_given(family, attn):
    """Fails loudly if a transformers release stops consuming the cache keyword in decoder layers: the engine's
    ragged cache would silently stay empty and decoding would ignore the prompt. The call passes it by the keyword the
    installed release names, so no deprecation warning is raised (5.40 removes `past_key_values`)."""
    model = make_tiny_model(family, attn)
    decoder = model.model
    ids = random_ids(12, 0)
    hidden = decoder.embed_tokens(ids)
    positions = torch.tensor([0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 14, 15])  # gaps: kept tokens keep original positions
    embeddings = decoder.rotary_emb(hidden, positions[None])
    cache = DynamicCache(config=model.config)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*past_key_values.*deprecated", category=FutureWarning)
        out = run_decoder_layer(decoder.layers[0], hidden, causal_mask(model, hidden), positions, cache, embeddings)
    assert out.shape == hidden.shape
    assert cache.get_seq_length(0) == 12
    assert cache.layers[0].keys.shape[-2] == 12


def test_without_a_cache_nothing_is_cached_and_output_matches():
    model = make_tiny_model("qwen2", "eager")
    decoder = model.model
    hidden = decoder.embed_tokens(random_ids(8, 1))
    positions = torch.arange(8)
    embeddings = decoder.rotary_emb(hidden, positions[None])
    mask = causal_mask(model, hidden)
    cache = DynamicCache(config=model.config)
    with_cache = run_decoder_layer(decoder.layers[1], hidden, mask, positions, cache, embeddings)
    without = run_decoder_layer(decoder.layers[1], hidden, mask, positions, None, embeddings)
    torch.testing.assert_close(with_cache, without)
    assert device_of(decoder.layers[1]) == torch.device("cpu")


def test_window_guard_names_the_override():
    model = make_tiny_model("mistral", "eager", sliding_window=16)
    check_window(model, 16)
    with pytest.raises(NotImplementedError, match="set `sliding_window: null` in the model's config_overrides"):
        check_window(model, 17)


def test_the_cache_keyword_is_read_from_each_releases_signature():
    def before_5_2x(hidden_states, attention_mask=None, past_key_values=None, **kwargs): ...

    def since(hidden_states, attention_mask=None, cache=None, **kwargs): ...

    assert cache_keyword(before_5_2x) == "past_key_values" and cache_keyword(since) == "cache"
