"""`python -m sdtp doctor`: what this machine offers the pipeline and whether a config will run on it, one line per
item (`ok`, or `PROBLEM:` with what to do), optionally written as JSON.

Checks: Python and package versions against envs/constraints.txt; CUDA and every visible device (memory, compute
capability, bf16) or the CPU; the SDPA kernels and flash_attn; the GPU pool's lock directory (writable, file locks
work); SLURM; the hub (cache, token set or not, reachable, what the config still has to download); free disk; the
model's parameter count from its config alone and the estimated memory of the config's largest jobs against each
device (the formulas: `sdtp.doctor`).

Exit status 0 whatever the checks find; 2 when the doctor cannot run (config file missing, unreadable or invalid).

Why over 400 lines: this is the one command that interprets a whole config (model source and overrides, data
sources, every job's longest prompt, devices) rather than one section; the interpretation is kept next to the report
it feeds. The machine checks themselves are library code (`sdtp.doctor`). A split into `doctor` (CLI) and a config
interpreter module is the next step when it grows.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from sdtp import doctor, memory
from sdtp.commands import gpu_pool
from sdtp.io import atomic_path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT / "schemas" / "config.schema.yaml"
CONSTRAINTS = REPO_ROOT / "envs" / "constraints.txt"
# Results: tables, saliency tensors, pruner checkpoints, predictions — small next to a model; 1 GiB is plenty.
RESULTS_NEED_BYTES = 1 * doctor.GIB
# Demo-config keys that change the demo model's shape (the rest change its training).
DEMO_SHAPE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
)
# Hub organisations whose repos are gated (a licence to accept, then a token).
GATED_PREFIXES = ("meta-llama/", "mistralai/", "google/gemma")
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)


class DoctorError(RuntimeError):
    """The doctor cannot run (the message names the file and the key)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile", default="config.yaml", help="the workflow config to check (default: config.yaml, the demo)"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the report as JSON to PATH")
    parser.add_argument(
        "--hub-timeout", type=float, default=doctor.HUB_TIMEOUT_S, help="seconds to wait for the hub's answer"
    )


# --- the config -------------------------------------------------------------------------------------------------


def load_config(path: str | Path, schema: Path = SCHEMA) -> dict:
    """The config file, validated against the schema with its defaults filled in (as the Snakefile does)."""
    path = Path(path)
    if not path.is_file():
        raise DoctorError(
            f"config file {str(path)!r} not found (run from the workflow's directory, or give --configfile PATH)"
        )
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DoctorError(f"config file {str(path)!r} cannot be read as YAML: {error}") from error
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise DoctorError(f"config file {str(path)!r} must hold a mapping of config keys, not {type(config).__name__}")
    if not schema.is_file():
        raise DoctorError(f"the config schema {str(schema)!r} is missing (run from a checkout of the repository)")
    from jsonschema import ValidationError
    from snakemake.utils import validate

    try:
        validate(config, str(schema), set_default=True)
    except Exception as error:  # noqa: BLE001 - snakemake's WorkflowError wraps jsonschema's ValidationError
        cause = error.__context__
        if isinstance(cause, ValidationError):
            key = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
            raise DoctorError(f"config file {str(path)!r} is invalid at {key}: {cause.message}") from error
        raise DoctorError(f"config file {str(path)!r} is invalid: {error}") from error
    return config


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str] | None:
    """`name==version` lines of envs/constraints.txt; None when the file is not there (an installed package)."""
    if not path.is_file():
        return None
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip()] = version.strip()
    return pins


# --- machine-level checks that need the GPU pool ---------------------------------------------------------------


def _writable_lock_dir(path: Path) -> tuple[bool, str]:
    """Create `path` (and its missing parents), a lock file in it, flock it, then remove whatever was created."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".doctor-", suffix=".lock", dir=path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            os.unlink(tmp)
        return True, "writable, file locks work"
    except OSError as error:
        return False, f"{type(error).__name__}: {error}"
    finally:
        for created in missing:  # deepest first
            with contextlib.suppress(OSError):
                created.rmdir()


def pool_checks(gpus_per_job: int, step_pins: bool) -> list[doctor.Check]:
    """The GPU pool's lock directory (per host): writable, and flock works there."""
    lock_dir = gpu_pool._lock_dir(None)
    ok, how = _writable_lock_dir(lock_dir)
    use = (
        "unused here (SLURM binds the GPUs)"
        if step_pins
        else f"jobs claim {gpus_per_job} GPU(s) each"
        if gpus_per_job
        else "unused (resources.gpu: 0)"
    )
    data = {"lock_dir": str(lock_dir.absolute()), "host": platform.node(), "writable": ok, "gpus_per_job": gpus_per_job}
    detail = f"lock dir {lock_dir.absolute()} (this host: {platform.node()}): {how}; {use}"
    if ok:
        return [doctor.Check("gpu pool", True, detail, data=data)]
    return [
        doctor.Check(
            "gpu pool",
            not gpus_per_job or step_pins,
            detail,
            "" if not gpus_per_job or step_pins else f"export {gpu_pool.LOCK_DIR_ENV}=<a writable local directory>",
            data,
        )
    ]


