"""What a machine offers the pipeline, and whether a model fits it: the checks behind `python -m sdtp doctor`.

Every check returns `Check`s, one line of the report each: `ok`, or a `PROBLEM` with what to do about it. Nothing
here reads the workflow's config or writes a file (the command does both, and the two checks that need the GPU pool);
the only I/O is one HEAD request to the hub (`hub_status`), skipped under `HF_HUB_OFFLINE=1`.

Memory: the estimates of one job (weights + KV cache + activations; `MemoryEstimate`, its formulas) are
`sdtp.memory`'s; here `memory_fit` checks them against each device, keeping `RESERVE_FRACTION` of it plus
`RESERVE_BYTES` for the CUDA context, cuBLAS workspaces and the caching allocator's fragmentation.

Why over 400 lines: one function per line of the doctor's report (versions, devices, kernels, SLURM, hub, disk,
memory fit), each small.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from sdtp.memory import GIB, MemoryEstimate, gib

# Packages the pipeline imports, compared with envs/constraints.txt (the versions the test suite passed on).
PACKAGES = ("torch", "transformers", "accelerate", "huggingface_hub", "snakemake", "pandas", "pyarrow", "plotly")
# The engine calls these packages' internals (decoder layers, Cache, mask helpers, dispatch): another version may break
# it, so a difference is a problem. For the others it is only reported.
CRITICAL_PACKAGES = ("torch", "transformers", "accelerate")
MIN_PYTHON = (3, 10)
# Kept free on each GPU for the CUDA context, cuBLAS workspaces and allocator fragmentation (see `memory_fit`).
RESERVE_FRACTION = 0.05
RESERVE_BYTES = 1 * GIB
HUB_TIMEOUT_S = 3.0
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class Check:
    """One line of the report.

    Fields:
        item: what was checked ("torch", "cuda:0", "hub").
        ok: False marks a PROBLEM (something to change before running).
        detail: what was found.
        advice: what to do about a problem ("" when ok).
        data: the same facts, machine-readable (for `--json`).
    """

    item: str
    ok: bool
    detail: str
    advice: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        text = f"{'ok' if self.ok else 'PROBLEM:':<8} {self.item}: {self.detail}"
        return f"{text}. Fix: {self.advice}" if self.advice else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item,
            "ok": self.ok,
            "detail": self.detail,
            "advice": self.advice,
            "data": self.data,
            "line": self.line,
        }


def count(params: int) -> str:
    """A parameter count for people: "7.62 B", "42.1 M", "320,512"."""
    if params >= 1e9:
        return f"{params / 1e9:.2f} B"
    if params >= 1e6:
        return f"{params / 1e6:.1f} M"
    return f"{params:,}"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# --- versions ---------------------------------------------------------------------------------------------------


def versions(tested: Mapping[str, str] | None) -> list[Check]:
    """Python and each of `PACKAGES`: installed version (`importlib.metadata`) against `tested` (name → version).

    A local version label (torch's `+cu128`) is not a difference. `tested` None means no constraints file was found.
    """
    checks = [
        Check(
            "python",
            sys.version_info[:2] >= MIN_PYTHON,
            f"{platform.python_version()} ({sys.executable})",
            "" if sys.version_info[:2] >= MIN_PYTHON else f"use Python >= {'.'.join(map(str, MIN_PYTHON))}",
            {"version": platform.python_version(), "executable": sys.executable},
        )
    ]
    pins = {_normalise(k): v for k, v in (tested or {}).items()}
    for name in PACKAGES:
        pin = pins.get(_normalise(name))
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            checks.append(
                Check(
                    name,
                    False,
                    "not installed",
                    'pip install -e ".[test]" -c envs/constraints.txt',
                    {"installed": None, "tested": pin},
                )
            )
            continue
        data = {"installed": installed, "tested": pin}
        if tested is None:
            checks.append(Check(name, True, f"{installed} (not compared: no envs/constraints.txt)", data=data))
        elif pin is None:
            checks.append(Check(name, True, f"{installed} (not pinned in envs/constraints.txt)", data=data))
        elif installed.split("+")[0] == pin:
            checks.append(Check(name, True, f"{installed} (tested)", data=data))
        elif name in CRITICAL_PACKAGES:
            fix = (
                f"install torch=={pin} built for your CUDA (https://pytorch.org/get-started/locally/)"
                if name == "torch"
                else f"pip install {name}=={pin} (or pip install -e . -c envs/constraints.txt)"
            )
            checks.append(
                Check(
                    name,
                    False,
                    f"{installed} (differs: tested {pin}; the engine calls its internals)",
                    fix,
                    data,
                )
            )
        else:
            checks.append(Check(name, True, f"{installed} (differs: tested {pin})", data=data))
    return checks


# --- devices ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One visible CUDA device."""

    index: int
    name: str
    total_memory: int
    capability: tuple[int, int]
    bf16: bool

    @property
    def label(self) -> str:
        return f"cuda:{self.index}"


def cuda_devices() -> list[Device]:
    """The visible CUDA devices (none without CUDA). bf16 is native from compute capability 8.0 (Ampere) on; a
    properties object that says so itself (`is_bf16_supported`) is believed."""
    if not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        capability = (int(props.major), int(props.minor))
        bf16 = getattr(props, "is_bf16_supported", None)
        if callable(bf16):
            bf16 = bf16()
        found.append(
            Device(
                index=index,
                name=str(props.name),
                total_memory=int(props.total_memory),
                capability=capability,
                bf16=capability >= (8, 0) if bf16 is None else bool(bf16),
            )
        )
    return found


def cpu_summary() -> dict[str, Any]:
    """Cores (all, and those this process may run on) and RAM (total, available)."""
    memory = psutil.virtual_memory()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_total": memory.total,
        "ram_available": memory.available,
    }


