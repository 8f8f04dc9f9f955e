"""Frequent words extraction, RULER's `freq_words_extraction.py`: the `fwe` task.

A vocabulary of `vocab_size` distinct random lowercase words of `coded_wordlen` letters (RULER: (target - budget)
// 50) is shuffled (RULER's seeded shuffle) and its first word replaced by "...". For a text of `size` words, the
word of rank k (1-based) appears `int(size * k^-alpha / zeta(alpha))` times (Zipf); the words are shuffled (seeded)
and joined by spaces. The references are the words of ranks 2, 3 and 4 (rank 1 is the dots the question tells the
model to ignore).

RULER sizes the text by its own scan rather than a bisection: from `(target - budget) // coded_wordlen` words it
steps up by `(target - budget) // 32` while the probe's prompt has fewer than `target - budget` tokens, then takes one
step back; each sample then steps down by the same amount until it fits (`fitting.fit_sample`).
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from sdtp.ruler.fitting import HaystackBuilder, Sample
from sdtp.ruler.tasks import FreqWordsArgs, RulerTask
from sdtp.ruler.text import seeded_shuffle


def riemann_zeta(s: float, terms: int = 64) -> float:
    """zeta(s) = sum over k >= 1 of k^-s, for s > 1: the first `terms` - 1 terms, then the Euler-Maclaurin tail
    (relative error far below 1e-12 for s >= 1.01)."""
    if not s > 1:
        raise ValueError(f"zeta(s) diverges for s = {s!r} <= 1")
    n = terms
    head = math.fsum(k**-s for k in range(1, n))
    tail = n ** (1 - s) / (s - 1) + n**-s / 2 + s * n ** (-s - 1) / 12 - s * (s + 1) * (s + 2) * n ** (-s - 3) / 720
    return head + tail


def zipf_counts(num_words: int, vocab_size: int, alpha: float) -> list[int]:
    """How often each rank appears in a text of `num_words` words: int(num_words * k^-alpha / zeta(alpha))."""
    zeta = riemann_zeta(alpha)
    return [int(num_words * (k**-alpha) / zeta) for k in range(1, vocab_size + 1)]


def coded_vocabulary(rng: random.Random, vocab_size: int, word_length: int, seed: int) -> list[str]:
    """`vocab_size` distinct random lowercase words, sorted then seeded-shuffled, the first replaced by "..."."""
    words: set[str] = set()
    while len(words) < vocab_size:
        words.add("".join(rng.choices(string.ascii_lowercase, k=word_length)))
    vocabulary = sorted(words)
    seeded_shuffle(vocabulary, seed)
    vocabulary[0] = "..."
    return vocabulary


@dataclass
class FreqWordsBuilder(HaystackBuilder):
    """Builds `fwe` samples for one task, target length and seed."""

    task: RulerTask
    max_seq_length: int
    seed: int

    def __post_init__(self) -> None:
        args: FreqWordsArgs = self.task.args
        self.input_max_tokens = self.max_seq_length - self.task.family.tokens_to_generate
        self.vocab_size = self.input_max_tokens // 50 if args.vocab_size == -1 else args.vocab_size
        if self.vocab_size < 4:
            raise ValueError(
                f"RULER task {self.task.name!r}: target length {self.max_seq_length} gives a vocabulary of "
                f"{self.vocab_size} coded words ((target - {self.task.family.tokens_to_generate}) // 50); "
                f"the answer needs at least 4"
            )
        self.increment = max(1, self.input_max_tokens // 32)
        self.min_size = 1

    def initial_size(self, prompt_tokens_at: Callable[[int], int], budget: int) -> int | None:
        """RULER's upward scan (module docstring)."""
        size = max(self.min_size, self.input_max_tokens // self.task.args.coded_wordlen)
        while prompt_tokens_at(size) < budget:
            size += self.increment
        return max(self.min_size, size - self.increment)

    def build(self, rng: random.Random, size: int, index: int) -> Sample:
        args: FreqWordsArgs = self.task.args
        vocabulary = coded_vocabulary(rng, self.vocab_size, args.coded_wordlen, self.seed)
        counts = zipf_counts(size, self.vocab_size, args.alpha)
        words = [word for word, count in zip(vocabulary, counts, strict=True) for _ in range(count)]
        seeded_shuffle(words, self.seed)
        family = self.task.family
        return Sample(
            input=family.template.format(context=" ".join(words)),
            answer_prefix=family.answer_prefix,
            outputs=vocabulary[1:4],
            metadata={"num_words": size, "vocab_size": self.vocab_size, "answer_counts": counts[1:4]},
        )
