"""The pruned prefill and decode against transformers' own forward.

The key check is the *masked reference* (`sdtp.reference`, shared with `python -m sdtp verify`): a full-length forward
of the unmodified model in which, at every layer, each query may attend only to the keys alive at that layer. If
positions, the ragged cache or the decode step were wrong, the last-token logits would differ.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_model

from sdtp.engine import decode_greedy, decode_step, prefill_with_pruning
from sdtp.pruner import PruningModule
from sdtp.reference import alive_masks, masked_reference_logits, reference_decode_logits
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer

ATOL = 1e-4


def make_scorer(name: str, model, tmp_path):
    if name == "sdtp":
        torch.manual_seed(1)
        module = PruningModule(list(range(model.config.num_hidden_layers)), model.config.hidden_size)
        return get_scorer("sdtp", checkpoint=module.save(tmp_path / "pruner"))
    return get_scorer(name, seed=3)


@pytest.mark.parametrize("family", ["qwen2", "llama", "mistral"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_baseline_equals_model_forward(family, attn):
    model = make_tiny_model(family, attn)
    ids = torch.randint(0, 101, (1, 73), generator=torch.Generator().manual_seed(0))
    expected = model(ids).logits[:, -1]
    schedule = KeepSchedule([1, 3], 0.5, min_local=8)
    for result in (
        prefill_with_pruning(model, ids, schedule, get_scorer("baseline")),
        prefill_with_pruning(model, ids, KeepSchedule([1, 3], 1.0), get_scorer("random")),
    ):
        assert result.tokens_per_layer == [73] * 5
        assert (result.logits - expected).abs().max().item() < ATOL


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("method", ["random", "streaming", "attention", "oracle", "sdtp"])
def test_pruned_prefill_equals_masked_reference(family, attn, method, tmp_path):
    model = make_tiny_model(family, attn)
    n = 120
    ids = torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(1))
    schedule = KeepSchedule([1, 2, 4], 0.6, min_local=8)
    result = prefill_with_pruning(model, ids, schedule, make_scorer(method, model, tmp_path))

    assert result.tokens_per_layer == schedule.tokens_per_layer(n, 5) == [120, 72, 43, 43, 26]
    assert result.kv_lengths == result.tokens_per_layer
    expected = masked_reference_logits(model, ids, alive_masks(result.kept_positions, n))
    assert (result.logits - expected).abs().max().item() < ATOL
    # The unpruned prediction differs: the check above is not vacuous.
    assert (model(ids).logits[:, -1] - expected).abs().max().item() > 1e-2


def test_renumbered_positions_would_be_caught():
    """Sanity of the reference: running pruned tokens with arange positions (the earlier reproduction's bug) differs."""
    model = make_tiny_model("qwen2", "eager")
    n = 90
    ids = torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(2))
    schedule = KeepSchedule([0], 0.5, min_local=8)
    result = prefill_with_pruning(model, ids, schedule, get_scorer("random"))
    kept = result.kept_positions[0]
    renumbered = model(ids[:, kept]).logits[:, -1]  # same tokens, positions 0..k-1
    assert (renumbered - result.logits).abs().max().item() > 1e-3
    expected = masked_reference_logits(model, ids, alive_masks(result.kept_positions, n))
    assert (result.logits - expected).abs().max().item() < ATOL


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("method", ["random", "attention"])
def test_decode_from_pruned_cache_equals_masked_reference(family, attn, method, tmp_path):
    model = make_tiny_model(family, attn)
    n, steps = 100, 8
    ids = torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(4))
    schedule = KeepSchedule([1, 3], 0.5, min_local=8)
    result = prefill_with_pruning(model, ids, schedule, make_scorer(method, model, tmp_path))
    alive = alive_masks(result.kept_positions, n)
    lengths_before = result.kv_lengths

    tokens, logits = decode_greedy(model, result, steps, ignore_eos=True, return_logits=True)
    assert tokens.shape == (1, steps)
    assert result.kv_lengths == [length + steps - 1 for length in lengths_before]

    expected = reference_decode_logits(model, ids, alive, tokens)
    for t in range(steps):
        assert (logits[t] - expected[t]).abs().max().item() < ATOL, f"step {t}"
        assert int(expected[t].argmax()) == int(tokens[0, t])


