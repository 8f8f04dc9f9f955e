"""`python -m sdtp bench-prefill`: how fast is the pruned prefill, next to its FLOPs-ideal, in one run.

For each prompt length it times, round-robin so that drift hits every variant alike, after warm-up and synchronised:
`model(input_ids, logits_to_keep=1)` (transformers' own forward), the engine without pruning (`baseline`), and the
engine with SDTP's pruning module (random weights: timing only) at each keep ratio. It prints the medians, the
measured speedup over the engine's baseline, the FLOPs-ideal speedup (`sdtp.flops`), their ratio, and the pruning
module's share of the pruned prefill (timed in separate, synchronised runs so the timed runs stay free of extra syncs).

A length at which any variant runs out of memory (`sdtp.oom.is_out_of_memory`) gets one row per variant with
`status: "oom"` and NaN times, and the benchmark goes on with the next length; the other rows have `status: "ok"`.
"""

from __future__ import annotations

import logging

import pandas as pd
import torch

from sdtp.engine import prefill_with_pruning
from sdtp.flops import ideal_speedup, prefill_flops, scorer_flops
from sdtp.oom import describe, free_memory, is_out_of_memory
from sdtp.pruner import PruningModule
from sdtp.schedule import KeepSchedule
from sdtp.scorers import SdtpScorer, get_scorer
from sdtp.timing import median, model_devices, repeat_timed, synchronize, timed

log = logging.getLogger(__name__)

# A Qwen2-shaped model of ~42M parameters: big enough that matmuls dominate on a CPU, small enough for minutes.
SMALL_QWEN2 = dict(
    vocab_size=32_000,
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=2,
    max_position_embeddings=32_768,
    tie_word_embeddings=True,
)


def build_bench_model(shape: str, dtype: torch.dtype, device: str, attn: str):
    """A random-weight causal LM: `small` (above) or a hub id / local dir whose config is used (e.g. Qwen2-7B's)."""
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**SMALL_QWEN2) if shape == "small" else AutoConfig.from_pretrained(shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    return model.eval().requires_grad_(False)


def bench_prefill(model, lengths, ratios, schedule_layers, warmup, repeats, seed=0) -> pd.DataFrame:
    """One row per (length, variant, repeat) with prefill_s, plus analytic FLOPs, the scorer's share and the status;
    a length that runs out of memory gives one "oom" row per variant (NaN times) and the next length runs."""
    config = model.config
    device = next(model.parameters()).device
    devices = model_devices(model)  # all of them synchronised around each timed run
    torch.manual_seed(seed)
    pruner = SdtpScorer(PruningModule(schedule_layers, config.hidden_size))  # placed per layer by its begin()
    baseline = get_scorer("baseline")
    rows = []
    for length in lengths:
        variants = {"transformers": (None, None)}
        variants["baseline"] = (KeepSchedule(schedule_layers, 1.0), baseline)
        for ratio in ratios:
            variants[f"sdtp r={ratio}"] = (KeepSchedule(schedule_layers, ratio), pruner)
        oom = False
        try:
            times, shares = _time_length(model, length, variants, pruner, devices, warmup, repeats, seed)
        except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(error):
                raise
            log.warning("length %d: out of memory, going on with the next length: %s", length, describe(error))
            oom = True
        if oom:
            free_memory()  # outside the except block: its traceback holds the failed run's tensors
            times = {variant: [float("nan")] for variant in variants}
            shares = {}
        base_flops = prefill_flops(config, [length] * config.num_hidden_layers)
        for variant, (schedule, _) in variants.items():
            tokens = (
                schedule.tokens_per_layer(length, config.num_hidden_layers)
                if schedule
                else [length] * config.num_hidden_layers
            )
            flops = prefill_flops(config, tokens)
            if schedule is not None and schedule.keep_ratio < 1.0:  # the pruning modules' FLOPs are part of the run
                flops += scorer_flops("sdtp", config, schedule.tokens_scored(length))
            for repeat, seconds in enumerate(times[variant]):
                rows.append(
                    dict(
                        length=length,
                        variant=variant,
                        keep_ratio=schedule.keep_ratio if schedule else 1.0,
                        repeat=repeat,
                        prefill_s=seconds,
                        flops=flops,
                        baseline_flops=base_flops,
                        ideal_speedup=ideal_speedup(base_flops, flops),
                        scorer_share=shares.get(variant, float("nan")),
                        device=str(device),
                        dtype=str(model.dtype).removeprefix("torch."),
                        status="oom" if oom else "ok",
                    )
                )
        if not oom:
            log.info("length %d done: %s", length, {v: round(median(t), 4) for v, t in times.items()})
    return pd.DataFrame(rows)


def _time_length(model, length, variants, pruner, devices, warmup, repeats, seed):
    """({variant: seconds per repeat}, {pruned variant: the scorer's median share of its prefill}) at one length."""
    config = model.config
    device = next(model.parameters()).device
    ids = torch.randint(0, config.vocab_size, (1, length), generator=torch.Generator().manual_seed(seed)).to(device)

    def run(variant):
        schedule, scorer = variants[variant]
        if schedule is None:
            with torch.no_grad():
                return model(ids, logits_to_keep=1, use_cache=True)
        return prefill_with_pruning(model, ids, schedule, scorer)

    for variant in variants:
        repeat_timed(lambda v=variant: run(v), devices, warmup, 0)
    times = {variant: [] for variant in variants}
    for _ in range(repeats):
        for variant in variants:
            times[variant].append(timed(lambda v=variant: run(v), devices)[0])
    shares = {}
    for variant, (schedule, scorer) in variants.items():
        if scorer is pruner:
            values = []
            for _ in range(max(1, repeats // 2)):
                synchronize(devices)
                result = prefill_with_pruning(model, ids, schedule, scorer, time_scorer=True)
                values.append(result.scorer_s / median(times[variant]))
            shares[variant] = median(values)
    return times, shares


def summarize(rows: pd.DataFrame, peak_flops: float | None = None) -> pd.DataFrame:
    """Medians per (length, variant) with measured speedup vs the engine's baseline and its ratio to the ideal, and
    the analytic FLOP/s reached (`tflops_per_s`) with its fraction of `peak_flops` (`mfu`, the measured GEMM peak)."""
    table = (
        rows.groupby(["length", "variant"], sort=False)
        .agg(
            prefill_s=("prefill_s", "median"),
            flops=("flops", "first"),
            spread_s=("prefill_s", lambda s: s.max() - s.min()),
            ideal_speedup=("ideal_speedup", "first"),
            scorer_share=("scorer_share", "first"),
            status=("status", "first"),
        )
        .reset_index()
    )
    base = table[table.variant == "baseline"].set_index("length").prefill_s
    table["speedup"] = base.loc[table.length].to_numpy() / table.prefill_s
    table["measured_over_ideal"] = table.speedup / table.ideal_speedup
    table["tflops_per_s"] = table.flops / table.prefill_s / 1e12
    table["mfu"] = table.flops / table.prefill_s / peak_flops if peak_flops else float("nan")
    return table.drop(columns="flops")
