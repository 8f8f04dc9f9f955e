"""RULER's rule for fitting a sample into a target length, in the model's own tokens.

RULER (`prepare.py` -> `scripts/data/synthetic/*.py`) takes `max_seq_length` as the length of the whole sequence:
prompt tokens (chat template and answer prefix included) plus the task's generation budget `tokens_to_generate`.
A sample fits when

    prompt tokens + tokens_to_generate <= max_seq_length

and its record's `length` is that left-hand side. Every generator has a haystack size (essay words, noise lines,
list words, documents) and RULER's step `increment` for it. RULER then

1. searches, on one probe sample, the largest haystack size that fits (a binary search; `freq_words_extraction`
   scans upward in steps instead, see `freq_words.py`);
2. builds each sample at that size and, while it does not fit (its random keys may take a few tokens more than the
   probe's), shrinks the haystack by `increment` and draws again.

We do the same, with two guards RULER lacks (where it would loop forever): the search starts at the builder's
smallest size rather than at `increment`, and a sample whose haystack is already no larger than `increment` shrinks by
one unit at a time; a target too short for even the smallest haystack is an error naming the task and the lengths.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One generated sample before it becomes a record.

    input:         the task template filled in, without the answer prefix (RULER's `input`).
    answer_prefix: the answer prefix filled in (RULER's `answer_prefix`).
    outputs:       the reference answers.
    metadata:      what was hidden where (needles, depths, chains, ...).
    """

    input: str
    answer_prefix: str
    outputs: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


class HaystackBuilder:
    """Base of the task generators: builds a sample for a haystack size and says how sizes are searched.

    Subclasses set `increment` (RULER's step), `min_size`, optionally `max_size` (with `max_size_reason`), and
    implement `build(rng, size, index)`; `index` is the sample's number (QA takes its question by it)."""

    increment: int = 1
    min_size: int = 1
    max_size: int | None = None
    max_size_reason: str = ""

    def build(self, rng: random.Random, size: int, index: int) -> Sample:
        raise NotImplementedError

    def initial_size(self, prompt_tokens_at: Callable[[int], int], budget: int) -> int | None:
        """The haystack size every sample starts from: the largest that fits on the probe (None if none does)."""
        return largest_fitting_size(lambda size: prompt_tokens_at(size) <= budget, self)


def largest_fitting_size(fits: Callable[[int], bool], builder: HaystackBuilder) -> int | None:
    """Largest size in [builder.min_size, builder.max_size] with `fits(size)`, assuming larger sizes never fit once a
    smaller one does not: doubling from `increment`, then bisection. None when `min_size` does not fit; a ValueError
    (`builder.max_size_reason`) when even `max_size` fits, i.e. the target needs more haystack than there is."""
    low = builder.min_size
    if not fits(low):
        return None
    high = max(builder.increment, low + 1)
    while builder.max_size is None or high < builder.max_size:
        if not fits(high):
            break
        low, high = high, high * 2
    else:
        high = builder.max_size
        if fits(high):
            raise ValueError(builder.max_size_reason or f"the target length needs more than {high} haystack units")
    # Invariant: fits(low), not fits(high).
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


class SampleDoesNotFit(ValueError):
    """Not even the smallest haystack gives a prompt within the budget."""


def too_short_error(task_name: str, max_seq_length: int, tokens_to_generate: int, prompt_tokens: int) -> ValueError:
    """The error for a target length that not even the smallest haystack fits into."""
    return ValueError(
        f"RULER task {task_name!r}: target length {max_seq_length} is too short: the smallest sample needs "
        f"{prompt_tokens} prompt tokens + {tokens_to_generate} generated > {max_seq_length}"
    )


def fit_sample(
    build: Callable[[int], Sample],
    prompt_tokens: Callable[[Sample], int],
    budget: int,
    start_size: int,
    builder: HaystackBuilder,
) -> tuple[Sample, int, int]:
    """Build at `start_size`; while the prompt has more than `budget` tokens, shrink the haystack (by `increment`, by
    one once it is no larger than that) and build again. Returns (sample, prompt tokens, size); `SampleDoesNotFit`
    when not even `min_size` fits (the message is completed by the caller)."""
    size = start_size
    while True:
        sample = build(size)
        tokens = prompt_tokens(sample)
        if tokens <= budget:
            return sample, tokens, size
        if size <= builder.min_size:
            raise SampleDoesNotFit(f"{tokens} prompt tokens at the smallest haystack size {size}")
        step = builder.increment if size - builder.increment >= builder.min_size else 1
        size -= step
