"""Variable tracking, RULER's `variable_tracking.py`: the `vt` task (noise haystack).

A chain is "VAR A = 12345" followed by `num_hops` lines "VAR B = VAR A " (RULER keeps the trailing space); variable
names are 5 random capital letters, all distinct, the value a random integer in [10000, 99998] (numpy's
`randint(10000, 99999)`). Each chain's lines are inserted, in order, at random lines of `size` noise sentences; lines
are joined with newlines. The question asks for every variable assigned the first chain's value; the references are
that chain's `num_hops + 1` names.

In front of the task stands one worked example (RULER's in-context example): the same template with a chain of
3-letter names (`min(10, num_hops)` hops), its answer prefix and its answer, then a blank line. RULER generates it
once (as many noise lines as fit 500 tokens, counted on the bare text) and gives every sample fresh names and a fresh
value in it; so do we (the example's layout is drawn once from the seed). The noise size steps by 10 lines (5 below
4096 tokens).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from sdtp.ruler.fitting import HaystackBuilder, Sample, largest_fitting_size
from sdtp.ruler.niah import NOISE_SENTENCE
from sdtp.ruler.tasks import RulerTask, VariableTrackingArgs

EXAMPLE_MAX_TOKENS = 500  # RULER's in-context example fits 500 tokens


def random_variable_names(rng: random.Random, count: int, letters: int) -> list[str]:
    """`count` distinct names of `letters` random capital letters."""
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choices(string.ascii_uppercase, k=letters))
        if name not in names:
            names.append(name)
    return names


def make_chains(
    rng: random.Random, num_chains: int, num_hops: int, letters: int
) -> tuple[list[list[str]], list[list[str]]]:
    """(names per chain, lines per chain): chain c is "VAR n0 = <value>", then "VAR n(j+1) = VAR nj " per hop."""
    names = random_variable_names(rng, num_chains * (num_hops + 1), letters)
    chain_names, chain_lines = [], []
    for c in range(num_chains):
        these = names[c * (num_hops + 1) : (c + 1) * (num_hops + 1)]
        lines = [f"VAR {these[0]} = {rng.randint(10000, 99998)}"]
        lines += [f"VAR {these[j + 1]} = VAR {these[j]} " for j in range(num_hops)]
        chain_names.append(these)
        chain_lines.append(lines)
    return chain_names, chain_lines


def noise_context(rng: random.Random, size: int, chain_lines: list[list[str]]) -> tuple[str, list[list[int]]]:
    """Each chain's lines, in order, at random places among `size` noise lines; (context, line index per chain line)."""
    lines = [NOISE_SENTENCE] * size
    for chain in chain_lines:
        at = sorted(rng.sample(range(len(lines)), len(chain)))
        for j, line in enumerate(at):
            lines.insert(line + j, chain[j])
    positions = [[lines.index(line) for line in chain] for chain in chain_lines]
    return "\n".join(lines).replace(". \n", ".\n"), positions


@dataclass
class VariableTrackingBuilder(HaystackBuilder):
    """Builds `vt` samples for one task, target length and seed. `count_text_tokens(text)` counts bare-text tokens
    (no special tokens), used to size the in-context example as RULER does."""

    task: RulerTask
    max_seq_length: int
    seed: int
    count_text_tokens: Callable[[str], int]
    example_hops: int = field(init=False, default=0)
    example_size: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        args: VariableTrackingArgs = self.task.args
        self.increment = 5 if self.max_seq_length < 4096 else 10
        self.min_size = args.num_hops + 1
        self.example_hops = min(10, args.num_hops)
        example = _ExampleSizer(self.example_hops + 1)

        def example_fits(size: int) -> bool:
            text = self._example_text(random.Random(f"{self.seed}/vt-example/probe"), size)
            return self.count_text_tokens(text) <= EXAMPLE_MAX_TOKENS

        size = largest_fitting_size(example_fits, example)
        if size is None:
            raise ValueError(f"RULER task {self.task.name!r}: the in-context example does not fit "
                             f"{EXAMPLE_MAX_TOKENS} tokens even with {example.min_size} noise lines")  # fmt: skip
        self.example_size = size

    def _fill(self, context: str, value: str, num_v: int) -> tuple[str, str]:
        """(template, answer prefix) filled in for a chain of `num_v` names holding `value`."""
        family = self.task.family
        text = family.template.format(context=context, query=value, num_v=num_v)
        return text, family.answer_prefix.format(num_v=num_v, query=value)

    def _example_text(self, rng: random.Random, size: int, with_answer: bool = False) -> str:
        """The in-context example: chain names and value from `rng`, its layout from the seed alone."""
        names, chains = make_chains(rng, 1, self.example_hops, letters=3)
        context, _ = noise_context(random.Random(f"{self.seed}/vt-example/layout"), size, chains)
        text, prefix = self._fill(context, chains[0][0].split("=")[-1].strip(), self.example_hops + 1)
        return text + prefix + (" " + " ".join(names[0]) + "\n" if with_answer else "")

    def build(self, rng: random.Random, size: int, index: int) -> Sample:
        args: VariableTrackingArgs = self.task.args
        names, chains = make_chains(rng, args.num_chains, args.num_hops, letters=5)
        context, positions = noise_context(rng, size, chains)
        value = chains[0][0].split("=")[-1].strip()
        text, answer_prefix = self._fill(context, value, args.num_hops + 1)
        example = self._example_text(rng, self.example_size, with_answer=True)
        return Sample(
            input=example + "\n" + text,
            answer_prefix=answer_prefix,
            outputs=list(names[0]),
            metadata={"value": value, "chains": names, "chain_lines": positions, "noise_lines": size,
                      "example_noise_lines": self.example_size},
        )  # fmt: skip


class _ExampleSizer(HaystackBuilder):
    """Search bounds for the in-context example's noise lines (RULER: steps of 5)."""

    increment = 5

    def __init__(self, min_size: int) -> None:
        self.min_size = min_size
