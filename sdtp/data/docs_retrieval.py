"""Pruner training examples on real text that ships with Python itself: retrieval questions over the language
reference's help topics (`pydoc_data.topics`, the text `help("assert")` prints: ~65K words of English technical
prose in every CPython install), for a real pretrained model where Dolly-15k cannot be downloaded.

Why this text: stages 1 and 2 must not see what the model is evaluated on. RULER's haystack is the Paul Graham essays
and its needles are "One of the special magic {type} for {key} is: {value}." sentences; here the haystack is other
text and the facts have another template, other keys and other values ("The access code for the {noun}-{noun} vault
is {5 digits}."), so no training example shares an essay, a needle or an answer format with a RULER record.

An example: a window of `context_words` words of the help topics, starting at a random topic, with `facts` facts put
at random sentence boundaries (distinct keys), then one of them asked. `prompt` ends with "Answer:", `response` is the
asked value (the model learns `prompt + " " + response`). Every example is drawn from its own RNG seeded by
(seed, index), so example i is the same whatever n is.
"""

from __future__ import annotations

import random
import re

FACT_TEMPLATE = "The access code for the {key} vault is {value}."
QUESTION_TEMPLATE = "What is the access code for the {key} vault?"
PROMPT_TEMPLATE = (
    "Read the text below and answer the question after it with the access code only.\n\n{context}\n\n"
    "Question: {question}\nAnswer:"
)
KEY_NOUNS = (
    "amber", "anchor", "arrow", "badger", "basalt", "beacon", "birch", "bison", "bramble", "canyon", "cedar", "comet",
    "copper", "coral", "cobalt", "delta", "ember", "falcon", "fern", "fjord", "garnet", "glacier", "granite", "harbor",
    "heron", "island", "jasper", "juniper", "kestrel", "lagoon", "lantern", "maple", "marble", "meadow", "nebula",
    "orchid", "osprey", "otter", "pebble", "pine", "quartz", "raven", "reef", "saffron", "sparrow", "spruce", "summit",
    "thistle", "tundra", "valley", "walnut", "willow", "zephyr",
)  # fmt: skip
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def help_topics_text() -> str:
    """The help topics of `pydoc_data.topics`, in sorted topic order, whitespace collapsed to single spaces."""
    from pydoc_data.topics import topics

    return " ".join(" ".join(topics[name].split()) for name in sorted(topics))


def _window(words: list[str], start: int, count: int) -> list[str]:
    """`count` words from `start`, wrapping around the end of the text."""
    doubled = words[start:] + words[: max(0, count - (len(words) - start))]
    return doubled[:count]


def make_example(
    index: int, context_words: tuple[int, int], seed: int, facts: int = 3, text: str | None = None
) -> dict:
    """Example `index`: {"prompt", "response", "key", "facts", "_id"}. `facts` facts (≥ 1) with distinct keys are
    put at sentence boundaries of a `context_words`-word window; the question asks one of them."""
    if facts < 1:
        raise ValueError(f"facts must be >= 1, got {facts}")
    low, high = context_words
    if not 1 <= low <= high:
        raise ValueError(f"context_words must be [low, high] with 1 <= low <= high, got {list(context_words)}")
    rng = random.Random(f"docs-retrieval/{seed}/{index}")
    words = (text if text is not None else help_topics_text()).split()
    context = " ".join(_window(words, rng.randrange(len(words)), rng.randint(low, high)))
    sentences = _SENTENCE_END.split(context)
    pairs = rng.sample([(a, b) for a in KEY_NOUNS for b in KEY_NOUNS if a != b], facts)
    keyed = [(f"{a}-{b}", f"{rng.randrange(10**4, 10**5)}") for a, b in pairs]
    for key, value in keyed:
        sentences.insert(rng.randint(0, len(sentences)), FACT_TEMPLATE.format(key=key, value=value))
    key, value = keyed[rng.randrange(facts)]
    prompt = PROMPT_TEMPLATE.format(context=" ".join(sentences), question=QUESTION_TEMPLATE.format(key=key))
    return {
        "prompt": prompt,
        "response": value,
        "key": key,
        "facts": [{"key": k, "value": v} for k, v in keyed],
        "_id": f"docs-retrieval-{seed}-{index}",
    }


def generate_docs_examples(n: int, context_words: tuple[int, int], seed: int, start: int = 0) -> list[dict]:
    """Examples `start` … `start + n − 1` (`make_example`), the help topics read once."""
    text = help_topics_text()
    return [make_example(i, context_words, seed, text=text) for i in range(start, start + n)]
