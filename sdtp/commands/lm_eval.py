"""`python -m sdtp lm-eval …`: lm-evaluation-harness's own command line, with the `sdtp` model registered.

The harness finds a model class only if the module registering it was imported first (it has no plugin entry point),
so this imports `sdtp.lm_eval` and hands every argument after `lm-eval`, untouched, to the harness's CLI: it prints
the harness's usual table. For example:

    python -m sdtp lm-eval --model sdtp \\
        --model_args pretrained=Qwen/Qwen2-7B-Instruct,method=sdtp,keep_ratio=0.7,pruner=<dir>,dtype=bfloat16 \\
        --tasks arc_easy --batch_size 1

Every method of `sdtp.scorers` runs this way (`method=baseline|sdtp|random|streaming|attention|oracle`); `--model hf`
and the harness's other models work as well. The model's arguments: `sdtp.lm_eval.SdtpLM`.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Options are the harness's, not ours: no argument after `lm-eval` is parsed here (not even -h, which then shows
    # the harness's help). '\0' never starts an argument, so argparse treats every one as a positional.
    parser.prefix_chars = "\0"
    parser.add_argument("harness_args", nargs=argparse.REMAINDER, help="lm-evaluation-harness arguments")


def main(args: argparse.Namespace) -> int:
    from sdtp.lm_eval import require_harness

    try:
        require_harness()
    except ImportError as error:
        raise SystemExit(f"lm-eval: {error}") from None
    from lm_eval.__main__ import cli_evaluate

    saved, sys.argv = sys.argv, ["lm-eval", *args.harness_args]
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    return 0
