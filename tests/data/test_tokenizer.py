"""The synthetic world's word-level tokenizer."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from sdtp.data import synthetic
from sdtp.data.synthetic import SYNTHETIC_TASKS, build_prompt, generate_records
from sdtp.data.tokenizer import build_tokenizer

TASKS = sorted(SYNTHETIC_TASKS)


_TOKENIZER = build_tokenizer()  # module-level for the hypothesis test (function-scoped fixtures do not mix with @given)


@pytest.fixture(scope="module")
def tokenizer():
    return _TOKENIZER


def test_tokenizer_has_special_tokens_and_no_unknown_words(tokenizer):
    assert tokenizer.pad_token == "<pad>" and tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>"
    assert tokenizer.unk_token == "<unk>"
    assert len({tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id}) == 4
    assert tokenizer.chat_template is None
    for task in TASKS:
        for record in generate_records(task, 10, 256, seed=0):
            ids = tokenizer(build_prompt(record))["input_ids"]
            assert ids[0] == tokenizer.bos_token_id
            assert tokenizer.unk_token_id not in ids


def test_encode_decode_of_a_record(tokenizer):
    record = generate_records("synthetic_needle_qa", 1, 256, seed=0)[0]
    ids = tokenizer(build_prompt(record))["input_ids"]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    words = re.findall(r"\w+|[^\w\s]", build_prompt(record).lower())
    assert decoded == " ".join(words)
    answer = record["answers"][0]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(answer_ids + [tokenizer.eos_token_id], skip_special_tokens=True) == answer


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.sampled_from(synthetic.FILLER_WORDS + synthetic.COLORS + synthetic.NUMBERS), min_size=1, max_size=30)
)
def test_decode_joins_words_with_spaces(words):
    tokenizer = _TOKENIZER
    text = " ".join(words)
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_tokenizer_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    record = generate_records("synthetic_passkey", 1, 256, seed=0)[0]
    prompt = build_prompt(record)
    assert loaded(prompt)["input_ids"] == tokenizer(prompt)["input_ids"]
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id, loaded.unk_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id,
    )  # fmt: skip
    assert loaded.decode(loaded(record["answers"][0], add_special_tokens=False)["input_ids"]) == record["answers"][0]
