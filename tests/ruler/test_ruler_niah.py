"""The eight needle-in-a-haystack tasks follow RULER's definitions: needle count and types, depths, each answer hidden
exactly once, the prompt the template filled in (singular wording for one key and one value), length within the
target."""

from __future__ import annotations

import re

import pytest
from ruler_checks import assert_length_fits, assert_prompt_is_template

from sdtp.ruler import text as T
from sdtp.ruler.generate import generate_records
from sdtp.ruler.niah import NEEDLE, NOISE_SENTENCE, NiahBuilder, haystack_words, join_queries, singular
from sdtp.ruler.tasks import DEPTHS_PERCENT, FAMILIES, TASKS

NIAH_TASKS = [name for name, task in TASKS.items() if task.family.name == "niah"]
TARGET = 2048
VALUE_SHAPES = {
    "numbers": r"[1-9]\d{6}",
    "uuids": r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
}


def is_word_key(key: str) -> bool:
    adjectives, nouns = set(T.adjectives()), set(T.nouns())
    return any(key[:i] in adjectives and key[i + 1 :] in nouns for i, c in enumerate(key) if c == "-")


def has_shape(value: str, needle_type: str) -> bool:
    return is_word_key(value) if needle_type == "words" else bool(re.fullmatch(VALUE_SHAPES[needle_type], value))


@pytest.fixture(scope="module")
def niah_records(tokenizer, essay_text):
    return {name: generate_records(tokenizer, name, TARGET, 7, 4, essay_text=essay_text) for name in NIAH_TASKS}


def test_the_prompt_is_the_template_filled_in(niah_records):
    family = FAMILIES["niah"]
    for name in NIAH_TASKS:
        args = TASKS[name].args
        for record in niah_records[name]:
            template, prefix, type_v = family.template, family.answer_prefix, args.type_needle_v
            if args.num_needle_q * args.num_needle_v == 1:
                template, prefix, type_v = singular(template), singular(prefix), type_v[:-1]
                assert record["input"].startswith(f"A special magic {type_v} is hidden within the following text.")
                assert record["answer_prefix"].endswith("mentioned in the provided text is")
            query = join_queries(record["metadata"]["queries"])
            assert_prompt_is_template(record, template, prefix, type_needle_v=type_v, query=query)


def test_needles_have_rulers_count_types_and_answers(niah_records):
    for name in NIAH_TASKS:
        args = TASKS[name].args
        for record in niah_records[name]:
            needles = record["metadata"]["needles"]
            assert len(needles) == args.num_keys * args.num_needle_v
            assert len({n["key"] for n in needles}) == args.num_keys
            assert all(has_shape(n["key"], args.type_needle_k) and has_shape(n["value"], args.type_needle_v)
                       for n in needles), needles  # fmt: skip
            queries = record["metadata"]["queries"]
            assert len(queries) == len(set(queries)) == args.num_needle_q
            values_by_key = {}
            for needle in needles:
                values_by_key.setdefault(needle["key"], []).append(needle["value"])
            # References: the asked keys' values, keys in the order asked, values in the order drawn (before shuffle).
            assert sorted(record["outputs"]) == sorted(v for q in queries for v in values_by_key[q])
            assert len(record["outputs"]) == args.num_needle_q * args.num_needle_v


def test_every_needle_and_answer_is_in_the_context_exactly_once(niah_records):
    for name in NIAH_TASKS:
        type_v = TASKS[name].args.type_needle_v
        for record in niah_records[name]:
            text = record["input"]
            for needle in record["metadata"]["needles"]:
                sentence = NEEDLE.format(type_needle_v=type_v, key=needle["key"], value=needle["value"])
                assert text.count(sentence) == 1
            for answer in record["outputs"]:
                assert text.count(answer) == 1, (name, answer)


def test_essay_needles_sit_between_sentences_at_rulers_depths(niah_records, essay_text):
    words = haystack_words(essay_text)
    for name in NIAH_TASKS:
        args = TASKS[name].args
        if args.type_haystack != "essay":
            continue
        for record in niah_records[name]:
            meta = record["metadata"]
            depths = [n["depth_percent"] for n in meta["needles"]]
            assert depths == sorted(depths) and len(set(depths)) == len(depths)
            assert set(depths) <= set(DEPTHS_PERCENT)
            context = record["input"].split("afterwards.\n", 1)[1].rsplit("\nWhat ", 1)[0]
            needles = [NEEDLE.format(type_needle_v=args.type_needle_v, key=n["key"], value=n["value"])
                       for n in meta["needles"]]  # fmt: skip
            # Removing the needles gives back the first `haystack_size` essay words (repeated), sentence by sentence.
            haystack = context
            for needle in needles:
                haystack = haystack.replace(needle, "")
            size = meta["haystack_size"]
            expected = " ".join((words * (size // len(words) + 1))[:size]).strip()
            assert " ".join(haystack.split()) == " ".join(expected.split())
            sentences = T.split_sentences(expected)
            for needle, row in zip(needles, meta["needles"], strict=True):
                assert row["position"] == int(len(sentences) * (row["depth_percent"] / 100))
                before = " ".join(context.split(needle)[0].split())
                for other in needles:
                    before = " ".join(before.replace(other, "").split())
                assert before == " ".join(sentences[: row["position"]])


def test_line_haystacks_hold_noise_or_distractor_needles(niah_records):
    for name in NIAH_TASKS:
        args = TASKS[name].args
        if args.type_haystack == "essay":
            continue
        for record in niah_records[name]:
            meta = record["metadata"]
            lines = record["input"].split("afterwards.\n", 1)[1].rsplit("\nWhat ", 1)[0].split("\n")
            assert len(lines) == meta["haystack_size"] + len(meta["needles"])
            for row in meta["needles"]:
                assert lines[row["position"]] == NEEDLE.format(type_needle_v=args.type_needle_v, key=row["key"],
                                                               value=row["value"])  # fmt: skip
                assert 0 <= row["depth_percent"] < 100
            filler = [line for i, line in enumerate(lines) if i not in {n["position"] for n in meta["needles"]}]
            if args.type_haystack == "noise":
                assert set(filler) == {NOISE_SENTENCE}
            else:
                pattern = rf"One of the special magic {args.type_needle_v} for (.+) is: (.+)\."
                for line in filler:
                    key, value = re.fullmatch(pattern, line).groups()
                    assert has_shape(key, args.type_needle_k) and has_shape(value, args.type_needle_v)


def test_lengths_fit_the_target(niah_records, tokenizer):
    for name in NIAH_TASKS:
        assert_length_fits(niah_records[name], tokenizer, TARGET)
        assert all(r["task"] == name and r["seed"] == 7 and r["tokens_to_generate"] == 128 for r in niah_records[name])
        assert [r["index"] for r in niah_records[name]] == [0, 1, 2, 3]


def test_rulers_haystack_steps(essay_text):
    def step(name, target):
        return NiahBuilder(TASKS[name], target, 0, essay_text).increment

    assert (step("niah_single_1", 4095), step("niah_single_1", 4096), step("niah_multikey_3", 8192)) == (5, 25, 25)
    assert step("niah_single_2", 1024) == step("niah_multivalue", 8192) == 500


def test_essay_haystacks_need_the_essays(tokenizer):
    with pytest.raises(ValueError, match="'niah_single_2' hides needles in the essays"):
        generate_records(tokenizer, "niah_single_2", 2048, 0, 1)
    generate_records(tokenizer, "niah_multikey_2", 2048, 0, 1)  # needle haystack: no essays needed
