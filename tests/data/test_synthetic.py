"""The synthetic LongBench-format world."""

from __future__ import annotations

import re

import pytest

from sdtp.data import synthetic
from sdtp.data.synthetic import (
    SYNTHETIC_TASKS,
    build_prompt,
    generate_records,
    generate_training_examples,
)

LONGBENCH_FIELDS = {
    "input": str,
    "context": str,
    "answers": list,
    "length": int,
    "dataset": str,
    "language": str,
    "all_classes": type(None),
    "_id": str,
}


TASKS = sorted(SYNTHETIC_TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_records_are_deterministic_per_seed(task):
    assert generate_records(task, 5, 256, seed=7) == generate_records(task, 5, 256, seed=7)
    other = generate_records(task, 5, 256, seed=8)
    assert all(a["context"] != b["context"] for a, b in zip(generate_records(task, 5, 256, seed=7), other, strict=True))


@pytest.mark.parametrize("task", TASKS)
def test_record_i_does_not_depend_on_n(task):
    assert generate_records(task, 3, 128, seed=1) == generate_records(task, 6, 128, seed=1)[:3]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("words", [128, 256, 2048])
def test_records_have_longbench_fields_and_honour_length(task, words):
    records = generate_records(task, 20, words, seed=0)
    assert len({r["_id"] for r in records}) == len(records)
    for record in records:
        assert set(record) == set(LONGBENCH_FIELDS)
        for field, kind in LONGBENCH_FIELDS.items():
            assert isinstance(record[field], kind), field
        assert record["dataset"] == task and record["language"] == "en"
        assert re.fullmatch(r"[0-9a-f]{48}", record["_id"])
        assert record["length"] == len(record["context"].split()) == words
        assert len(record["answers"]) == 1 and all(isinstance(a, str) and a for a in record["answers"])
        assert all(f" is {word}." in record["context"] for word in record["answers"][0].split())  # each from a needle


def test_passkey_answer_is_every_needle_in_slot_order():
    slots = synthetic.TASK_SLOTS["synthetic_passkey"]
    for record in generate_records("synthetic_passkey", 20, 256, seed=3):
        assert record["input"] == "What is the passkey?"
        values = record["answers"][0].split()
        assert len(values) == len(slots)
        for slot, value in zip(slots, values, strict=True):
            assert value in synthetic.SLOTS[slot]
            assert record["context"].count(f"the passkey {slot} is {value}.") == 1
        assert record["context"].count("the passkey") == len(slots)


def test_needle_qa_answer_is_the_asked_slot_among_distractors():
    asked_slots = set()
    for record in generate_records("synthetic_needle_qa", 30, 256, seed=3):
        slot = re.fullmatch(r"What is the passkey (\w+)\?", record["input"]).group(1)
        asked_slots.add(slot)
        assert f"the passkey {slot} is {record['answers'][0]}." in record["context"]
        assert record["context"].count("the passkey") == len(synthetic.TASK_SLOTS["synthetic_needle_qa"])
    assert asked_slots == set(synthetic.ASKED_SLOTS) < set(synthetic.TASK_SLOTS["synthetic_needle_qa"])


def test_sub_vocabularies_are_disjoint():
    groups = [synthetic.FILLER_WORDS, synthetic.NAMES, synthetic.CITIES, synthetic.COLORS, synthetic.ANIMALS,
              synthetic.NUMBERS]  # fmt: skip
    assert sum(len(set(g)) for g in groups) == len(set().union(*groups)) == sum(len(g) for g in groups)
    marker_words = {"passkey", *synthetic.SLOTS, "question", "answer", "passage"}
    assert not marker_words & set(synthetic.FILLER_WORDS)


def test_too_short_context_is_an_error():
    with pytest.raises(ValueError, match="too short"):
        generate_records("synthetic_needle_qa", 1, 10, seed=0)  # 3 needles = 15 words
    with pytest.raises(ValueError, match="unknown synthetic task"):
        generate_records("nope", 1, 256, seed=0)


def test_training_examples_are_deterministic_and_disjoint_from_records():
    examples = generate_training_examples(6, (100, 200), seed=0)
    assert examples == generate_training_examples(6, (100, 200), seed=0)
    assert generate_training_examples(3, (100, 200), seed=0, start=3) == examples[3:]
    assert [e["task"] for e in examples] == [list(SYNTHETIC_TASKS)[i % len(TASKS)] for i in range(6)]
    test_ids = {r["_id"] for task in TASKS for r in generate_records(task, 6, 150, seed=0)}
    assert not test_ids & {e["_id"] for e in examples}
    for example in examples:
        assert example["prompt"].endswith("Answer:") and example["response"]


def test_prompt_template_is_longbench_style():
    for spec in SYNTHETIC_TASKS.values():
        assert "{context}" in spec["prompt_template"] and "{input}" in spec["prompt_template"]
        assert spec["metric"] == "qa_f1_score" and spec["max_new_tokens"] > 0
    record = generate_records("synthetic_passkey", 1, 128, seed=0)[0]
    prompt = build_prompt(record)
    assert record["context"] in prompt and record["input"] in prompt
