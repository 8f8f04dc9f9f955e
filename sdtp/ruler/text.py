"""Text pieces RULER's generators draw on: sentence boundaries, word lists, random needle values, seeded shuffles.

- Sentences: RULER splits the essay haystack with nltk's punkt (`sent_tokenize`), whose data cannot be downloaded
  here. `split_sentences` is a regex stand-in: a sentence ends at `.`, `!` or `?` (closing quotes or brackets may
  follow) before whitespace and a capital letter, digit or opening quote, unless the word ending there is a common
  abbreviation or a single letter (an initial). Needles land between sentences; which boundaries exist is all it
  decides.
- Words: wonderwords' lists, as RULER reads them (`nounlist.txt`, `adjectivelist.txt`, `verblist.txt`, each line
  right-stripped).
- Values: 7-digit numbers, `<adjective>-<noun>` keys and uuid4s, drawn as RULER draws them.
"""

from __future__ import annotations

import functools
import random
import re
import uuid
from importlib import resources

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(\s+)(?=[A-Z0-9\"'(\[])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e cf al fig no inc ltd co corp jan feb mar apr jun jul aug sep sept oct "
    "nov dec u.s u.k a.m p.m ph.d".split()
)


def split_sentences(text: str) -> list[str]:
    """`text` cut into sentences at the boundaries described in the module docstring; each sentence is stripped.
    Joining the result with single spaces gives back `text` with each boundary's whitespace turned into one space."""
    sentences = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        words = text[start : match.start() + 1].rsplit(None, 1)
        last_word = words[-1].rstrip(".!?").lstrip("\"'([").lower() if words else ""
        if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
            continue
        sentences.append(text[start : match.start(1)].strip())
        start = match.end(1)
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def _wonderwords_list(file_name: str) -> list[str]:
    try:
        assets = resources.files("wonderwords.assets")
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "RULER's random words come from the `wonderwords` package: pip install wonderwords"
        ) from None
    return [line.rstrip() for line in assets.joinpath(file_name).read_text(encoding="utf-8").splitlines()]


@functools.cache
def nouns() -> tuple[str, ...]:
    """wonderwords' nouns, sorted and deduplicated."""
    return tuple(sorted(set(_wonderwords_list("nounlist.txt")) - {""}))


@functools.cache
def adjectives() -> tuple[str, ...]:
    """wonderwords' adjectives, sorted and deduplicated."""
    return tuple(sorted(set(_wonderwords_list("adjectivelist.txt")) - {""}))


@functools.cache
def common_words_vocabulary() -> tuple[str, ...]:
    """The words of RULER's common-words task: wonderwords' nouns, adjectives and verbs, sorted and deduplicated."""
    words = _wonderwords_list("nounlist.txt") + _wonderwords_list("adjectivelist.txt")
    return tuple(sorted(set(words + _wonderwords_list("verblist.txt")) - {""}))


def random_number(rng: random.Random, num_digits: int = 7) -> str:
    """A `num_digits`-digit decimal string, uniform over [10^(d-1), 10^d - 1] (RULER's needle numbers)."""
    return str(rng.randint(10 ** (num_digits - 1), 10**num_digits - 1))


def random_word_key(rng: random.Random) -> str:
    """An `<adjective>-<noun>` key, uniform over wonderwords' adjective x noun pairs.

    RULER materialises the sorted set of all ~6.2M pairs and draws one; drawing the pair's index gives the same
    distribution without the list (the few pairs that spell the same string through a hyphen count twice)."""
    adjs, ns = adjectives(), nouns()
    pair = rng.randrange(len(adjs) * len(ns))
    return f"{adjs[pair // len(ns)]}-{ns[pair % len(ns)]}"


def random_uuid(rng: random.Random) -> str:
    """A uuid4 string from 128 random bits (RULER's `uuid.UUID(int=getrandbits(128), version=4)`)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def random_needle_value(rng: random.Random, needle_type: str) -> str:
    """A needle key or value of `needle_type` (`numbers`, `words` or `uuids`)."""
    if needle_type == "numbers":
        return random_number(rng)
    if needle_type == "words":
        return random_word_key(rng)
    if needle_type == "uuids":
        return random_uuid(rng)
    raise ValueError(f"needle type {needle_type!r} is not one of numbers, words, uuids")


def seeded_shuffle(items: list, seed: int) -> None:
    """Shuffle `items` in place with a fresh `random.Random(seed)`, as RULER does for needles, word lists and
    documents: the permutation depends only on the seed and the list's length, so every sample of a run with the
    same list length gets the same arrangement. Kept because it is how RULER's published numbers were made."""
    random.Random(seed).shuffle(items)
