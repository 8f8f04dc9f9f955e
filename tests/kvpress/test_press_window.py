"""A press on a layer too short for it (`sdtp.kv_compression.press_fits`, `only_what_fits`), without kvpress: a fake
press shaped as kvpress's SnapKVPress is (a `window_size`, a `compress` that asserts the layer is longer than it, a
forward hook on every attention module), through the engine and LongBench predictions; a press that fails is a row
with status "error", not a crashed job."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
from tiny_models import fixture_record, make_fixture_model, make_fixture_tokenizer, make_tiny_model, random_ids

from sdtp import kv_compression
from sdtp.engine import prefill_with_pruning
from sdtp.failures import CannotMeasure, recorded_failure
from sdtp.kv_compression import KVCompression, only_what_fits, press_fits, reserved_tokens
from sdtp.longbench.predict import predict_task
from sdtp.longbench.tasks import get_task
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer


@dataclass
class WindowPress:
    """kvpress's SnapKVPress as the engine sees it: its hook hands each layer's cache to `compress`, which asserts the
    layer holds more tokens than the window (kvpress's own message) and keeps ⌊n · (1 − ratio)⌋ (the last ones)."""

    compression_ratio: float = 0.0
    window_size: int = 64

    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        q_len = hidden_states.shape[1]
        assert q_len > self.window_size, (
            f"Query length {q_len} should be greater than the window size {self.window_size}"
        )
        kept = int(keys.shape[2] * (1 - self.compression_ratio))
        return keys[:, :, -kept:], values[:, :, -kept:]

    def forward_hook(self, module, args, kwargs, output):
        layer = kwargs["past_key_values"].layers[module.layer_idx]
        layer.keys, layer.values = self.compress(module, kwargs["hidden_states"], layer.keys, layer.values, None, {})
        return output

    @contextmanager
    def __call__(self, model):
        attention = [layer.self_attn for layer in model.model.layers]
        hooks = [module.register_forward_hook(self.forward_hook, with_kwargs=True) for module in attention]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()


class BrokenPress(WindowPress):
    def compress(self, module, hidden_states, keys, values, attentions, kwargs):
        raise ValueError("index 7 is out of bounds for dimension 2")


def layer(index: int):
    return SimpleNamespace(layer_idx=index)


def cache_of(tokens: int):
    """(hidden_states, keys, values) of one layer holding `tokens` tokens in a prefill."""
    return torch.zeros(1, tokens, 8), torch.randn(1, 2, tokens, 4), torch.randn(1, 2, tokens, 4)


@pytest.mark.parametrize(
    ("press", "tokens", "fits"),
    [
        (WindowPress(0.3, window_size=64), 64, False),  # SnapKV asserts q_len > window_size
        (WindowPress(0.3, window_size=64), 65, True),
        (SimpleNamespace(compression_ratio=0.5, n_sink=4), 4, False),  # StreamingLLM asserts k_len > n_sink
        (SimpleNamespace(compression_ratio=0.5, n_sink=4), 5, True),
        (SimpleNamespace(compression_ratio=0.9), 5, False),  # ⌊5 · 0.1⌋ = 0: the layer would be emptied
        (SimpleNamespace(compression_ratio=0.9), 20, True),  # (10 · (1 − 0.9) is 0.99…: kvpress keeps 0)
    ],
)
def test_press_fits_a_layer_longer_than_its_reserved_tokens_that_keeps_one(press, tokens, fits):
    assert press_fits(press, tokens) is fits


def test_reserved_tokens_are_the_window_or_the_sinks():
    assert reserved_tokens(WindowPress(0.5, window_size=64)) == 64
    assert reserved_tokens(SimpleNamespace(compression_ratio=0.5, n_sink=4, window_size=16)) == 16
    assert reserved_tokens(SimpleNamespace(compression_ratio=0.5)) == 0


def test_a_layer_too_short_for_the_window_is_left_uncompressed_and_named():
    """The issue's case: 37 tokens under a 64-token window. kvpress asserts; guarded, the layer stays as it was."""
    press, uncompressed = WindowPress(0.3, window_size=64), []
    hidden, keys, values = cache_of(37)
    with pytest.raises(AssertionError, match="Query length 37 should be greater than the window size 64"):
        press.compress(layer(25), hidden, keys, values, None, {})
    only_what_fits(press, uncompressed)
    kept_keys, kept_values = press.compress(layer(25), hidden, keys, values, None, {})
    assert kept_keys is keys and kept_values is values and uncompressed == [25]
    hidden, keys, values = cache_of(100)
    kept_keys, _ = press.compress(layer(3), hidden, keys, values, None, {})
    assert kept_keys.shape[2] == 70 and uncompressed == [25]  # a layer that fits is compressed, and not named


def test_a_press_that_fails_cannot_measure_and_out_of_memory_stays_itself():
    press = BrokenPress(0.5, window_size=4)
    only_what_fits(press, [])
    with pytest.raises(CannotMeasure, match=r"BrokenPress failed on layer 2 \(20 tokens\): index 7 is out of bounds"):
        press.compress(layer(2), *cache_of(20), None, {})
    oom = WindowPress(0.5, window_size=4)
    oom.compress = lambda *args: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory"))
    only_what_fits(oom, [])
    with pytest.raises(torch.OutOfMemoryError):
        oom.compress(layer(0), *cache_of(20), None, {})
    assert recorded_failure(CannotMeasure("x")) == ("error", "x")
    assert recorded_failure(torch.OutOfMemoryError("CUDA out of memory")) == ("oom", "CUDA out of memory")
    assert recorded_failure(RuntimeError("shapes cannot be multiplied")) is None  # a bug stops the job


@pytest.fixture
def fake_presses(monkeypatch):
    """`build_press` without kvpress: "snapkv" is a `WindowPress`, "broken" a `BrokenPress`."""
    classes = {"snapkv": WindowPress, "broken": BrokenPress}
    monkeypatch.setattr(
        kv_compression, "build_press", lambda press, params, ratio: classes[press](compression_ratio=ratio, **params)
    )


def test_combined_method_on_layers_shorter_than_the_window_leaves_them_uncompressed(fake_presses):
    """`streaming+snapkv` at r = 0.5: layers hold 40, 20, 20, 10, 10 tokens; with a 16-token window the press halves
    the first three and leaves the last two as pruning left them (kvpress would assert there)."""
    model = make_tiny_model("qwen2", "sdpa")
    schedule = KeepSchedule([1, 3], 0.5, min_local=4)
    press = KVCompression("snapkv", {"window_size": 16}, 0.5, "combined", schedule)
    result = prefill_with_pruning(model, random_ids(40, 0), schedule, get_scorer("streaming"), kv_compression=press)
    assert result.tokens_per_layer == [40, 20, 20, 10, 10]
    assert result.kv_lengths == [20, 10, 10, 10, 10]
    assert result.press_uncompressed_layers == press.last_uncompressed_layers == [3, 4]
    again = prefill_with_pruning(model, random_ids(80, 1), schedule, get_scorer("streaming"), kv_compression=press)
    assert again.press_uncompressed_layers == []  # 80, 40, 40, 20, 20 tokens: every layer fits, the record is fresh


def test_predictions_name_the_uncompressed_layers_and_a_failing_press_is_an_error_row(fake_presses):
    tokenizer = make_fixture_tokenizer()
    model = make_fixture_model(tokenizer)
    task, records = get_task("hotpotqa"), [fixture_record("hotpotqa", i) for i in range(2)]
    schedule = KeepSchedule([1, 2], 0.5, min_local=2)
    press = KVCompression("snapkv", {"window_size": 32}, 0.5, "combined", schedule)
    rows = predict_task(model, tokenizer, task, records, schedule, get_scorer("streaming"), 96, kv_compression=press)
    assert [row.status for row in rows] == ["ok", "ok"]
    for row in rows:
        short = [i for i, n in enumerate(row.tokens_per_layer) if n <= 32]
        assert short and row.press_uncompressed_layers == short
        assert [row.kv_lengths[i] for i in short] == [row.tokens_per_layer[i] for i in short]

    broken = KVCompression("broken", {}, 0.5, "combined", schedule)
    rows = predict_task(model, tokenizer, task, records, schedule, get_scorer("streaming"), 96, kv_compression=broken)
    assert [row.status for row in rows] == ["error", "error"]  # every record has its row: the job goes on
    assert rows[0].pred == "" and rows[0].prefill_s is None and rows[0].tokens_per_layer == []
    assert rows[0].reason.startswith("BrokenPress failed on layer 0") and "out of bounds" in rows[0].reason
