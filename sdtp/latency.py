"""`python -m sdtp latency`: one latency job = one (model, method, keep ratio, prompt length).

Per repeat, after warm-ups and synchronised on both sides of each timed region:
- prefill: `prefill_with_pruning` on a prompt of exactly `length` tokens (seeded random ids);
- decode: exactly `new_tokens` greedy tokens from that pruned cache (EOS ignored), so End2End = prefill + decode is
  comparable across methods.
- with `paired_baseline`, the unpruned baseline on the same prompt in the same process, right before or after (the
  order alternates per repeat): its times are the row's `paired_baseline_*_s`, and the summary's speedups are the
  medians of the per-repeat ratios. A machine whose speed drifts over seconds (a shared VM: decode medians of the same
  job moved 15 % between runs minutes apart) slows both sides of a pair alike, where separate jobs minutes apart
  would each catch their own moment.
Each repeat is one `LatencyRow` in the job's Parquet file, with the analytic FLOPs of this run and of the unpruned
baseline at the same length, the per-layer cache lengths and bytes, and the status (`ok`, `offloaded`, or a failure
recorded as a row with its `reason`: `oom`, or `error` for a method that cannot run on this input, `sdtp.failures`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import pandas as pd
import psutil
import torch

from sdtp.engine import decode_greedy, prefill_with_pruning
from sdtp.failures import recorded_failure
from sdtp.flops import compression_ratio, ideal_speedup, kv_bytes_per_layer, scorer_flops
from sdtp.models import weights_of
from sdtp.oom import describe, free_memory, is_out_of_memory
from sdtp.peaks import device_name  # the name `python -m sdtp peak` records, so peaks match rows
from sdtp.provenance import library_versions, provenance
from sdtp.roofline import decode_cost, run_costs
from sdtp.schedule import KeepSchedule
from sdtp.scorers import BaselineScorer
from sdtp.timing import model_devices, peak_memory_per_device, reset_peak_memory, timed

log = logging.getLogger(__name__)


@dataclass
class LatencyRow:
    """One timed repeat. Times in seconds, memory and KV in bytes, FLOPs counted as 2 per multiply-add."""

    model: str
    method: str
    keep_ratio: float
    length: int
    stages: int
    prune_layers: list[int]
    pruner_weights: str  # sdtp: "trained", or "random-init (timing only)" on a latency.model shape; "" otherwise
    repeat: int
    new_tokens: int
    device: str
    dtype: str
    weights: str  # what the weights are (sdtp.models.weights_of): "pretrained", "Q4_1 values dequantized to float32", …
    prefill_s: float
    decode_s: float
    total_s: float
    # The unpruned baseline timed beside this repeat in the same process (paired_baseline; NaN when unpaired, for the
    # baseline itself, or when the baseline ran out of memory where the method did not).
    paired_baseline_prefill_s: float
    paired_baseline_decode_s: float
    peak_memory_bytes: int  # the largest over the devices
    peak_memory_bytes_per_device: list[int]  # one per CUDA device in `devices` (empty on CPU)
    memory_kind: str  # "cuda_peak_allocated" or "cpu_rss"
    devices: list[str]  # every device the model spans, all synchronised around each timed region
    kv_lengths: list[int]
    kv_bytes_per_layer: list[int]
    kv_bytes: int
    prefill_flops: float
    baseline_prefill_flops: float
    ideal_speedup: float
    compression_ratio: float
    # The roofline's inputs (sdtp.roofline, bytes moved to or from memory): the summary divides them by the measured
    # peaks into the decode and End2End ideals, MFU and MBU. Decode = the new_tokens − 1 steps after the prefill.
    prefill_bytes: float
    decode_flops: float
    decode_bytes: float
    baseline_prefill_bytes: float
    baseline_decode_flops: float
    baseline_decode_bytes: float
    torch_version: str
    transformers_version: str
    accelerate_version: str | None  # torch, transformers, accelerate: sdtp.provenance.library_versions
    # sdtp.provenance: which machine, SLURM job (None outside SLURM) and GPUs produced the row
    host: str
    slurm_job_id: str | None
    cuda_visible_devices: str | None
    # KV-cache presses (sdtp.kv_compression): the budget the press's ratio came from ("" without a press) and that
    # ratio (fraction of each layer's KV pairs it removed; 0.0 without a press). With a press, kv_lengths,
    # compression_ratio and the decode roofline inputs are those of the compressed cache.
    kv_budget: str
    press_compression_ratio: float
    press_uncompressed_layers: list[int]  # layers too short for the press's window, left uncompressed
    status: str  # "ok", "offloaded", or a failure recorded as a row (sdtp.failures): "oom", "error"
    reason: str  # why a failed row failed ("" when ok)


def _peak_memory(devices: list[torch.device]) -> dict:
    """The row's memory columns: CUDA peaks per device (and their max), else the process's resident set size."""
    per_device = peak_memory_per_device(devices)
    if per_device:
        return dict(
            peak_memory_bytes=max(per_device),
            peak_memory_bytes_per_device=per_device,
            memory_kind="cuda_peak_allocated",
        )
    rss = int(psutil.Process().memory_info().rss)
    return dict(peak_memory_bytes=rss, peak_memory_bytes_per_device=[], memory_kind="cpu_rss")


NO_TIMES = (math.nan, math.nan)  # (prefill_s, decode_s) of a baseline that did not run beside the method


@dataclass(frozen=True)
class TimedRun:
    """One timed prefill + decode: seconds of each, and the cache lengths the prefill left ([num_layers])."""

    prefill_s: float
    decode_s: float
    kv_lengths: list[int]


@dataclass(frozen=True)
class TimedPair:
    """One warm-up or repeat: the method's run, its peak memory (the row's columns), and the paired baseline's
    (prefill_s, decode_s), `NO_TIMES` when it did not run."""

    method: TimedRun
    memory: dict
    baseline_times: tuple[float, float]


def seeded_prompt(vocab_size: int, length: int, seed: int) -> torch.Tensor:
    """(1, length) random token ids from a generator seeded with `seed`: every method of a sweep times this prompt."""
    return torch.randint(0, vocab_size, (1, length), generator=torch.Generator().manual_seed(seed))


@dataclass
class LatencyJob:
    """One prompt timed with one method, and with the unpruned baseline beside it while `paired` holds."""

    model: torch.nn.Module
    ids: torch.Tensor  # (1, length), on the device of the embeddings
    schedule: KeepSchedule
    scorer: object  # a `sdtp.scorers` scorer
    kv_compression: object | None  # a `sdtp.kv_compression.KVCompression`, or None
    new_tokens: int
    devices: list[torch.device]  # every device the model spans: each one synchronised around each timed region
    paired: bool  # off for good once the baseline runs out of memory where the method fits

    def timed_run(self, scorer, kv_compression) -> TimedRun:
        """Prefill with `scorer` (and the press), then decode exactly `new_tokens` greedy tokens from that cache."""
        model, ids, new_tokens = self.model, self.ids, self.new_tokens
        prefill_s, result = timed(
            lambda: prefill_with_pruning(model, ids, self.schedule, scorer, kv_compression=kv_compression), self.devices
        )
        kv_lengths = result.kv_lengths  # before decoding grows the cache
        # EOS ignored: generations of different lengths would make decode times incomparable (DESIGN §2).
        decode_s, tokens = timed(lambda: decode_greedy(model, result, new_tokens, ignore_eos=True), self.devices)
        assert tokens.shape[1] == new_tokens, "decode must produce exactly new_tokens tokens"
        return TimedRun(prefill_s, decode_s, kv_lengths)

    def paired_baseline_times(self) -> tuple[float, float]:
        """The unpruned baseline's (prefill_s, decode_s) on the same prompt; out of memory, pairing stops."""
        try:
            run = self.timed_run(BaselineScorer(), None)
            return run.prefill_s, run.decode_s
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            message = describe(error)
        self.paired = False
        free_memory()  # outside the except block, whose traceback holds the failed run's tensors
        log.warning("paired baseline at L=%d out of memory (%s): no more pairs; speedups use the baseline job",
                    self.ids.shape[1], message)  # fmt: skip
        return NO_TIMES

    def timed_pair(self, index: int) -> TimedPair:
        """The method's run, with the baseline's first on odd indices and second on even ones while paired."""
        baseline_first = self.paired and index % 2 == 1
        baseline_times = self.paired_baseline_times() if baseline_first else NO_TIMES
        reset_peak_memory(self.devices)
        method = self.timed_run(self.scorer, self.kv_compression)
        memory = _peak_memory(self.devices)  # the method's own run's, not the baseline's
        if self.paired and not baseline_first:
            baseline_times = self.paired_baseline_times()
        return TimedPair(method, memory, baseline_times)


