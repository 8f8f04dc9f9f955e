"""Device peaks, measured: a GEMM microbenchmark (FLOP/s in a dtype) and a memory-copy one (bytes/s).

- GEMM: `a @ b` of two square (n, n) matrices in the dtype, 2·n³ FLOPs per call; n is large enough to saturate the
  device (2048 on CPU, 8192 on CUDA by default).
- copy: `dst.copy_(src)` of a tensor much larger than the caches (256 MiB on CPU, 2 GiB on CUDA); it moves twice its
  size (read + write) per call.

Each is timed `repeats` times after warm-ups. The peak is the FASTEST repeat: a peak is what the device can do, and a
slower repeat met interference (a neighbour on a shared host, a lower clock), which would make the fraction of peak
reached (MFU, MBU) exceed 1 whenever a later job ran in a better moment. On this project's 2-core VM, medians of
three peak runs a few seconds apart were 143, 151 and 183 GFLOP/s, and one 100. The median and the spread are kept
beside it (`*_median`, `*_spread`).

Every timed call is synchronised on both sides (`sdtp.timing.timed`: `torch.cuda.synchronize(device)` around a
`perf_counter` window), so queued CUDA kernels are inside the window, never after it. `measure_peaks` measures one
device; `measured_peaks` every CUDA device (or the CPU) and returns one `PeakRow` per (device, dtype).
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict, dataclass

import torch

from sdtp.timing import median, repeat_timed

log = logging.getLogger(__name__)

DEFAULT_GEMM_SIZE = {"cpu": 2048, "cuda": 8192}
DEFAULT_COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}


@dataclass
class PeakRow:
    """One device's measured peaks in one dtype. FLOP/s count a multiply-add as 2; copy bytes count read + write."""

    device_kind: str  # "cpu" or "cuda"
    device_index: int  # -1 on CPU
    device: str  # the name latency rows carry (sdtp.peaks.device_name), to match peaks to rows
    dtype: str
    gemm_size: int
    gemm_flops_per_s: float  # the fastest repeat's (module docstring)
    gemm_flops_per_s_median: float
    gemm_spread: float  # (slowest − fastest) ÷ median of the GEMM repeats
    copy_bytes: int  # size of the copied tensor; each copy moves twice this
    copy_bytes_per_s: float  # the fastest repeat's
    copy_bytes_per_s_median: float
    copy_spread: float
    warmup: int
    repeats: int
    torch_version: str
    host: str


def device_name(device: torch.device) -> str:
    """A device as latency rows name it: the CUDA device's name, or the CPU with its thread count (a peak measured
    with other threads is another device)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _place(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The tensor on the benchmarked device (one seam, so tests can simulate CUDA on CPU)."""
    return tensor.to(device=device, dtype=dtype)


@dataclass(frozen=True)
class Rate:
    """A microbenchmark's rate (work per second): at the fastest repeat (`peak`) and at the median one, and the
    spread of the repeats' times, (slowest − fastest) ÷ median."""

    peak: float
    median: float
    spread: float

    @classmethod
    def of(cls, work: float, seconds: list[float]) -> Rate:
        middle = median(seconds)
        return cls(work / min(seconds), work / middle, (max(seconds) - min(seconds)) / middle)


def gemm_flops_per_s(
    device: torch.device, dtype: torch.dtype, size: int, warmup: int, repeats: int, seed: int = 0
) -> Rate:
    """FLOP/s of (size, size) @ (size, size) matmuls in `dtype` on `device`: 2·size³ per call."""
    generator = torch.Generator().manual_seed(seed)
    a = _place(torch.randn(size, size, generator=generator), device, dtype)
    b = _place(torch.randn(size, size, generator=generator), device, dtype)
    out = torch.empty_like(a)
    seconds = repeat_timed(lambda: torch.matmul(a, b, out=out), [device], warmup, repeats)
    return Rate.of(2.0 * size**3, seconds)


def copy_bytes_per_s(device: torch.device, nbytes: int, warmup: int, repeats: int) -> Rate:
    """Bytes/s of copying an `nbytes` tensor into another on `device`: 2·nbytes (read + write) per call."""
    elements = nbytes // 4
    src = _place(torch.ones(elements), device, torch.float32)
    dst = torch.empty_like(src)
    seconds = repeat_timed(lambda: dst.copy_(src), [device], warmup, repeats)
    return Rate.of(2.0 * elements * 4, seconds)


def measure_peaks(
    device: torch.device | str,
    dtype: torch.dtype,
    gemm_size: int | None = None,
    copy_bytes: int | None = None,
    warmup: int = 2,
    repeats: int = 10,
) -> PeakRow:
    """The GEMM and copy peaks of one device in one dtype (sizes default to `DEFAULT_GEMM_SIZE` / `_COPY_BYTES`)."""
    device = torch.device(device)
    if device.type not in DEFAULT_GEMM_SIZE:
        raise ValueError(f"device {device} is neither cpu nor cuda; peaks are measured on cpu or cuda devices")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats = {repeats} must be >= 1 and warmup = {warmup} >= 0")
    gemm_size = gemm_size or DEFAULT_GEMM_SIZE[device.type]
    copy_bytes = copy_bytes or DEFAULT_COPY_BYTES[device.type]
    gemm = gemm_flops_per_s(device, dtype, gemm_size, warmup, repeats)
    copy = copy_bytes_per_s(device, copy_bytes, warmup, repeats)
    row = PeakRow(
        device_kind=device.type,
        device_index=-1 if device.index is None else device.index,
        device=device_name(device),
        dtype=str(dtype).removeprefix("torch."),
        gemm_size=gemm_size,
        gemm_flops_per_s=gemm.peak,
        gemm_flops_per_s_median=gemm.median,
        gemm_spread=gemm.spread,
        copy_bytes=copy_bytes // 4 * 4,
        copy_bytes_per_s=copy.peak,
        copy_bytes_per_s_median=copy.median,
        copy_spread=copy.spread,
        warmup=warmup,
        repeats=repeats,
        torch_version=torch.__version__,
        host=platform.node(),
    )
    log.info(
        "%s %s: GEMM %d³ %.4g TFLOP/s (median %.4g, spread %.1f%%), copy %d MiB %.4g GB/s (median %.4g, spread %.1f%%)",
        row.device, row.dtype, gemm_size, gemm.peak / 1e12, gemm.median / 1e12, 100 * gemm.spread, copy_bytes >> 20,
        copy.peak / 1e9, copy.median / 1e9, 100 * copy.spread,
    )  # fmt: skip
    return row


def measured_peaks(kind: str, dtypes: list[torch.dtype], **options) -> list[dict]:
    """Peaks of every device of `kind` ("cpu": the CPU; "cuda": each visible CUDA device) in each dtype, as dicts."""
    if kind == "cpu":
        devices = [torch.device("cpu")]
    elif kind == "cuda":
        if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
            raise RuntimeError("peak: device kind cuda asked for, but torch sees no CUDA device on this machine")
        devices = [torch.device("cuda", index) for index in range(torch.cuda.device_count())]
    else:
        raise ValueError(f"device kind {kind!r} must be cpu or cuda")
    return [asdict(measure_peaks(device, dtype, **options)) for device in devices for dtype in dtypes]
