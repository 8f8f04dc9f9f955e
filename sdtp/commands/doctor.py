"""`python -m sdtp doctor`: what this machine offers the pipeline and whether a config will run on it, one line per
item (`ok`, or `PROBLEM:` with what to do), optionally written as JSON.

Checks: Python and package versions against the ranges the package declares and the versions it was tested on; CUDA
and every visible device (memory, compute capability, bf16) or the CPU; the SDPA kernels and flash_attn; the GPU
pool's lock directory (writable, file locks work); SLURM; the hub (cache, token set or not, reachable, what the config
still has to download); free disk; the model's parameter count from its config alone and the estimated memory of the
config's largest jobs against each device (the formulas: `sdtp.doctor`).

Exit status 0 whatever the checks find; 2 when the doctor cannot run (config file missing, unreadable or invalid).

The config's side (what it loads, reads and needs in memory) is `sdtp.commands.doctor_config`.
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

import yaml

from sdtp import doctor
from sdtp.commands import gpu_pool
from sdtp.commands.doctor_config import (
    GATED_PREFIXES,
    REPO_ROOT,
    data_checks,
    memory_estimates,
    model_checks,
)
from sdtp.io import atomic_path

log = logging.getLogger(__name__)

CONSTRAINTS = REPO_ROOT / doctor.CONSTRAINTS
SCHEMA = REPO_ROOT / "schemas" / "config.schema.yaml"
EXTRAS_CONSTRAINTS = REPO_ROOT / doctor.EXTRAS_CONSTRAINTS
# Results: tables, saliency tensors, pruner checkpoints, predictions — small next to a model; 1 GiB is plenty.
RESULTS_NEED_BYTES = 1 * doctor.GIB


class DoctorError(RuntimeError):
    """The doctor cannot run (the message names the file and the key)."""


# --- the config file -------------------------------------------------------------------------------------------------


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile", default="config.yaml", help="the workflow config to check (default: config.yaml, the demo)"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the report as JSON to PATH")
    parser.add_argument(
        "--hub-timeout", type=float, default=doctor.HUB_TIMEOUT_S, help="seconds to wait for the hub's answer"
    )


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
    lock_dir = gpu_pool.lock_dir_of()
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
    checks += doctor.versions(doctor.read_constraints(CONSTRAINTS), doctor.read_constraints(EXTRAS_CONSTRAINTS))
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
