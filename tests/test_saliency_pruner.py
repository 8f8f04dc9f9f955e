from __future__ import annotations

import json

import pytest
import torch
from tiny_models import make_tiny_model

from sdtp.pruner import PruningModule
from sdtp.saliency import lm_loss, token_saliency
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer


def loss_with_scaled_token(model, ids, layer, token, eps):
    """LM loss when token `token`'s hidden state entering `layer` is scaled by (1 + eps)."""

    def hook(module, args, kwargs):
        hidden = args[0].clone()
        hidden[:, token] *= 1 + eps
        return (hidden, *args[1:]), kwargs

    handle = model.model.layers[layer].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            return lm_loss(model(ids).logits, ids).item()
    finally:
        handle.remove()


def test_saliency_equals_finite_difference():
    """π̂_i = ∂loss/∂x_i · x_i is the derivative of the loss along x_i's own direction: d/dε loss(x_i·(1+ε)) at 0."""
    model = make_tiny_model("qwen2", "eager", dtype=torch.float64)
    ids = torch.randint(0, 101, (1, 24), generator=torch.Generator().manual_seed(0))
    saliency = token_saliency(model, ids, [1, 3], objective="loss")
    assert set(saliency) == {1, 3} and saliency[1].shape == (24,)
    # RMSNorm computes in float32 even in a float64 model, so a tiny step drowns in rounding: a step of 1e-2 with
    # central differences (error O(eps²)) agrees to ~1e-4 relative.
    eps = 1e-2
    for layer in (1, 3):
        for token in (0, 7, 23):
            plus = loss_with_scaled_token(model, ids, layer, token, eps)
            minus = loss_with_scaled_token(model, ids, layer, token, -eps)
            assert saliency[layer][token].item() == pytest.approx((plus - minus) / (2 * eps), rel=2e-3, abs=1e-9)
    # The last token predicts nothing inside the prompt and influences no earlier token: its saliency is exactly 0.
    assert saliency[1][23].item() == 0.0 and saliency[3][23].item() == 0.0
    assert all(p.grad is None for p in model.parameters())


def test_saliency_equals_autograd_through_output_hidden_states():
    """An independent autograd path: the model's own hidden-state outputs, gradients retained, no hooks."""
    model = make_tiny_model("llama", "eager", dtype=torch.float64)
    ids = torch.randint(0, 101, (1, 30), generator=torch.Generator().manual_seed(3))
    embeds = model.model.embed_tokens(ids).detach().requires_grad_(True)
    out = model(inputs_embeds=embeds, output_hidden_states=True)
    for hidden in out.hidden_states:
        hidden.retain_grad()
    lm_loss(out.logits, ids).backward()
    saliency = token_saliency(model, ids, [0, 2, 4], objective="loss")
    for layer in (0, 2, 4):
        hidden = out.hidden_states[layer]  # hidden_states[l] is the input of decoder layer l
        expected = (hidden.grad * hidden).sum(-1)[0].float()
        assert torch.allclose(saliency[layer], expected, rtol=1e-6, atol=1e-9)


def test_logit_objective_equals_autograd_by_hand():
    from sdtp.saliency import label_logit

    model = make_tiny_model("qwen2", "eager", dtype=torch.float64)
    ids = torch.randint(0, 101, (1, 16), generator=torch.Generator().manual_seed(2))
    labels = torch.full_like(ids, -100)
    labels[0, -4:] = ids[0, -4:]
    saliency = token_saliency(model, ids, [1, 3], labels=labels)  # "logit" is the default
    embeds = model.model.embed_tokens(ids).detach().requires_grad_(True)
    out = model(inputs_embeds=embeds, output_hidden_states=True)
    for hidden in out.hidden_states:
        hidden.retain_grad()
    # The mean logit of the 4 labelled tokens, written out by hand.
    target = torch.stack([out.logits[0, t - 1, ids[0, t]] for t in range(12, 16)]).mean()
    torch.testing.assert_close(label_logit(out.logits, labels), target)
    target.backward()
    for layer in (1, 3):
        hidden = out.hidden_states[layer]
        torch.testing.assert_close(saliency[layer], (hidden.grad * hidden).sum(-1)[0].detach().float())
    with pytest.raises(ValueError, match="objective"):
        token_saliency(model, ids, [1], objective="margin")


