"""sdtp.data.docs_retrieval: pruner training examples over Python's help topics, disjoint from RULER's essays and
needles."""

import pytest

from sdtp.data import docs_retrieval
from sdtp.data.train_samples import load_examples

TEXT = " ".join(f"Sentence number {i} talks about the language reference." for i in range(400))


def test_an_example_holds_its_facts_once_and_asks_one_of_them():
    example = docs_retrieval.make_example(3, (150, 200), seed=7, text=TEXT)
    prompt = example["prompt"]
    assert prompt.startswith("Read the text below") and prompt.endswith("Answer:")
    keys = [fact["key"] for fact in example["facts"]]
    assert len(set(keys)) == 3
    for fact in example["facts"]:
        sentence = docs_retrieval.FACT_TEMPLATE.format(**fact)
        assert prompt.count(sentence) == 1
        assert len(fact["value"]) == 5 and fact["value"].isdigit()
    asked = next(f for f in example["facts"] if f["key"] == example["key"])
    assert example["response"] == asked["value"]
    assert f"Question: What is the access code for the {example['key']} vault?\nAnswer:" in prompt
    context_words = len(prompt.split("\n\n")[1].split()) - 3 * len(docs_retrieval.FACT_TEMPLATE.split())
    assert 150 <= context_words <= 200


def test_examples_are_deterministic_per_seed_and_index_and_differ_across_them():
    a = docs_retrieval.make_example(5, (100, 120), seed=1, text=TEXT)
    assert a == docs_retrieval.make_example(5, (100, 120), seed=1, text=TEXT)
    assert a != docs_retrieval.make_example(6, (100, 120), seed=1, text=TEXT)
    assert a != docs_retrieval.make_example(5, (100, 120), seed=2, text=TEXT)
    first = docs_retrieval.generate_docs_examples(4, (100, 120), seed=1)
    assert first[:2] == docs_retrieval.generate_docs_examples(2, (100, 120), seed=1)


def test_the_facts_share_no_template_with_rulers_needles_and_the_text_is_pythons():
    text = docs_retrieval.help_topics_text()
    assert "assert_stmt" in text and len(text.split()) > 50_000
    example = docs_retrieval.generate_docs_examples(1, (300, 300), seed=0)[0]
    assert "special magic" not in example["prompt"]  # RULER's needle sentence


def test_train_data_source_docs_goes_through_load_examples():
    section = {"source": "docs", "context_words": [80, 90]}
    examples = load_examples(section, seed=3, count=2)
    assert [e["_id"] for e in examples] == ["docs-retrieval-3-0", "docs-retrieval-3-1"]
    assert all(e["response"].isdigit() for e in examples)


@pytest.mark.parametrize("kwargs, message", [({"facts": 0}, "facts must be >= 1"), ({}, "context_words must be")])
def test_bad_parameters_name_the_value(kwargs, message):
    words = (0, 5) if not kwargs else (10, 20)
    with pytest.raises(ValueError, match=message):
        docs_retrieval.make_example(0, words, seed=0, text=TEXT, **kwargs)
