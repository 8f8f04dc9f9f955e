"""Tests of sdtp.flops: hand-computed values, validation, and agreement with torch's FlopCounterMode.

How the FlopCounterMode comparison is made honest
-------------------------------------------------
FlopCounterMode (torch 2.13) counts only matmul-like aten ops (mm, addmm, bmm, baddbmm, convolutions and the CUDA
SDPA kernels), 2 FLOPs per multiply-add, biases not counted. Two things it sees differently from our model:

- Attention. With `attn_implementation="eager"`, transformers computes the full n×n score matrix and masks it, so the
  counter sees two bmm's of H·n·n·h multiply-adds each: the whole square, not the causal triangle. With "sdpa" on CPU
  the call dispatches to `aten._scaled_dot_product_flash_attention_for_cpu`, which FlopCounterMode does not register,
  so attention counts as 0 there (on CUDA the flash/efficient kernels are counted, also as the full square).
  We therefore use eager, and add the exact, independently computed difference square − triangle to our count.
- LM head. Calling the full model applies the LM head at every position; we call `model.model(...)` and then
  `model.lm_head` on the last position only, which is what `prefill_flops` models.

RoPE, norms and softmax are not matmuls and so are not counted (the counter and our model agree on ignoring them).
With those two adjustments the counts agree exactly (0.0% in torch 2.13). The test allows TOLERANCE = 0.1%, far
inside the 5% the issue asked for: a looser bound could hide real mistakes (counting attention with
num_key_value_heads instead of num_attention_heads shifts these totals by only 3-4%). The slack is for tiny
non-matmul counts a future torch might add (RoPE's outer product is ~0.01% here). `_component_shares` also checks,
from the counter's per-module breakdown, that every single matmul of the model — each projection, each MLP matrix,
the attention core, the LM head — is more than 10×TOLERANCE of the total, so dropping any of them or getting a width
wrong (e.g. k/v with num_attention_heads instead of num_key_value_heads) is far outside the tolerance.
Off-by-one-sized errors (e.g. n²/2 instead of n(n+1)/2 causal pairs) are caught by the hand-computed tests below.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from sdtp.flops import (
    attention_scorer_flops,
    compression_ratio,
    decode_step_flops,
    ideal_speedup,
    kv_bytes_per_layer,
    prefill_flops,
    pruner_flops,
    scorer_flops,
)

TOLERANCE = 1e-3  # relative
PROMPT_LENGTH = 32

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _tiny_qwen2() -> Qwen2ForCausalLM:
    """GQA 4:2, head_dim derived from hidden_size (Qwen2Config has no head_dim), biases on q/k/v."""
    config = Qwen2Config(
        hidden_size=64,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        vocab_size=4096,
        max_position_embeddings=128,
    )
    return Qwen2ForCausalLM._from_config(config, attn_implementation="eager", dtype=torch.float32).eval()


def _tiny_llama() -> LlamaForCausalLM:
    """GQA 4:2 with an explicit head_dim, so num_heads·head_dim (96) differs from hidden_size (64)."""
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        num_hidden_layers=2,
        vocab_size=4096,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM._from_config(config, attn_implementation="eager", dtype=torch.float32).eval()


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tiny_model(request):
    torch.manual_seed(0)
    return {"qwen2": _tiny_qwen2, "llama": _tiny_llama}[request.param]()


def _count_prefill(model, n: int) -> FlopCounterMode:
    """Count a prefill of n tokens: decoder stack, then the LM head on the last position only."""
    input_ids = torch.arange(n).unsqueeze(0) % model.config.vocab_size  # [1, n]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        hidden = model.model(input_ids=input_ids).last_hidden_state  # [1, n, d]
        model.lm_head(hidden[:, -1:])
    return counter


def _square_minus_triangle_flops(config, n: int) -> int:
    """FLOPs eager attention spends above the causal triangle: both matmuls, all layers, n² − n(n+1)/2 pairs."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    pairs_above_diagonal = n * n - n * (n + 1) // 2
    return config.num_hidden_layers * 2 * (2 * config.num_attention_heads * head_dim * pairs_above_diagonal)


