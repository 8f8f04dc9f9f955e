"""`sdtp.roofline`: bytes moved by prefill and decode against hand-computed figures, weights against transformers'
own modules, and the roofline's ideals (prefill = FLOPs ratio when compute-bound; decode gains only the KV share)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_model, qwen2_7b_config
from torch import nn
from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM

from sdtp import roofline
from sdtp.engine import decode_step, prefill_with_pruning
from sdtp.flops import decode_step_flops, ideal_speedup, prefill_flops
from sdtp.roofline import Cost, DevicePeak
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer

# d=8, I=16, 2 layers, 2 heads of 4, 1 KV head (kv width 4), vocab 10.
SMALL = Qwen2Config(
    hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
    vocab_size=10, tie_word_embeddings=True,
)  # fmt: skip
# Per layer: q 8·8 + k, v 2·8·4 + o 8·8 + MLP 3·8·16 = 576 elements; 2 layers + LM head 10·8 = 1,232 elements.
SMALL_WEIGHT_BYTES = 1232 * 4


def test_weight_bytes_by_hand_and_against_the_models_own_matrices():
    assert roofline.weight_bytes(SMALL, torch.float32) == SMALL_WEIGHT_BYTES
    assert roofline.weight_bytes(SMALL, torch.bfloat16) == SMALL_WEIGHT_BYTES // 2
    for tied in (True, False):
        config = Qwen2Config(**{**SMALL.to_dict(), "tie_word_embeddings": tied})
        model = Qwen2ForCausalLM(config)
        matrices = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))  # lm_head included
        assert roofline.weight_bytes(config, torch.float32) == matrices * 4


def test_prefill_bytes_by_hand():
    # KV written: (5 + 3) tokens · 2 · 4 wide · 4 bytes = 256; hidden state in and out: 2 · 8 tokens · 8 · 4 = 512.
    cost = roofline.prefill_cost(SMALL, [5, 3], torch.float32)
    assert cost.bytes == SMALL_WEIGHT_BYTES + 256 + 512
    assert cost.flops == prefill_flops(SMALL, [5, 3])
    assert roofline.prefill_cost(SMALL, [5, 3], torch.float32, extra_flops=7.0).flops == cost.flops + 7.0
    # Untied embeddings: the lookup reads one row (8 · 4 bytes) per prompt token.
    untied = Qwen2Config(**{**SMALL.to_dict(), "tie_word_embeddings": False})
    assert roofline.prefill_cost(untied, [5, 3], torch.float32).bytes == cost.bytes + 5 * 32


def test_decode_step_and_phase_bytes_by_hand():
    # Attention reads (5 + 1) + (3 + 1) tokens · 32 bytes = 320; hidden state 2 layers · 2 · 8 · 4 = 128. The cache
    # update: DynamicCache's torch.cat reads 5 + 3 and writes 6 + 4 tokens, 18 · 32 = 576; in place it writes 2 · 32.
    step = roofline.decode_step_cost(SMALL, [5, 3], torch.float32)
    assert step.bytes == SMALL_WEIGHT_BYTES + 320 + 576 + 128
    assert (
        roofline.decode_step_cost(SMALL, [5, 3], torch.float32, "in_place").bytes == SMALL_WEIGHT_BYTES + 320 + 64 + 128
    )
    assert step.flops == decode_step_flops(SMALL, [5, 3])
    # 3 new tokens: the first from the prefill's logits, then steps at cache lengths [5, 3] and [6, 4].
    phase = roofline.decode_cost(SMALL, [5, 3], 3, torch.float32)
    assert phase.bytes == step.bytes + (SMALL_WEIGHT_BYTES + 384 + (13 + 9) * 32 + 128)
    assert phase.flops == step.flops + decode_step_flops(SMALL, [6, 4])
    with pytest.raises(ValueError, match="kv_update = 'paged' must be one of copy, in_place"):
        roofline.decode_cost(SMALL, [5, 3], 3, torch.float32, "paged")
    assert roofline.decode_cost(SMALL, [5, 3], 1, torch.float32) == Cost(0.0, 0.0)
    with pytest.raises(ValueError, match="new_tokens = 0"):
        roofline.decode_cost(SMALL, [5, 3], 0, torch.float32)
    with pytest.raises(ValueError, match="kv_lengths_per_layer has 1 entries"):
        roofline.decode_step_cost(SMALL, [5], torch.float32)


def test_the_baseline_is_the_full_prompt_even_when_layer_0_is_pruned():
    costs = roofline.run_costs(SMALL, 6, [3, 2], 3, torch.float32)
    assert costs.prefill == roofline.prefill_cost(SMALL, [3, 2], torch.float32)
    # Baseline decode by hand: steps at cache lengths [6, 6] then [7, 7]; attention reads (7 + 7) · 32 and (8 + 8) · 32
    # bytes, the cache copy (6 + 6 read, 7 + 7 written) · 32 and (7 + 7, 8 + 8) · 32, the hidden state 128 per step.
    assert costs.baseline_decode.bytes == 2 * SMALL_WEIGHT_BYTES + 448 + 512 + 832 + 960 + 2 * 128
    assert costs.baseline_prefill == roofline.prefill_cost(SMALL, [6, 6], torch.float32)
    with pytest.raises(ValueError, match=r"tokens_per_layer \[3, 2\] exceed the prompt length 2"):
        roofline.run_costs(SMALL, 2, [3, 2], 3, torch.float32)


def test_roofline_time_is_the_binding_roof():
    peak = DevicePeak("toy", peak_flops=100.0, peak_bandwidth=10.0, source="test")
    assert Cost(1000.0, 50.0).roofline_s(peak) == 10.0 and Cost(1000.0, 50.0).bound(peak) == "compute"
    assert Cost(100.0, 50.0).roofline_s(peak) == 5.0 and Cost(100.0, 50.0).bound(peak) == "memory"
    with pytest.raises(ValueError, match="peak_bandwidth = 0"):
        DevicePeak("bad", 1.0, 0, "test")
    with pytest.raises(ValueError, match="unknown device 'h900'; datasheet peaks exist for: h100-sxm"):
        roofline.datasheet_peak("h900")


def test_qwen2_7b_on_h100_prefill_is_the_flops_ratio_and_decode_gains_a_few_percent():
    config, peak = qwen2_7b_config(), roofline.datasheet_peak("h100-sxm")
    # 7.07B of its 7.6B parameters are matrices read every step; the 0.54B untied embedding only one row per token.
    assert roofline.weight_bytes(config, torch.bfloat16) / 1e9 == pytest.approx(14.14, abs=0.01)
    full, pruned = [16384] * 28, [16384] * 4 + [11468] * 3 + [8027] * 3 + [5618] * 3 + [3932] * 15
    costs = roofline.run_costs(config, 16384, pruned, 128, torch.bfloat16)
    assert costs.baseline_prefill == roofline.prefill_cost(config, full, torch.bfloat16)
    ideal = costs.ideal(peak)
    assert costs.prefill.bound(peak) == "compute" and costs.decode.bound(peak) == "memory"
    assert ideal.prefill_speedup == pytest.approx(ideal_speedup(costs.baseline_prefill.flops, costs.prefill.flops))
    # Decode is memory-bound: its ideal is the ratio of bytes, by hand. Per step s (127 steps after the first token):
    # weights + KV read by attention at n_l + s + 1 per layer (2 · 512 · 2 B per token) + DynamicCache's copy (reads
    # n_l + s, writes n_l + s + 1) + the hidden state in and out per layer + one untied embedding row.
    weights = roofline.weight_bytes(config, torch.bfloat16)

    def decode_bytes(lengths):
        per_step = [weights + sum(3 * (n + s) + 2 for n in lengths) * 2048 + 28 * 2 * 3584 * 2 + 3584 * 2
                    for s in range(127)]  # fmt: skip
        return sum(per_step)

    assert costs.decode.bytes == decode_bytes(pruned) and costs.baseline_decode.bytes == decode_bytes(full)
    assert ideal.decode_speedup == pytest.approx(decode_bytes(full) / decode_bytes(pruned), rel=1e-12)
    assert ideal.decode_speedup < ideal.e2e_speedup < ideal.prefill_speedup
    # No pruning, no gain.
    same = roofline.run_costs(config, 16384, full, 128, torch.bfloat16).ideal(peak)
    assert same.prefill_speedup == same.decode_speedup == same.e2e_speedup == 1.0


def test_known_shapes_build_offline_and_match_the_tests_qwen2_7b():
    shape = dict(roofline.KNOWN_SHAPES["qwen2-7b"])
    config = AutoConfig.for_model(shape.pop("model_type"), **shape)
    reference = qwen2_7b_config()
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        assert getattr(config, key) == getattr(reference, key)
    assert roofline.weight_bytes(config, torch.bfloat16) == roofline.weight_bytes(reference, torch.bfloat16)


def test_roofline_command_from_a_config_json_and_measured_peaks(tmp_path, capsys):
    import pandas as pd

    from sdtp.commands.cli import main as cli_main

    qwen2_7b_config().save_pretrained(tmp_path / "model")  # config.json only: offline, no weights
    peaks = tmp_path / "peak.parquet"
    pd.DataFrame([dict(device="Fake GPU", dtype="bfloat16", gemm_flops_per_s=1e14, copy_bytes_per_s=1e12)]).to_parquet(
        peaks
    )
    args = ["roofline", "--model-config", str(tmp_path / "model"), "--peaks", str(peaks), "--length", "16384"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "on Fake GPU (100.0 TFLOP/s, 1.00 TB/s" in out and "16384" in out and "compute / memory" in out
    with pytest.raises(SystemExit, match="no row for dtype float16"):
        cli_main([*args, "--dtype", "float16"])
    with pytest.raises(SystemExit, match="not a known shape"):
        cli_main(["roofline", "--model-config", str(tmp_path / "nothing"), "--device", "h200", "--length", "8"])


def test_the_engines_cache_copies_itself_every_decode_step_as_the_decode_roofline_assumes():
    # The "copy" KV update (the default) models DynamicCache.update's torch.cat. If a transformers release updates
    # the cache in place, this fails: switch the engine's rows to kv_update="in_place".
    model = make_tiny_model("qwen2", "sdpa")
    result = prefill_with_pruning(model, torch.arange(12).reshape(1, 12), KeepSchedule([1], 0.5), get_scorer("random"))
    before = [(layer.keys, layer.values) for layer in result.cache.layers]
    decode_step(model, result.cache, torch.tensor([[3]]), 12)
    for (keys, values), layer in zip(before, result.cache.layers, strict=True):
        for old, new in ((keys, layer.keys), (values, layer.values)):
            assert new.data_ptr() != old.data_ptr() and new.shape[-2] == old.shape[-2] + 1
            assert torch.equal(new[..., :-1, :], old)  # the old cache read and written anew
