"""Checks shared by the RULER generation tests."""

from __future__ import annotations

from sdtp.ruler.prompts import record_input_ids


def context_of(text: str, template: str, **fields) -> str:
    """The `{context}` of `text`, asserting that `text` ends with `template` filled in with `fields` around it (the
    task text may stand after worked examples, so the template's head is searched from the right)."""
    head, tail = template.split("{context}")
    head, tail = head.format(**fields), tail.format(**fields)
    assert text.endswith(tail), (text[-200:], tail)
    start = text.rindex(head, 0, len(text) - len(tail))
    return text[start + len(head) : len(text) - len(tail)]


def assert_prompt_is_template(record, template: str, answer_prefix: str, **fields) -> str:
    """The record's input is the template filled in (the context aside) and its answer prefix the prefix filled in;
    returns the context."""
    context = context_of(record["input"], template, **fields)
    assert record["input"].endswith(template.format(context=context, **fields))
    assert record["answer_prefix"] == answer_prefix.format(**fields)
    return context


def assert_length_fits(records, tokenizer, target: int) -> None:
    """RULER's rule: prompt tokens (as fed) + generation budget <= target, and `length` says exactly that."""
    for record in records:
        ids = record_input_ids(record, tokenizer)
        assert record["input_tokens"] == len(ids)
        assert record["length"] == len(ids) + record["tokens_to_generate"] <= target == record["max_seq_length"]
