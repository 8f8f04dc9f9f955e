"""What one job of the workflow asks a cluster scheduler for: memory (`mem_mb`, SLURM's `--mem`) and time (`runtime`,
minutes, SLURM's `--time`), from the model's config and the job's longest sequence.

The rules' resource functions (`rules/common.smk`) call these at DAG time, so nothing here imports torch or loads a
model: the model's `config.json` is read from the model's directory (the demo model the workflow built, or a local
`model.id`), or from the Hugging Face cache for a hub id; `model.config_overrides` are applied on top. A hub model
whose config is not on this machine gets `UNKNOWN_MODEL_MEM_MB` and `UNKNOWN_MODEL_RUNTIME_MIN` (set `mem_mb` /
`runtime` for such a rule in the profile's `set-resources`, or fetch the config first).

Memory: `sdtp.memory`'s estimate of the job (weights + KV cache + activations, what `python -m sdtp doctor` prints),
times `MEM_SAFETY`, plus `HOST_OVERHEAD_MB` for the interpreter, torch, transformers and the CUDA context's host side.
On a GPU the estimate is device memory; SLURM's `--mem` is host memory, which the job also needs for staging the
weights while loading, so the same figure bounds it. Time: the job's FLOPs at `ASSUMED_FLOPS_PER_S` plus the weight
reads of its decode steps at `ASSUMED_BYTES_PER_S` (pessimistic for any datacenter GPU), times `RUNTIME_SAFETY`, plus
`STARTUP_MIN` for start-up and loading. Both grow with Snakemake's `attempt` (a retried job asks for more).
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

from sdtp.memory import (
    DTYPE_BYTES,
    MemoryEstimate,
    dense_parameter_count,
    dtype_name,
    gradient_memory_estimate,
    memory_estimate,
)
from sdtp.model_dims import model_dims

MEM_SAFETY = 1.25
HOST_OVERHEAD_MB = 2048
UNKNOWN_MODEL_MEM_MB = 64000
UNKNOWN_MODEL_RUNTIME_MIN = 480
ASSUMED_FLOPS_PER_S = 1e13
ASSUMED_BYTES_PER_S = 2e11
RUNTIME_SAFETY = 3.0
STARTUP_MIN = 10
# LongBench v1's largest English tasks hold 500 records: the prediction count when `longbench.max_samples` is unset.
LONGBENCH_RECORDS = 500
VERIFY_DECODE_STEPS = 8  # python -m sdtp verify's default
VERIFY_PASSES = 10  # the unpruned check plus, per scorer, a pruned prefill and its masked reference


def _read_config(directory: str | os.PathLike) -> dict | None:
    path = Path(directory) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _cached_hub_config(model_id: str, revision: str | None) -> dict | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(model_id, "config.json", revision=revision)
    return json.loads(Path(path).read_text()) if isinstance(path, str) else None


def model_config(model: dict, model_dir: str | os.PathLike | None = None) -> dict | None:
    """The `config.json` of the config's `model:` section, as a dict with its `config_overrides` applied: from
    `model_dir` (the demo model the workflow built; FileNotFoundError naming it while it is not built), a local
    `model.id`, or the HF cache (no download); None when none of them has it."""
    found = None
    if model_dir:
        found = _read_config(model_dir)
        if found is None:  # not built yet: Snakemake evaluates the resource again once its input exists
            raise FileNotFoundError(errno.ENOENT, f"no config.json in {model_dir}", str(model_dir))
    elif model.get("id") and os.path.isdir(model["id"]):
        found = _read_config(model["id"])
    elif model.get("id"):
        found = _cached_hub_config(model["id"], model.get("revision"))
    if found is None:
        return None
    return {**found, **(model.get("config_overrides") or {})}


def _dtype(model: dict, config: dict) -> str:
    """model.dtype; `auto` is the checkpoint's own dtype (float32 when it names none)."""
    if model["dtype"] != "auto":
        return model["dtype"]
    configured = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return configured if configured in DTYPE_BYTES else "float32"


def _first_prune_layer(settings: dict) -> int:
    schedule = settings["schedule"]
    return min(schedule["layers"]) if schedule.get("layers") else schedule["start"]


def job_estimate(settings: dict, model: dict, config: dict, job: str, tokens: int, new_tokens: int = 0):
    """`sdtp.memory`'s estimate of one job over `tokens` prompt tokens (+ `new_tokens` decoded): `job` is
    "inference" (latency, predict, verify), "saliency" (checkpointed gradients: stage 1, the oracle) or "training"
    (stage 2, every layer's activations kept)."""
    dtype = _dtype(model, config)
    params = dense_parameter_count(config)
    if job == "inference":
        return memory_estimate(config, dtype, tokens, new_tokens, model["attn_implementation"], params, job=job)
    first = _first_prune_layer(settings)
    # The LM head's logit chunk of sdtp.saliency (1024 positions), passed so this stays torch-free.
    return gradient_memory_estimate(
        config, dtype, tokens + new_tokens, first, job == "saliency", params, job=job, logit_chunk=1024
    )


def mem_mb(estimate: MemoryEstimate | None, attempt: int = 1) -> int:
    """SLURM's `--mem` for a job of `estimate` (None: a model whose config is not here): MEM_SAFETY × the estimate
    + HOST_OVERHEAD_MB, in MB, times the attempt."""
    if estimate is None:
        return UNKNOWN_MODEL_MEM_MB * attempt
    return (math.ceil(estimate.total_bytes * MEM_SAFETY / 2**20) + HOST_OVERHEAD_MB) * attempt


