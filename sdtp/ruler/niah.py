"""Needle in a haystack, RULER's `niah.py`: the eight `niah_*` tasks.

A needle reads "One of the special magic {type_needle_v} for {key} is: {value}." There are `num_keys` keys
(max(num_needle_k, num_needle_q), as RULER has it) with `num_needle_v` values each; the needles are shuffled (RULER's
seeded shuffle) and hidden in one of three haystacks:

- `essay`:  the first `size` words of the essays (repeated when the text is shorter), cut into sentences; the needles
            go between sentences at depths drawn without replacement from RULER's 40 depths (0..100 %), the sentence
            index being `int(sentences * depth / 100)`; pieces are joined with spaces;
- `noise`:  `size` copies of RULER's noise sentence, one per line, needles inserted at random lines;
- `needle`: `size` distractor needles with random keys and values, one per line, needles inserted at random lines.

`num_needle_q` of the keys are asked (a random sample, listed "a, b, and c"); the references are their values in that
order. With a single key asked for a single value, RULER words the template in the singular ("A special magic number
is hidden ...", "... is"). The haystack size steps by 500 words (essay) or 25 lines (5 below 4096 tokens).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

from sdtp.ruler.fitting import HaystackBuilder, Sample
from sdtp.ruler.tasks import DEPTHS_PERCENT, NiahArgs, RulerTask
from sdtp.ruler.text import random_needle_value, seeded_shuffle, split_sentences

NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}."
NOISE_SENTENCE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
# RULER's singular wording, replacements applied in this order to the template and the answer prefix.
SINGULAR_REPLACEMENTS = (("Some", "A"), ("are all", "is"), ("are", "is"), ("answers", "answer"))


def singular(text: str) -> str:
    """RULER's template rewrite for one key asked for one value."""
    for old, new in SINGULAR_REPLACEMENTS:
        text = text.replace(old, new)
    return text


def haystack_words(essay_text: str) -> list[str]:
    """The essay haystack as RULER cuts it: whitespace runs collapsed to one space, then split on spaces."""
    return re.sub(r"\s+", " ", essay_text).split(" ")


def join_queries(queries: list[str]) -> str:
    """RULER's query list: "a", or "a, b, and c"."""
    return queries[0] if len(queries) == 1 else ", ".join(queries[:-1]) + ", and " + queries[-1]


@dataclass
class NiahBuilder(HaystackBuilder):
    """Builds `niah_*` samples for one task, target length and seed. `essay_text` is needed for essay haystacks."""

    task: RulerTask
    max_seq_length: int
    seed: int
    essay_text: str | None = None
    words: list[str] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        args: NiahArgs = self.task.args
        if args.type_haystack == "essay":
            if not self.essay_text or not self.essay_text.strip():
                raise ValueError(f"RULER task {self.task.name!r} hides needles in the essays: pass their text")
            self.words = haystack_words(self.essay_text)
            self.increment = 500
        else:
            self.increment = 5 if self.max_seq_length < 4096 else 25
        self.min_size = 1 if args.type_haystack == "essay" else args.num_keys * args.num_needle_v

    def build(self, rng: random.Random, size: int, index: int) -> Sample:
        args: NiahArgs = self.task.args
        keys, values, needles = [], [], []
        for _ in range(args.num_keys):
            keys.append(random_needle_value(rng, args.type_needle_k))
            values.append([])
            for _ in range(args.num_needle_v):
                values[-1].append(random_needle_value(rng, args.type_needle_v))
                needles.append((keys[-1], values[-1][-1]))
        seeded_shuffle(needles, self.seed)
        texts = [NEEDLE.format(type_needle_v=args.type_needle_v, key=key, value=value) for key, value in needles]
        if args.type_haystack == "essay":
            context, depths, positions = self._essay_context(rng, size, texts)
        else:
            context, depths, positions = self._line_context(rng, size, texts)

        asked = rng.sample(range(args.num_keys), args.num_needle_q)
        queries = [keys[i] for i in asked]
        answers = [value for i in asked for value in values[i]]
        query = join_queries(queries)
        family, type_needle_v = self.task.family, args.type_needle_v
        template, answer_prefix = family.template, family.answer_prefix
        if args.num_needle_q * args.num_needle_v == 1:
            template, answer_prefix, type_needle_v = singular(template), singular(answer_prefix), type_needle_v[:-1]
        needle_rows = [
            {"key": key, "value": value, "depth_percent": depth, "position": position}
            for (key, value), depth, position in zip(needles, depths, positions, strict=True)
        ]
        return Sample(
            input=template.format(type_needle_v=type_needle_v, context=context, query=query),
            answer_prefix=answer_prefix.format(type_needle_v=type_needle_v, query=query),
            outputs=answers,
            metadata={"haystack": args.type_haystack, "haystack_size": size, "needles": needle_rows,
                      "queries": queries},
        )  # fmt: skip

    def _essay_context(self, rng: random.Random, size: int, needles: list[str]):
        """Needles between the sentences of the first `size` essay words; (context, depths %, sentence indices)."""
        repeats = math.ceil(size / len(self.words))
        text = " ".join((self.words * repeats)[:size])
        sentences = split_sentences(text.strip())
        depths = sorted(rng.sample(DEPTHS_PERCENT, len(needles)))
        positions = [int(len(sentences) * (depth / 100)) for depth in depths]
        bounds = [0, *positions, len(sentences)]
        pieces = []
        for i in range(1, len(bounds)):
            pieces.append(" ".join(sentences[bounds[i - 1] : bounds[i]]))
            if i - 1 < len(needles):
                pieces.append(needles[i - 1])
        return " ".join(pieces), [float(d) for d in depths], positions

    def _line_context(self, rng: random.Random, size: int, needles: list[str]):
        """Needles among `size` noise or distractor lines; (context, depths % of the filler, final line indices)."""
        args: NiahArgs = self.task.args
        if args.type_haystack == "noise":
            lines = [NOISE_SENTENCE] * size
        else:
            lines = [
                NEEDLE.format(
                    type_needle_v=args.type_needle_v,
                    key=random_needle_value(rng, args.type_needle_k),
                    value=random_needle_value(rng, args.type_needle_v),
                )
                for _ in range(size)
            ]
        at = sorted(rng.sample(range(size), len(needles)), reverse=True)
        for line, needle in zip(at, needles, strict=True):
            lines.insert(line, needle)
        # Needle j went in at `at[j]`; each later needle went in above it and pushed it down one line.
        positions = [line + len(needles) - 1 - j for j, line in enumerate(at)]
        return "\n".join(lines), [100 * line / size for line in at], positions
