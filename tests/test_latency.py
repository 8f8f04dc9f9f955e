"""`sdtp.latency`: one timed row per repeat, FLOPs and KV counts, an OOM as a row."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tiny_models import make_eos_model, make_tiny_model, random_ids

from sdtp import latency as latency_module
from sdtp.engine import decode_greedy, prefill_with_pruning
from sdtp.flops import prefill_flops
from sdtp.latency import measure_latency, rows_to_frame
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer


def test_measure_latency_rows():
    model = make_tiny_model("qwen2", "sdpa")
    schedule = KeepSchedule([1, 3], 0.5, min_local=8)
    rows = measure_latency(
        model,
        model_name="tiny",
        method="random",
        scorer=get_scorer("random"),
        schedule=schedule,
        length=200,
        warmup=1,
        repeats=2,
        new_tokens=5,
    )
    frame = rows_to_frame(rows)
    assert len(frame) == 2 and list(frame.repeat) == [0, 1]
    row = rows[0]
    assert row.status == "ok" and row.length == 200 and row.new_tokens == 5
    assert row.kv_lengths == schedule.tokens_per_layer(200, 5) == [200, 100, 100, 50, 50]
    assert row.kv_bytes == sum(row.kv_bytes_per_layer) == 2 * 2 * 16 * 4 * sum(row.kv_lengths)  # k+v, 2 kv heads × 16
    assert row.prefill_flops == prefill_flops(model.config, row.kv_lengths)
    assert (
        row.ideal_speedup == pytest.approx(row.baseline_prefill_flops / row.prefill_flops) and row.ideal_speedup > 1.5
    )
    assert row.compression_ratio == pytest.approx(200 / 100)
    assert row.total_s == pytest.approx(row.prefill_s + row.decode_s) and row.prefill_s > 0 and row.decode_s > 0
    assert row.prune_layers == [1, 3] and row.stages == 2 and row.memory_kind == "cpu_rss"
    import accelerate
    import transformers

    versions = (row.torch_version, row.transformers_version, row.accelerate_version)
    assert versions == (torch.__version__, transformers.__version__, accelerate.__version__)


def test_baseline_rows_have_no_pruning():
    model = make_tiny_model("llama", "sdpa")
    rows = measure_latency(
        model,
        model_name="tiny",
        method="baseline",
        scorer=get_scorer("baseline"),
        schedule=KeepSchedule([1, 3], 1.0),
        length=64,
        warmup=0,
        repeats=1,
        new_tokens=3,
    )
    assert rows[0].kv_lengths == [64] * 5 and rows[0].ideal_speedup == 1.0 and rows[0].keep_ratio == 1.0
    assert rows[0].stages == 0


def test_a_schedule_pruning_before_layer_0_is_compared_with_the_baseline_at_the_full_prompt():
    # Layer 0 already sees half the prompt: the baseline columns must still be the unpruned run's at 64 tokens, the
    # baseline row's own costs (they were once taken at max(tokens_per_layer) = 32, halving the decode ideal's gain).
    model = make_tiny_model("qwen2", "sdpa")
    common = dict(model_name="tiny", length=64, warmup=0, repeats=1, new_tokens=3)
    pruned = measure_latency(
        model, method="streaming", scorer=get_scorer("streaming"), schedule=KeepSchedule([0], 0.5, min_local=4),
        **common,
    )[0]  # fmt: skip
    baseline = measure_latency(
        model, method="baseline", scorer=get_scorer("baseline"), schedule=KeepSchedule([0], 1.0), **common
    )[0]
    assert pruned.kv_lengths == [32] * 5 and baseline.kv_lengths == [64] * 5
    for phase in ("prefill_flops", "prefill_bytes", "decode_flops", "decode_bytes"):
        assert (
            getattr(pruned, f"baseline_{phase}") == getattr(baseline, phase) == getattr(baseline, f"baseline_{phase}")
        )
    assert pruned.decode_bytes < baseline.decode_bytes


def test_oom_becomes_a_row(monkeypatch):
    model = make_tiny_model("qwen2", "sdpa")

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(latency_module, "prefill_with_pruning", out_of_memory)
    rows = measure_latency(
        model,
        model_name="tiny",
        method="sdtp",
        scorer=get_scorer("random"),
        schedule=KeepSchedule([1], 0.5),
        length=32,
        warmup=1,
        repeats=3,
        new_tokens=2,
    )
    assert len(rows) == 1 and rows[0].status == "oom"
    assert pd.isna(rows[0].prefill_s)


def test_a_method_that_cannot_run_on_the_input_becomes_an_error_row_with_its_reason(monkeypatch):
    """A press failing on a layer (sdtp.failures.CannotMeasure) is a row with status "error" and the reason, so the
    summary and the report are still built; a bug of ours still fails the job."""
    from sdtp.failures import CannotMeasure

    model = make_tiny_model("qwen2", "sdpa")

    def cannot(*args, **kwargs):
        raise CannotMeasure("snapkv on layer 2: Query length 37 should be greater than the window size 64")

    monkeypatch.setattr(latency_module, "prefill_with_pruning", cannot)
    rows = measure_latency(
        model, model_name="tiny", method="random", scorer=get_scorer("random"), schedule=KeepSchedule([1], 0.5),
        length=32, warmup=0, repeats=2, new_tokens=2,
    )  # fmt: skip
    (row,) = rows
    assert row.status == "error" and "window size 64" in row.reason and pd.isna(row.prefill_s)
    assert row.press_uncompressed_layers == []


@pytest.mark.parametrize(
    "error",
    [RuntimeError("CUDA error: out of memory"), RuntimeError("CUBLAS_STATUS_ALLOC_FAILED: out of memory")],
)
def test_runtime_error_out_of_memory_becomes_a_row_freed_outside_the_except_block(monkeypatch, error):
    """cuBLAS and FlashAttention report an OOM as a plain RuntimeError: it is an "oom" row too, and the memory is
    freed once the exception (whose traceback holds the failed run's tensors) is no longer being handled."""
    import sys

    model = make_tiny_model("qwen2", "sdpa")
    freed = []

    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(latency_module, "prefill_with_pruning", out_of_memory)
    monkeypatch.setattr(latency_module, "free_memory", lambda: freed.append(sys.exc_info()))
    rows = measure_latency(
        model, model_name="tiny", method="random", scorer=get_scorer("random"), schedule=KeepSchedule([1], 0.5),
        length=32, warmup=0, repeats=2, new_tokens=2,
    )  # fmt: skip
    assert len(rows) == 1 and rows[0].status == "oom" and pd.isna(rows[0].total_s)
    assert freed == [(None, None, None)]  # called once, with no exception being handled

    def broken(*args, **kwargs):  # any other RuntimeError still fails the job
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(latency_module, "prefill_with_pruning", broken)
    with pytest.raises(RuntimeError, match="shapes"):
        measure_latency(
            model, model_name="tiny", method="random", scorer=get_scorer("random"), schedule=KeepSchedule([1], 0.5),
            length=32, warmup=0, repeats=1, new_tokens=2,
        )  # fmt: skip


def test_every_device_the_model_spans_is_synchronised_and_measured(monkeypatch):
    """A model spread over 2 GPUs (simulated: the tiny model computes on CPU, the devices it reports are cuda:0 and
    cuda:1): each timed prefill and decode is bracketed by syncs of both, and peak memory is recorded per device."""
    model = make_tiny_model("qwen2", "sdpa")
    calls = []
    monkeypatch.setattr(latency_module, "model_devices", lambda m: [torch.device("cuda:0"), torch.device("cuda:1")])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(str(device)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: {"cuda:0": 3, "cuda:1": 5}[str(device)])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"Fake H100 ({device})")
    rows = measure_latency(
        model, model_name="tiny", method="random", scorer=get_scorer("random"), schedule=KeepSchedule([1], 0.5),
        length=32, warmup=1, repeats=2, new_tokens=2,
    )  # fmt: skip
    # 3 runs (1 warm-up + 2 repeats) × 2 timed regions × (before + after) × 2 devices
    assert calls == ["cuda:0", "cuda:1"] * 12
    row = rows[0]
    assert row.devices == ["cuda:0", "cuda:1"] and row.device == "Fake H100 (cuda:0), Fake H100 (cuda:1)"
    assert row.peak_memory_bytes_per_device == [3, 5] and row.peak_memory_bytes == 5
    assert row.memory_kind == "cuda_peak_allocated"


