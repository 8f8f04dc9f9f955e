"""Greedy prediction of one LongBench record."""

from __future__ import annotations

import torch
from tiny_models import fixture_record, make_fixture_model, make_fixture_tokenizer

from sdtp.longbench.predict import predict_record
from sdtp.longbench.tasks import get_task
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer


def test_decoding_stops_at_eos():
    """A model whose final norm is zero gives all-zero logits: the argmax is id 0, the EOS, at the first step."""
    tokenizer = make_fixture_tokenizer()
    model = make_fixture_model(tokenizer)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    schedule = KeepSchedule([1, 2], 1.0)
    row = predict_record(
        model, tokenizer, get_task("hotpotqa"), fixture_record("hotpotqa", 1), schedule, get_scorer("baseline"), 96
    )
    assert row.new_tokens == 1 and row.pred == ""
