"""`sdtp.verify`: a correct engine passes on Qwen2 and Llama, fp32 and bf16, SDPA and eager; the classic mistakes of
an earlier reproduction, injected, each fail with the right check named."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_model

import sdtp.engine as engine_module
import sdtp.verify as verify_module
from sdtp.engine import prefill_with_pruning
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer
from sdtp.verify import TOLERANCES, failure_message, verify_engine

SCHEDULE = KeepSchedule([1, 3], 0.5, min_local=8)


def prompt(n: int = 256) -> torch.Tensor:
    return torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_correct_engine_passes(family, attn, dtype):
    report = verify_engine(make_tiny_model(family, attn, dtype=dtype), prompt(), SCHEDULE)
    assert report.passed, failure_message(report)
    names = [check.name for check in report.checks]
    assert names[0] == "baseline_equals_forward" and names[-1] == "devices_synchronised"
    for method in ("random", "streaming", "attention"):
        assert {f"prefill_equals_reference[{method}]", f"decode_equals_reference[{method}]"} <= set(names)
    assert report.tolerance == {"max_relative_error": TOLERANCES[dtype].max_relative_error,
                                "min_token_agreement": TOLERANCES[dtype].min_token_agreement}  # fmt: skip
    # The checks have power: an engine that ignored the pruning would fail them.
    check = next(c for c in report.checks if c.name == "prefill_equals_reference[random]")
    assert check.figures["unpruned_vs_reference"] > check.figures["bound"]


def failed_names(report) -> set[str]:
    return {check.name.split("[")[0] for check in report.failed}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_renumbered_positions_fail_the_prefill_check(monkeypatch, dtype):
    """The earlier reproduction's bug: kept tokens rotated with positions 0..m-1 instead of their original ones."""
    real = engine_module.rotary

    def renumbered(decoder, hidden, positions):
        return real(decoder, hidden, torch.arange(positions.shape[0], device=positions.device))

    monkeypatch.setattr(engine_module, "rotary", renumbered)
    report = verify_engine(make_tiny_model("qwen2", "sdpa", dtype=dtype), prompt(), SCHEDULE)
    assert not report.passed
    assert "prefill_equals_reference" in failed_names(report)
    assert "prefill_equals_reference[random]" in failure_message(report)
    assert "positions or masks are wrong" in failure_message(report)


def test_decoding_from_an_unpruned_cache_fails_the_decode_check(monkeypatch):
    """The earlier reproduction's other bug: decoding re-ran on the original ids, so the pruned cache was never used."""
    ids = prompt()
    model = make_tiny_model("llama", "sdpa")
    real = verify_module.decode_greedy

    def from_unpruned_cache(model, result, steps, **kwargs):
        unpruned = prefill_with_pruning(model, ids, SCHEDULE, get_scorer("baseline"))
        return real(model, unpruned, steps, **kwargs)

    monkeypatch.setattr(verify_module, "decode_greedy", from_unpruned_cache)
    report = verify_engine(model, ids, SCHEDULE)
    assert {"decode_equals_reference", "cache_and_positions"} <= failed_names(report)
    assert "prefill_equals_reference" not in failed_names(report)  # the prefill itself was right


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_missing_causal_mask_under_eager_fails_the_baseline_check(monkeypatch, dtype):
    monkeypatch.setattr(engine_module, "causal_mask", lambda model, hidden: None)
    report = verify_engine(make_tiny_model("qwen2", "eager", dtype=dtype), prompt(), SCHEDULE)
    assert "baseline_equals_forward" in failed_names(report)
    assert "another model.attn_implementation" in failure_message(report)


def test_verify_needs_a_pruning_schedule_and_a_known_dtype():
    with pytest.raises(ValueError, match="keep ratio < 1"):
        verify_engine(make_tiny_model("qwen2", "sdpa"), prompt(32), KeepSchedule([1], 1.0))
    with pytest.raises(ValueError, match="no verification tolerance for dtype torch.int8"):
        verify_module.tolerance_for(torch.int8)