def measure_latency(
    model,
    *,
    model_name: str,
    method: str,
    scorer,
    schedule: KeepSchedule,
    length: int,
    warmup: int,
    repeats: int,
    new_tokens: int,
    seed: int = 0,
    pruner_weights: str = "",
    kv_compression=None,
    paired_baseline: bool = False,
) -> list[LatencyRow]:
    """Time `repeats` prefill + decode runs after `warmup` untimed ones; one row per repeat.

    `paired_baseline`: each warm-up and repeat also runs the unpruned baseline (no scorer, no press) beside it, first
    on odd repeats and second on even ones (module docstring). A method that neither prunes nor compresses is not
    paired. The row's peak memory is the method's own run's.

    An out-of-memory error (`sdtp.oom.is_out_of_memory`: `torch.OutOfMemoryError`, or a RuntimeError saying "out of
    memory" as cuBLAS and FlashAttention raise) becomes a single row with status "oom" (and NaN times), so a sweep
    over lengths finishes and shows where the device ran out; the memory is freed before the row is built.

    `kv_compression` (`sdtp.kv_compression.KVCompression`): a press compresses each layer's cache after the prefill's
    attention; its scoring FLOPs are not counted (a window of queries per layer, small beside the layer's).
    """
    config = model.config
    devices = model_devices(model)
    num_layers = config.num_hidden_layers
    tokens_per_layer = schedule.tokens_per_layer(length, num_layers) if scorer.prunes else [length] * num_layers
    reduces_cache = scorer.prunes or kv_compression is not None
    setup = dict(
        model=model_name,
        method=method,
        keep_ratio=schedule.keep_ratio if reduces_cache else 1.0,
        length=length,
        stages=schedule.num_stages if scorer.prunes else 0,
        prune_layers=list(schedule.layers) if scorer.prunes else [],
        pruner_weights=pruner_weights,
        new_tokens=new_tokens,
        kv_budget="",
        press_compression_ratio=0.0,
        press_uncompressed_layers=[],
    )
    common = {
        **setup,
        **_machine_columns(model, devices),
        **_cost_columns(config, model.dtype, scorer, schedule, length, tokens_per_layer, new_tokens),
    }
    status = _run_status(devices)
    ids = seeded_prompt(config.vocab_size, length, seed).to(model.model.embed_tokens.weight.device)
    job = LatencyJob(
        model, ids, schedule, scorer, kv_compression, new_tokens, devices, paired_baseline and reduces_cache
    )
    try:
        for index in range(warmup):
            job.timed_pair(index)
            log.info("%s r=%s L=%d: warm-up %d/%d done", method, common["keep_ratio"], length, index + 1, warmup)
        rows = []
        for repeat in range(repeats):
            pair = job.timed_pair(repeat)
            press = _press_columns(kv_compression, config, length, pair.method.kv_lengths, new_tokens, model.dtype)
            rows.append(_repeat_row({**common, **press}, repeat, pair, config, model.dtype, status))
            _log_row(rows[-1], repeats)
        return rows
    except RuntimeError as error:  # torch.OutOfMemoryError is one; so are cuBLAS's and FlashAttention's OOM errors
        failure = recorded_failure(error)  # out of memory, or a method that cannot run here (a press on a short layer)
        if failure is None:
            raise
        log.warning("%s r=%s L=%d: %s: %s", method, common["keep_ratio"], length, *failure)
    free_memory()  # outside the except block, whose traceback holds the failed run's tensors
    return [_failure_row(common, devices, tokens_per_layer, *failure)]