# --- the model --------------------------------------------------------------------------------------------------


def _looks_local(model_id: str) -> bool:
    return (
        model_id.startswith(("/", "./", "../", "~")) or model_id.count("/") > 1 or Path(model_id).expanduser().exists()
    )


def _cached(repo_id: str, filenames, revision: str | None = None, repo_type: str | None = None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        try:
            found = try_to_load_from_cache(
                repo_id, name, cache_dir=doctor.hub_cache_dir(), revision=revision, repo_type=repo_type
            )
        except Exception:  # noqa: BLE001 - an odd repo id or cache layout is "not cached"
            found = None
        if isinstance(found, str):
            return found
    return None


def _apply_overrides(model_config, overrides: dict) -> list[str]:
    applied = []
    for key, value in overrides.items():
        if hasattr(model_config, key):
            setattr(model_config, key, value)
            applied.append(key)
    return applied


def model_checks(config: dict, hub: doctor.HubStatus) -> tuple[Any, int | None, list[doctor.Check], list[str]]:
    """(model config or None, parameters or None, the report's lines, what still has to be downloaded)."""
    from transformers import AutoConfig

    model = config["model"]
    needed: list[str] = []
    checks: list[doctor.Check] = []
    if model["source"] == "demo":
        from sdtp.demo_model import SHIPPED_CHECKPOINT

        model_config = AutoConfig.from_pretrained(SHIPPED_CHECKPOINT)
        applied = _apply_overrides(model_config, {k: v for k, v in config["demo"].items() if k in DEMO_SHAPE_KEYS})
        where = "the shipped demo checkpoint's config" + (f" with demo: {', '.join(applied)}" if applied else "")
    else:
        model_id = model.get("id")
        if not model_id:
            checks.append(
                doctor.Check(
                    "model", False, "model.source is hub but model.id is not set", "set model.id (hub id or directory)"
                )
            )
            return None, None, checks, needed
        revision = model.get("revision")
        if _looks_local(model_id):
            path = Path(model_id).expanduser()
            try:
                model_config = AutoConfig.from_pretrained(path)
            except (OSError, ValueError) as error:
                checks.append(
                    doctor.Check(
                        "model",
                        False,
                        f"{model_id}: no readable config.json ({type(error).__name__})",
                        "set model.id to a directory written by save_pretrained, or to a hub id",
                    )
                )
                return None, None, checks, needed
            where = f"local directory {path}"
            has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
            if model["weights"] == "pretrained" and not has_weights:
                checks.append(
                    doctor.Check(
                        "model weights",
                        False,
                        f"{path} holds a config but no *.safetensors / *.bin weights",
                        "copy the weights there, or set model.weights: random for latency-only runs",
                    )
                )
        else:
            offline = hub.offline or not hub.reachable
            try:
                model_config = AutoConfig.from_pretrained(
                    model_id, revision=revision, local_files_only=offline, cache_dir=doctor.hub_cache_dir()
                )
            except (OSError, ValueError) as error:
                why = (
                    "offline (HF_HUB_OFFLINE=1) and not in the HF cache"
                    if hub.offline
                    else "the hub is unreachable and it is not in the HF cache"
                    if not hub.reachable
                    else f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                )
                gated = model_id.startswith(GATED_PREFIXES)
                advice = (
                    "check model.id; for a gated repo accept its licence on the hub and export HF_TOKEN"
                    if hub.reachable
                    else "run where the hub is reachable, or copy the model into the HF cache (HF_HOME / HF_HUB_CACHE) "
                    "and export HF_HUB_OFFLINE=1, or set model.id to a local directory"
                )
                checks.append(
                    doctor.Check(
                        "model",
                        False,
                        f"{model_id}: parameters unknown: config not reachable ({why})",
                        advice + ("; this repo is gated: export HF_TOKEN" if gated else ""),
                        {"id": model_id, "params": None},
                    )
                )
                needed.append(f"model {model_id}")
                return None, None, checks, needed
            where = f"hub {model_id}" + (f" @ {revision}" if revision else "")
            if model["weights"] == "pretrained":
                cached = _cached(model_id, WEIGHT_FILES, revision)
                if cached:
                    checks.append(doctor.Check("model weights", True, f"{model_id}: in the HF cache"))
                else:
                    needed.append(f"model {model_id}")
    _apply_overrides(model_config, model.get("config_overrides") or {})
    try:
        params = memory.parameter_count(model_config)
    except Exception as error:  # noqa: BLE001 - an architecture transformers cannot build: report, go on
        checks.append(
            doctor.Check(
                "model",
                False,
                f"{model.get('id') or model['name']} ({where}): cannot be built from its config: {error}",
                "check model.id and model.config_overrides",
            )
        )
        return model_config, None, checks, needed
    layers = getattr(model_config, "num_hidden_layers", "?")
    checks.insert(
        0,
        doctor.Check(
            "model",
            True,
            f"{model['name']} ({where}): {doctor.count(params)} parameters, {layers} layers, "
            f"{model['dtype']}, attn_implementation {model['attn_implementation']}, weights {model['weights']}",
            data={"params": params, "num_hidden_layers": layers, "source": where},
        ),
    )
    return model_config, params, checks, needed


def data_checks(config: dict, hub: doctor.HubStatus) -> tuple[list[doctor.Check], list[str]]:
    """The datasets the config reads: a local copy that must exist, or a download (cached already, or not: then the
    hub must answer). Returns (the report's lines, what still has to be downloaded)."""
    from sdtp.data.dolly import DOLLY_FILENAME, DOLLY_REPO_ID
    from sdtp.longbench.data import DEFAULT_DATA_DIR, LONGBENCH_ARCHIVE, LONGBENCH_REPO_ID, task_file

    checks: list[doctor.Check] = []
    downloads: list[tuple[str, str, bool]] = []  # (what, the config key for a local copy, cached already)
    train, longbench = config["train_data"], config["longbench"]
    if ("sdtp" in config["methods"] or "sdtp" in config["latency"]["methods"]) and train["source"] == "dolly":
        if train["path"]:
            found = Path(train["path"]).expanduser().is_file()
            checks.append(
                doctor.Check(
                    "train data",
                    found,
                    f"train_data.path {train['path']}" + (" exists" if found else " does not exist"),
                    "" if found else f"set train_data.path to your {DOLLY_FILENAME}, or null to download it",
                )
            )
        else:
            cached = _cached(DOLLY_REPO_ID, [DOLLY_FILENAME], repo_type="dataset") is not None
            downloads.append((f"dataset {DOLLY_REPO_ID}", "train_data.path", cached))
    if config["methods"] and longbench["source"] == "v1":
        if longbench["data_dir"]:
            missing = []
            for task in longbench["tasks"]:
                try:
                    task_file(task, longbench["data_dir"])
                except FileNotFoundError:
                    missing.append(task)
            checks.append(
                doctor.Check(
                    "longbench data",
                    not missing,
                    f"longbench.data_dir {longbench['data_dir']}: "
                    + (f"no <task>.jsonl for {', '.join(missing)}" if missing else "every task's JSONL file is there"),
                    "" if not missing else "set longbench.data_dir to the extracted data.zip of THUDM/LongBench",
                )
            )
        else:
            extracted = DEFAULT_DATA_DIR.is_dir() and any(DEFAULT_DATA_DIR.glob("*.jsonl"))
            cached = extracted or _cached(LONGBENCH_REPO_ID, [LONGBENCH_ARCHIVE], repo_type="dataset") is not None
            downloads.append((f"dataset {LONGBENCH_REPO_ID}", "longbench.data_dir", cached))

    needed = []
    for what, key, cached in downloads:
        if cached:
            checks.append(doctor.Check(what, True, "in the HF cache (or extracted locally)"))
            continue
        needed.append(what)
        if hub.reachable:
            checks.append(doctor.Check(what, True, "not cached; will be downloaded on first use"))
        else:
            checks.append(
                doctor.Check(
                    what,
                    False,
                    "not in the HF cache and the hub is "
                    + ("off (HF_HUB_OFFLINE=1)" if hub.offline else "unreachable"),
                    f"set {key} to a local copy, or download it where the hub is reachable",
                )
            )
    return checks, needed


# --- memory -----------------------------------------------------------------------------------------------------


def longest_prompt(config: dict) -> tuple[int, int, str] | None:
    """(prompt tokens, new tokens, which setting) of the longest sequence an inference job runs, or None."""
    from sdtp.longbench.tasks import get_task

    candidates = []
    latency = config["latency"]
    if latency["methods"]:
        candidates.append((max(latency["lengths"]), latency["new_tokens"], "latency.lengths"))
    if config["methods"]:
        longbench = config["longbench"]
        new_tokens = []
        for task in longbench["tasks"]:
            try:
                new_tokens.append(get_task(task).max_new_tokens)
            except ValueError:
                continue
        candidates.append((longbench["max_input_tokens"], max(new_tokens, default=0), "longbench.max_input_tokens"))
    return max(candidates, key=lambda c: c[0] + c[1]) if candidates else None


def memory_estimates(config: dict, model_config, params: int) -> list[memory.MemoryEstimate]:
    """The config's largest jobs: inference at the longest prompt; the oracle's gradient saliency at LongBench's
    longest prompt; stage-1 saliency and stage-2 pruner training at train_data.max_tokens."""
    import torch

    from sdtp.pruner_training import PrunerTrainConfig

    dtype = config["model"]["dtype"]
    if dtype == "auto":
        configured = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
        dtype = str(configured).removeprefix("torch.") if configured else "float32"
    torch_dtype = getattr(torch, dtype)
    schedule = config["schedule"]
    first_layer = min(schedule["layers"]) if schedule.get("layers") else schedule["start"]
    estimates = []
    longest = longest_prompt(config)
    if longest:
        length, new_tokens, key = longest
        estimates.append(
            memory.memory_estimate(
                model_config,
                torch_dtype,
                length,
                new_tokens,
                config["model"]["attn_implementation"],
                params,
                job="prefill + decode",
                remedy=f"lower {key}",
            )
        )
    if "oracle" in config["methods"]:
        length, new_tokens, _ = longest_prompt({**config, "latency": {"methods": []}})
        estimates.append(
            memory.gradient_memory_estimate(
                model_config,
                torch_dtype,
                length + new_tokens,
                first_layer,
                checkpointed=True,
                params=params,
                job="oracle saliency",
                remedy="drop oracle from methods, or lower longbench.max_input_tokens",
            )
        )
    if "sdtp" in config["methods"] or "sdtp" in config["latency"]["methods"]:
        tokens = config["train_data"]["max_tokens"]
        estimates.append(
            memory.gradient_memory_estimate(
                model_config,
                torch_dtype,
                tokens,
                first_layer,
                checkpointed=True,
                params=params,
                job="stage-1 saliency",
                remedy="lower train_data.max_tokens",
            )
        )
        lm_weight = config["pruner"].get("lm_weight", PrunerTrainConfig().lm_weight)
        if lm_weight:
            estimates.append(
                memory.gradient_memory_estimate(
                    model_config,
                    torch_dtype,
                    tokens,
                    first_layer,
                    checkpointed=False,
                    params=params,
                    job="stage-2 pruner training",
                    remedy="lower train_data.max_tokens, or set pruner.lm_weight: 0 (no backward through the model)",
                )
            )
    return estimates


# --- the report -------------------------------------------------------------------------------------------------


def device_config_checks(config: dict, found: list[doctor.Device], step_pins: bool) -> list[doctor.Check]:
    """Does the config's device and GPU count match the devices there are."""
    model, gpus = config["model"], config["resources"]["gpu"]
    checks = []
    if not found:
        if model["device"].startswith("cuda") or gpus > 0 or model.get("device_map"):
            checks.append(
                doctor.Check(
                    "config devices",
                    False,
                    f"model.device: {model['device']}, resources.gpu: {gpus}, but there is no CUDA device",
                    "run on a GPU box, or set model.device: auto and resources.gpu: 0 to run on CPU",
                )
            )
        else:
            checks.append(doctor.Check("config devices", True, f"model.device: {model['device']}, resources.gpu: 0"))
        return checks
    if gpus > len(found) and not step_pins:
        checks.append(
            doctor.Check(
                "config devices",
                False,
                f"jobs claim resources.gpu: {gpus} devices each, but {len(found)} are visible: no job could start",
                f"set resources.gpu: {len(found)} (or fewer)",
            )
        )
    elif gpus == 0 and config["model"]["source"] == "hub" and model["device"] != "cpu":
        checks.append(
            doctor.Check(
                "config devices",
                False,
                f"resources.gpu: 0 with model.device: {model['device']}: concurrent jobs all load the model on cuda:0",
                "set resources.gpu: 1 so that each job claims its own GPU from the pool",
            )
        )
    else:
        checks.append(
            doctor.Check(
                "config devices", True, f"model.device: {model['device']}, resources.gpu: {gpus} of {len(found)}"
            )
        )
    return checks


def run_checks(config: dict, configfile: str, hub_timeout_s: float = doctor.HUB_TIMEOUT_S) -> list[doctor.Check]:
    """Every check, in the report's order."""
    model = config["model"]
    gpus = config["resources"]["gpu"]
    step_pins = gpu_pool.slurm_step_pins_devices()
    found = doctor.cuda_devices()

    checks = [doctor.Check("config", True, f"{configfile} (valid; defaults filled in)", data={"path": configfile})]
    checks += doctor.versions(read_constraints())
    checks += doctor.devices(found, model["dtype"])
    checks += device_config_checks(config, found, step_pins)
    checks += doctor.attention_backends(model["attn_implementation"], found)
    checks += pool_checks(gpus, step_pins)
    checks += doctor.slurm(step_pins)

    status = doctor.hub_status(hub_timeout_s)
    model_config, params, model_lines, needed = model_checks(config, status)
    data_lines, data_needed = data_checks(config, status)
    model_needed = [n for n in needed if n.startswith("model ")]
    if model_needed and model_config is not None:
        # the config is known but the weights are not cached yet
        if status.reachable:
            model_lines.append(doctor.Check("model weights", True, "not cached; will be downloaded on first use"))
        else:
            model_lines.append(
                doctor.Check(
                    "model weights",
                    False,
                    f"{model['id']}: config cached but weights not in the HF cache, and the hub is "
                    + ("off (HF_HUB_OFFLINE=1)" if status.offline else "unreachable"),
                    "download the weights where the hub is reachable, or set model.weights: random for latency only",
                )
            )
    token_needed = model.get("id") and str(model.get("id")).startswith(GATED_PREFIXES) and model_needed
    hub_lines = doctor.hub(status, needed + data_needed)
    if token_needed and not any(c.data.get("set") for c in hub_lines if c.item == "hf token"):
        hub_lines = [
            c
            if c.item != "hf token"
            else doctor.Check(
                "hf token",
                False,
                f"not set, and {model['id']} is a gated repo",
                "accept its licence on the hub and export HF_TOKEN",
                c.data,
            )
            for c in hub_lines
        ]
    checks += hub_lines + model_lines + data_lines

    checks.append(doctor.disk(config["results"], RESULTS_NEED_BYTES, "disk results", "where results go"))
    checkpoint_bytes = 0
    if model_needed and params:
        configured = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
        itemsize = {"float32": 4, "float64": 8}.get(str(configured).removeprefix("torch."), 2)
        checkpoint_bytes = params * itemsize
    checks.append(
        doctor.disk(
            doctor.hub_cache_dir(),
            checkpoint_bytes,
            "disk hf cache",
            f"the checkpoint to download: about {doctor.gib(checkpoint_bytes)}" if checkpoint_bytes else "",
        )
    )

    if model_config is None or params is None:
        checks.append(
            doctor.Check(
                "memory",
                True,
                "unknown: no model config to estimate from (see the model line)",
                data={"estimates": []},
            )
        )
        return checks
    estimates = memory_estimates(config, model_config, params)
    for estimate in estimates:
        checks.append(doctor.Check("memory", True, estimate.describe(), data=estimate.to_dict()))
    checks += doctor.memory_fit(estimates, found, max(1, gpus))
    return checks


def report(checks: list[doctor.Check], configfile: str) -> dict:
    problems = sum(not c.ok for c in checks)
    return {
        "host": platform.node(),
        "config": configfile,
        "problems": problems,
        "checks": [c.to_dict() for c in checks],
        "summary": f"{problems} problem(s)" if problems else "no problems",
    }


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.configfile)
    except DoctorError as error:
        print(f"doctor: {error}", file=sys.stderr)
        return 2
    checks = run_checks(config, args.configfile, args.hub_timeout)
    result = report(checks, args.configfile)
    print(f"sdtp doctor on {result['host']}, config {args.configfile}")
    for check in checks:
        print(check.line)
    print(result["summary"] + (": see the PROBLEM lines, each with its fix" if result["problems"] else ""))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
