"""The tokenised saliency/pruner training samples."""

from __future__ import annotations

import pytest

from sdtp.data.tokenizer import build_tokenizer
from sdtp.data.train_samples import build_samples


def test_training_samples_split_and_label_the_response(tmp_path):
    tokenizer = build_tokenizer()
    section = {"source": "synthetic", "samples": 3, "heldout_samples": 2, "max_tokens": 400, "context_words": [80, 100]}
    samples = build_samples(tokenizer, section, seed=0)
    assert samples.split.tolist() == ["train"] * 3 + ["heldout"] * 2
    assert samples.equals(build_samples(tokenizer, section, seed=0))
    for row in samples.itertuples():
        labelled = [t for t in row.labels if t != -100]
        assert row.input_ids[-len(labelled) :] == labelled and labelled[-1] == tokenizer.eos_token_id
        assert row.tokens == len(row.input_ids) <= 400
    with pytest.raises(ValueError, match="train_data.max_tokens"):
        build_samples(tokenizer, {**section, "max_tokens": 50}, seed=0)
