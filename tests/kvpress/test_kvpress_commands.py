"""Press methods through the commands: `python -m sdtp latency` rows and LongBench scores of press predictions."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from tiny_models import TINY_MODEL_SETTINGS, save_tiny_model

from sdtp.commands.cli import main as cli_main
from sdtp.kv_compression import kvpress_installed
from sdtp.longbench.score import score_predictions

SETTINGS = {
    "seed": 0,
    "model": TINY_MODEL_SETTINGS,
    "schedule": {"start": 1, "step": 2, "stages": 2, "min_local": 4},
    "latency": {"warmup": 0, "repeats": 2, "new_tokens": 3},
    "kvpress": {"budget": "sdtp_mean_kv", "snapkv": {"window_size": 4}},
}
NEEDS_KVPRESS = pytest.mark.skipif(
    not kvpress_installed(), reason="the kvpress extra is not installed: pip install -e '.[kvpress]'"
)


def latency_rows(tmp_path, method: str, settings=SETTINGS) -> pd.DataFrame:
    out = tmp_path / method / "L48.parquet"
    argv = ["latency", "--settings", json.dumps(settings), "--model-dir", str(tmp_path / "model"), "--method", method]
    assert cli_main([*argv, "--ratio", "0.5", "--length", "48", "--out", str(out)]) == 0
    return pd.read_parquet(out)


@NEEDS_KVPRESS
def test_latency_rows_of_a_press_alone_and_combined(tmp_path):
    save_tiny_model(tmp_path / "model")
    sdtp_like = latency_rows(tmp_path, "streaming")  # the schedule's token counts: [48, 24, 24, 12, 12]
    alone = latency_rows(tmp_path, "kvpress-snapkv")
    combined = latency_rows(tmp_path, "streaming+snapkv")
    assert list(sdtp_like.kv_lengths[0]) == [48, 24, 24, 12, 12]
    # kvpress:snapkv at SDTP's mean KV (24 of 48 tokens per layer): compression_ratio 0.5, full prefill FLOPs
    assert set(alone.method) == {"kvpress:snapkv"} and set(alone.keep_ratio) == {0.5}
    assert set(alone.kv_budget) == {"sdtp_mean_kv"} and set(alone.press_compression_ratio) == {1 - 24 / 48}
    assert list(alone.kv_lengths[0]) == [24] * 5
    assert alone.compression_ratio[0] == pytest.approx(2.0) == sdtp_like.compression_ratio[0]
    assert alone.prefill_flops[0] == alone.baseline_prefill_flops[0] and alone.ideal_speedup[0] == 1.0
    assert alone.decode_bytes[0] < alone.baseline_decode_bytes[0]
    assert alone.kv_bytes[0] == sdtp_like.kv_bytes[0]
    # streaming+snapkv: the pruning's counts × 0.5 per layer, the pruned prefill's FLOPs
    assert set(combined.method) == {"streaming+snapkv"} and set(combined.kv_budget) == {"combined"}
    assert list(combined.kv_lengths[0]) == [24, 12, 12, 6, 6]
    assert combined.prefill_flops[0] == sdtp_like.prefill_flops[0]
    assert combined.compression_ratio[0] == pytest.approx(48 / 12)
    assert combined.decode_bytes[0] < sdtp_like.decode_bytes[0]
    keep_ratio = latency_rows(tmp_path, "kvpress-knorm", {**SETTINGS, "kvpress": {"budget": "keep_ratio"}})
    assert set(keep_ratio.kv_budget) == {"keep_ratio"} and list(keep_ratio.kv_lengths[0]) == [24] * 5


@NEEDS_KVPRESS
def test_a_combined_press_measures_a_prompt_whose_layers_are_within_its_window(tmp_path):
    """kvpress's default 64-token window on a 48-token prompt pruned to [48, 24, 24, 12, 12]: no layer fits it, so the
    cache is what the pruning left (kvpress alone would assert) and the job writes its rows."""
    save_tiny_model(tmp_path / "model")
    default_window = {**SETTINGS, "kvpress": {"budget": "sdtp_mean_kv"}}
    combined = latency_rows(tmp_path, "streaming+snapkv", default_window)
    assert set(combined.status) == {"ok"} and list(combined.kv_lengths[0]) == [48, 24, 24, 12, 12]
    assert combined.compression_ratio[0] == pytest.approx(48 / 24)


def prediction(kv_lengths, tokens_per_layer, prompt_tokens=100, **extra) -> dict:
    return dict(
        _id="a", pred="x", answers=["x"], all_classes=None, length=100, prompt_tokens=prompt_tokens,
        tokens_per_layer=tokens_per_layer, kv_lengths=kv_lengths, prefill_s=0.1, new_tokens=1,
        compression_ratio=prompt_tokens / (sum(kv_lengths or tokens_per_layer) / len(tokens_per_layer)), **extra,
    )  # fmt: skip


def test_score_rows_carry_the_kv_budget_of_press_predictions():
    rows = [
        prediction([50, 50], [100, 100], kv_budget="sdtp_mean_kv", press_compression_ratio=0.5),
        prediction([20, 20], [100, 100], kv_budget="sdtp_mean_kv", press_compression_ratio=0.8),
    ]
    row = score_predictions(rows, model="m", method="kvpress:snapkv", keep_ratio=0.5, task="synthetic_passkey")
    assert row.mean_kv_fraction == pytest.approx(0.35)  # mean over records of mean KV per layer ÷ prompt tokens
    assert (row.kv_budget, row.press_compression_ratio) == ("sdtp_mean_kv", pytest.approx(0.65))
    assert row.press_uncompressed_records == 0
    short = prediction([50, 40], [100, 40], kv_budget="combined", press_uncompressed_layers=[1])
    pressed = score_predictions([short], model="m", method="sdtp+snapkv", keep_ratio=0.5, task="synthetic_passkey")
    assert pressed.press_uncompressed_records == 1  # a record with a layer too short for the press
    old = score_predictions(
        [prediction([], [100, 50])], model="m", method="sdtp", keep_ratio=0.5, task="synthetic_passkey"
    )  # written before presses existed: no kv_lengths, the tokens per layer are the cache
    assert old.mean_kv_fraction == pytest.approx(0.75) and (old.kv_budget, old.press_compression_ratio) == ("", 0.0)
