"""The devices the pipeline runs on: CUDA and each visible device (memory, compute capability, bf16) or the CPU, the
SDPA kernels and flash_attn against the configured attention, and who assigns GPUs under SLURM."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import torch

from sdtp.doctor.checks import Check
from sdtp.memory import gib


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
