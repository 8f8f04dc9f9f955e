"""RULER records for one (tokenizer, task, target length, seed, chat template): `generate_records`.

A record is a dict, JSON-ready:

    index              sample number, 0..n-1
    task               RULER task name
    input              the task template filled in, without the answer prefix (RULER's `input`)
    answer_prefix      the answer prefix filled in; the model continues `wrap(input) + answer_prefix`
    outputs            reference answers (list of strings)
    length             prompt tokens + tokens_to_generate, RULER's `length` (<= max_seq_length)
    input_tokens       prompt tokens: `prompts.record_input_ids(record, tokenizer)`, chat template and prefix included
    max_seq_length     the target length
    tokens_to_generate the task family's generation budget
    chat_template      `model` or `none` (the prompt was sized with it)
    seed               the run's seed
    metadata           what was hidden where: needles with depths, chains, common words, ... (per family)

Randomness: sample i draws from its own `random.Random` seeded by (seed, task, target length, i), so a record does not
depend on how many are generated, and the probe that sizes the haystack has its own stream. Records depend only on
(tokenizer, task, length, seed, chat template, essays/data): generated once, the same for every method. The random
draws follow RULER's distributions but not its exact stream (RULER seeds one global generator per script and splits
essay sentences with nltk; neither can be reproduced byte for byte here).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdtp.ruler.common_words import CommonWordsBuilder
from sdtp.ruler.fitting import HaystackBuilder, Sample, SampleDoesNotFit, fit_sample, too_short_error
from sdtp.ruler.freq_words import FreqWordsBuilder
from sdtp.ruler.niah import NiahBuilder
from sdtp.ruler.prompts import check_chat_template_mode, model_input_ids, text_token_count
from sdtp.ruler.qa import QaBuilder
from sdtp.ruler.tasks import RulerTask, check_tasks_available, get_task, qa_data_path
from sdtp.ruler.variable_tracking import VariableTrackingBuilder


def sample_rng(seed: int, task_name: str, max_seq_length: int, index: int | str) -> random.Random:
    """The random stream of one sample (`index` "probe" for the haystack-sizing probe). String seeds hash with
    sha512, so the stream is the same on every run and platform."""
    return random.Random(f"sdtp.ruler/{task_name}/{max_seq_length}/{seed}/{index}")


def make_builder(
    task: RulerTask,
    max_seq_length: int,
    seed: int,
    tokenizer,
    essay_text: str | None = None,
    qa_data_dir: str | Path | None = None,
) -> HaystackBuilder:
    """The generator of `task`'s family."""
    family = task.family.name
    if family == "niah":
        return NiahBuilder(task, max_seq_length, seed, essay_text)
    if family == "variable_tracking":
        return VariableTrackingBuilder(task, max_seq_length, seed, lambda text: text_token_count(text, tokenizer))
    if family == "common_words_extraction":
        return CommonWordsBuilder(task, max_seq_length, seed)
    if family == "freq_words_extraction":
        return FreqWordsBuilder(task, max_seq_length, seed)
    check_tasks_available([task.name], qa_data_dir)
    return QaBuilder(task, max_seq_length, seed, qa_data_path(task.args.dataset, qa_data_dir))


def prompt_token_counter(tokenizer, chat_template: str) -> Callable[[Sample], int]:
    """Counts a sample's prompt tokens as the model is fed them (`prompts.model_input_ids`)."""
    return lambda sample: len(model_input_ids(sample.input, sample.answer_prefix, tokenizer, chat_template))


def probe_token_counter(
    builder: HaystackBuilder, prompt_tokens: Callable[[Sample], int], task_name: str, max_seq_length: int, seed: int
) -> Callable[[int], int]:
    """Prompt tokens of the probe sample (question 0, its own random stream) at a haystack size: what the haystack
    search runs on."""
    return lambda size: prompt_tokens(builder.build(sample_rng(seed, task_name, max_seq_length, "probe"), size, 0))


def generate_records(
    tokenizer,
    task: str | RulerTask,
    max_seq_length: int,
    seed: int,
    num_samples: int,
    essay_text: str | None = None,
    chat_template: str = "none",
    qa_data_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """`num_samples` records of `task` whose prompts, wrapped as `chat_template` says and tokenized by `tokenizer`
    (a HF tokenizer: `tokenizer(text, add_special_tokens=...)["input_ids"]`), plus the task's generation budget fit
    `max_seq_length` tokens (RULER's rule, `fitting`). `essay_text` (`haystack.load_essay_text`) is needed by the
    essay haystacks, `qa_data_dir` (RULER's `squad.json` / `hotpotqa.json`) by qa_1 / qa_2."""
    task = get_task(task) if isinstance(task, str) else task
    for name, value, low in (("max_seq_length", max_seq_length, 1), ("num_samples", num_samples, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    check_chat_template_mode(chat_template)
    tokens_to_generate = task.family.tokens_to_generate
    budget = max_seq_length - tokens_to_generate
    if budget < 1:
        raise too_short_error(task.name, max_seq_length, tokens_to_generate, 0)
    builder = make_builder(task, max_seq_length, seed, tokenizer, essay_text, qa_data_dir)
    prompt_tokens = prompt_token_counter(tokenizer, chat_template)
    probe_tokens = probe_token_counter(builder, prompt_tokens, task.name, max_seq_length, seed)
    start_size = builder.initial_size(probe_tokens, budget)
    if start_size is None:
        raise too_short_error(task.name, max_seq_length, tokens_to_generate, probe_tokens(builder.min_size))
    records = []
    for index in range(num_samples):
        rng = sample_rng(seed, task.name, max_seq_length, index)
        try:
            build = functools.partial(builder.build, rng, index=index)
            sample, tokens, _ = fit_sample(build, prompt_tokens, budget, start_size, builder)
        except SampleDoesNotFit as exc:
            raise ValueError(f"RULER task {task.name!r}, sample {index}: target length {max_seq_length} is too "
                             f"short: {exc} + {tokens_to_generate} generated") from None  # fmt: skip
        records.append(
            {
                "index": index,
                "task": task.name,
                "input": sample.input,
                "answer_prefix": sample.answer_prefix,
                "outputs": list(sample.outputs),
                "length": tokens + tokens_to_generate,
                "input_tokens": tokens,
                "max_seq_length": max_seq_length,
                "tokens_to_generate": tokens_to_generate,
                "chat_template": chat_template,
                "seed": seed,
                "metadata": sample.metadata,
            }
        )
    return records
