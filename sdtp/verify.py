"""Does the engine compute what pruning means, on this model, dtype, attention kernel and device(s)?

Tests prove the engine on CPU, fp32 and tiny models; a user's run is on their GPU, dtype, kernel and model. Before any
measurement, `verify_engine` checks, on a short prompt:

1. `baseline_equals_forward`: the unpruned engine's last-token logits equal `model(input_ids)`'s (max |Δ| within the
   dtype's tolerance, same argmax);
2. `prefill_equals_reference[<method>]`: a pruned prefill (the configured schedule at the verification keep ratio)
   equals the masked full-length reference (`sdtp.reference`: each query sees only the keys alive at its layer);
3. `decode_equals_reference[<method>]`: `decode_steps` greedy tokens decoded from the pruned cache equal the masked
   reference extended step by step (per-step max |Δ|, and at least `min_token_agreement` of the tokens identical);
4. `cache_and_positions[<method>]`: the cache holds exactly the schedule's per-layer counts, kept positions are the
   original ones (strictly increasing, within the prompt, everything alive before the first prune layer), and after
   decoding every layer has grown by exactly the decoded tokens (the decode continued on that cache);
5. `devices_synchronised`: the baseline prefill of check 1 is timed as latency times its regions
   (`timed(…, model_devices(model))`) while the `torch.cuda.synchronize` calls are recorded: every CUDA device the
   prefill computed on (each layer's, the LM head's) must be drained before and after it. A device list that misses
   the last GPU, or a `synchronize` that skips one, fails it; on CPU it records that there is nothing to synchronise.

Logits are compared on the CPU: under `device_map` the engine's stay on the LM head's GPU (the last), while
`model(input_ids)`'s come back on the input's (accelerate's top-level hook, `io_same_device`).

Tolerances (`TOLERANCES`), relative to the logit scale s = max(1, max |reference logits|):
- float32: max |Δ| ≤ 1e-4 · s, every decoded token identical. Two fp32 forwards that differ only in summation order
  (kernels, pruned vs masked) agree to ~1e-6 relative; 1e-4 leaves room for long prompts and deep models.
- bfloat16: max |Δ| ≤ 0.1 · s, ≥ 7/8 tokens identical. bf16 keeps 8 significant bits (relative step 2^-8 ≈ 0.4%);
  the pruned run and the masked reference round differently in every layer (other shapes, other kernels), and the
  decode checks take the worst of 8 steps. Measured on tiny Qwen2/Llama models (8 layers, weights scaled up so that
  attention is peaky, 512 tokens, keep 0.7 at 3 stages): a correct engine reached 0.010–0.080; the same prompts with
  kept tokens renumbered 0..m-1 reached 0.22–0.86 for the random and attention scorers. (Renumbering barely moves a
  `streaming` selection — a contiguous suffix keeps its relative positions — which is why several scorers are checked.)
- float16: 10 significant bits, a quarter of bf16's step: max |Δ| ≤ 0.05 · s, ≥ 7/8 tokens identical.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from sdtp.engine import PrefillResult, decode_greedy, prefill_with_pruning
from sdtp.reference import alive_masks, masked_reference_logits, reference_decode_logits
from sdtp.schedule import KeepSchedule
from sdtp.scorers import Scorer, get_scorer
from sdtp.timing import model_devices, recorded_synchronisations, timed


@dataclass(frozen=True)
class Tolerance:
    """How close the engine must come to the reference in one dtype (see the module docstring for why)."""

    max_relative_error: float  # max |Δ logits| / max(1, max |reference logits|)
    min_token_agreement: float  # fraction of decoded tokens equal to the reference's argmax


TOLERANCES = {
    torch.float32: Tolerance(1e-4, 1.0),
    torch.float64: Tolerance(1e-4, 1.0),
    torch.bfloat16: Tolerance(0.1, 7 / 8),
    torch.float16: Tolerance(0.05, 7 / 8),
}

ADVICE = {
    "baseline_equals_forward": (
        "the engine's layer-by-layer prefill differs from the model's own forward: try another "
        "model.attn_implementation (sdpa or eager), or report the model family and transformers version"
    ),
    "prefill_equals_reference": (
        "a pruned prefill differs from the masked reference (positions or masks are wrong for this model): try "
        "model.attn_implementation: eager or sdpa; do not trust latency or quality numbers until this passes"
    ),
    "decode_equals_reference": (
        "decoding from the pruned cache differs from the masked reference (the cache or decode positions are "
        "wrong): try another model.attn_implementation; do not trust End2End numbers until this passes"
    ),
    "cache_and_positions": (
        "the ragged cache or the kept positions are not what the schedule says: this transformers version's Cache or "
        "decoder layers may have changed; pin the versions in envs/constraints.txt"
    ),
    "devices_synchronised": (
        "a device the model computes on is not synchronised around timed regions, so latency would stop the clock "
        "before its work is done: sdtp.timing.model_devices must list every device a layer or the LM head runs on, "
        "and sdtp.timing.synchronize drain each; report the model.device_map and the accelerate version"
    ),
}


@dataclass
class Check:
    """One named check: passed or not, the figures it measured, and what to try when it failed."""

    name: str
    passed: bool
    figures: dict = field(default_factory=dict)
    advice: str = ""

    def line(self) -> str:
        figures = ", ".join(f"{key}={_short(value)}" for key, value in self.figures.items())
        return f"{'ok  ' if self.passed else 'FAIL'} {self.name}: {figures}"


@dataclass
class VerifyReport:
    """All checks of one `verify_engine` run, with what they ran on."""

    checks: list[Check]
    dtype: str
    attn_implementation: str
    devices: list[str]
    prompt_tokens: int
    keep_ratio: float
    prune_layers: list[int]
    tolerance: dict

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else value


def tolerance_for(dtype: torch.dtype) -> Tolerance:
    if dtype not in TOLERANCES:
        raise ValueError(f"no verification tolerance for dtype {dtype}; use float32, bfloat16 or float16")
    return TOLERANCES[dtype]


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    # On the CPU: under device_map the two logits can sit on different GPUs (module docstring).
    got, expected = got.float().cpu(), expected.float().cpu()
    scale = max(1.0, float(expected.abs().max()))
    return float((got - expected).abs().max()) / scale


def _devices_synchronised(result: PrefillResult, drained_before: list, drained_after: list) -> Check:
    """Check 5: every CUDA device `result` was computed on (each layer's kept positions, the logits) is among the
    devices synchronised before and after its timed region."""
    computed_on = {p.device for p in result.kept_positions} | {result.logits.device}
    cuda = sorted({str(d) for d in computed_on if d.type == "cuda"})
    before, after = {str(d) for d in drained_before}, {str(d) for d in drained_after}
    return _check(
        "devices_synchronised",
        set(cuda) <= before and set(cuda) <= after,
        computed_on=cuda if cuda else "nothing to synchronise (CPU)",
        synchronised_before=sorted(before),
        synchronised_after=sorted(after),
    )


def _check(name: str, passed: bool, **figures) -> Check:
    base = name.split("[")[0]
    return Check(name, bool(passed), figures, "" if passed else ADVICE[base])


@torch.no_grad()
def verify_engine(
    model: nn.Module,
    input_ids: torch.Tensor,
    schedule: KeepSchedule,
    scorers: dict[str, Scorer] | None = None,
    decode_steps: int = 8,
) -> VerifyReport:
    """Run every check (module docstring) on `input_ids` (1, n) with `schedule` (its keep ratio < 1).

    Args:
        scorers: the pruning methods to check, by name; default `random`, `streaming` and `attention` (add `sdtp`
            with a trained pruner).
    """
    if schedule.keep_ratio >= 1.0:
        raise ValueError("verify needs a pruning schedule: keep ratio < 1")
    scorers = scorers or {name: get_scorer(name, seed=0) for name in ("random", "streaming", "attention")}
    tolerance = tolerance_for(model.dtype)
    n = input_ids.shape[1]
    num_layers = model.config.num_hidden_layers
    checks: list[Check] = []

    # 1. The unpruned engine is the model's own forward. Its prefill is timed as latency times one, the CUDA syncs
    # recorded on both sides of the region, for check 5.
    devices = model_devices(model)
    with recorded_synchronisations() as drained:
        marks = []  # how many syncs had been recorded when the region started and when it ended

        def baseline_prefill() -> PrefillResult:
            marks.append(len(drained))
            result = prefill_with_pruning(model, input_ids, schedule, get_scorer("baseline"))
            marks.append(len(drained))
            return result

        _, baseline = timed(baseline_prefill, devices)
    synchronised_check = _devices_synchronised(baseline, drained[: marks[0]], drained[marks[1] :])
    forward = model(input_ids, logits_to_keep=1).logits[:, -1].float()
    error = _relative_error(baseline.logits, forward)
    same_argmax = int(baseline.logits.argmax()) == int(forward.argmax())
    checks.append(
        _check(
            "baseline_equals_forward",
            error <= tolerance.max_relative_error and same_argmax,
            max_relative_error=error,
            bound=tolerance.max_relative_error,
            same_argmax=same_argmax,
        )
    )

    for method, scorer in scorers.items():
        # 2. Pruned prefill vs the masked reference.
        result = prefill_with_pruning(model, input_ids, schedule, scorer)
        alive = alive_masks(result.kept_positions, n)
        reference = masked_reference_logits(model, input_ids, alive)
        error = _relative_error(result.logits, reference)
        unpruned_error = _relative_error(forward, reference)  # how far pruning moves the logits: the check's power
        checks.append(
            _check(
                f"prefill_equals_reference[{method}]",
                error <= tolerance.max_relative_error,
                max_relative_error=error,
                bound=tolerance.max_relative_error,
                unpruned_vs_reference=unpruned_error,
            )
        )
        # 4 (first half). The cache and the positions.
        expected_counts = schedule.tokens_per_layer(n, num_layers)
        kv_before = result.kv_lengths
        positions_ok = all(
            bool((p[1:] > p[:-1]).all()) and int(p.min()) >= 0 and int(p.max()) < n for p in result.kept_positions
        ) and all(
            torch.equal(result.kept_positions[layer].cpu(), torch.arange(n))
            for layer in range(num_layers)
            if layer < min(schedule.layers)
        )
        # 3. Decode from the pruned cache vs the reference extended step by step.
        tokens, logits = decode_greedy(model, result, decode_steps, ignore_eos=True, return_logits=True)
        expected = reference_decode_logits(model, input_ids, alive, tokens)
        step_errors = [_relative_error(logits[t], expected[t]) for t in range(decode_steps)]
        agreement = float((expected.argmax(-1).cpu() == tokens[0].cpu()).float().mean())
        checks.append(
            _check(
                f"decode_equals_reference[{method}]",
                max(step_errors) <= tolerance.max_relative_error and agreement >= tolerance.min_token_agreement,
                max_relative_error=max(step_errors),
                bound=tolerance.max_relative_error,
                token_agreement=agreement,
                min_token_agreement=tolerance.min_token_agreement,
            )
        )
        grown = [after - before for after, before in zip(result.kv_lengths, kv_before, strict=True)]
        checks.append(
            _check(
                f"cache_and_positions[{method}]",
                kv_before == expected_counts and positions_ok and set(grown) == {decode_steps - 1},
                kv_lengths=kv_before,
                expected=expected_counts,
                original_positions=positions_ok,
                grown_per_layer_by=sorted(set(grown)),
                decoded=decode_steps,
            )
        )

    # 5. Every device the baseline prefill computed on was synchronised around its timed region.
    checks.append(synchronised_check)
    return VerifyReport(
        checks=checks,
        dtype=str(model.dtype).removeprefix("torch."),
        attn_implementation=str(model.config._attn_implementation),
        devices=[str(d) for d in devices],
        prompt_tokens=n,
        keep_ratio=schedule.keep_ratio,
        prune_layers=list(schedule.layers),
        tolerance=asdict(tolerance),
    )


def failure_message(report: VerifyReport) -> str:
    """What failed, with its figures, and what to try: the text that stops the workflow."""
    lines = [f"verify failed ({report.dtype}, attn_implementation={report.attn_implementation}):"]
    for check in report.failed:
        lines.append(f"  {check.line()}")
        lines.append(f"    -> {check.advice}")
    return "\n".join(lines)
