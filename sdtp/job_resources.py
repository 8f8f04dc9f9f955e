"""What one job of the workflow asks a cluster scheduler for: memory (`mem_mb`, SLURM's `--mem`) and time (`runtime`,
minutes, SLURM's `--time`), from the model's config and the work the job does.

The rules' resource functions (`rules/common.smk`) call these at DAG time, so nothing here imports torch or loads a
model: the model's `config.json` is read from the model's directory (the demo model the workflow built, or a local
`model.id`), or from the Hugging Face cache for a hub id; `model.config_overrides` are applied on top. A hub model
whose config is not on this machine gets `UNKNOWN_MODEL_MEM_MB` and `UNKNOWN_MODEL_RUNTIME_MIN` (set `mem_mb` /
`runtime` for such a rule in the profile's `set-resources`, or fetch the config first).
`python -m sdtp job-resources --configfile …` prints every rule's requests.

Memory: `sdtp.memory`'s estimate of the job (weights + KV cache + activations, what `python -m sdtp doctor` prints) at
its longest sequence, times `MEM_SAFETY`, plus `HOST_OVERHEAD_MB` for the interpreter, torch, transformers and the
CUDA context's host side. On a GPU the estimate is device memory; SLURM's `--mem` is host memory, which the job also
needs for staging the weights while loading, so the same figure bounds it.

Time: start-up and loading the weights, plus the work the job really does (a prediction job: the task's records,
their lengths, its new tokens): each prefill's FLOPs at `PREFILL_FLOPS_PER_S`, each decode step's reads (every weight
and the KV cache) at `DECODE_BYTES_PER_S` (or the host's per-layer overhead when longer); all times `RUNTIME_SAFETY`.
The rates and the factor, and why, are beside their constants. A retried job asks for at most `MAX_RETRY_FACTOR`
times its first request (`retry_factor`).
"""

from __future__ import annotations

import errno
import functools
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

# Time is modelled on the slowest GPU a 7B model at 32K tokens fits on (the 48 GB class: A40, A6000, L40S) at the
# efficiency transformers reaches at batch 1, so an A100 or H100 does the same work two to six times faster.
# Prefill is compute bound. bf16/fp16 tensor-core peaks: A40 ~150, A100 312, L40S 362, H100 989 TFLOP/s, of which a
# long prefill reaches 30-60 %; 50 TFLOP/s is a third of an A40's peak. float32 matmuls skip the tensor cores (torch
# leaves TF32 off): A100 19.5, A40 ~37 TFLOP/s, so 10.
PREFILL_FLOPS_PER_S = {"bfloat16": 5e13, "float16": 5e13, "float32": 1e13}
# A decode step at batch 1 is weight-read bound (DESIGN §7): every weight and the KV cache so far, once. HBM/GDDR
# bandwidth: A40 696 GB/s, L40S 864 GB/s, A100 1.6-2.0 TB/s, H100 3.35 TB/s; 500 GB/s is most of an A40's.
DECODE_BYTES_PER_S = 5e11
# The host's side of a decode step: Python and kernel launches, per decoder layer. Launches run ahead of the GPU, so a
# step takes the longer of the two; the host bounds a small model's steps (135M parameters in bf16: 0.5 ms of reads).
DECODE_LAYER_OVERHEAD_S = 5e-4
# The floor of every job: interpreter, torch and transformers imports, the CUDA context, tokenizer and data; then the
# weights, read from a shared filesystem at 200 MB/s (76 s for Qwen2-7B in bf16).
STARTUP_S = 120
LOAD_BYTES_PER_S = 2e8
# The rates above already describe the slowest GPU the job fits on, so the estimate is that GPU's time, not a best
# case. The factor covers what the model leaves out: tokenising, the scorers and pruning modules (< 1 % of the FLOPs,
# DESIGN §1), Python between records, a node shared with other jobs, a busy filesystem: tens of percent, not
# multiples. 2 keeps alive a job that runs twice as slowly as modelled, and keeps the paper's largest jobs within a
# few hours, under the MaxTime of common GPU partitions (a request above it pends forever: PartitionTimeLimit).
RUNTIME_SAFETY = 2.0
# A retried job (`--retries`) asks for twice its first memory and time, never more: the first request already carries
# its safety factor, so a job that outran it met something the model does not cover (a slow node, a neighbour's
# memory), which one doubling covers; growing with every attempt (x3, x4, …) soon asks for more than a partition's
# MaxTime or a node's memory, and such a job pends forever or is refused.
MAX_RETRY_FACTOR = 2