def devices(found: Sequence[Device] | None = None, dtype: str | None = None) -> list[Check]:
    """CUDA and each visible device (name, memory, compute capability, bf16), or the CPU the pipeline runs on.

    Args:
        found: the devices (default: `cuda_devices()`).
        dtype: the model's dtype ("bfloat16" flags devices without native bf16).
    """
    found = cuda_devices() if found is None else list(found)
    cpu = cpu_summary()
    cpu_text = (
        f"{cpu['usable_cores']} of {cpu['cores']} cores usable, RAM {gib(cpu['ram_total'])} "
        f"({gib(cpu['ram_available'])} available)"
    )
    if not found:
        data = {"cuda": False, "torch_cuda": torch.version.cuda, **cpu}
        if shutil.which("nvidia-smi"):
            if torch.version.cuda is None:
                return [
                    Check(
                        "cuda",
                        False,
                        f"torch {torch.__version__} is a CPU build, but nvidia-smi is here; runs on CPU ({cpu_text})",
                        f"install torch=={torch.__version__.split('+')[0]} built for your CUDA "
                        "(https://pytorch.org/get-started/locally/)",
                        data,
                    )
                ]
            hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
            return [
                Check(
                    "cuda",
                    False,
                    f"nvidia-smi is here but torch (CUDA {torch.version.cuda}) sees no device; "
                    f"runs on CPU ({cpu_text})",
                    f"CUDA_VISIBLE_DEVICES={hidden!r} hides every device: unset it"
                    if hidden is not None
                    else f"check that the NVIDIA driver supports CUDA {torch.version.cuda} (nvidia-smi shows its "
                    "version)",
                    data,
                )
            ]
        return [Check("cuda", True, f"no CUDA: the pipeline runs on CPU ({cpu_text})", data=data)]

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    checks = [
        Check(
            "cuda",
            True,
            f"torch {torch.__version__}, CUDA {torch.version.cuda}, {len(found)} device(s) visible"
            + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""),
            data={"cuda": True, "torch_cuda": torch.version.cuda, "count": len(found), **cpu},
        )
    ]
    for device in found:
        major, minor = device.capability
        detail = (
            f"{device.name}, {gib(device.total_memory)}, compute capability {major}.{minor}, "
            f"bf16 {'yes' if device.bf16 else 'no (emulated or unsupported)'}"
        )
        data = {
            "name": device.name,
            "total_memory": device.total_memory,
            "capability": [major, minor],
            "bf16": device.bf16,
        }
        if dtype == "bfloat16" and not device.bf16:
            checks.append(
                Check(
                    device.label,
                    False,
                    detail + "; the model is configured in bfloat16",
                    "set model.dtype: float32 (or float16 for inference only: stage-2 pruner training refuses it)",
                    data,
                )
            )
        else:
            checks.append(Check(device.label, True, detail, data=data))
    return checks


