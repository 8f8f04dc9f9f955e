"""`python -m sdtp bench-prefill`: pruned vs unpruned prefill of one model shape, next to the FLOPs-ideal speedup
(`sdtp.bench`), printed as a table and optionally written to Parquet; a length that runs out of memory is a row with
status oom, and the other lengths still run."""

from __future__ import annotations

import argparse
import logging

import pandas as pd
import torch

from sdtp.bench import bench_prefill, build_bench_model, summarize
from sdtp.commands.outputs import write_parquet
from sdtp.peaks import DEFAULT_GEMM_SIZE, gemm_flops_per_s
from sdtp.schedule import KeepSchedule

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="small", help="'small' (a ~42M Qwen2 shape) or a hub id / dir whose config to use"
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.9, 0.7])
    parser.add_argument(
        "--layers", type=int, nargs="+", default=None, help="prune layers (default: 4 stages spread over the model)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    parser.add_argument("--out", default=None, help="also write the per-repeat rows to this Parquet file")
    parser.add_argument(
        "--gemm-size", type=int, default=None, help="n of the (n, n) GEMM measuring the MFU's peak (default: by device)"
    )


def main(args: argparse.Namespace) -> int:
    model = build_bench_model(args.model, getattr(torch, args.dtype), args.device, args.attn)
    num_layers = model.config.num_hidden_layers
    layers = (
        args.layers or KeepSchedule.from_config(num_layers // 4, max(1, num_layers // 5), 4, 1.0, num_layers).layers
    )
    params = sum(p.numel() for p in model.parameters())
    log.info("model %s: %.1fM parameters, %d layers, prune layers %s", args.model, params / 1e6, num_layers, layers)
    rows = bench_prefill(model, args.lengths, args.ratios, layers, args.warmup, args.repeats)
    oom_lengths = sorted({int(length) for length in rows.length[rows.status == "oom"]})
    if oom_lengths:
        log.warning("out of memory at length(s) %s: their rows have status oom and NaN times", oom_lengths)
    if args.out:
        write_parquet(rows, args.out)
    # The MFU's denominator: this device's measured GEMM peak in the model's dtype (sdtp.peaks), after the timed runs.
    device = torch.device(args.device)
    gemm_size = args.gemm_size or DEFAULT_GEMM_SIZE[device.type]
    peak_flops = gemm_flops_per_s(device, model.dtype, gemm_size, warmup=2, repeats=10).peak
    table = summarize(rows, peak_flops)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(
            f"model={args.model} params={params / 1e6:.1f}M device={args.device} dtype={args.dtype} attn={args.attn} "
            f"prune layers={layers} warmup={args.warmup} repeats={args.repeats} "
            f"measured GEMM peak={peak_flops / 1e12:.4g} TFLOP/s ({gemm_size}³)"
        )
        print(table.to_string(index=False))
    return 0
