"""The LongBench task table: prompt template, generation budget, metric and chat-template rule of every task.

The 21 LongBench v1 tasks come from the official harness (THUDM/LongBench): prompt templates and maximum new tokens
from `config/dataset2prompt.json` and `config/dataset2maxlen.json` (copied into `data/`), metrics from `eval.py`'s
`dataset2metric`, and two per-task rules from `pred.py` / `eval.py`:

- the chat template is *not* applied for trec, triviaqa, samsum, lsht, lcc and repobench-p (few-shot and code tasks);
- for trec, triviaqa, samsum and lsht the prediction is cut to its first line before scoring.

Other tasks in the same format join the table with `register_task`; the offline demo's synthetic tasks
(`sdtp.data.synthetic.SYNTHETIC_TASKS`: no chat template, English) are registered when this module is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

METRIC_NAMES = (
    "qa_f1_score",
    "qa_f1_zh_score",
    "rouge_score",
    "rouge_zh_score",
    "classification_score",
    "retrieval_score",
    "retrieval_zh_score",
    "count_score",
    "code_sim_score",
)
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class TaskSpec:
    """One LongBench-format task.

    name:               task name, also the JSONL file stem (`narrativeqa` -> `narrativeqa.jsonl`).
    prompt_template:    `str.format` template over the record's fields (`{context}`, `{input}`).
    max_new_tokens:     generation budget in tokens.
    metric_name:        one of `METRIC_NAMES` (the official metric function names).
    uses_chat_template: wrap the prompt in the tokenizer's chat template (when it has one).
    language:           "en" or "zh" (code tasks count as English: their instructions are English).
    first_line_only:    score only the first line of the prediction (after stripping leading newlines).
    """

    name: str
    prompt_template: str
    max_new_tokens: int
    metric_name: str
    uses_chat_template: bool
    language: str
    first_line_only: bool = False

    def __post_init__(self):
        if not self.name:
            raise ValueError("TaskSpec.name must be a non-empty string")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(
                f"TaskSpec {self.name!r}: max_new_tokens must be a positive int, got {self.max_new_tokens!r}"
            )
        if self.metric_name not in METRIC_NAMES:
            raise ValueError(
                f"TaskSpec {self.name!r}: unknown metric_name {self.metric_name!r}; valid: {', '.join(METRIC_NAMES)}"
            )
        if self.language not in LANGUAGES:
            raise ValueError(f"TaskSpec {self.name!r}: language must be one of {LANGUAGES}, got {self.language!r}")


# The official task order (pred.py's dataset list).
OFFICIAL_TASKS = (
    "narrativeqa",
    "qasper",
    "multifieldqa_en",
    "multifieldqa_zh",
    "hotpotqa",
    "2wikimqa",
    "musique",
    "dureader",
    "gov_report",
    "qmsum",
    "multi_news",
    "vcsum",
    "trec",
    "triviaqa",
    "samsum",
    "lsht",
    "passage_count",
    "passage_retrieval_en",
    "passage_retrieval_zh",
    "lcc",
    "repobench-p",
)

# eval.py's dataset2metric.
_OFFICIAL_METRICS = {
    "narrativeqa": "qa_f1_score",
    "qasper": "qa_f1_score",
    "multifieldqa_en": "qa_f1_score",
    "multifieldqa_zh": "qa_f1_zh_score",
    "hotpotqa": "qa_f1_score",
    "2wikimqa": "qa_f1_score",
    "musique": "qa_f1_score",
    "dureader": "rouge_zh_score",
    "gov_report": "rouge_score",
    "qmsum": "rouge_score",
    "multi_news": "rouge_score",
    "vcsum": "rouge_zh_score",
    "trec": "classification_score",
    "triviaqa": "qa_f1_score",
    "samsum": "rouge_score",
    "lsht": "classification_score",
    "passage_count": "count_score",
    "passage_retrieval_en": "retrieval_score",
    "passage_retrieval_zh": "retrieval_zh_score",
    "lcc": "code_sim_score",
    "repobench-p": "code_sim_score",
}
_NO_CHAT_TEMPLATE = frozenset({"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"})  # pred.py
_FIRST_LINE_ONLY = frozenset({"trec", "triviaqa", "samsum", "lsht"})  # eval.py scorer
_CHINESE = frozenset({"multifieldqa_zh", "dureader", "vcsum", "lsht", "passage_retrieval_zh"})

ENGLISH_TASKS = tuple(name for name in OFFICIAL_TASKS if name not in _CHINESE)
DEFAULT_TASKS = (
    "narrativeqa",
    "qasper",
    "multifieldqa_en",
    "hotpotqa",
    "musique",
    "gov_report",
    "multi_news",
    "triviaqa",
)


def _package_json(filename: str) -> dict:
    """Read one of the JSON tables shipped in `sdtp/longbench/data/`."""
    return json.loads(resources.files(__package__).joinpath("data", filename).read_text(encoding="utf-8"))


def _official_tasks() -> dict[str, TaskSpec]:
    prompts = _package_json("prompts_v1.json")
    max_new_tokens = _package_json("maxlen_v1.json")
    return {
        name: TaskSpec(
            name=name,
            prompt_template=prompts[name],
            max_new_tokens=max_new_tokens[name],
            metric_name=_OFFICIAL_METRICS[name],
            uses_chat_template=name not in _NO_CHAT_TEMPLATE,
            language="zh" if name in _CHINESE else "en",
            first_line_only=name in _FIRST_LINE_ONLY,
        )
        for name in OFFICIAL_TASKS
    }


TASKS: dict[str, TaskSpec] = _official_tasks()


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add `spec` to `TASKS`. Registering an identical spec again is a no-op; a different spec under a taken name
    (official tasks included) raises ValueError."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"register_task expects a TaskSpec, got {type(spec).__name__}")
    existing = TASKS.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"task {spec.name!r} is already registered with a different spec")
    TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The spec of task `name`; ValueError listing the valid names when there is none."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown LongBench task {name!r}; valid tasks: {', '.join(sorted(TASKS))}") from None


def _register_synthetic_tasks() -> None:
    """Register the offline demo's synthetic tasks (`sdtp.data.synthetic`, pure Python: importing it stays cheap)."""
    from sdtp.data.synthetic import SYNTHETIC_TASKS

    for name, entry in SYNTHETIC_TASKS.items():
        register_task(
            TaskSpec(
                name=name,
                prompt_template=entry["prompt_template"],
                max_new_tokens=entry["max_new_tokens"],
                metric_name=entry["metric"],
                uses_chat_template=False,
                language="en",
            )
        )


_register_synthetic_tasks()