def attention_backends(attn_implementation: str = "sdpa", found: Sequence[Device] | None = None) -> list[Check]:
    """Which SDPA kernels are enabled (on CUDA) and whether `flash_attn` is importable, against the configured
    `attn_implementation`."""
    found = cuda_devices() if found is None else list(found)
    checks = []
    if found:
        flags = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        }
        flash_capable = any(d.capability >= (8, 0) for d in found)
        detail = (
            f"flash {'enabled' if flags['flash'] else 'disabled'}"
            f" ({'' if flash_capable else 'but '}needs compute capability >= 8.0: {'yes' if flash_capable else 'no'}),"
            f" mem-efficient {'enabled' if flags['mem_efficient'] else 'disabled'},"
            f" math {'enabled' if flags['math'] else 'disabled'}"
        )
        data = {**flags, "flash_capable": flash_capable}
        if attn_implementation == "sdpa" and not (flags["flash"] and flash_capable) and not flags["mem_efficient"]:
            checks.append(
                Check(
                    "sdpa",
                    False,
                    detail + "; only the math kernel is left, which holds H × n × n scores per layer",
                    "do not disable the SDPA kernels (torch.backends.cuda.enable_mem_efficient_sdp(True))",
                    data,
                )
            )
        else:
            checks.append(Check("sdpa", True, detail, data=data))
    else:
        checks.append(
            Check("sdpa", True, "on CPU: PyTorch's CPU kernels (the CUDA flash / mem-efficient ones do not apply)")
        )

    spec = importlib.util.find_spec("flash_attn")
    version = None
    if spec is not None:
        for dist in ("flash-attn", "flash_attn"):
            try:
                version = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    have = f"importable ({version or 'version unknown'})" if spec is not None else "not installed"
    data = {"importable": spec is not None, "version": version, "attn_implementation": attn_implementation}
    if attn_implementation != "flash_attention_2":
        checks.append(
            Check("flash_attn", True, f"{have}; not used (attn_implementation: {attn_implementation})", data=data)
        )
    elif spec is None:
        checks.append(
            Check(
                "flash_attn",
                False,
                "not installed, and attn_implementation is flash_attention_2",
                "install flash-attn (pip install flash-attn --no-build-isolation) or keep attn_implementation: sdpa",
                data,
            )
        )
    elif not found or not any(d.capability >= (8, 0) for d in found):
        checks.append(
            Check(
                "flash_attn",
                False,
                f"{have}, but FlashAttention-2 needs a CUDA device of compute capability >= 8.0",
                "set model.attn_implementation: sdpa",
                data,
            )
        )
    else:
        checks.append(Check("flash_attn", True, f"{have}; used (attn_implementation: flash_attention_2)", data=data))
    return checks


# --- SLURM ------------------------------------------------------------------------------------------------------


def slurm(step_pins_devices: bool) -> list[Check]:
    """Whether this runs inside a SLURM job, and who assigns GPUs there.

    Args:
        step_pins_devices: whether SLURM binds this process's GPUs (an `srun` job step), as the GPU pool decides it.
    """
    job, step = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
    data = {"job_id": job, "step_id": step, "step_pins_devices": step_pins_devices}
    if not job:
        return [Check("slurm", True, "not in a SLURM job: jobs claim GPUs from the file-lock pool", data=data)]
    if step_pins_devices:
        detail = f"job {job}, step {step}: SLURM binds this step's GPUs, the file-lock pool stands aside"
    else:
        detail = (
            f"job {job} (step {step or 'none'}: the batch script or an allocation's shell): local jobs share the "
            "allocation's GPUs through the file-lock pool"
        )
    return [Check("slurm", True, detail, data=data)]


# --- hub --------------------------------------------------------------------------------------------------------


