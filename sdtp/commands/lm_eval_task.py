"""`python -m sdtp lm-eval-task`: the offline demo's local lm-evaluation-harness task (`sdtp.data.harness_task`), a
folder with its JSONL docs and task YAML, for `--include_path`."""

from __future__ import annotations

import argparse
import json
import logging

from sdtp.data.harness_task import HARNESS_TASKS, write_task

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings", required=True, type=json.loads, help="JSON object: seed and lm_eval.synthetic_* keys"
    )
    parser.add_argument("--task", required=True, choices=HARNESS_TASKS)
    parser.add_argument("--out-dir", required=True, help="folder to write (the task's include path)")


def main(args: argparse.Namespace) -> int:
    section = args.settings["lm_eval"]
    words = section["synthetic_context_words"]
    config = write_task(
        args.task,
        args.out_dir,
        section["synthetic_records"],
        tuple(words) if isinstance(words, list) else words,
        args.settings["seed"],
    )
    log.info(
        "wrote %d docs of %s to %s (task config %s)", section["synthetic_records"], args.task, args.out_dir, config
    )
    return 0
