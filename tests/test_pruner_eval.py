"""Held-out evaluation of a trained pruner: Spearman against the saliency, salient recall, the token-type baseline."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from tiny_models import make_samples, make_tiny_model

from sdtp.pruner import PruningModule
from sdtp.pruner_eval import evaluate_heldout, evaluate_pruner, salient_recall


def test_evaluate_pruner_rewards_the_saliency_ranking():
    """A stand-in pruner that outputs |π̂| itself scores Spearman 1; a random one scores less."""
    model = make_tiny_model("qwen2", "sdpa", num_hidden_layers=3)
    samples = make_samples(model, [1], count=2, prompt=30, response=4)
    train = pd.DataFrame(
        [
            dict(split="heldout", sample=s.sample, input_ids=s.input_ids[0].tolist(), labels=s.labels[0].tolist())
            for s in samples
        ]
    )
    saliency = pd.DataFrame(
        [dict(split="heldout", sample=s.sample, layer=1, scores=s.saliency[1].tolist()) for s in samples]
    )
    torch.manual_seed(0)
    random_pruner = PruningModule([1], model.config.hidden_size)
    result = evaluate_pruner(model, random_pruner, train, saliency, [1])
    assert set(result) == {1} and -1 <= result[1] < 0.9

    # The stand-in returns each sample's own |π̂| in the order evaluate_pruner visits them (the frame's order).
    order = iter(samples)

    class InOrder(PruningModule):
        def forward(self, layer, hidden_states):
            sample = next(order)
            assert hidden_states.shape == (sample.prompt_length, model.config.hidden_size)
            return sample.saliency[layer][: sample.prompt_length].abs()

    assert evaluate_pruner(model, InOrder([1], model.config.hidden_size), train, saliency, [1])[1] == pytest.approx(1.0)
    # The command's one-pass evaluation gives the same Spearman, and the perfect stand-in keeps every salient token.
    order = iter(samples)
    rho, recall = evaluate_heldout(model, InOrder([1], model.config.hidden_size), train, saliency, [1], 0.3)
    # Scores equal to |π̂| put the salient tokens first: all of them fit unless they outnumber the top 30%.
    expected = []
    for sample in samples:
        target = sample.saliency[1][: sample.prompt_length].abs()
        salient = int((target > 0.1 * target.max()).sum())
        expected.append(min(1.0, math.ceil(0.3 * sample.prompt_length) / salient))
    assert rho[1] == pytest.approx(1.0) and recall[1] == pytest.approx(sum(expected) / len(expected))
    assert evaluate_heldout(model, random_pruner, train, saliency, [1], 0.3)[0] == pytest.approx(result)


def test_salient_recall_counts_salient_tokens_in_the_top_scores():
    target = torch.tensor([0.0, 5.0, 0.1, 0.2, 4.0, 0.0, 0.3, 0.05])  # salient (> 0.5): positions 1 and 4
    perfect = torch.tensor([0.0, 9.0, 1.0, 1.0, 8.0, 0.0, 1.0, 0.0])
    assert salient_recall(perfect, target, keep_fraction=0.25) == 1.0  # top 2 = {1, 4}
    half = torch.tensor([0.0, 9.0, 8.5, 1.0, 0.1, 0.0, 1.0, 0.0])
    assert salient_recall(half, target, keep_fraction=0.25) == 0.5
    assert salient_recall(half, target, keep_fraction=1.0) == 1.0
    assert math.isnan(salient_recall(half, torch.zeros(8), keep_fraction=0.5))


def test_token_type_spearman_is_one_for_type_saliency_and_low_for_context_saliency():
    from sdtp.pruner_eval import token_type_spearman
    from sdtp.pruner_training import PrunerSample

    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(20, generator=generator)  # a fixed importance per token id

    def sample(index, by_type):
        ids = torch.randint(0, 20, (1, 60), generator=generator)
        labels = torch.full_like(ids, -100)
        labels[0, -5:] = ids[0, -5:]
        noise = torch.randn(60, generator=generator)
        saliency = -weight[ids[0]] if by_type else noise  # the sign is ignored (|π̂|)
        return PrunerSample(index, ids, labels, {0: saliency})

    typed = token_type_spearman([sample(i, True) for i in range(8)], [sample(i, True) for i in range(8, 12)], [0])
    assert typed[0] == pytest.approx(1.0)
    context = token_type_spearman([sample(i, False) for i in range(8)], [sample(i, False) for i in range(8, 12)], [0])
    assert abs(context[0]) < 0.3
    # A held-out token id never seen in training gets the median instead of failing.
    unseen_ids = torch.full((1, 10), 25)
    unseen = PrunerSample(99, unseen_ids, torch.full((1, 10), -100), {0: torch.rand(10, generator=generator)})
    assert math.isnan(token_type_spearman([sample(0, True)], [unseen], [0])[0])  # a constant prediction: undefined