@pytest.mark.parametrize("method", ["sdtp", "attention", "random"])
def test_the_pruned_runs_flops_include_its_scorers(method):
    """The ideal speedup is honest: the pruning modules' and the attention row's FLOPs count in the pruned run."""
    from sdtp.flops import scorer_flops
    from sdtp.pruner import PruningModule

    model = make_tiny_model("qwen2", "sdpa")
    schedule = KeepSchedule([1, 3], 0.5, min_local=8)
    scorer = get_scorer(method, checkpoint=PruningModule([1, 3], model.config.hidden_size))
    row = measure_latency(
        model, model_name="tiny", method=method, scorer=scorer, schedule=schedule, length=200, warmup=0, repeats=1,
        new_tokens=2,
    )[0]  # fmt: skip
    extra = scorer_flops(method, model.config, [200, 100])
    assert (extra > 0) == (method != "random")
    assert row.prefill_flops == prefill_flops(model.config, row.kv_lengths) + extra
    assert row.ideal_speedup == pytest.approx(row.baseline_prefill_flops / row.prefill_flops)


def test_a_model_partly_offloaded_from_its_gpus_is_not_ok(monkeypatch):
    """device_map offloading (a layer on cpu next to cuda devices) is timed, but the rows say "offloaded"."""
    model = make_tiny_model("qwen2", "sdpa")
    monkeypatch.setattr(latency_module, "model_devices", lambda m: [torch.device("cpu"), torch.device("cuda:0")])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    rows = measure_latency(
        model, model_name="tiny", method="baseline", scorer=get_scorer("baseline"), schedule=KeepSchedule([1], 1.0),
        length=16, warmup=0, repeats=2, new_tokens=2,
    )  # fmt: skip
    assert [row.status for row in rows] == ["offloaded", "offloaded"]


