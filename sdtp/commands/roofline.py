"""`python -m sdtp roofline`: what pruning can gain at best on a device, from the model's shape alone (no weights,
no run): the roofline (`sdtp.roofline`) of the baseline and of the pruned run per phase, and the ideal prefill, decode
and End2End speedups. The README's "What to expect" table is this command's `--format markdown` output.

    python -m sdtp roofline --model-config qwen2-7b --device h100-sxm --length 4096 16384 65536

`--model-config` is a known shape (`sdtp.roofline.KNOWN_SHAPES`), a config.json or a model directory holding one;
`--device` a datasheet entry (`sdtp.roofline.DATASHEET_PEAKS`) or `--peaks` a file written by `python -m sdtp peak`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from sdtp.flops import compression_ratio, scorer_flops
from sdtp.roofline import DATASHEET_PEAKS, KNOWN_SHAPES, KV_UPDATES, DevicePeak, datasheet_peak, run_costs
from sdtp.schedule import KeepSchedule

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        required=True,
        help=f"a known shape ({', '.join(KNOWN_SHAPES)}), a config.json, or a directory holding one",
    )
    peak = parser.add_mutually_exclusive_group(required=True)
    peak.add_argument("--device", choices=list(DATASHEET_PEAKS), help="datasheet peaks of this device")
    peak.add_argument("--peaks", help="a Parquet file of measured peaks (python -m sdtp peak); its first row's device")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--length", type=int, nargs="+", required=True, help="prompt length(s) in tokens")
    parser.add_argument("--keep-ratio", type=float, nargs="+", default=[0.7], help="keep ratio(s) per stage")
    parser.add_argument("--new-tokens", type=int, default=128, help="greedy tokens decoded after the prefill")
    parser.add_argument("--method", default="sdtp", help="whose scorer FLOPs the pruned prefill includes")
    parser.add_argument("--start", type=int, default=4, help="first prune layer (paper schedule: 4)")
    parser.add_argument("--step", type=int, default=3, help="layers between prune points (paper schedule: 3)")
    parser.add_argument("--stages", type=int, default=8, help="prune points (paper schedule on 28 layers: 8)")
    parser.add_argument(
        "--kv-update",
        choices=list(KV_UPDATES),
        default="copy",
        help="how a decode step updates the KV cache: copy (transformers' DynamicCache, torch.cat: what the engine "
        "decodes on) or in_place (a preallocated cache writes only the new token)",
    )
    parser.add_argument("--format", choices=["text", "markdown"], default="text")


def load_config(model_config: str):
    """A transformers config from a known shape's name, a config.json, or a directory holding one (offline)."""
    from transformers import AutoConfig

    if model_config in KNOWN_SHAPES:
        shape = dict(KNOWN_SHAPES[model_config])
        return AutoConfig.for_model(shape.pop("model_type"), **shape)
    path = Path(model_config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise SystemExit(
            f"--model-config {model_config}: no such file, and not a known shape ({', '.join(KNOWN_SHAPES)}); "
            "give a config.json or a model directory"
        )
    return AutoConfig.from_pretrained(str(path))


def measured_peak(path: str, dtype: str) -> DevicePeak:
    """The first row of a `python -m sdtp peak` file in `dtype`, as a DevicePeak."""
    table = pd.read_parquet(path)
    rows = table[table.dtype == dtype]
    if rows.empty:
        raise SystemExit(f"--peaks {path}: no row for dtype {dtype} (it has {sorted(set(table.dtype))})")
    row = rows.iloc[0]
    return DevicePeak(row.device, float(row.gemm_flops_per_s), float(row.copy_bytes_per_s), f"measured ({path})")


def prediction_table(config, peak: DevicePeak, args: argparse.Namespace) -> pd.DataFrame:
    """One row per (length, keep ratio): the compression and the roofline's ideal speedups and baseline times."""
    num_layers = config.num_hidden_layers
    dtype = getattr(torch, args.dtype)
    rows = []
    for length in args.length:
        for ratio in args.keep_ratio:
            schedule = KeepSchedule.from_config(args.start, args.step, args.stages, ratio, num_layers)
            tokens = schedule.tokens_per_layer(length, num_layers)
            scoring = scorer_flops(args.method, config, schedule.tokens_scored(length))
            costs = run_costs(config, length, tokens, args.new_tokens, dtype, scoring, args.kv_update)
            ideal = costs.ideal(peak)
            rows.append(
                {
                    "length": length,
                    "keep": ratio,
                    "compression": compression_ratio(length, tokens),
                    "baseline prefill (s)": ideal.baseline_prefill_s,
                    "baseline decode (s)": ideal.baseline_decode_s,
                    "prefill ideal ×": ideal.prefill_speedup,
                    "decode ideal ×": ideal.decode_speedup,
                    "End2End ideal ×": ideal.e2e_speedup,
                    "bound": f"{costs.prefill.bound(peak)} / {costs.decode.bound(peak)}",
                }
            )
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame, fmt: str) -> str:
    """The table as aligned text or a GitHub markdown table, numbers rounded for reading."""
    shown = table.copy()
    for column in shown.columns:
        if column.endswith("(s)"):
            shown[column] = shown[column].map("{:.3f}".format)
        elif column.endswith("×") or column == "compression":
            shown[column] = shown[column].map("{:.2f}".format)
    shown["keep"] = shown["keep"].map("{:g}".format)
    if fmt == "text":
        return shown.to_string(index=False)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines)


def describe(args: argparse.Namespace, peak: DevicePeak) -> str:
    """The one line that says what the table assumes."""
    return (
        f"{args.model_config} {args.dtype} on {peak.name} ({peak.peak_flops / 1e12:.1f} TFLOP/s, "
        f"{peak.peak_bandwidth / 1e12:.2f} TB/s; {peak.source}); {args.method}, prune before layers "
        f"{args.start}+{args.step}·i ({args.stages} stages), {args.new_tokens} new tokens, batch 1, KV cache update "
        f"{args.kv_update}"
    )


def main(args: argparse.Namespace) -> int:
    config = load_config(args.model_config)
    peak = datasheet_peak(args.device) if args.device else measured_peak(args.peaks, args.dtype)
    print(describe(args, peak))
    print()
    print(format_table(prediction_table(config, peak, args), args.format))
    return 0
