"""Gradient saliency (stage 1): π̂ against finite differences and autograd by hand, objectives, reductions, config."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny_model

from sdtp.saliency import lm_loss, token_saliency


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


@pytest.mark.parametrize("reduction", ["sum", "abs_sum"])
def test_bf16_saliency_is_reduced_in_fp32(reduction):
    """A bf16 model's saliency is not rounded to bf16 before it is returned: ties would decide the ranking loss and
    the oracle's order (summed in bf16, 1,024 tokens took ~190 distinct values)."""
    model = make_tiny_model("qwen2", "sdpa", dtype=torch.bfloat16)
    ids = torch.randint(0, 101, (1, 512), generator=torch.Generator().manual_seed(0))
    scores = token_saliency(model, ids, [1], reduction=reduction)[1]
    assert scores.dtype == torch.float32
    assert scores[:-1].unique().numel() >= 0.95 * (scores.numel() - 1)


def saved_bytes(model, ids, labels, layers) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of `token_saliency` (parameters excluded)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        token_saliency(model, ids, layers, labels=labels)
    return sum(saved.values())


def test_saliency_memory_is_linear_in_the_prompt_and_logits_only_at_labels():
    """The oracle runs on whole LongBench prompts (31.5K tokens on a 7B model): what the backward keeps must grow
    linearly with n (checkpointed layer inputs, ≈ (L + 1)·n·d values), and the LM head must see only the label
    positions, never n × vocab."""
    model = make_tiny_model("qwen2", "eager", num_hidden_layers=5)
    d, layers = model.config.hidden_size, [1, 3]
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    sizes = {}
    for n in (128, 256):
        ids = torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(n))
        labels = torch.full_like(ids, -100)
        labels[0, -3:] = ids[0, -3:]  # a 3-token answer: 3 positions predict a label
        sizes[n] = saved_bytes(model, ids, labels, layers)
        assert set(seen) == {3}, seen  # the forward and its recomputation, each on the 3 label positions only
        seen.clear()
        layers_kept = model.config.num_hidden_layers - layers[0] + 1
        bound = layers_kept * n * d * 4 + n * n * 4 + 2 * n * (d // 4) * 4 * 2 + 65536  # + the eager causal mask, RoPE
        assert sizes[n] <= bound, (n, sizes[n], bound)
    # Linear growth besides the one n × n eager mask (attention probabilities are never kept).
    assert sizes[256] - 256 * 256 * 4 <= 2.2 * (sizes[128] - 128 * 128 * 4)


def test_loss_objective_over_a_whole_prompt_is_computed_in_chunks(monkeypatch):
    """Without a reference answer the oracle's objective is the prompt's own LM loss: every position has a label.
    Its logits come in chunks (recomputed in the backward pass), and the result equals the unchunked one."""
    import sdtp.saliency as saliency_module

    model = make_tiny_model("qwen2", "sdpa")
    ids = torch.randint(0, 101, (1, 50), generator=torch.Generator().manual_seed(2))
    whole = token_saliency(model, ids, [1, 2], objective="loss")
    monkeypatch.setattr(saliency_module, "LOGIT_CHUNK", 8)
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    chunked = token_saliency(model, ids, [1, 2], objective="loss")
    assert max(seen) == 8 and sum(seen) == 2 * 49  # 49 positions predict a label, each computed twice
    for layer in (1, 2):
        torch.testing.assert_close(chunked[layer], whole[layer], rtol=1e-4, atol=1e-6)