def _component_shares(counter: FlopCounterMode) -> dict[str, float]:
    """Fraction of the counted FLOPs spent in each matmul kind, summed over layers."""
    counts = {name: sum(by_op.values()) for name, by_op in counter.get_flop_counts().items()}
    total = counts["Global"]
    model_name = next(name for name in counts if name.endswith("Model") and "." not in name)
    components = {proj: sum(v for k, v in counts.items() if k.endswith("." + proj)) for proj in PROJECTIONS}
    attention_modules = sum(v for k, v in counts.items() if k.endswith(".self_attn"))
    attention_projections = sum(components[p] for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
    components["attention core"] = attention_modules - attention_projections
    components["lm_head"] = total - counts[model_name]
    return {name: flops / total for name, flops in components.items()}


def test_prefill_flops_agrees_with_flop_counter(tiny_model):
    config = tiny_model.config
    counter = _count_prefill(tiny_model, PROMPT_LENGTH)
    counted = counter.get_total_flops()

    shares = _component_shares(counter)
    assert min(shares.values()) > 10 * TOLERANCE, f"config not discriminative enough: {shares}"

    expected = prefill_flops(config, [PROMPT_LENGTH] * config.num_hidden_layers)
    expected += _square_minus_triangle_flops(config, PROMPT_LENGTH)
    assert abs(expected - counted) / counted < TOLERANCE, (expected, counted)


def test_decode_step_flops_agrees_with_flop_counter(tiny_model):
    """One cached decode step: the new query attends to n cached keys + itself, no masking involved."""
    config = tiny_model.config
    input_ids = torch.arange(PROMPT_LENGTH + 1).unsqueeze(0) % config.vocab_size  # [1, n + 1]
    with torch.no_grad():
        cache = tiny_model.model(input_ids=input_ids[:, :-1], use_cache=True).past_key_values
        counter = FlopCounterMode(display=False)
        with counter:
            hidden = tiny_model.model(input_ids=input_ids[:, -1:], past_key_values=cache, use_cache=True)
            tiny_model.lm_head(hidden.last_hidden_state[:, -1:])
    counted = counter.get_total_flops()
    expected = decode_step_flops(config, [PROMPT_LENGTH] * config.num_hidden_layers)
    assert abs(expected - counted) / counted < TOLERANCE, (expected, counted)


def test_pruner_flops_agrees_with_flop_counter():
    hidden_size, tokens = 64, 40
    pruner = torch.nn.Sequential(
        torch.nn.Linear(hidden_size, hidden_size // 4), torch.nn.GELU(), torch.nn.Linear(hidden_size // 4, 1)
    )
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        pruner(torch.randn(1, tokens, hidden_size))
    assert pruner_flops(hidden_size, [tokens]) == counter.get_total_flops()


# A config small enough to count by hand: d=8, I=16, H=2, Hkv=1, head_dim=8//2=4, 2 layers, vocab 10.
#   per token per layer: q 2·8·8 + k,v 2·(2·8·4) + o 2·8·8 = 384; MLP 3·2·8·16 = 768   → 1152
#   per query-key pair per layer: 2 matmuls · H · 2·head_dim = 2·2·2·4                   → 32
#   LM head (last position): 2·8·10                                                      → 160
SMALL = Qwen2Config(
    hidden_size=8,
    intermediate_size=16,
    num_attention_heads=2,
    num_key_value_heads=1,
    num_hidden_layers=2,
    vocab_size=10,
)


def test_prefill_flops_hand_computed():
    # layer 0: 3 tokens → 3·1152 + 32·(3·4/2) = 3648; layer 1: 2 tokens → 2·1152 + 32·3 = 2400; + 160
    assert prefill_flops(SMALL, [3, 2]) == 3648 + 2400 + 160
    assert prefill_flops(SMALL, [0, 0]) == 160


def test_decode_step_flops_hand_computed():
    # layer 0: 5 cached → 1152 + 32·6 = 1344; layer 1: 3 cached → 1152 + 32·4 = 1280; + 160
    assert decode_step_flops(SMALL, [5, 3]) == 1344 + 1280 + 160


def test_explicit_head_dim_is_used():
    config = LlamaConfig(
        hidden_size=8,
        intermediate_size=16,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=6,
        num_hidden_layers=1,
        vocab_size=10,
    )
    # q 2·8·12 + k,v 2·(2·8·6) + o 2·12·8 = 576; MLP 768; 1 token → 1 pair: 2·2·2·6 = 48; LM head 160
    assert prefill_flops(config, [1]) == 576 + 768 + 48 + 160


def test_pruner_flops_hand_computed():
    # d=8 → bottleneck 2: 2·8·2 + 2·2·1 = 36 FLOPs per token
    assert pruner_flops(8, [10, 5]) == 36 * 15
    assert pruner_flops(8, []) == 0


def test_kv_bytes_per_layer_by_dtype():
    # 2 (k and v) · Hkv 1 · head_dim 4 = 8 elements per token per layer
    assert kv_bytes_per_layer(SMALL, [5, 3], torch.float32) == [8 * 4 * 5, 8 * 4 * 3]
    assert kv_bytes_per_layer(SMALL, [5, 3], torch.bfloat16) == [8 * 2 * 5, 8 * 2 * 3]


def test_compression_ratio_paper_definition():
    assert compression_ratio(100, [100, 100, 50, 50]) == pytest.approx(100 / 75)
    assert compression_ratio(100, [100] * 4) == 1.0


def test_ideal_speedup():
    assert ideal_speedup(72.51e12, 47.81e12) == pytest.approx(72.51 / 47.81)
    baseline = prefill_flops(SMALL, [4, 4])
    assert ideal_speedup(baseline, prefill_flops(SMALL, [4, 2])) > 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=2))