def _head(url: str, timeout_s: float) -> int:
    """HTTP status of a HEAD request to `url` (any HTTP answer, 4xx included, means the server is reachable)."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


def hub_cache_dir() -> Path:
    """Where the hub cache is, as huggingface_hub resolves it (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/…)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


@dataclass(frozen=True)
class HubStatus:
    """Can the hub be reached from here. `offline`: HF_HUB_OFFLINE is set (no request was made)."""

    endpoint: str
    offline: bool
    reachable: bool
    status: int | None = None
    seconds: float | None = None
    error: str | None = None


def hub_status(timeout_s: float = HUB_TIMEOUT_S) -> HubStatus:
    """One HEAD request to the hub's endpoint with a short timeout; none under HF_HUB_OFFLINE=1."""
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    if _env_true("HF_HUB_OFFLINE"):
        return HubStatus(endpoint, offline=True, reachable=False)
    start = time.perf_counter()
    try:
        status = _head(endpoint, timeout_s)
    except Exception as error:  # noqa: BLE001 - any failure (DNS, refused, timeout, TLS, proxy) means unreachable
        return HubStatus(
            endpoint, False, False, seconds=time.perf_counter() - start, error=f"{type(error).__name__}: {error}"
        )
    return HubStatus(endpoint, False, True, status=status, seconds=time.perf_counter() - start)


def _token_source() -> str | None:
    if os.environ.get("HF_TOKEN"):
        return "HF_TOKEN"
    try:
        from huggingface_hub import get_token

        return "a saved login (hf auth login)" if get_token() else None
    except Exception:  # noqa: BLE001 - an unreadable token file is "no token"
        return None


def hub(status: HubStatus | None = None, needed: Sequence[str] = ()) -> list[Check]:
    """The hub settings (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, whether a token is set — never the token) and
    whether the hub answers.

    Args:
        status: the reachability (default: `hub_status()`, one HEAD request unless offline).
        needed: what this config still has to download (not in the cache); an unreachable hub is a problem only then.
    """
    status = hub_status() if status is None else status
    cache = hub_cache_dir()
    settings = {name: os.environ.get(name) for name in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT")}
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if v) or "no HF_* variables set"
    checks = [Check("hf cache", True, f"{cache} ({shown})", data={"cache": str(cache), **settings})]
    token = _token_source()
    checks.append(
        Check(
            "hf token",
            True,
            f"set ({token})" if token else "not set (only gated repos such as meta-llama/* need one: export HF_TOKEN)",
            data={"set": token is not None, "source": token},
        )
    )
    data = {
        "endpoint": status.endpoint,
        "offline": status.offline,
        "reachable": status.reachable,
        "status": status.status,
        "seconds": status.seconds,
        "error": status.error,
        "needed": list(needed),
    }
    if status.offline:
        checks.append(
            Check(
                "hub",
                True,
                "offline (HF_HUB_OFFLINE=1): no request made; models and data come from the HF cache or local paths",
                data=data,
            )
        )
    elif status.reachable:
        checks.append(
            Check("hub", True, f"{status.endpoint} reachable (HTTP {status.status}, {status.seconds:.2f} s)", data=data)
        )
    elif needed:
        checks.append(
            Check(
                "hub",
                False,
                f"{status.endpoint} unreachable ({status.error}), and this config downloads {', '.join(needed)}",
                "run where the hub is reachable (or set HF_ENDPOINT to a mirror), or fill the HF cache elsewhere and "
                "export HF_HUB_OFFLINE=1, or point the config at local copies",
                data,
            )
        )
    else:
        checks.append(
            Check(
                "hub", True, f"{status.endpoint} unreachable ({status.error}); this config downloads nothing", data=data
            )
        )
    return checks


# --- disk -------------------------------------------------------------------------------------------------------


