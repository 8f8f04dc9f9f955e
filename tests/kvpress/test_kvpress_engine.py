"""Presses through our engine (`prefill_with_pruning(..., kv_compression=...)`) against kvpress on model.forward."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_model, random_ids
from transformers import DynamicCache

from sdtp.engine import decode_greedy, decode_step, prefill_with_pruning
from sdtp.kv_compression import KVCompression, build_press, kv_compression_for, kvpress_installed
from sdtp.kvpress_compat import applied
from sdtp.pruner import PruningModule
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer

pytestmark = pytest.mark.skipif(
    not kvpress_installed(), reason="the kvpress extra is not installed: pip install -e '.[kvpress]'"
)

ATOL = 1e-5
N = 120
PARAMS = {"snapkv": {"window_size": 8}, "pyramidkv": {"window_size": 8}, "lagkv": {"lag_size": 16}}
UNIFORM = ["snapkv", "streaming_llm", "knorm", "tova", "expected_attention", "keydiff"]  # same length in every layer


def press_alone(press: str, compression_ratio: float, schedule: KeepSchedule) -> KVCompression:
    """A press alone, at exactly `compression_ratio` (budget keep_ratio, keep = 1 − ratio)."""
    return KVCompression(press, PARAMS.get(press, {}), 1.0 - compression_ratio, "keep_ratio", schedule)


def kvpress_forward(model, ids, press: str, compression_ratio: float):
    """kvpress's own way: `with press(model): model(ids, cache=cache)` (hook kwargs completed for transformers 5)."""
    cache = DynamicCache(config=model.config)
    with applied(build_press(press, PARAMS.get(press, {}), compression_ratio), model):
        logits = model(ids, cache=cache).logits[:, -1].float()
    return logits, cache


def greedy_forward(model, logits, cache, start: int, steps: int):
    """Greedy decode with model.forward from `cache`, positions start, start + 1, …: (steps, vocab) logits."""
    out = [logits[0]]
    for step in range(steps - 1):
        token = out[-1].argmax().reshape(1, 1)
        position = torch.tensor([[start + step]])
        out.append(model(token, cache=cache, position_ids=position).logits[0, -1].float())
    return torch.stack(out)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("press", ["snapkv", "streaming_llm", "pyramidkv", "expected_attention"])
def test_press_at_keep_one_is_the_plain_model(attn, press):
    model = make_tiny_model("qwen2", attn)
    ids = random_ids(N, 0)
    schedule = KeepSchedule([1, 3], 1.0)
    result = prefill_with_pruning(
        model, ids, schedule, get_scorer("baseline"), kv_compression=press_alone(press, 0.0, schedule)
    )
    assert result.kv_lengths == [N] * 5
    assert result.press_compression_ratio == 0.0
    _, logits = decode_greedy(model, result, 6, ignore_eos=True, return_logits=True)
    cache = DynamicCache(config=model.config)
    expected = greedy_forward(model, model(ids, cache=cache).logits[:, -1].float(), cache, N, 6)
    assert (logits - expected).abs().max().item() < ATOL


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("press", [*UNIFORM, "pyramidkv", "lagkv"])
def test_press_through_the_engine_matches_kvpress_on_model_forward(attn, press):
    model = make_tiny_model("qwen2", attn)
    ids = random_ids(N, 1)
    schedule = KeepSchedule([1, 3], 0.6)
    ours = prefill_with_pruning(
        model, ids, schedule, get_scorer("baseline"), kv_compression=press_alone(press, 0.4, schedule)
    )
    logits, cache = kvpress_forward(model, ids, press, 0.4)
    assert ours.tokens_per_layer == [N] * 5  # no token pruning: a press alone sees the full prefill
    assert ours.kv_lengths == [cache.get_seq_length(layer) for layer in range(5)]
    assert min(ours.kv_lengths) < N
    for layer in range(5):
        assert torch.allclose(ours.cache.layers[layer].keys, cache.layers[layer].keys, atol=ATOL)
        assert torch.allclose(ours.cache.layers[layer].values, cache.layers[layer].values, atol=ATOL)
    assert (ours.logits - logits).abs().max().item() < ATOL
    if press in UNIFORM:  # model.forward sizes its decode mask by layer 0's cache: only on a non-ragged cache
        _, decoded = decode_greedy(model, ours, 5, ignore_eos=True, return_logits=True)
        assert (decoded - greedy_forward(model, logits, cache, N, 5)).abs().max().item() < ATOL


