from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from tiny_models import TINY_MODEL_SETTINGS, make_tiny_model, save_tiny_model

from sdtp.cli import main as cli_main
from sdtp.faithfulness import compare, removal_effect
from sdtp.saliency import label_logit, lm_loss


def prompt_and_answer(vocab: int, prompt: int, answer: int, seed: int):
    ids = torch.randint(4, vocab, (1, prompt + answer), generator=torch.Generator().manual_seed(seed))
    labels = ids.clone()
    labels[:, :prompt] = -100
    return ids, labels


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


def test_saliency_check_command_writes_one_row_per_sample_layer_and_reduction(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    rows = []
    for sample in range(3):
        ids, labels = prompt_and_answer(model.config.vocab_size, 20, 3, seed=sample)
        rows.append(dict(split="train" if sample == 0 else "heldout", sample=sample, _id=str(sample), tokens=23,
                         input_ids=ids[0].tolist(), labels=labels[0].tolist()))
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    settings = {"seed": 0, "model": TINY_MODEL_SETTINGS, "schedule": {"start": 1, "step": 1, "stages": 2},
                "saliency": {"reduction": "abs_sum"}}
    out = tmp_path / "check.parquet"
    code = cli_main(["saliency-check", "--settings", json.dumps(settings), "--model-dir", str(tmp_path / "model"),
                     "--train", str(tmp_path / "train.parquet"), "--out", str(out)])
    assert code == 0
    table = pd.read_parquet(out)
    assert len(table) == 2 * 2 * 2  # 2 held-out samples × layers 1, 2 × reductions sum, abs_sum
    assert set(table["sample"]) == {1, 2} and set(table.reduction) == {"sum", "abs_sum"}
    assert table.spearman.between(-1, 1).all()
