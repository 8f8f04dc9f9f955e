"""Common words extraction, RULER's `common_words_extraction.py`: the `cwe` task.

`size` distinct words are drawn from wonderwords' nouns, adjectives and verbs; the first `num_cw` are the common words,
repeated `freq_cw` times each, the rest repeated `freq_ucw` times; the list is shuffled (RULER's seeded shuffle) and
numbered "1. w 2. w ...". The references are the common words. In front stand `num_fewshot` worked examples (40 words,
10 and 3 repeats), each the template filled in, its answer prefix and its numbered answer; examples and task are
joined by newlines. Targets below 4096 tokens use RULER's short settings: 6 and 1 repeats, examples of 20 words with
3 and 1. The word count steps by 10.

RULER switches to a larger English word list when the count exceeds wonderwords' ~8,700 words (targets far beyond
100K tokens); that list is not available offline, so such targets are an error here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sdtp.ruler.fitting import HaystackBuilder, Sample
from sdtp.ruler.tasks import CommonWordsArgs, RulerTask
from sdtp.ruler.text import common_words_vocabulary, seeded_shuffle

SHORT_TARGET = 4096  # below it RULER uses the short settings


def numbered(words: list[str]) -> str:
    """RULER's numbered list: "1. a 2. b 3. c"."""
    return " ".join(f"{i + 1}. {word}" for i, word in enumerate(words))


@dataclass
class CommonWordsBuilder(HaystackBuilder):
    """Builds `cwe` samples for one task, target length and seed."""

    task: RulerTask
    max_seq_length: int
    seed: int

    def __post_init__(self) -> None:
        args: CommonWordsArgs = self.task.args
        self.vocabulary = common_words_vocabulary()
        self.increment = 10
        self.min_size = args.num_cw
        self.max_size = len(self.vocabulary)
        self.max_size_reason = (
            f"RULER task {self.task.name!r}: target length {self.max_seq_length} needs more than the "
            f"{len(self.vocabulary)} wonderwords words (RULER then draws from its own English word list, which is "
            f"not available offline)"
        )
        if self.max_seq_length < SHORT_TARGET:
            self.repeats, self.example = (6, 1), (20, 3, 1)
        else:
            self.repeats, self.example = (args.freq_cw, args.freq_ucw), (40, 10, 3)

    def word_list(self, rng: random.Random, num_words: int, common_repeats: int, uncommon_repeats: int):
        """(numbered list, common words) for `num_words` distinct words."""
        if num_words > len(self.vocabulary):
            raise ValueError(self.max_size_reason)
        num_cw = self.task.args.num_cw
        chosen = rng.sample(self.vocabulary, num_words)
        common, uncommon = chosen[:num_cw], chosen[num_cw:]
        words = common * common_repeats + uncommon * uncommon_repeats
        seeded_shuffle(words, self.seed)
        return numbered(words), common

    def build(self, rng: random.Random, size: int, index: int) -> Sample:
        family = self.task.family
        examples = []
        for _ in range(self.task.args.num_fewshot):
            context, answer = self.word_list(rng, *self.example)
            examples.append(family.template.format(context=context) + family.answer_prefix + " " + numbered(answer))
        context, common = self.word_list(rng, size, *self.repeats)
        return Sample(
            input="\n".join(examples) + "\n" + family.template.format(context=context),
            answer_prefix=family.answer_prefix,
            outputs=common,
            metadata={"num_words": size, "freq_common": self.repeats[0], "freq_uncommon": self.repeats[1]},
        )
