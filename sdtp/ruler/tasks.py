"""RULER's task table: five task families (template, answer prefix, generation budget, metric) and the 13 synthetic
tasks of `scripts/synthetic.yaml` with their arguments.

Everything here is RULER's (NVIDIA/RULER at c3f5e3b: `scripts/data/synthetic/constants.py` for the families,
`scripts/eval/synthetic/constants.py` for the metrics, `scripts/synthetic.yaml` for the tasks); the same values are in
`../shared/reference/ruler_synthetic.json`, which the tests compare with this table.

A record's prompt is the family's `template` filled in, followed by its `answer_prefix` filled in (RULER's
`prepare.py` appends the prefix after the model's chat template, so the answer starts inside the assistant turn).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

METRIC_NAMES = ("string_match_all", "string_match_part")
NEEDLE_TYPES = ("numbers", "words", "uuids")
NIAH_HAYSTACKS = ("noise", "essay", "needle")
# RULER inserts needles into an essay haystack at depths drawn without replacement from these 40 percentages
# (`np.round(np.linspace(0, 100, num=40)).astype(int)`; no value is a tie, so Python's round gives the same).
DEPTHS_PERCENT = tuple(round(i * 100 / 39) for i in range(40))


@dataclass(frozen=True)
class TaskFamily:
    """One RULER task family (one generator script).

    name:               RULER's family name (`niah`, `variable_tracking`, ...).
    template:           `str.format` template of the question around `{context}`.
    answer_prefix:      text appended after the (chat-wrapped) prompt; the model continues it.
    tokens_to_generate: generation budget in tokens; RULER counts it inside the target length.
    metric:             one of `METRIC_NAMES`.
    """

    name: str
    template: str
    answer_prefix: str
    tokens_to_generate: int
    metric: str

    def __post_init__(self) -> None:
        if "{context}" not in self.template:
            raise ValueError(f"task family {self.name!r}: template has no {{context}} field: {self.template!r}")
        if not isinstance(self.tokens_to_generate, int) or self.tokens_to_generate < 1:
            raise ValueError(
                f"task family {self.name!r}: tokens_to_generate must be a positive int, got {self.tokens_to_generate!r}"
            )
        if self.metric not in METRIC_NAMES:
            raise ValueError(f"task family {self.name!r}: metric {self.metric!r} is not one of {METRIC_NAMES}")


FAMILIES = {
    family.name: family
    for family in (
        TaskFamily(
            "niah",
            "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
            "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
            "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?",
            " The special magic {type_needle_v} for {query} mentioned in the provided text are",
            128,
            "string_match_all",
        ),
        TaskFamily(
            "variable_tracking",
            "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
            "Question: Find all variables that are assigned the value {query} in the text above.",
            " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
            "assigned the value {query}, they are: ",
            30,
            "string_match_all",
        ),
        TaskFamily(
            "common_words_extraction",
            "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones "
            "that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?",
            " Answer: The top 10 words that appear most often in the list are:",
            120,
            "string_match_all",
        ),
        TaskFamily(
            "freq_words_extraction",
            "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
            "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
            "What are the three most frequently appeared words in the above coded text?",
            " Answer: According to the coded text above, the three most frequently appeared words are:",
            50,
            "string_match_all",
        ),
        TaskFamily(
            "qa",
            "Answer the question based on the given documents. Only give me the answer and do not output any other "
            "words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given "
            "documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}",
            " Answer:",
            32,
            "string_match_part",
        ),
    )
}


def _positive(owner: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class NiahArgs:
    """Needle-in-a-haystack arguments (RULER's `niah.py`). Needles read "One of the special magic {type_needle_v}
    for {key} is: {value}."; `num_keys` keys with `num_needle_v` values each; `num_needle_q` keys are asked."""

    type_haystack: str
    type_needle_k: str
    type_needle_v: str
    num_needle_k: int = 1
    num_needle_v: int = 1
    num_needle_q: int = 1

    def __post_init__(self) -> None:
        if self.type_haystack not in NIAH_HAYSTACKS:
            raise ValueError(f"niah: type_haystack {self.type_haystack!r} is not one of {NIAH_HAYSTACKS}")
        for field_name in ("type_needle_k", "type_needle_v"):
            if getattr(self, field_name) not in NEEDLE_TYPES:
                raise ValueError(f"niah: {field_name} {getattr(self, field_name)!r} is not one of {NEEDLE_TYPES}")
        _positive(
            "niah", num_needle_k=self.num_needle_k, num_needle_v=self.num_needle_v, num_needle_q=self.num_needle_q
        )
        if self.num_keys * self.num_needle_v > len(DEPTHS_PERCENT):
            raise ValueError(f"niah: {self.num_keys * self.num_needle_v} needles exceed RULER's "
                             f"{len(DEPTHS_PERCENT)} depths")  # fmt: skip

    @property
    def num_keys(self) -> int:
        """Keys hidden: RULER raises `num_needle_k` to `num_needle_q` (niah_multiquery asks 4 keys of "1")."""
        return max(self.num_needle_k, self.num_needle_q)


@dataclass(frozen=True)
class VariableTrackingArgs:
    """Variable tracking (RULER's `variable_tracking.py`): `num_chains` chains of `num_hops` assignments in a noise
    haystack, with one worked example in front. Only RULER's configuration (noise haystack) is implemented."""

    type_haystack: str = "noise"
    num_chains: int = 1
    num_hops: int = 4

    def __post_init__(self) -> None:
        if self.type_haystack != "noise":
            raise ValueError(f"variable_tracking: type_haystack {self.type_haystack!r}: only 'noise' is implemented")
        _positive("variable_tracking", num_chains=self.num_chains, num_hops=self.num_hops)


@dataclass(frozen=True)
class CommonWordsArgs:
    """Common words extraction (RULER's `common_words_extraction.py`): `num_cw` words repeated `freq_cw` times among
    words repeated `freq_ucw` times (targets of 4096 tokens and more; shorter targets use 6 and 1, as RULER does)."""

    freq_cw: int = 30
    freq_ucw: int = 3
    num_cw: int = 10
    num_fewshot: int = 1

    def __post_init__(self) -> None:
        _positive("common_words_extraction", freq_cw=self.freq_cw, freq_ucw=self.freq_ucw, num_cw=self.num_cw)
        if not isinstance(self.num_fewshot, int) or self.num_fewshot < 0:
            raise ValueError(f"common_words_extraction: num_fewshot must be an int >= 0, got {self.num_fewshot!r}")
        if self.freq_cw <= self.freq_ucw:
            raise ValueError(f"common_words_extraction: freq_cw = {self.freq_cw} must exceed freq_ucw = "
                             f"{self.freq_ucw}")  # fmt: skip


@dataclass(frozen=True)
class FreqWordsArgs:
    """Frequent words extraction (RULER's `freq_words_extraction.py`): coded words of `coded_wordlen` letters drawn
    with Zipf frequencies of exponent `alpha`; `vocab_size` -1 means RULER's (target length - budget) // 50."""

    alpha: float = 2.0
    coded_wordlen: int = 6
    vocab_size: int = -1

    def __post_init__(self) -> None:
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 1:
            raise ValueError(f"freq_words_extraction: alpha must be a number > 1 (zeta diverges), got {self.alpha!r}")
        _positive("freq_words_extraction", coded_wordlen=self.coded_wordlen)
        if self.vocab_size != -1 and (not isinstance(self.vocab_size, int) or self.vocab_size < 4):
            raise ValueError(f"freq_words_extraction: vocab_size must be -1 or an int >= 4, got {self.vocab_size!r}")


@dataclass(frozen=True)
class QaDataset:
    """A QA dataset RULER reads: where it comes from, the file name RULER gives it, and the Hugging Face dataset repo
    and files (`hub_files`, a glob) holding the same split as Parquet (`sdtp.ruler.qa_hub` converts them)."""

    name: str
    description: str
    file_name: str
    url: str
    hub_repo: str
    hub_files: str


QA_DATASETS = {
    "squad": QaDataset(
        "squad",
        "SQuAD v2.0 dev set",
        "squad.json",
        "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json",
        "rajpurkar/squad_v2",
        "squad_v2/validation-*.parquet",
    ),
    "hotpotqa": QaDataset(
        "hotpotqa",
        "HotpotQA dev set (distractor setting)",
        "hotpotqa.json",
        "http://curtis.ml.cmu.edu/datasets/hotpot/hotpot_dev_distractor_v1.json",
        "hotpotqa/hotpot_qa",
        "distractor/validation-*.parquet",
    ),
}


@dataclass(frozen=True)
class QaArgs:
    """Document QA (RULER's `qa.py`): the gold documents of a question among distractors from the same dataset."""

    dataset: str

    def __post_init__(self) -> None:
        if self.dataset not in QA_DATASETS:
            raise ValueError(f"qa: dataset {self.dataset!r} is not one of {tuple(QA_DATASETS)}")


FAMILY_ARGS = {
    "niah": NiahArgs,
    "variable_tracking": VariableTrackingArgs,
    "common_words_extraction": CommonWordsArgs,
    "freq_words_extraction": FreqWordsArgs,
    "qa": QaArgs,
}


@dataclass(frozen=True)
class RulerTask:
    """One RULER task: its name, its family and the family's arguments."""

    name: str
    family: TaskFamily
    args: NiahArgs | VariableTrackingArgs | CommonWordsArgs | FreqWordsArgs | QaArgs

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("RulerTask.name must be a non-empty string")
        expected = FAMILY_ARGS.get(self.family.name)
        if expected is None or not isinstance(self.args, expected):
            raise ValueError(
                f"task {self.name!r}: arguments {self.args!r} do not belong to family {self.family.name!r}"
            )


def _task(name: str, family: str, **args) -> RulerTask:
    return RulerTask(name, FAMILIES[family], FAMILY_ARGS[family](**args))


_WORDS_NUMBERS = {"type_needle_k": "words", "type_needle_v": "numbers"}
TASKS = {
    task.name: task
    for task in (
        _task("niah_single_1", "niah", type_haystack="noise", **_WORDS_NUMBERS),
        _task("niah_single_2", "niah", type_haystack="essay", **_WORDS_NUMBERS),
        _task("niah_single_3", "niah", type_haystack="essay", type_needle_k="words", type_needle_v="uuids"),
        _task("niah_multikey_1", "niah", type_haystack="essay", num_needle_k=4, **_WORDS_NUMBERS),
        _task("niah_multikey_2", "niah", type_haystack="needle", **_WORDS_NUMBERS),
        _task("niah_multikey_3", "niah", type_haystack="needle", type_needle_k="uuids", type_needle_v="uuids"),
        _task("niah_multivalue", "niah", type_haystack="essay", num_needle_v=4, **_WORDS_NUMBERS),
        _task("niah_multiquery", "niah", type_haystack="essay", num_needle_q=4, **_WORDS_NUMBERS),
        _task("vt", "variable_tracking", type_haystack="noise", num_chains=1, num_hops=4),
        _task("cwe", "common_words_extraction", freq_cw=30, freq_ucw=3, num_cw=10),
        _task("fwe", "freq_words_extraction", alpha=2.0),
        _task("qa_1", "qa", dataset="squad"),
        _task("qa_2", "qa", dataset="hotpotqa"),
    )
}
TASK_NAMES = tuple(TASKS)


def get_task(name: str) -> RulerTask:
    """The task called `name`; a clear error listing the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown RULER task {name!r}; known tasks: {', '.join(TASK_NAMES)}") from None


def uses_essays(task: RulerTask) -> bool:
    """Whether the task's haystack is the Paul Graham essays."""
    return task.family.name == "niah" and task.args.type_haystack == "essay"


def qa_data_path(dataset: str, qa_data_dir: str | Path | None) -> Path | None:
    """Where RULER's file for `dataset` is expected under `qa_data_dir` (None when no directory is given)."""
    return None if qa_data_dir is None else Path(qa_data_dir) / QA_DATASETS[dataset].file_name


def check_tasks_available(
    tasks: Iterable[str],
    qa_data_dir: str | Path | None = None,
    *,
    hub_reachable: bool = False,
    fetched_dir: str | Path | None = None,
) -> None:
    """Raise a ValueError if a task is unknown, or needs data that is not here: qa_1 (SQuAD) and qa_2 (HotpotQA)
    read RULER's JSON files (`squad.json`, `hotpotqa.json`) from `qa_data_dir` when it is given; without it, from the
    Hugging Face Hub (`hub_reachable`: the workflow downloads and converts them) or from an earlier download in
    `fetched_dir`. The message names the task, the data and where it comes from. The other 11 tasks need nothing but
    word lists and (for some) the essays."""
    for name in tasks:
        task = get_task(name)
        if task.family.name != "qa":
            continue
        dataset = QA_DATASETS[task.args.dataset]
        path = qa_data_path(dataset.name, qa_data_dir)
        if path is None and (
            hub_reachable or (fetched_dir is not None and qa_data_path(dataset.name, fetched_dir).is_file())
        ):
            continue
        if path is None or not path.is_file():
            where = (
                "no QA data directory is configured and the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE=1)"
                if path is None
                else f"{path} does not exist"
            )
            raise ValueError(
                f"RULER task {name!r} needs the {dataset.description} ({dataset.file_name}, from {dataset.url}, or "
                f"the hub's dataset {dataset.hub_repo}), which is not available offline: {where}. Download it to "
                f"<dir>/{dataset.file_name} and set the QA data directory, or drop {name!r} from the tasks."
            )