# LongBench v1's test records (THUDM/LongBench, 4,750 in all): 200 a task but these. A prediction job runs the first
# `longbench.max_samples` of them when that is set.
LONGBENCH_V1_RECORDS = {"multifieldqa_en": 150, "lcc": 500, "repobench-p": 500}
LONGBENCH_V1_DEFAULT_RECORDS = 200
# A record's JSONL line (UTF-8) holds at least this many bytes per prompt token: byte-level BPE tokenizers (Qwen2,
# Llama 3, Mistral) take about 4 bytes a token on English prose, code and Chinese alike, and the line also holds the
# answers and the JSON keys, so 2 over-counts a prompt's tokens about twice.
RECORD_BYTES_PER_TOKEN = 2
# The oracle marks tokens as stage 1 does before each pruned prefill: a forward pass keeping the layers' inputs, then
# per layer a recomputed forward and a backward (two forwards' FLOPs); then the prefill itself.
ORACLE_FORWARDS = 5
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


def latency_model_section(settings: dict) -> dict:
    """The `model:` section latency jobs load: the quality model's, or with `latency.model` set, its shape (its
    `config_overrides` over the model's), random weights and its own name (default `<model.name>-latency`)."""
    shape = settings["latency"].get("model")
    if shape is None:
        return settings["model"]
    overrides = {**settings["model"].get("config_overrides", {}), **shape.get("config_overrides", {})}
    name = shape.get("name") or f"{settings['model']['name']}-latency"
    return {**settings["model"], "name": name, "weights": "random", "config_overrides": overrides}


def _dtype(model: dict, config: dict) -> str:
    """model.dtype; `auto` is the checkpoint's own dtype (float32 when it names none)."""
    if model["dtype"] != "auto":
        return dtype_name(model["dtype"])
    configured = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return configured if configured in DTYPE_BYTES else "float32"


def _first_prune_layer(settings: dict) -> int:
    schedule = settings["schedule"]
    return min(schedule["layers"]) if schedule.get("layers") else schedule["start"]


def _is_oracle(method: str | None) -> bool:
    """oracle and oracle+<press> mark tokens by gradient saliency."""
    return method is not None and method.split("+")[0] == "oracle"


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


def retry_factor(attempt: int) -> int:
    """How much more a retried job asks for: 1 on the first attempt, MAX_RETRY_FACTOR on every later one."""
    return min(max(int(attempt), 1), MAX_RETRY_FACTOR)


def mem_mb(estimate: MemoryEstimate | None, attempt: int = 1) -> int:
    """SLURM's `--mem` for a job of `estimate` (None: a model whose config is not here): MEM_SAFETY × the estimate
    + HOST_OVERHEAD_MB, in MB, times `retry_factor(attempt)`."""
    if estimate is None:
        return UNKNOWN_MODEL_MEM_MB * retry_factor(attempt)
    return (math.ceil(estimate.total_bytes * MEM_SAFETY / 2**20) + HOST_OVERHEAD_MB) * retry_factor(attempt)


def runtime_min(seconds: float | None, attempt: int = 1) -> int:
    """SLURM's `--time` in minutes for a job of `seconds` (start-up included; None: a model whose config is not
    here): RUNTIME_SAFETY × the seconds, times `retry_factor(attempt)`."""
    if seconds is None:
        return UNKNOWN_MODEL_RUNTIME_MIN * retry_factor(attempt)
    return math.ceil(RUNTIME_SAFETY * seconds / 60) * retry_factor(attempt)


def forward_flops(config: dict, tokens: int) -> float:
    """Matmul FLOPs of one forward pass over `tokens`: 2 per multiply-add with every parameter, plus causal attention
    (Q·Kᵀ and A·V over the n(n+1)/2 pairs of every layer)."""
    dims = model_dims(config)
    pairs = tokens * (tokens + 1) / 2
    return 2.0 * dense_parameter_count(config) * tokens + 2 * dims.num_layers * 2 * dims.q_width * pairs


