"""The offline demo's lm-evaluation-harness task: multiple choice over the needle value, from the synthetic world.

`synthetic_needle_choice`: the records of `synthetic_needle_qa` (`sdtp.data.synthetic`, the same seeded test records
LongBench prediction reads), the prompt exactly as there (`build_prompt`, ending in "Answer:"), and four choices of the
asked slot's class (colour or animal): the needle's value and three other values of that class, drawn and shuffled by
a seeded RNG per record. Answering needs the needle: every choice is a plausible value, so a prefill that pruned the
needle guesses (25%).

Written as the harness reads a local task: a JSONL of docs (`query`, `choices`, `label`, `_id`) and a task YAML with
`dataset_path: json` pointing at it (`task_yaml`), for `TaskManager(include_path=<its folder>)` / `--include_path`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from sdtp.data.synthetic import SLOTS, TASK_SLOTS, build_prompt, generate_records
from sdtp.io import atomic_dir

SOURCE_TASK = "synthetic_needle_qa"
HARNESS_TASKS = ("synthetic_needle_choice",)
NUM_CHOICES = 4


def needle_choice_docs(n: int, context_words: int | tuple[int, int], seed: int) -> list[dict]:
    """`n` docs of `synthetic_needle_choice`; doc i comes from record i of `synthetic_needle_qa` (same seed)."""
    docs = []
    for record in generate_records(SOURCE_TASK, n, context_words, seed):
        answer = record["answers"][0]
        slot = next(s for s in TASK_SLOTS[SOURCE_TASK] if answer in SLOTS[s] and s in record["input"])
        rng = random.Random(f"{record['_id']}|choices")
        choices = [answer, *rng.sample([v for v in SLOTS[slot] if v != answer], NUM_CHOICES - 1)]
        rng.shuffle(choices)
        docs.append(
            {"query": build_prompt(record), "choices": choices, "label": choices.index(answer), "_id": record["_id"]}
        )
    return docs


def task_yaml(name: str, data_file: str | Path) -> str:
    """The harness task config of a local multiple-choice task over `data_file` (docs as `needle_choice_docs` writes
    them): accuracy and length-normalised accuracy, the choice after a space ("Answer: crimson")."""
    data = json.dumps(str(Path(data_file).resolve()))
    return "\n".join(
        [
            f"task: {name}",
            "dataset_path: json",
            "dataset_kwargs:",
            "  data_files:",
            f"    test: {data}",
            "test_split: test",
            "output_type: multiple_choice",
            'doc_to_text: "{{query}}"',
            'doc_to_choice: "{{choices}}"',
            "doc_to_target: label",
            'target_delimiter: " "',
            "metric_list:",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
            "  - metric: acc_norm",
            "    aggregation: mean",
            "    higher_is_better: true",
            "metadata:",
            "  version: 1.0",
            "",
        ]
    )


def write_task(name: str, out_dir: str | Path, n: int, context_words: int | tuple[int, int], seed: int) -> Path:
    """Write the folder `out_dir` holding `<name>.jsonl` and `<name>.yaml` (atomically: a killed job leaves no half a
    task); returns the YAML's path. The YAML names the JSONL by its absolute path (the harness resolves `data_files`
    against the current directory)."""
    if name not in HARNESS_TASKS:
        raise ValueError(f"unknown demo harness task {name!r}; known: {', '.join(HARNESS_TASKS)}")
    out = Path(out_dir).resolve()
    docs = needle_choice_docs(n, context_words, seed)
    with atomic_dir(out) as tmp:
        (tmp / f"{name}.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        (tmp / f"{name}.yaml").write_text(task_yaml(name, out / f"{name}.jsonl"))
    return out / f"{name}.yaml"