def test_decode_without_pruning_matches_generate():
    model = make_tiny_model("qwen2", "sdpa")
    ids = torch.randint(0, 101, (1, 40), generator=torch.Generator().manual_seed(5))
    result = prefill_with_pruning(model, ids, KeepSchedule([1], 0.5), get_scorer("baseline"))
    ours = decode_greedy(model, result, 10, ignore_eos=True)
    theirs = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, min_new_tokens=10, do_sample=False, pad_token_id=0
    )[:, 40:]
    assert torch.equal(ours, theirs)


def test_decode_stops_at_eos_unless_ignored():
    model = make_tiny_model("qwen2", "sdpa")
    ids = torch.randint(0, 101, (1, 30), generator=torch.Generator().manual_seed(6))
    schedule = KeepSchedule([2], 0.5)
    free = decode_greedy(model, prefill_with_pruning(model, ids, schedule, get_scorer("baseline")), 6, ignore_eos=True)
    model.generation_config.eos_token_id = int(free[0, 2])
    stopped = decode_greedy(model, prefill_with_pruning(model, ids, schedule, get_scorer("baseline")), 6)
    first_eos = (free[0] == free[0, 2]).nonzero()[0].item()
    assert torch.equal(stopped, free[:, : first_eos + 1])
    exact = decode_greedy(model, prefill_with_pruning(model, ids, schedule, get_scorer("baseline")), 6, ignore_eos=True)
    assert exact.shape == (1, 6)


def test_sinks_and_local_window_survive_every_stage():
    model = make_tiny_model("qwen2", "sdpa")
    n = 300
    ids = torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(7))
    schedule = KeepSchedule([1, 2, 3, 4], 0.7)
    for method in ("random", "attention", "oracle"):
        result = prefill_with_pruning(model, ids, schedule, get_scorer(method))
        alive = n
        for positions in result.kept_positions:
            assert positions[:4].tolist() == [0, 1, 2, 3]
            assert torch.all(positions[1:] > positions[:-1])
            assert int(positions[-1]) == n - 1
        for stage_positions in result.kept_positions[1:]:
            local = schedule.protected_count(alive) - 4
            assert stage_positions[-local:].tolist() == list(range(n - local, n))
            alive = len(stage_positions)


@pytest.mark.parametrize("n", [1, 5, 17, 300])
def test_cache_lengths_equal_schedule_counts(n):
    model = make_tiny_model("llama", "sdpa")
    ids = torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(n))
    schedule = KeepSchedule([1, 2, 4], 0.5)
    result = prefill_with_pruning(model, ids, schedule, get_scorer("random"))
    assert result.tokens_per_layer == schedule.tokens_per_layer(n, 5)
    assert result.kv_lengths == result.tokens_per_layer
    if n == 300:
        assert result.tokens_per_layer == [300, 150, 75, 75, 38]
    if n <= 17:  # short prompts are all sinks + local window: nothing is pruned
        assert result.tokens_per_layer == [n] * 5
    tokens = decode_greedy(model, result, 3, ignore_eos=True)
    assert tokens.shape == (1, 3)


def test_rejects_batches_and_bad_schedules():
    model = make_tiny_model("qwen2", "sdpa")
    with pytest.raises(ValueError, match="batch size 1"):
        prefill_with_pruning(model, torch.zeros(2, 8, dtype=torch.long), KeepSchedule([1], 0.5), get_scorer("random"))
    with pytest.raises(ValueError, match=r"prune layer\(s\) \[7\] outside the model: it has 5 decoder layers"):
        prefill_with_pruning(
            model, torch.zeros(1, 8, dtype=torch.long), KeepSchedule([1, 7], 0.5), get_scorer("random")
        )
    with pytest.raises(ValueError, match="unknown method 'magic'; valid methods: baseline, sdtp, random"):
        get_scorer("magic")
    with pytest.raises(ValueError, match="needs checkpoint"):
        get_scorer("sdtp")