def prefill_seconds(config: dict, dtype: str, tokens: int) -> float:
    """Assumed seconds of one forward pass over `tokens`: its FLOPs at PREFILL_FLOPS_PER_S."""
    return forward_flops(config, tokens) / PREFILL_FLOPS_PER_S[dtype_name(dtype)]


def decode_step_seconds(config: dict, dtype: str, cached_tokens: int) -> float:
    """Assumed seconds of one decode step at batch 1 over a cache of `cached_tokens`: every weight and the (unpruned)
    KV cache read once at DECODE_BYTES_PER_S, or the host's DECODE_LAYER_OVERHEAD_S per layer when that is longer."""
    dims, element_bytes = model_dims(config), DTYPE_BYTES[dtype_name(dtype)]
    kv_bytes = dims.num_layers * 2 * dims.kv_width * cached_tokens * element_bytes
    read_bytes = dense_parameter_count(config) * element_bytes + kv_bytes
    return max(read_bytes / DECODE_BYTES_PER_S, dims.num_layers * DECODE_LAYER_OVERHEAD_S)


def generation_seconds(config: dict, dtype: str, prompt_tokens: int, new_tokens: int, forwards: float = 1) -> float:
    """`forwards` passes over the prompt (1: its prefill), then `new_tokens` decode steps, each at the longest cache
    (prompt + new tokens): an upper bound."""
    decode_s = new_tokens * decode_step_seconds(config, dtype, prompt_tokens + new_tokens)
    return forwards * prefill_seconds(config, dtype, prompt_tokens) + decode_s


def startup_seconds(config: dict, dtype: str) -> float:
    """Every job's floor: STARTUP_S, then the weights read at LOAD_BYTES_PER_S."""
    return STARTUP_S + dense_parameter_count(config) * DTYPE_BYTES[dtype_name(dtype)] / LOAD_BYTES_PER_S


def work_seconds(config: dict, dtype: str, forwards: float, tokens: int, decode_steps: float = 0) -> float:
    """A whole job's assumed seconds, what `runtime_min` takes: start-up and loading, `forwards` forward passes over
    `tokens`, and `decode_steps` decode steps over a cache of `tokens` (for a job whose passes are all alike)."""
    prefill_s = forwards * prefill_seconds(config, dtype, tokens)
    decode_s = decode_steps * decode_step_seconds(config, dtype, tokens)
    return startup_seconds(config, dtype) + prefill_s + decode_s


@functools.lru_cache(maxsize=256)
def _record_line_bytes(path: str, mtime_ns: int, size: int) -> tuple[int, ...]:
    """Bytes of each record (non-blank line) of a JSONL file; cached by path, mtime and size, since Snakemake
    evaluates every prediction job's resources at least twice."""
    with open(path, "rb") as records:
        return tuple(len(line) for line in records if line.strip())


def predicted_record_tokens(settings: dict, task: str, records: str | os.PathLike | None = None) -> list[int]:
    """Prompt tokens of every record a prediction job of `task` runs, each at most `longbench.max_input_tokens` (the
    prompt is truncated to that): from the task's records file (`python -m sdtp task-records`, the job's input), at
    RECORD_BYTES_PER_TOKEN bytes a token, when it is there; before it is written (a first run's DAG), an upper bound:
    the records the config asks for (`max_samples`, else `synthetic_records` or LongBench v1's count), each of
    `max_input_tokens`. Snakemake evaluates a job's resources again once its inputs exist, before submitting it."""
    longbench = settings["longbench"]
    cap = longbench["max_input_tokens"]
    if records is not None and os.path.isfile(records):
        stat = os.stat(records)
        line_bytes = _record_line_bytes(os.fspath(records), stat.st_mtime_ns, stat.st_size)
        return [min(cap, math.ceil(n / RECORD_BYTES_PER_TOKEN)) for n in line_bytes]
    if longbench["source"] == "synthetic":
        count = longbench["synthetic_records"]
    else:
        count = LONGBENCH_V1_RECORDS.get(task, LONGBENCH_V1_DEFAULT_RECORDS)
    if longbench.get("max_samples"):
        count = min(count, longbench["max_samples"])
    return [cap] * count


