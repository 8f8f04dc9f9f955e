"""The task table equals RULER's definitions (`../shared/reference/ruler_synthetic.json` where it is checked out);
QA tasks need data and say so at parse time; the text helpers draw what RULER draws."""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from sdtp.ruler import text as T
from sdtp.ruler.tasks import (
    DEPTHS_PERCENT,
    FAMILIES,
    TASK_NAMES,
    TASKS,
    NiahArgs,
    check_tasks_available,
    get_task,
)

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ruler_synthetic.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        pytest.skip(f"RULER reference {REFERENCE} is not checked out here")
    return json.loads(REFERENCE.read_text())


def test_families_equal_rulers(reference):
    assert set(FAMILIES) == set(reference["families"])
    for name, ref in reference["families"].items():
        family = FAMILIES[name]
        assert (family.template, family.answer_prefix) == (ref["template"], ref["answer_prefix"])
        assert (family.tokens_to_generate, family.metric) == (ref["tokens_to_generate"], ref["metric"])


def test_the_13_tasks_equal_rulers(reference):
    assert list(TASK_NAMES) == list(reference["tasks"])
    for name, ref in reference["tasks"].items():
        task = TASKS[name]
        assert task.family.name == ref["task"]
        ours = asdict(task.args)
        assert {key: ours[key] for key in ref["args"]} == ref["args"], name


def test_depths_are_rulers_40_rounded_percentages():
    assert list(DEPTHS_PERCENT) == [int(d) for d in np.round(np.linspace(0, 100, num=40, endpoint=True)).astype(int)]


def test_qa_tasks_stop_at_parse_time_naming_task_and_data(tmp_path):
    check_tasks_available(["niah_single_1", "vt", "cwe", "fwe"])  # no data needed
    with pytest.raises(ValueError, match=r"'qa_1' needs the SQuAD v2.0 dev set \(squad\.json.*not available offline"):
        check_tasks_available(["niah_single_2", "qa_1"])
    with pytest.raises(ValueError, match=r"'qa_2' needs the HotpotQA dev set.*hotpotqa\.json does not exist"):
        check_tasks_available(["qa_2"], qa_data_dir=tmp_path)
    (tmp_path / "hotpotqa.json").write_text("[]")
    check_tasks_available(["qa_2"], qa_data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown RULER task 'niah_single_9'.*niah_single_1"):
        check_tasks_available(["niah_single_9"])


def test_task_arguments_are_validated_with_the_bad_value():
    with pytest.raises(ValueError, match="'haystackz'"):
        NiahArgs("haystackz", "words", "numbers")
    with pytest.raises(ValueError, match="type_needle_v 'ints'"):
        NiahArgs("essay", "words", "ints")
    assert NiahArgs("essay", "words", "numbers", num_needle_k=2, num_needle_q=3).num_keys == 3  # RULER's rule
    with pytest.raises(ValueError, match="41 needles exceed"):
        NiahArgs("essay", "words", "numbers", num_needle_k=41)
    with pytest.raises(ValueError, match="num_needle_v must be a positive int, got 0"):
        NiahArgs("essay", "words", "numbers", num_needle_v=0)
    assert get_task("qa_2").args.dataset == "hotpotqa"


def test_sentence_splitter_keeps_abbreviations_and_rejoins_to_the_text():
    text = (
        'He met Mr. Smith at 5 p.m. in the U.S. and said "Hello." Then he left! Why? J. R. R. Tolkien wrote, e.g. '
        "this. 2010 was a year. lowercase after a period. (A bracket.) End"
    )
    sentences = T.split_sentences(text)
    assert sentences == [
        'He met Mr. Smith at 5 p.m. in the U.S. and said "Hello."',
        "Then he left!",
        "Why?",
        "J. R. R. Tolkien wrote, e.g. this.",
        "2010 was a year. lowercase after a period.",
        "(A bracket.)",
        "End",
    ]
    assert " ".join(sentences) == text
    assert T.split_sentences("  one.  Two.\n") == ["one.", "Two."]


def test_needle_values_have_rulers_shapes():
    rng = random.Random(0)
    adjectives, nouns = set(T.adjectives()), set(T.nouns())
    for _ in range(200):
        assert re.fullmatch(r"[1-9]\d{6}", T.random_needle_value(rng, "numbers"))
        key = T.random_needle_value(rng, "words")
        assert any(key[:i] in adjectives and key[i + 1 :] in nouns for i in range(len(key)) if key[i] == "-"), key
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                            T.random_needle_value(rng, "uuids"))  # fmt: skip
    with pytest.raises(ValueError, match="'ints'"):
        T.random_needle_value(rng, "ints")


def test_word_lists_are_wonderwords_sorted_and_unique():
    for words in (T.nouns(), T.adjectives(), T.common_words_vocabulary()):
        assert list(words) == sorted(set(words)) and "" not in words
        assert all(word == word.rstrip() for word in words)
    assert len(T.common_words_vocabulary()) > 8000


def test_seeded_shuffle_is_rulers_fixed_permutation():
    first, second = list(range(10)), list("abcdefghij")
    T.seeded_shuffle(first, 42)
    T.seeded_shuffle(second, 42)
    expected = list(range(10))
    random.Random(42).shuffle(expected)
    assert first == expected and second == ["abcdefghij"[i] for i in expected]
