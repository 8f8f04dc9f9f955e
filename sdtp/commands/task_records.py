"""`python -m sdtp task-records`: one task's LongBench-format records (v1 files or the synthetic world) as JSONL."""

from __future__ import annotations

import argparse
import json
import logging

from sdtp.longbench.records import task_records, write_jsonl

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings", required=True, type=json.loads, help="JSON object with the config sections this job reads"
    )
    parser.add_argument("--task", required=True, help="task name (LongBench v1 or synthetic)")
    parser.add_argument("--out", required=True, help="JSONL file to write")


def main(args: argparse.Namespace) -> int:
    records = task_records(args.task, args.settings)
    write_jsonl(records, args.out)
    source = args.settings["longbench"].get("source", "synthetic")
    log.info("wrote %d records of %s (source %s) to %s", len(records), args.task, source, args.out)
    return 0