def _machine_columns(model, devices: list[torch.device]) -> dict:
    """Where and with what the job runs: device names (every CUDA device the model spans), dtype, what the weights are,
    versions and provenance (read after the GPU pool set CUDA_VISIBLE_DEVICES)."""
    cuda = [d for d in devices if d.type == "cuda"]
    prompt_device = model.model.embed_tokens.weight.device
    return dict(
        device=", ".join(device_name(d) for d in cuda) if cuda else device_name(prompt_device),
        devices=[str(d) for d in devices],
        dtype=str(model.dtype).removeprefix("torch."),
        weights=weights_of(model),
        **library_versions(),
        **provenance(),
    )


def _run_status(devices: list[torch.device]) -> str:
    """ "ok", or "offloaded" for a model partly on cpu/disk next to its GPUs (device_map offloading): timed, but not
    a GPU's latency."""
    offloaded = any(d.type == "cuda" for d in devices) and any(d.type in ("cpu", "meta") for d in devices)
    if offloaded:
        log.warning("part of the model is offloaded to %s: rows are marked 'offloaded', not 'ok'", devices)
    return "offloaded" if offloaded else "ok"


def _cost_columns(
    config, dtype, scorer, schedule: KeepSchedule, length: int, tokens_per_layer: list[int], new_tokens: int
) -> dict:
    """The analytic columns of this run and of the unpruned baseline: FLOPs, the roofline's bytes, the ideal
    speedup and the compression ratio. The pruned prefill's FLOPs include its scorer's (the SDTP pruning modules,
    the attention row), so the ideal speedup is the one this method can reach."""
    scoring = scorer.prunes and schedule.keep_ratio < 1.0
    scoring_flops = scorer_flops(scorer.name, config, schedule.tokens_scored(length)) if scoring else 0.0
    costs = run_costs(config, length, tokens_per_layer, new_tokens, dtype, scoring_flops)
    return dict(
        prefill_flops=costs.prefill.flops,
        baseline_prefill_flops=costs.baseline_prefill.flops,
        ideal_speedup=ideal_speedup(costs.baseline_prefill.flops, costs.prefill.flops),
        compression_ratio=compression_ratio(length, tokens_per_layer),
        prefill_bytes=costs.prefill.bytes,
        decode_flops=costs.decode.flops,
        decode_bytes=costs.decode.bytes,
        baseline_prefill_bytes=costs.baseline_prefill.bytes,
        baseline_decode_flops=costs.baseline_decode.flops,
        baseline_decode_bytes=costs.baseline_decode.bytes,
    )