def sdtp_scorer(model, tmp_path):
    torch.manual_seed(1)
    module = PruningModule([1, 3], model.config.hidden_size)
    return get_scorer("sdtp", checkpoint=module.save(tmp_path / "pruner"))


@pytest.mark.parametrize("press", ["snapkv", "knorm", "streaming_llm"])
def test_combined_kv_lengths_are_sdtps_counts_times_the_press_keep(press, tmp_path):
    model = make_tiny_model("qwen2", "sdpa")
    ids = random_ids(N, 2)
    schedule = KeepSchedule([1, 3], 0.7, min_local=8)
    pruned = prefill_with_pruning(model, ids, schedule, sdtp_scorer(model, tmp_path))
    combined_press = kv_compression_for(f"sdtp+{press}", 0.7, schedule, {press: PARAMS.get(press, {})})
    combined = prefill_with_pruning(model, ids, schedule, sdtp_scorer(model, tmp_path), kv_compression=combined_press)
    assert combined.tokens_per_layer == pruned.tokens_per_layer == schedule.tokens_per_layer(N, 5)
    assert combined.press_compression_ratio == pytest.approx(0.3)
    # kvpress's ScorerPress keeps int(k_len * (1 - compression_ratio)) per layer.
    assert combined.kv_lengths == [int(n * (1 - combined.press_compression_ratio)) for n in pruned.tokens_per_layer]
    assert (combined.logits - pruned.logits).abs().max().item() < ATOL  # the press changes the cache, not the layers
    # The press kept a subset of what SDTP cached at each layer (same keys, rotated with the original positions).
    for layer in range(5):
        kept, alive = combined.cache.layers[layer].keys[0, 0], pruned.cache.layers[layer].keys[0, 0]
        assert (
            torch.cdist(kept, alive, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values.max().item() < ATOL
        )


def test_decoding_after_a_press_continues_at_the_original_length(tmp_path):
    model = make_tiny_model("qwen2", "sdpa")
    schedule = KeepSchedule([1, 3], 0.7, min_local=8)
    press = kv_compression_for("sdtp+snapkv", 0.7, schedule, PARAMS)
    result = prefill_with_pruning(model, random_ids(N, 3), schedule, sdtp_scorer(model, tmp_path), kv_compression=press)
    seen = []
    hook = model.model.layers[4].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["position_ids"].tolist()), with_kwargs=True
    )
    lengths = result.kv_lengths
    try:
        decode_greedy(model, result, 4, ignore_eos=True)
    finally:
        hook.remove()
    assert seen == [[[N]], [[N + 1]], [[N + 2]]]
    assert result.kv_lengths == [n + 3 for n in lengths]
    assert all(not layer.self_attn._forward_hooks for layer in model.model.layers)  # no press during decode
    decode_step(model, result.cache, torch.tensor([[5]]), N + 3)
    assert result.kv_lengths == [n + 4 for n in lengths]


@pytest.mark.parametrize("press", ["snapkv", "pyramidkv"])
def test_a_combined_press_leaves_layers_within_its_default_window_uncompressed(press):
    """The issue's crash: after pruning, layers hold no more tokens than the press's 64-token window (kvpress asserts
    "Query length 60 should be greater than the window size 64"). Those layers stay as pruning left them and the
    result names them; the layer that fits is compressed; the layers' outputs are the pruned prefill's."""
    model = make_tiny_model("qwen2", "sdpa")
    ids = random_ids(N, 4)
    schedule = KeepSchedule([1, 3], 0.5, min_local=8)
    pruned = prefill_with_pruning(model, ids, schedule, get_scorer("streaming"))
    combined = kv_compression_for(f"streaming+{press}", 0.5, schedule, None)  # kvpress's default window: 64
    result = prefill_with_pruning(model, ids, schedule, get_scorer("streaming"), kv_compression=combined)
    assert result.tokens_per_layer == pruned.tokens_per_layer == [120, 60, 60, 30, 30]
    assert result.press_uncompressed_layers == [1, 2, 3, 4]
    assert result.kv_lengths[1:] == [60, 60, 30, 30] and result.kv_lengths[0] < 120
    assert (result.logits - pruned.logits).abs().max().item() < ATOL
