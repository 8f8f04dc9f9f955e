"""`python -m sdtp peak`: the measured GEMM FLOP/s and memory-copy bandwidth of this machine's CPU or of each CUDA
device (`sdtp.peaks`), one Parquet row per (device, dtype), with the device's name as latency rows carry it; the
summary table divides by them (MFU, MBU, roofline ideals)."""

from __future__ import annotations

import argparse
import logging

import pandas as pd
import torch

from sdtp.commands.outputs import write_parquet
from sdtp.peaks import measured_peaks

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=["cpu", "cuda"], required=True, help="measure the CPU or each CUDA device")
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16", "float16"], help="GEMM dtypes"
    )
    parser.add_argument("--gemm-size", type=int, default=None, help="n of the (n, n) matmuls (default: by kind)")
    parser.add_argument("--copy-mib", type=int, default=None, help="MiB of the copied tensor (default: by kind)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per benchmark; the fastest is the peak")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs to claim from the pool (kind cuda; 0 = none)")
    parser.add_argument("--out", required=True, help="Parquet file to write")


def main(args: argparse.Namespace) -> int:
    if args.kind == "cuda":
        from sdtp.commands.gpu_pool import claim_devices

        claim_devices(args.gpus)  # before torch touches CUDA: the pool pins this process to its devices
    rows = measured_peaks(
        args.kind,
        [getattr(torch, name) for name in args.dtypes],
        gemm_size=args.gemm_size,
        copy_bytes=args.copy_mib * 2**20 if args.copy_mib else None,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    table = pd.DataFrame(rows)
    write_parquet(table, args.out)
    columns = ["device", "dtype", "gemm_size", "gemm_flops_per_s", "copy_bytes_per_s"]
    print(table[columns].to_string(index=False))
    log.info("wrote %d rows to %s", len(table), args.out)
    return 0