def existing_parent(path: str | os.PathLike) -> Path:
    """`path` itself if it exists, else its nearest existing parent."""
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk(path: str | os.PathLike, need_bytes: int = 0, item: str = "disk", purpose: str = "") -> Check:
    """Free space where `path` is (or would be created); a problem when less than `need_bytes`."""
    where = existing_parent(path)
    usage = shutil.disk_usage(where)
    shown = str(path) if Path(path).expanduser().absolute() == where else f"{path} (not there yet; {where})"
    detail = f"{gib(usage.free)} free of {gib(usage.total)} at {shown}" + (f"; {purpose}" if purpose else "")
    data = {"path": str(path), "checked": str(where), "free": usage.free, "total": usage.total, "need": need_bytes}
    if usage.free < need_bytes:
        return Check(item, False, f"{detail}; needs about {gib(need_bytes)}", f"free space there or move {path}", data)
    return Check(item, True, detail, data=data)


# --- memory -----------------------------------------------------------------------------------------------------


def usable_bytes(device: Device) -> int:
    """What a job may use of `device`: its memory less RESERVE_FRACTION and RESERVE_BYTES."""
    return max(0, int(device.total_memory * (1 - RESERVE_FRACTION)) - RESERVE_BYTES)


def _fit_advice(short: Sequence[MemoryEstimate], found: Sequence[Device], gpus_per_job: int) -> str:
    need = max(e.total_bytes for e in short)
    advice = []
    if any(e.dtype == "float32" for e in short) and found and all(d.bf16 for d in found):
        advice.append("set model.dtype: bfloat16 (halves weights, cache and activations)")
    if found:
        capacities = sorted((usable_bytes(d) for d in found), reverse=True)
        total = 0
        for k, capacity in enumerate(capacities, start=1):
            total += capacity
            if total >= need:
                if k > max(1, gpus_per_job):
                    advice.append(f"set resources.gpu: {k} to spread the model over {k} devices")
                break
    advice.extend(dict.fromkeys(e.remedy for e in short if e.remedy))
    return "; or ".join(advice) or "use a machine with more memory"


def memory_fit(
    estimates: Sequence[MemoryEstimate],
    found: Sequence[Device] = (),
    gpus_per_job: int = 1,
    ram_available: int | None = None,
) -> list[Check]:
    """Does each job fit: per device (a job on one GPU), per group of `gpus_per_job` devices (a model spread over
    them: their usable memory added up, which assumes accelerate balances it), or in RAM without CUDA.

    A device's usable memory is `usable_bytes` (RESERVE_FRACTION and RESERVE_BYTES kept back).
    """
    if not estimates:
        return []
    largest = max(estimates, key=lambda e: e.total_bytes)
    groups: list[tuple[str, str, int]] = []  # (item, description, usable bytes)
    if found and gpus_per_job > 1:
        chosen = sorted(found, key=lambda d: d.total_memory)[:gpus_per_job]
        item = "+".join(d.label for d in sorted(chosen, key=lambda d: d.index))
        groups.append(
            (
                item,
                f"{len(chosen)} devices spread by device_map: auto, {gib(sum(d.total_memory for d in chosen))}",
                sum(usable_bytes(d) for d in chosen),
            )
        )
    elif found:
        for d in found:
            groups.append((d.label, f"{d.name}, {gib(d.total_memory)}", usable_bytes(d)))
    else:
        available = psutil.virtual_memory().available if ram_available is None else ram_available
        groups.append(("ram", "no CUDA, the machine's available RAM", available))

    checks = []
    for item, description, usable in groups:
        short = [e for e in estimates if e.total_bytes > usable]
        data = {"usable": usable, "largest_job": largest.job, "largest_bytes": largest.total_bytes}
        data["short"] = [e.job for e in short]
        if short:
            worst = max(short, key=lambda e: e.total_bytes)
            needs = ", ".join(f"{e.job} {gib(e.total_bytes)}" for e in short)
            checks.append(
                Check(
                    f"fit {item}",
                    False,
                    f"{description}, {gib(usable)} usable: too small for {needs} "
                    f"(short by {gib(worst.total_bytes - usable)})",
                    _fit_advice(short, found, gpus_per_job),
                    data,
                )
            )
        else:
            checks.append(
                Check(
                    f"fit {item}",
                    True,
                    f"{description}, {gib(usable)} usable: fits every job; the largest, {largest.job}, needs "
                    f"{gib(largest.total_bytes)} (headroom {gib(usable - largest.total_bytes)})",
                    data=data,
                )
            )
    return checks