def test_abs_sum_reduction_equals_autograd_by_hand():
    """`abs_sum` is Σ_d |g_d · x_d| of the same gradient; it bounds the signed sum's magnitude from above."""
    model = make_tiny_model("qwen2", "eager", dtype=torch.float64)
    ids = torch.randint(0, 101, (1, 16), generator=torch.Generator().manual_seed(5))
    labels = torch.full_like(ids, -100)
    labels[0, -3:] = ids[0, -3:]
    signed = token_saliency(model, ids, [0, 2], labels=labels)
    magnitude = token_saliency(model, ids, [0, 2], labels=labels, reduction="abs_sum")
    embeds = model.model.embed_tokens(ids).detach().requires_grad_(True)
    out = model(inputs_embeds=embeds, output_hidden_states=True)
    for hidden in out.hidden_states:
        hidden.retain_grad()
    torch.stack([out.logits[0, t - 1, ids[0, t]] for t in range(13, 16)]).mean().backward()
    for layer in (0, 2):
        hidden = out.hidden_states[layer]
        torch.testing.assert_close(magnitude[layer], (hidden.grad * hidden).abs().sum(-1)[0].detach().float())
        assert bool((magnitude[layer] >= signed[layer].abs() - 1e-6).all())
        assert magnitude[layer][:-1].min() > 0 and magnitude[layer][-1] == 0  # the last token feeds no label
    with pytest.raises(ValueError, match="reduction"):
        token_saliency(model, ids, [1], reduction="max")


def test_saliency_config_rejects_unknown_keys_and_values():
    from sdtp.saliency import SaliencyConfig

    assert SaliencyConfig.from_dict(None) == SaliencyConfig("logit", "sum")
    assert SaliencyConfig.from_dict({"reduction": "abs_sum"}).reduction == "abs_sum"
    message = r"unknown saliency config key 'reduce' in config section `saliency`; valid keys: objective, reduction"
    with pytest.raises(ValueError, match=message):
        SaliencyConfig.from_dict({"reduce": "abs_sum"})
    with pytest.raises(ValueError, match=r"saliency.objective = 'margin' must be one of logit, loss"):
        SaliencyConfig.from_dict({"objective": "margin"})


def test_saliency_respects_labels():
    model = make_tiny_model("llama", "sdpa")
    ids = torch.randint(0, 101, (1, 20), generator=torch.Generator().manual_seed(1))
    labels = torch.full_like(ids, -100)
    labels[0, -3:] = ids[0, -3:]  # loss on the last three tokens only (an answer)
    saliency = token_saliency(model, ids, [2], labels=labels)[2]
    assert saliency[-1].item() == 0.0  # nothing after it is scored
    assert saliency[:-1].abs().sum() > 0


def test_pruner_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    module = PruningModule([4, 1], hidden_size=32)
    path = module.save(tmp_path / "pruner", meta={"keep_ratio": 0.7})
    meta = json.loads((path / "pruner.json").read_text())
    assert meta["layers"] == [1, 4] and meta["hidden_size"] == 32 and meta["format"] == "sdtp-pruner"
    loaded = PruningModule.load(path)
    hidden = torch.randn(1, 10, 32)
    assert torch.equal(module(4, hidden), loaded(4, hidden))
    assert module(1, hidden).shape == (1, 10)
    assert loaded.meta == {"keep_ratio": 0.7}
    assert not list(tmp_path.glob(".pruner.*"))  # no temp directory left behind
    with pytest.raises(KeyError, match=r"no stage for layer 2; it was trained for layers \[1, 4\]"):
        loaded(2, hidden)


def test_pruner_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="pruner.json does not exist"):
        PruningModule.load(tmp_path)
    PruningModule([1], 16).save(tmp_path / "p")
    (tmp_path / "p" / "pruner.json").write_text(json.dumps({"format": "other", "version": 9}))
    with pytest.raises(ValueError, match="expected format 'sdtp-pruner' version 1"):
        PruningModule.load(tmp_path / "p")


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


def test_oracle_marks_tokens_as_stage_one_is_configured():
    from sdtp.saliency import SaliencyConfig
    from sdtp.schedule import KeepSchedule
    from sdtp.settings import scorer_for

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