def forward_flops(config: dict, tokens: int) -> float:
    """Matmul FLOPs of one forward pass over `tokens`: 2 per multiply-add with every parameter, plus causal attention
    (Q·Kᵀ and A·V over the n(n+1)/2 pairs of every layer)."""
    dims = model_dims(config)
    pairs = tokens * (tokens + 1) / 2
    return 2.0 * dense_parameter_count(config) * tokens + 2 * dims.num_layers * 2 * dims.q_width * pairs


def runtime_min(seconds: float | None, attempt: int = 1) -> int:
    """SLURM's `--time` in minutes for `seconds` of assumed work (None: a model whose config is not here)."""
    if seconds is None:
        return UNKNOWN_MODEL_RUNTIME_MIN * attempt
    return (STARTUP_MIN + math.ceil(RUNTIME_SAFETY * seconds / 60)) * attempt


def work_seconds(config: dict, dtype: str, forwards: float, tokens: int, decode_steps: float = 0) -> float:
    """Assumed seconds of `forwards` forward passes over `tokens` and `decode_steps` decode steps (each reading every
    weight once)."""
    weights_bytes = dense_parameter_count(config) * DTYPE_BYTES[dtype_name(dtype)]
    flops = forwards * forward_flops(config, tokens) + decode_steps * forward_flops(config, 1)
    return flops / ASSUMED_FLOPS_PER_S + decode_steps * weights_bytes / ASSUMED_BYTES_PER_S


def latency_work(settings: dict, model: dict, config: dict, length: int, method: str | None = None) -> float:
    """Every warm-up and repeat at `length`; a paired job (`latency.paired_baseline`, any method but the baseline)
    runs the unpruned baseline beside each, so it is counted twice at the unpruned cost (an upper bound)."""
    latency = settings["latency"]
    runs = latency["warmup"] + latency["repeats"]
    if latency.get("paired_baseline", False) and method not in (None, "baseline"):
        runs *= 2
    return work_seconds(config, _dtype(model, config), runs, length, runs * latency["new_tokens"])


def predict_work(settings: dict, model: dict, config: dict, new_tokens: int, oracle: bool) -> float:
    longbench = settings["longbench"]
    records = longbench["max_samples"] or (
        longbench["synthetic_records"] if longbench["source"] == "synthetic" else LONGBENCH_RECORDS
    )
    forwards = records * (4 if oracle else 1)  # the oracle's forward + checkpointed backward before each prefill
    return work_seconds(config, _dtype(model, config), forwards, longbench["max_input_tokens"], records * new_tokens)


def training_work(settings: dict, model: dict, config: dict, stage: str) -> float:
    """Stage 1 (`saliency`: forward, recomputed forward and backward per sample) or stage 2 (`training`: forward and
    backward per sample and epoch)."""
    train = settings["train_data"]
    samples = train["samples"] + train["heldout_samples"]
    forwards = samples * 4 if stage == "saliency" else samples * 3 * settings["pruner"].get("epochs", 2)
    return work_seconds(config, _dtype(model, config), forwards, train["max_tokens"])


def verify_work(settings: dict, model: dict, config: dict) -> float:
    tokens = settings["verify"]["tokens"]
    return work_seconds(config, _dtype(model, config), VERIFY_PASSES, tokens, VERIFY_PASSES * VERIFY_DECODE_STEPS)


def rule_request(
    settings: dict,
    rule: str,
    model: dict | None = None,
    model_dir: str | os.PathLike | None = None,
    length: int | None = None,
    method: str | None = None,
    new_tokens: int = 0,
) -> tuple[MemoryEstimate | None, float | None]:
    """(memory estimate, assumed seconds) of one job of `rule` under the validated config `settings`; (None, None)
    when the model's config is not on this machine. `model`: the job's `model:` section (default settings'; latency
    jobs pass theirs); `length`: a latency job's prompt; `method`: a latency job's or a prediction's method;
    `new_tokens`: a prediction's task's maximum new tokens."""
    model = model or settings["model"]
    config = model_config(model, model_dir)
    if config is None:
        return None, None
    if rule == "latency":
        new = settings["latency"]["new_tokens"]
        return job_estimate(settings, model, config, "inference", length, new), latency_work(
            settings, model, config, length, method
        )
    if rule == "predict":
        tokens = settings["longbench"]["max_input_tokens"]
        job = "saliency" if method == "oracle" else "inference"
        estimate = job_estimate(settings, model, config, job, tokens, new_tokens)
        return estimate, predict_work(settings, model, config, new_tokens, method == "oracle")
    if rule in ("verify", "verify_pruner"):
        tokens = settings["verify"]["tokens"]
        return job_estimate(settings, model, config, "inference", tokens, VERIFY_DECODE_STEPS), verify_work(
            settings, model, config
        )
    tokens = settings["train_data"]["max_tokens"]
    if rule == "saliency":
        return job_estimate(settings, model, config, "saliency", tokens), training_work(
            settings, model, config, "saliency"
        )
    if rule == "train_pruner":
        # pruner.lm_weight: 0 trains on the saliency targets alone, with no backward through the model
        job = "training" if settings["pruner"].get("lm_weight", 1.0) else "inference"
        return job_estimate(settings, model, config, job, tokens), training_work(settings, model, config, "training")
    raise ValueError(f"no resource estimate for rule {rule!r}")
