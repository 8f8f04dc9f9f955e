"""vt, cwe, fwe and qa follow RULER's definitions: what is hidden, how often each answer appears, the prompt the
template filled in (worked examples in front where RULER puts them), length within the target."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from ruler_checks import assert_length_fits, assert_prompt_is_template, context_of
from scipy.special import zeta

from sdtp.ruler.freq_words import riemann_zeta, zipf_counts
from sdtp.ruler.generate import generate_records
from sdtp.ruler.niah import NOISE_SENTENCE
from sdtp.ruler.tasks import FAMILIES
from sdtp.ruler.text import common_words_vocabulary


def count_word(text: str, word: str) -> int:
    return len(re.findall(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", text))


@pytest.mark.parametrize("target", [2048, 4096])
def test_variable_tracking(tokenizer, target):
    family = FAMILIES["variable_tracking"]
    records = generate_records(tokenizer, "vt", target, 11, 3)
    assert_length_fits(records, tokenizer, target)
    for record in records:
        meta, names = record["metadata"], record["outputs"]
        value = meta["value"]
        assert names == meta["chains"][0] and len(names) == 5 and len(set(names)) == 5
        assert all(re.fullmatch(r"[A-Z]{5}", name) for name in names) and re.fullmatch(r"\d{5}", value)
        assert 10000 <= int(value) <= 99998
        context = assert_prompt_is_template(record, family.template, family.answer_prefix, query=value, num_v=5)
        lines = context.split("\n")
        chain = [f"VAR {names[0]} = {value}"] + [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(4)]
        assert [lines[i] for i in meta["chain_lines"][0]] == chain  # in order, trailing space kept
        assert meta["chain_lines"][0] == sorted(meta["chain_lines"][0])
        assert [line for line in lines if line not in chain] == [NOISE_SENTENCE] * meta["noise_lines"]
        # Each name appears where RULER puts it: assigned once, read once (the last is never read).
        assert [count_word(context, name) for name in names] == [2, 2, 2, 2, 1]
        assert count_word(context, value) == 1
        # The worked example stands first: 3-letter names, its own answer, then a blank line before the task.
        example = record["input"][: record["input"].rindex(family.template.split("{context}")[0])]
        assert example.startswith(family.template.split("{context}")[0]) and example.endswith("\n\n")
        example_names = example.rsplit("they are: ", 1)[1].split()
        assert len(example_names) == 5 and all(re.fullmatch(r"[A-Z]{3}", name) for name in example_names)
        assert example.count(NOISE_SENTENCE) == meta["example_noise_lines"]
    # The example's layout is drawn once; its names and value change with every sample.
    layouts = {re.sub(r"[A-Z]{3}|\d{5}", "#", r["input"].split("\n\nMemorize")[0]) for r in records}
    assert len(layouts) == 1


@pytest.mark.parametrize(("target", "repeats", "example_words"), [(2048, (6, 1), 20), (4096, (30, 3), 40)])
def test_common_words(tokenizer, target, repeats, example_words):
    family = FAMILIES["common_words_extraction"]
    records = generate_records(tokenizer, "cwe", target, 2, 3)
    assert_length_fits(records, tokenizer, target)
    vocabulary = set(common_words_vocabulary())
    for record in records:
        common = record["outputs"]
        context = assert_prompt_is_template(record, family.template, family.answer_prefix)
        entries = re.split(r"(?:^| )(\d+)\. ", context)[1:]
        numbers, words = [int(n) for n in entries[0::2]], entries[1::2]
        assert numbers == list(range(1, len(words) + 1))
        counts = Counter(words)
        assert len(common) == 10 and set(common) <= vocabulary and set(counts) <= vocabulary
        assert len(counts) == record["metadata"]["num_words"]
        assert {counts[w] for w in common} == {repeats[0]}
        assert {c for w, c in counts.items() if w not in common} == {repeats[1]}
        # One worked example in front: the template with 10 common words among `example_words`, then its answer.
        example = record["input"][: -len(family.template.format(context=context))]
        assert example.startswith(family.template.split("{context}")[0]) and example.endswith("\n")
        assert example.count(family.answer_prefix + " 1. ") == 1
        example_list = context_of(example.rsplit(family.answer_prefix, 1)[0], family.template)
        assert len(set(re.split(r"(?:^| )\d+\. ", example_list)[1:])) == example_words


def test_riemann_zeta_and_zipf_counts_match_scipy():
    for s in (1.1, 1.5, 2.0, 2.5, 3.0):
        assert riemann_zeta(s) == pytest.approx(float(zeta(s)), rel=1e-12)
    assert zipf_counts(1000, 5, 2.0) == [int(1000 * k**-2.0 / float(zeta(2.0))) for k in range(1, 6)]


@pytest.mark.parametrize("target", [2048, 4096])
def test_frequent_words(tokenizer, target):
    family = FAMILIES["freq_words_extraction"]
    records = generate_records(tokenizer, "fwe", target, 9, 3)
    assert_length_fits(records, tokenizer, target)
    for record in records:
        meta = record["metadata"]
        assert meta["vocab_size"] == (target - 50) // 50
        context = assert_prompt_is_template(record, family.template, family.answer_prefix)
        counts = Counter(context.split(" "))
        expected = zipf_counts(meta["num_words"], meta["vocab_size"], 2.0)
        assert sorted(counts.values(), reverse=True) == [c for c in expected if c > 0]
        assert counts["..."] == expected[0]
        assert [counts[w] for w in record["outputs"]] == expected[1:4] == meta["answer_counts"]
        assert all(re.fullmatch(r"[a-z]{6}", w) for w in record["outputs"])
        assert all(re.fullmatch(r"[a-z]{6}|\.\.\.", w) for w in counts)


def squad_file(path):
    paragraphs = [
        ("Denver won the fiftieth game against Carolina.", [("Who won?", ["Denver", "Denver Broncos"], False),
                                                            ("Who lost badly?", [], True)]),
        ("The game was played in Santa Clara in February.", [("Where was it played?", ["Santa Clara"], False)]),
    ]  # fmt: skip
    other = [(f"Unrelated paragraph number {i} about rivers.", []) for i in range(150)]

    def article(title, items):
        return {"title": title, "paragraphs": [
            {"context": c, "qas": [{"question": q, "answers": [{"text": a} for a in ans], "is_impossible": imp}
                                   for q, ans, imp in qas]} for c, qas in items]}  # fmt: skip

    path.write_text(json.dumps({"data": [article("Super Bowl", paragraphs), article("Rivers", other)]}))


def test_squad_documents(tokenizer, tmp_path):
    squad_file(tmp_path / "squad.json")
    family = FAMILIES["qa"]
    records = generate_records(tokenizer, "qa_1", 1024, 0, 2, qa_data_dir=tmp_path)
    assert_length_fits(records, tokenizer, 1024)
    assert [r["outputs"] for r in records] == [["Denver", "Denver Broncos"], ["Santa Clara"]]  # answerable only
    questions = [("Who won?", "Denver won"), ("Where was it played?", "Santa Clara in")]
    for record, (query, gold) in zip(records, questions, strict=True):
        context = assert_prompt_is_template(record, family.template, family.answer_prefix, query=query)
        documents = re.split(r"\n\nDocument \d+:\n", "\n\n" + context)[1:]
        assert context.startswith("Document 1:\n") and len(documents) == record["metadata"]["num_docs"]
        assert [i + 1 for i, d in enumerate(documents) if gold in d] == record["metadata"]["gold_documents"]
        assert len(record["metadata"]["gold_documents"]) == 1  # the gold paragraph exactly once
        assert sum("Santa Clara" in d or "Denver" in d for d in documents) == 2  # its own article's paragraph first


def test_hotpotqa_documents(tokenizer, tmp_path):
    data = [{"question": f"Question {q}?", "answer": f"answer {q}",
             "context": [[f"Title {q}-{i}", [f"Sentence {q}.{i}. ", "More text."]] for i in range(10)]}
            for q in range(3)]  # fmt: skip
    (tmp_path / "hotpotqa.json").write_text(json.dumps(data))
    records = generate_records(tokenizer, "qa_2", 1024, 0, 2, qa_data_dir=tmp_path)
    assert_length_fits(records, tokenizer, 1024)
    for q, record in enumerate(records):
        assert record["outputs"] == [f"answer {q}"]
        golds = record["metadata"]["gold_documents"]
        assert len(golds) == 10 and all(record["input"].count(f"Title {q}-{i}\nSentence {q}.{i}. More text.") == 1
                                        for i in range(10))  # fmt: skip
