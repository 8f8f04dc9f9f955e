"""The token scorers on their own: attention, the SDTP checkpoint's checks, the seeded random scorer, the oracle."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_model

from sdtp.pruner import PruningModule
from sdtp.saliency import token_saliency
from sdtp.schedule import KeepSchedule
from sdtp.scorers import ScoreContext, get_scorer


def test_attention_scorer_equals_eager_attention_of_last_query():
    model = make_tiny_model("qwen2", "eager")
    n = 64
    ids = torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(8))
    out = model(ids, output_attentions=True, output_hidden_states=True)
    layer = 2
    expected = out.attentions[layer][0, :, -1].sum(0)  # (n,) summed over heads
    hidden = out.hidden_states[layer]  # the input of decoder layer 2
    positions = torch.arange(n)
    ctx = ScoreContext(model, layer, 0, hidden, positions, model.model.rotary_emb(hidden, positions[None]))
    scores = get_scorer("attention").score(ctx)
    assert scores.shape == (n,)
    assert torch.allclose(scores, expected, atol=1e-5)


def test_attention_scorer_takes_rotary_embeddings_from_another_device():
    """Under `device_map` the rotary embedding sits on the last GPU, the scored layer on another. Simulated with two
    devices a CPU has: the layer on `meta`, cos/sin on `cpu` (mixing them raises, as cuda:0 with cuda:1 would)."""
    model = make_tiny_model("qwen2", "eager")
    n = 16
    hidden = torch.randn(1, n, model.config.hidden_size)
    positions = torch.arange(n)
    cos_sin = model.model.rotary_emb(hidden, positions[None])  # on cpu, like the last GPU's
    model.model.layers[2].to("meta")
    ctx = ScoreContext(model, 2, 0, hidden.to("meta"), positions.to("meta"), cos_sin)
    scores = get_scorer("attention").score(ctx)
    assert scores.shape == (n,) and scores.device.type == "meta"


def test_sdtp_scorer_checks_schedule_and_model(tmp_path):
    model = make_tiny_model("qwen2", "sdpa")
    PruningModule([1, 2], model.config.hidden_size).save(tmp_path / "ok")
    scorer = get_scorer("sdtp", checkpoint=tmp_path / "ok")
    ids = torch.zeros(1, 8, dtype=torch.long)
    scorer.begin(model, ids, KeepSchedule([1, 2], 0.5))
    with pytest.raises(ValueError, match=r"trained for layers \[1, 2\] but the schedule prunes at \[3\]"):
        scorer.begin(model, ids, KeepSchedule([1, 3], 0.5))
    PruningModule([1], 32).save(tmp_path / "small")
    with pytest.raises(ValueError, match="expects hidden size 32, the model has 64"):
        get_scorer("sdtp", checkpoint=tmp_path / "small").begin(model, ids, KeepSchedule([1], 0.5))


def test_random_scorer_is_seeded():
    model = make_tiny_model("qwen2", "sdpa")
    ids = torch.randint(0, 101, (1, 200), generator=torch.Generator().manual_seed(2))
    from sdtp.engine import prefill_with_pruning

    schedule = KeepSchedule([1, 2], 0.5)
    a = prefill_with_pruning(model, ids, schedule, get_scorer("random", seed=1)).kept_positions[-1]
    b = prefill_with_pruning(model, ids, schedule, get_scorer("random", seed=1)).kept_positions[-1]
    c = prefill_with_pruning(model, ids, schedule, get_scorer("random", seed=2)).kept_positions[-1]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_oracle_with_a_reference_scores_the_answer_loss_saliency():
    from sdtp.schedule import KeepSchedule
    from sdtp.scorers import get_scorer

    model = make_tiny_model("qwen2", "eager", num_hidden_layers=3)
    prompt = torch.randint(4, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    answer = [7, 9, 11]
    schedule = KeepSchedule([1, 2], 0.5, sink_tokens=1, min_local=2)
    oracle = get_scorer("oracle")
    oracle.set_reference(answer)
    oracle.begin(model, prompt, schedule)
    full = torch.cat([prompt, torch.tensor([answer])], dim=1)
    labels = full.clone()
    labels[:, :12] = -100
    expected = token_saliency(model, full, [1, 2], labels=labels)
    for layer in (1, 2):
        torch.testing.assert_close(oracle._saliency[layer], expected[layer][:12].abs())
    # The reference applies to one prompt only; without it the prompt's own LM loss is used.
    oracle.begin(model, prompt, schedule)
    torch.testing.assert_close(oracle._saliency[1], token_saliency(model, prompt, [1], objective="loss")[1].abs())
    assert not torch.allclose(expected[1][:12].abs(), oracle._saliency[1])


def test_sdtp_scorer_places_each_stage_on_its_layer_device_once(monkeypatch):
    """Each stage goes to its decoder layer's device in the model's dtype, once per model (not per prompt and not
    per stage call). Two devices simulated on CPU: layer 3 on `meta`."""
    model = make_tiny_model("qwen2", "sdpa")
    scorer = get_scorer("sdtp", checkpoint=PruningModule([1, 3], model.config.hidden_size))
    calls = []
    real_place = scorer.module.place
    monkeypatch.setattr(scorer.module, "place", lambda *a, **k: calls.append(a) or real_place(*a, **k))
    model.model.layers[3].to("meta")
    schedule = KeepSchedule([1, 3], 0.5)
    for _ in range(3):
        scorer.begin(model, torch.zeros(1, 8, dtype=torch.long), schedule)
    assert len(calls) == 1
    assert scorer.module.stages["1"][0].weight.device.type == "cpu"
    assert scorer.module.stages["3"][0].weight.device.type == "meta"


def test_sdtp_scorer_replaced_from_the_trained_weights_for_each_model():
    """A bf16 placement does not round the weights a later fp32 model uses."""
    torch.manual_seed(0)
    module = PruningModule([1], 64)
    trained = {k: v.clone() for k, v in module.state_dict().items()}
    scorer = get_scorer("sdtp", checkpoint=module)
    schedule = KeepSchedule([1], 0.5)
    scorer.begin(make_tiny_model("qwen2", "sdpa", dtype=torch.bfloat16), torch.zeros(1, 8, dtype=torch.long), schedule)
    assert scorer.module.stages["1"][0].weight.dtype == torch.bfloat16
    scorer.begin(make_tiny_model("qwen2", "sdpa"), torch.zeros(1, 8, dtype=torch.long), schedule)
    for key, value in scorer.module.state_dict().items():
        assert torch.equal(value, trained[key]), key


def test_random_scores_are_drawn_on_the_tokens_device(monkeypatch):
    """No CPU draw copied to the GPU inside a timed prefill: the generator and the draw are on the tokens' device."""
    drawn = []
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: drawn.append(k) or real_rand(*a, **k))
    positions = torch.arange(10)
    ctx = ScoreContext(None, 2, 0, torch.zeros(1, 10, 4), positions, None)
    first = get_scorer("random", seed=3).score(ctx)
    assert drawn and drawn[0]["device"] == positions.device and drawn[0]["generator"].device == positions.device
    assert torch.equal(first, get_scorer("random", seed=3).score(ctx))  # seeded per (seed, layer)
    assert not torch.equal(first, get_scorer("random", seed=4).score(ctx))