def test_sliding_window_longer_than_prompt_is_refused():
    model = make_tiny_model("mistral", "sdpa", sliding_window=32)
    with pytest.raises(NotImplementedError, match="sliding_window: null"):
        prefill_with_pruning(model, torch.zeros(1, 40, dtype=torch.long), KeepSchedule([1], 0.5), get_scorer("random"))


def test_bf16_prefill_runs_and_tracks_fp32():
    model32 = make_tiny_model("qwen2", "sdpa")
    model16 = make_tiny_model("qwen2", "sdpa", dtype=torch.bfloat16)
    ids = torch.randint(0, 101, (1, 80), generator=torch.Generator().manual_seed(9))
    schedule = KeepSchedule([1, 3], 0.5, min_local=8)
    r32 = prefill_with_pruning(model32, ids, schedule, get_scorer("streaming"))
    r16 = prefill_with_pruning(model16, ids, schedule, get_scorer("streaming"))
    assert r16.cache.layers[4].keys.dtype == torch.bfloat16
    assert r16.tokens_per_layer == r32.tokens_per_layer
    assert torch.corrcoef(torch.stack([r32.logits[0], r16.logits[0]]))[0, 1] > 0.99
    assert decode_step(model16, r16.cache, torch.tensor([[5]]), 80).dtype == torch.float32


def test_a_cache_the_layers_leave_empty_stops_the_prefill(monkeypatch):
    """If the decoder layers stop writing the cache they are given, the prefill fails instead of decoding from an
    empty cache."""
    import sdtp.engine as engine_module

    real = engine_module.run_decoder_layer
    monkeypatch.setattr(
        engine_module,
        "run_decoder_layer",
        lambda layer, hidden, mask, pos, cache, emb: real(layer, hidden, mask, pos, None, emb),
    )
    model = make_tiny_model("qwen2", "sdpa")
    with pytest.raises(RuntimeError, match="no longer fill the cache"):
        prefill_with_pruning(model, torch.zeros(1, 8, dtype=torch.long), KeepSchedule([1], 0.5), get_scorer("random"))


@pytest.mark.parametrize("method", ["baseline", "sdtp", "random"])
def test_no_host_sync_inside_a_timed_prefill_and_decode(monkeypatch, method):
    """Inside the region latency jobs time, nothing reads a device value back to the host (`.item()`, `int()`,
    `bool()`, `.tolist()`, `.cpu()`, `.numpy()`) and no Python number is copied to the device (`torch.tensor`): on a
    GPU each would be a blocking sync the baseline may not pay. Recorded on CPU by wrapping those entry points."""
    model = make_tiny_model("qwen2", "sdpa")
    schedule = KeepSchedule([1, 3], 0.5, min_local=4)
    scorer = get_scorer(method, seed=0, checkpoint=PruningModule(schedule.layers, model.config.hidden_size))
    ids = torch.randint(0, 101, (1, 64), generator=torch.Generator().manual_seed(0))
    decode_greedy(model, prefill_with_pruning(model, ids, schedule, scorer), 4, ignore_eos=True)  # warm-up

    calls = []

    def recording(name, original):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        return wrapper

    for name in ("item", "tolist", "cpu", "numpy", "__int__", "__bool__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, recording(name, getattr(torch.Tensor, name)))
    real_tensor = torch.tensor

    def tensor_from_host_data(data, *args, **kwargs):
        if not (isinstance(data, (list, tuple)) and len(data) == 0):  # transformers' cache starts from an empty one
            calls.append("torch.tensor")
        return real_tensor(data, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", tensor_from_host_data)
    result = prefill_with_pruning(model, ids, schedule, scorer)
    tokens = decode_greedy(model, result, 8, ignore_eos=True)
    monkeypatch.undo()
    assert tokens.shape == (1, 8)
    assert calls == [], calls
