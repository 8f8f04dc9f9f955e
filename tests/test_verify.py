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


# A model spread over two GPUs by `device_map: auto`, simulated on CPU: the LM head's output and a marker buffer
# report `cuda:1` (values stay on the CPU); everything else is on `cpu`, standing in for cuda:0.
SECOND_GPU = torch.device("cuda", 1)


class OnSecondGpu(torch.Tensor):
    """A CPU tensor that says it lives on cuda:1: mixing it with a (non-scalar) tensor elsewhere raises, as cuda:1 with
    cuda:0 would; `.to()` another device or `.cpu()` gives a plain tensor, as a copy would."""

    @property
    def device(self):
        return SECOND_GPU

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cpu:
            return args[0].as_subclass(torch.Tensor)
        if func is torch.Tensor.to:
            targets = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (str, torch.device))]
            if targets and torch.device(targets[0]) == SECOND_GPU:
                return args[0]
            if targets:  # copied to another device: a plain tensor there
                return func(args[0].as_subclass(torch.Tensor), *args[1:], **kwargs)
        flat, _ = torch.utils._pytree.tree_flatten((args, kwargs))
        if any(type(t) is torch.Tensor and t.dim() > 0 for t in flat):
            raise RuntimeError(f"Expected all tensors to be on the same device, but found {SECOND_GPU} and cpu")
        return super().__torch_function__(func, types, args, kwargs)


def spread_over_two_gpus(model):
    """`model` as accelerate dispatches it over two GPUs, the LM head on the second: its outputs stay there, and the
    top-level hook (`io_same_device=True`) brings the model's own output back to the input's device."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    model.lm_head.register_forward_hook(lambda module, args, output: output.as_subclass(OnSecondGpu))
    model.lm_head.register_buffer("placed_on", torch.zeros(1).as_subclass(OnSecondGpu))  # model_devices sees cuda:1
    add_hook_to_module(model, AlignDevicesHook(io_same_device=True))
    return model


def record_synchronize(monkeypatch) -> list[str]:
    """Stand-in for `torch.cuda.synchronize` on this GPU-less machine: the devices it was called for."""
    synchronised: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synchronised.append(str(device)))
    return synchronised


def test_a_model_spread_over_two_gpus_passes(monkeypatch):
    """The engine's logits stay on the LM head's GPU while `model(input_ids)`'s come back on the input's: the checks
    compare them on one device instead of raising (issue 22, defect 1)."""
    synchronised = record_synchronize(monkeypatch)
    model = spread_over_two_gpus(make_tiny_model("qwen2", "sdpa"))
    assert model(prompt(8)).logits.device.type == "cpu"  # the simulation: back on the input's device ...
    assert prefill_with_pruning(model, prompt(8), SCHEDULE, get_scorer("baseline")).logits.device == SECOND_GPU
    report = verify_engine(model, prompt(), SCHEDULE)
    assert report.passed, failure_message(report)
    assert report.devices == ["cpu", "cuda:1"]
    check = report.checks[-1]
    assert check.name == "devices_synchronised" and check.figures["computed_on"] == ["cuda:1"]
    assert check.figures["synchronised_before"] == check.figures["synchronised_after"] == ["cuda:1"]
    assert "cuda:1" in synchronised


@pytest.mark.parametrize("wrong_setup", ["first_device_only", "synchronize_skips_a_device"])
def test_a_device_left_unsynchronised_fails_the_devices_check(monkeypatch, wrong_setup):
    """Check 5 can fail (issue 22, defect 5): timing told only the first device (the classic multi-GPU timing bug), or a
    `synchronize` that drains none of the GPUs, stops the clock before the LM head's GPU is done."""
    from sdtp import timing

    record_synchronize(monkeypatch)
    if wrong_setup == "first_device_only":
        monkeypatch.setattr(verify_module, "model_devices", lambda model: timing.model_devices(model)[:1])
    else:
        monkeypatch.setattr(timing, "synchronize", lambda devices: None)
    report = verify_engine(spread_over_two_gpus(make_tiny_model("llama", "sdpa")), prompt(), SCHEDULE)
    assert failed_names(report) == {"devices_synchronised"}
    check = report.checks[-1]
    assert check.figures["computed_on"] == ["cuda:1"] and check.figures["synchronised_after"] == []
    assert "sdtp.timing.model_devices must list every device" in failure_message(report)


def test_on_cpu_the_devices_check_has_nothing_to_synchronise():
    report = verify_engine(make_tiny_model("qwen2", "sdpa"), prompt(64), KeepSchedule([1, 3], 0.5, min_local=8))
    check = report.checks[-1]
    assert check.passed and check.figures["computed_on"] == "nothing to synchronise (CPU)"
    assert report.devices == ["cpu"]
