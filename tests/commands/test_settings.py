"""The settings a command receives and the objects built from them (`sdtp.commands.settings`)."""

from __future__ import annotations

import torch
from tiny_models import make_tiny_model

from sdtp.saliency import token_saliency


def test_oracle_marks_tokens_as_stage_one_is_configured():
    from sdtp.commands.settings import scorer_for
    from sdtp.saliency import SaliencyConfig
    from sdtp.schedule import KeepSchedule

    model = make_tiny_model("qwen2", "eager", num_hidden_layers=3)
    prompt = torch.randint(4, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    schedule = KeepSchedule([1, 2], 0.5, sink_tokens=1, min_local=2)
    oracle = scorer_for({"seed": 0, "saliency": {"reduction": "abs_sum", "objective": "loss"}}, "oracle", None)
    assert oracle.config == SaliencyConfig("loss", "abs_sum")
    oracle.set_reference([5, 6])
    oracle.begin(model, prompt, schedule)
    full = torch.cat([prompt, torch.tensor([[5, 6]])], dim=1)
    labels = full.clone()
    labels[:, :12] = -100
    expected = token_saliency(model, full, [1, 2], labels=labels, objective="loss", reduction="abs_sum")
    for layer in (1, 2):
        torch.testing.assert_close(oracle._saliency[layer], expected[layer][:12])
    # Without a `saliency` section the oracle keeps the defaults (the paper's signed sum of the logit objective).
    assert scorer_for({"seed": 0}, "oracle", None).config == SaliencyConfig()