def test_one_more_prompt_token_costs_one_decode_step(lengths):
    """prefill(n + 1) − prefill(n) is the decode step over n cached tokens, minus the LM head counted once in each."""
    longer = prefill_flops(SMALL, [n + 1 for n in lengths])
    lm_head = 2 * SMALL.hidden_size * SMALL.vocab_size
    assert longer - prefill_flops(SMALL, lengths) == decode_step_flops(SMALL, lengths) - lm_head


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4096), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2))
def test_pruning_never_costs_more(length, keep_fractions):
    pruned = [math.floor(length * keep) for keep in sorted(keep_fractions, reverse=True)]
    assert prefill_flops(SMALL, pruned) <= prefill_flops(SMALL, [length, length])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: prefill_flops(SMALL, [3]), "num_hidden_layers=2"),
        (lambda: prefill_flops(SMALL, [3, -1]), r"tokens_per_layer\[1\] = -1"),
        (lambda: prefill_flops(SMALL, [3, 2.5]), r"tokens_per_layer\[1\] = 2.5"),
        (lambda: decode_step_flops(SMALL, [1, 2, 3]), "kv_lengths_per_layer has 3 entries"),
        (lambda: kv_bytes_per_layer(SMALL, [-4, 1], torch.float32), r"kv_lengths_per_layer\[0\] = -4"),
        (lambda: pruner_flops(8, [4, -2]), r"tokens_per_stage\[1\] = -2"),
        (lambda: pruner_flops(2, [4]), "hidden_size = 2"),
        (lambda: compression_ratio(0, [1]), "original_length = 0"),
        (lambda: compression_ratio(10, []), "tokens_per_layer is empty"),
        (lambda: compression_ratio(10, [0, 0]), "all zeros"),
        (lambda: compression_ratio(10, [10, 11]), r"tokens_per_layer\[1\] = 11 exceeds"),
        (lambda: ideal_speedup(10.0, 0.0), "pruned_flops = 0.0"),
        (lambda: ideal_speedup(-1.0, 1.0), "baseline_flops = -1.0"),
        (lambda: ideal_speedup(float("nan"), 1.0), "baseline_flops = nan"),
    ],
)
def test_invalid_inputs_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_kv_bytes_rejects_non_dtype():
    with pytest.raises(TypeError, match="torch.dtype"):
        kv_bytes_per_layer(SMALL, [1, 1], "bfloat16")


def test_scorer_flops_agree_with_flop_counter_on_the_real_scorers():
    """The FLOPs counted into a pruned run (and so into its ideal speedup) are those the scorers really spend."""
    from sdtp.pruner import PruningModule
    from sdtp.scorers import ScoreContext, get_scorer

    config = Qwen2Config(
        vocab_size=50, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config).eval()
    n = 40
    hidden = torch.randn(1, n, 64)
    positions = torch.arange(n)
    ctx = ScoreContext(model, 1, 0, hidden, positions, model.model.rotary_emb(hidden, positions[None]))
    for method, scorer in [
        ("attention", get_scorer("attention")),
        ("sdtp", get_scorer("sdtp", checkpoint=PruningModule([1], 64))),
    ]:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            scorer.score(ctx)
        assert scorer_flops(method, config, [n]) == counter.get_total_flops(), method
    assert scorer_flops("random", config, [n, 20]) == scorer_flops("streaming", config, [n]) == 0.0
    assert attention_scorer_flops(config, [n, 20]) == scorer_flops("attention", config, [n]) + scorer_flops(
        "attention", config, [20]
    )