def _press_columns(kv_compression, config, length: int, kv_lengths: list[int], new_tokens: int, dtype) -> dict:
    """A press's row columns, from the cache it left: budget, ratio, compression and the decode roofline's inputs."""
    if kv_compression is None:
        return {}
    decode = decode_cost(config, kv_lengths, new_tokens, dtype)
    return dict(
        kv_budget=kv_compression.budget,
        press_compression_ratio=kv_compression.last_compression_ratio,
        press_uncompressed_layers=list(kv_compression.last_uncompressed_layers),
        compression_ratio=compression_ratio(length, kv_lengths),
        decode_flops=decode.flops,
        decode_bytes=decode.bytes,
    )


def _repeat_row(columns: dict, repeat: int, pair: TimedPair, config, dtype, status: str) -> LatencyRow:
    """The row of one timed repeat: the job's `columns`, the pair's times and memory, the cache it left."""
    run = pair.method
    kv_bytes = kv_bytes_per_layer(config, run.kv_lengths, dtype)
    baseline_prefill_s, baseline_decode_s = pair.baseline_times
    return LatencyRow(
        **columns,
        repeat=repeat,
        prefill_s=run.prefill_s,
        decode_s=run.decode_s,
        total_s=run.prefill_s + run.decode_s,
        paired_baseline_prefill_s=baseline_prefill_s,
        paired_baseline_decode_s=baseline_decode_s,
        **pair.memory,
        kv_lengths=run.kv_lengths,
        kv_bytes_per_layer=kv_bytes,
        kv_bytes=sum(kv_bytes),
        status=status,
        reason="",
    )


def _failure_row(
    columns: dict, devices: list[torch.device], tokens_per_layer: list[int], status: str, reason: str
) -> LatencyRow:
    """The job's one row when it could not measure (out of memory, or a method that cannot run on this input): NaN
    times, the memory after freeing, the schedule's lengths, the status and its reason."""
    nan = math.nan
    return LatencyRow(
        **columns,
        repeat=0,
        prefill_s=nan,
        decode_s=nan,
        total_s=nan,
        paired_baseline_prefill_s=nan,
        paired_baseline_decode_s=nan,
        **_peak_memory(devices),
        kv_lengths=tokens_per_layer,
        kv_bytes_per_layer=[],
        kv_bytes=0,
        status=status,
        reason=reason,
    )


def _log_row(row: LatencyRow, repeats: int) -> None:
    """One line per repeat: its times, and the paired baseline's when it ran."""
    paired = "" if math.isnan(row.paired_baseline_prefill_s) else (
        f"; paired baseline prefill {row.paired_baseline_prefill_s:.4f} s, decode {row.paired_baseline_decode_s:.4f} s"
    )  # fmt: skip
    log.info("%s r=%s L=%d repeat %d/%d: prefill %.4f s, decode %.4f s (%d tokens)%s", row.method, row.keep_ratio,
             row.length, row.repeat + 1, repeats, row.prefill_s, row.decode_s, row.new_tokens, paired)  # fmt: skip


def rows_to_frame(rows: list[LatencyRow]) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(row) for row in rows])
