"""Removal effects (deleting a token from a layer on) and how gradient saliency ranks the decisive tokens."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_model, prompt_and_answer

from sdtp.faithfulness import compare, removal_effect
from sdtp.saliency import label_logit, lm_loss


@pytest.mark.parametrize("objective", ["logit", "loss"])
def test_removal_at_layer_zero_equals_the_model_run_without_the_token(objective):
    """Masking token j out as a key from layer 0 on is deleting it: transformers' own forward on the sequence
    without j, the other tokens keeping their original position ids."""
    model = make_tiny_model("qwen2", "eager", dtype=torch.float64)
    ids, labels = prompt_and_answer(model.config.vocab_size, 14, 3, seed=0)
    effects = removal_effect(model, ids, labels, [0, 2], objective=objective, batch_size=5)
    assert set(effects) == {0, 2} and effects[0].shape == (14,)

    def objective_of(keep):
        with torch.no_grad():
            # An explicit attention mask: with none, transformers reads the position gap as two packed sequences.
            mask = torch.ones_like(keep)[None]
            logits = model(input_ids=ids[:, keep], position_ids=keep[None], attention_mask=mask).logits
        value = label_logit(logits, labels[:, keep]) if objective == "logit" else lm_loss(logits, labels[:, keep])
        return value.item()

    everything = torch.arange(17)
    full = objective_of(everything)
    sign = -1.0 if objective == "loss" else 1.0
    # Not the last prompt token: its own query predicts the first answer token (deleting it moves that prediction),
    # and SDTP never prunes it (local window).
    for token in (0, 5, 12):
        without = objective_of(everything[everything != token])
        assert effects[0][token].item() == pytest.approx(sign * (full - without), rel=1e-4, abs=1e-6)
    # From a later layer on, the first layers still read the token: a different effect.
    assert not torch.allclose(effects[0], effects[2])


def test_removal_effect_needs_labels():
    model = make_tiny_model("llama", "sdpa")
    ids = torch.randint(4, 101, (1, 10))
    with pytest.raises(ValueError, match="needs labels"):
        removal_effect(model, ids, torch.full_like(ids, -100), [1])


def test_compare_ranks_the_decisive_tokens():
    effect = torch.tensor([0.0, 5.0, 0.01, 0.0, 3.0, 0.02, 0.0, 0.0])  # decisive (> 0.5): tokens 1 and 4
    good = torch.tensor([0.1, -9.0, 0.3, 0.2, 8.0, 0.1, 0.0, 0.0])  # |saliency| ranks them 1st and 2nd
    measured = compare(good, effect)
    assert measured["decisive_tokens"] == 2
    assert measured["decisive_median_relative_rank"] == pytest.approx(0.5 / 8)  # ranks 0 and 1 of 8
    assert measured["decisive_recall_top_half"] == 1.0
    bad = torch.tensor([9.0, 0.0, 8.0, 7.0, 0.1, 6.0, 5.0, 4.0])
    assert compare(bad, effect)["decisive_recall_top_half"] == 0.0