def latency_work(settings: dict, model: dict, config: dict, length: int, method: str | None = None) -> float:
    """Every warm-up and repeat at `length`, each a prefill and `latency.new_tokens` decode steps; a paired job
    (`latency.paired_baseline`, any method but the baseline) runs the unpruned baseline beside each, so it is counted
    twice at the unpruned cost (an upper bound)."""
    latency = settings["latency"]
    runs = latency["warmup"] + latency["repeats"]
    if latency.get("paired_baseline", False) and method not in (None, "baseline"):
        runs *= 2
    return runs * generation_seconds(config, _dtype(model, config), length, latency["new_tokens"])


def predict_work(
    settings: dict, model: dict, config: dict, record_tokens: list[int], new_tokens: int, oracle: bool
) -> float:
    """Every record's prefill (the oracle's saliency passes before it) and `new_tokens` decode steps (greedy
    generation may stop earlier at EOS: an upper bound)."""
    dtype, forwards = _dtype(model, config), ORACLE_FORWARDS if oracle else 1
    return sum(generation_seconds(config, dtype, tokens, new_tokens, forwards) for tokens in record_tokens)


def training_work(settings: dict, model: dict, config: dict, stage: str) -> float:
    """Stage 1 (`saliency`: forward, recomputed forward and backward per sample) or stage 2 (`training`: forward and
    backward per sample and epoch), every sample at `train_data.max_tokens` (an upper bound)."""
    train = settings["train_data"]
    samples = train["samples"] + train["heldout_samples"]
    forwards = samples * 4 if stage == "saliency" else samples * 3 * settings["pruner"].get("epochs", 2)
    return forwards * prefill_seconds(config, _dtype(model, config), train["max_tokens"])


def verify_work(settings: dict, model: dict, config: dict) -> float:
    tokens = settings["verify"]["tokens"]
    return VERIFY_PASSES * generation_seconds(config, _dtype(model, config), tokens, VERIFY_DECODE_STEPS)


def rule_request(
    settings: dict,
    rule: str,
    model: dict | None = None,
    model_dir: str | os.PathLike | None = None,
    length: int | None = None,
    method: str | None = None,
    new_tokens: int = 0,
    task: str | None = None,
    records: str | os.PathLike | None = None,
    config_json: dict | None = None,
) -> tuple[MemoryEstimate | None, float | None]:
    """(memory estimate, assumed seconds, start-up included) of one job of `rule` under the validated config
    `settings`; (None, None) when the model's config is not on this machine. `model`: the job's `model:` section
    (default settings'; latency jobs pass theirs); `length`: a latency job's prompt; `method`: a latency job's or a
    prediction's method; `new_tokens`, `task`, `records`: a prediction's task's maximum new tokens, name and records
    file (see `predicted_record_tokens`); `config_json`: the model's config.json with its overrides, when the caller
    has it (`python -m sdtp job-resources --model-config`), instead of `model_config(model, model_dir)`."""
    model = model or settings["model"]
    config = config_json if config_json is not None else model_config(model, model_dir)
    if config is None:
        return None, None
    startup_s = startup_seconds(config, _dtype(model, config))
    if rule == "latency":
        new = settings["latency"]["new_tokens"]
        estimate = job_estimate(settings, model, config, "inference", length, new)
        return estimate, startup_s + latency_work(settings, model, config, length, method)
    if rule == "predict":
        tokens = settings["longbench"]["max_input_tokens"]
        oracle = _is_oracle(method)
        estimate = job_estimate(settings, model, config, "saliency" if oracle else "inference", tokens, new_tokens)
        record_tokens = predicted_record_tokens(settings, task, records)
        return estimate, startup_s + predict_work(settings, model, config, record_tokens, new_tokens, oracle)
    if rule in ("verify", "verify_pruner"):
        tokens = settings["verify"]["tokens"]
        estimate = job_estimate(settings, model, config, "inference", tokens, VERIFY_DECODE_STEPS)
        return estimate, startup_s + verify_work(settings, model, config)
    tokens = settings["train_data"]["max_tokens"]
    if rule == "saliency":
        estimate = job_estimate(settings, model, config, "saliency", tokens)
        return estimate, startup_s + training_work(settings, model, config, "saliency")
    if rule == "train_pruner":
        # pruner.lm_weight: 0 trains on the saliency targets alone, with no backward through the model
        job = "training" if settings["pruner"].get("lm_weight", 1.0) else "inference"
        estimate = job_estimate(settings, model, config, job, tokens)
        return estimate, startup_s + training_work(settings, model, config, "training")
    raise ValueError(f"no resource estimate for rule {rule!r}")