def _recording_prefill(monkeypatch, calls, oom_from_baseline_call=None):
    """Record which scorer each prefill ran with (and the peak-memory window around the method's runs)."""
    real = latency_module.prefill_with_pruning
    baseline_calls = []

    def prefill(model, ids, schedule, scorer, **kwargs):
        calls.append(scorer.name)
        if scorer.name == "baseline":
            baseline_calls.append(1)
            if oom_from_baseline_call is not None and len(baseline_calls) >= oom_from_baseline_call:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(model, ids, schedule, scorer, **kwargs)

    monkeypatch.setattr(latency_module, "prefill_with_pruning", prefill)
    monkeypatch.setattr(latency_module, "reset_peak_memory", lambda devices: calls.append("reset"))
    real_peak = latency_module._peak_memory
    monkeypatch.setattr(latency_module, "_peak_memory", lambda devices: calls.append("read") or real_peak(devices))


def test_a_paired_baseline_runs_beside_each_repeat_in_alternating_order(monkeypatch):
    model = make_tiny_model("qwen2", "sdpa")
    calls: list[str] = []
    _recording_prefill(monkeypatch, calls)
    rows = measure_latency(
        model, model_name="tiny", method="streaming", scorer=get_scorer("streaming"),
        schedule=KeepSchedule([1], 0.5, min_local=4), length=32, warmup=1, repeats=3, new_tokens=2,
        paired_baseline=True,
    )  # fmt: skip
    method = ["reset", "streaming", "read"]  # the row's peak memory is the method's own run's
    # warm-up 0 and repeat 0: method first; repeat 1: baseline first; repeat 2: method first.
    assert calls == [*method, "baseline"] * 2 + ["baseline", *method] + [*method, "baseline"]
    for row in rows:
        assert row.paired_baseline_prefill_s > 0 and row.paired_baseline_decode_s > 0 and row.status == "ok"
    # The baseline itself is not paired.
    calls.clear()
    rows = measure_latency(
        model, model_name="tiny", method="baseline", scorer=get_scorer("baseline"), schedule=KeepSchedule([1], 1.0),
        length=32, warmup=1, repeats=2, new_tokens=2, paired_baseline=True,
    )  # fmt: skip
    assert calls == ["reset", "baseline", "read"] * 3 and all(pd.isna(row.paired_baseline_prefill_s) for row in rows)


def test_a_paired_baseline_out_of_memory_ends_the_pairs_not_the_job(monkeypatch, caplog):
    model = make_tiny_model("qwen2", "sdpa")
    calls: list[str] = []
    _recording_prefill(monkeypatch, calls, oom_from_baseline_call=2)  # the baseline fits once, then runs out
    rows = measure_latency(
        model, model_name="tiny", method="random", scorer=get_scorer("random"), schedule=KeepSchedule([1], 0.5),
        length=32, warmup=0, repeats=3, new_tokens=2, paired_baseline=True,
    )  # fmt: skip
    assert [row.status for row in rows] == ["ok"] * 3
    assert rows[0].paired_baseline_decode_s > 0
    assert [pd.isna(row.paired_baseline_prefill_s) for row in rows] == [False, True, True]
    assert calls.count("baseline") == 2 and "paired baseline at L=32 out of memory" in caplog.text


def test_latency_decodes_exactly_new_tokens_from_a_model_that_emits_eos(monkeypatch):
    """End2End must time exactly new_tokens tokens (DESIGN §2: decode "speedups" of an earlier reproduction came from
    generations cut short by EOS). On a model that emits EOS at once, every decode latency times, the method's and
    the paired baseline's, still produces new_tokens tokens."""
    model = make_eos_model(eos_token_id=0)
    schedule = KeepSchedule([1, 3], 0.5, min_local=8)
    # The model does emit EOS: a decode that honours it stops after one token.
    prefill = prefill_with_pruning(model, random_ids(64, seed=0), schedule, get_scorer("baseline"))
    assert decode_greedy(model, prefill, 6).tolist() == [[0]]
    decoded = []
    real_decode = latency_module.decode_greedy

    def recording_decode(*args, **kwargs):
        tokens = real_decode(*args, **kwargs)
        decoded.append(tokens)
        return tokens

    monkeypatch.setattr(latency_module, "decode_greedy", recording_decode)
    rows = measure_latency(
        model, model_name="tiny-eos", method="random", scorer=get_scorer("random"), schedule=schedule, length=64,
        warmup=1, repeats=2, new_tokens=6, paired_baseline=True,
    )  # fmt: skip
    assert [row.status for row in rows] == ["ok", "ok"] and all(row.new_tokens == 6 for row in rows)
    # 1 warm-up + 2 repeats, each the method's decode and its paired baseline's: all EOS, all 6 tokens long.
    assert [tokens.shape[1] for tokens in decoded] == [6] * 6
    assert all(bool((tokens == 0).all()) for tokens in decoded)
