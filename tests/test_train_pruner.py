from __future__ import annotations

import copy
import dataclasses
import json
import math

import pandas as pd
import pytest
import torch
from tiny_models import TINY_MODEL_SETTINGS, make_tiny_model, save_tiny_model

from sdtp.cli import main as cli_main
from sdtp.engine import prefill_with_pruning
from sdtp.pruner import PruningModule
from sdtp.saliency import lm_loss, token_saliency
from sdtp.schedule import KeepSchedule
from sdtp.scorers import SdtpScorer, get_scorer
import sdtp.train_pruner as train_pruner_module
from sdtp.train_pruner import (
    LOSS_COLUMNS,
    PrunerSample,
    PrunerTrainConfig,
    evaluate_heldout,
    evaluate_pruner,
    salient_recall,
    lm_loss_at_labels,
    logits_of,
    ranking_loss,
    sample_loss,
    sample_pairs,
    simulate_pruning,
    spearman,
    train_pruner,
)


def random_ids(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(seed))


def make_samples(model, layers, count=4, prompt=40, response=8, seed=0) -> list[PrunerSample]:
    """Synthetic samples: random prompt, response = a copy of the prompt's start (so the prompt matters)."""
    samples = []
    for i in range(count):
        prompt_ids = random_ids(prompt, seed + i)
        ids = torch.cat([prompt_ids, prompt_ids[:, 4 : 4 + response]], dim=1)
        labels = ids.clone()
        labels[:, :prompt] = -100
        saliency = token_saliency(model, ids, layers, labels=labels)
        samples.append(PrunerSample(i, ids, labels, saliency))
    return samples


# --- loss terms and metric --------------------------------------------------------------------------------------------


def test_ranking_loss_equals_double_loop():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(9, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 4, (9,), generator=generator).double()  # many ties: those pairs are skipped
    total, count = 0.0, 0
    for i in range(9):
        for j in range(i + 1, 9):
            if targets[i] == targets[j]:
                continue
            sign = 1.0 if targets[i] > targets[j] else -1.0
            total += math.log1p(math.exp(-(scores[i] - scores[j]).item() * sign))
            count += 1
    assert ranking_loss(scores, targets).item() == pytest.approx(total / count, rel=1e-12)
    # Explicit pairs give the same value; a perfect ranking by a wide margin costs almost nothing.
    all_pairs = torch.triu_indices(9, 9, offset=1).T
    assert ranking_loss(scores, targets, all_pairs).item() == pytest.approx(total / count, rel=1e-12)
    assert ranking_loss(100 * targets, targets).item() < 1e-30
    # All targets tied: no pair counts, the loss is 0 and still differentiable.
    flat = torch.zeros(5, requires_grad=True)
    loss = ranking_loss(flat, torch.ones(5))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(flat.grad, torch.zeros(5))


@pytest.mark.parametrize("n, max_pairs", [(5, 100), (20, 100), (50, 100), (100_000, 1000)])
def test_sample_pairs_distinct_valid_and_seeded(n, max_pairs):
    pairs = sample_pairs(n, max_pairs, torch.Generator().manual_seed(1))
    expected = min(max_pairs, n * (n - 1) // 2)
    assert pairs.shape == (expected, 2) and pairs.dtype == torch.long
    i, j = pairs[:, 0], pairs[:, 1]
    assert bool((i >= 0).all() and (i < j).all() and (j < n).all())
    assert len({tuple(p) for p in pairs.tolist()}) == expected
    again = sample_pairs(n, max_pairs, torch.Generator().manual_seed(1))
    assert torch.equal(pairs, again)
    if expected < n * (n - 1) // 2:
        assert not torch.equal(pairs, sample_pairs(n, max_pairs, torch.Generator().manual_seed(2)))
    else:
        assert set(map(tuple, pairs.tolist())) == set(map(tuple, torch.triu_indices(n, n, 1).T.tolist()))


def test_sample_pairs_cover_the_triangle_evenly():
    """Uniform over pairs: later tokens (larger j) appear in more pairs, j's mean is 2/3 of n, not n/2."""
    n = 300
    pairs = sample_pairs(n, 5000, torch.Generator().manual_seed(0))
    exact_mean_j = sum(j * j for j in range(n)) / (n * (n - 1) / 2)  # pairs with larger index j: j of them
    assert pairs[:, 1].double().mean().item() == pytest.approx(exact_mean_j, rel=0.03)


def test_spearman_by_hand_and_against_pandas():
    # ranks [1,2,3] vs [3,1,2]: centred (-1,0,1)·(1,-1,0) = -1 over variance 2 → -0.5.
    assert spearman([1.0, 2.0, 3.0], [30.0, 10.0, 20.0]) == pytest.approx(-0.5)
    assert spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 4.0, 9.0, 16.0])) == pytest.approx(1.0)
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (40,), generator=generator).float()  # ties → average ranks
    b = a + torch.randn(40, generator=generator)
    expected = pd.Series(a.numpy()).corr(pd.Series(b.numpy()), method="spearman")
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


# --- the masked simulation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family, attn", [("qwen2", "sdpa"), ("llama", "eager")])
def test_simulation_without_pruning_is_the_model(family, attn):
    model = make_tiny_model(family, attn)
    ids = random_ids(30, 0)
    expected = model(ids).logits
    pruner = PruningModule([1, 3], model.config.hidden_size)
    for schedule in (KeepSchedule([1, 3], 1.0), KeepSchedule([], 0.5)):
        result = simulate_pruning(model, pruner, ids, schedule)
        assert torch.allclose(logits_of(model, result.hidden), expected, atol=1e-5)
    # The label-position LM loss is sdtp.saliency's loss.
    labels = ids.clone()
    labels[:, :20] = -100
    expected_loss = lm_loss(expected, labels).item()
    assert lm_loss_at_labels(model, result.hidden, labels).item() == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.parametrize("family, attn", [("qwen2", "sdpa"), ("llama", "eager")])
def test_simulation_prunes_what_the_engine_prunes(family, attn):
    """On a prompt-only input, the masked forward keeps the engine's tokens at every stage and gives its logits."""
    model = make_tiny_model(family, attn)
    ids = random_ids(80, 3)
    schedule = KeepSchedule([1, 2, 4], 0.6, min_local=4)
    torch.manual_seed(0)
    pruner = PruningModule(schedule.layers, model.config.hidden_size)
    result = simulate_pruning(model, pruner, ids, schedule)
    engine = prefill_with_pruning(model, ids, schedule, SdtpScorer(copy.deepcopy(pruner)))
    for layer in schedule.layers:
        assert torch.equal(result.kept_positions[layer], engine.kept_positions[layer])
    assert engine.tokens_per_layer == [80, 48, 29, 29, 17]
    last = logits_of(model, result.hidden, torch.tensor([79]))[:, 0]
    assert torch.allclose(last, engine.logits, atol=1e-4)
    # And it really pruned: the unpruned model's last logits differ.
    assert not torch.allclose(model(ids).logits[:, -1], engine.logits, atol=1e-2)


def test_response_tokens_are_never_pruned_and_window_ends_at_prompt():
    model = make_tiny_model("qwen2", "sdpa")
    ids = random_ids(60, 4)
    schedule = KeepSchedule([1, 3], 0.5, sink_tokens=2, min_local=3)
    pruner = PruningModule(schedule.layers, model.config.hidden_size)
    result = simulate_pruning(model, pruner, ids, schedule, prompt_length=50)
    assert result.scored_positions[1].tolist() == list(range(50))
    kept = result.kept_positions[1]
    assert len(kept) == 25 and kept.max() < 50 and {0, 1, 47, 48, 49} <= set(kept.tolist())
    assert torch.equal(result.scored_positions[3], kept)
    assert len(result.kept_positions[3]) == schedule.keep_count(25) == 13
    assert {0, 1} <= set(result.kept_positions[3].tolist())


def test_gradients_reach_only_the_pruner_and_are_finite():
    model = make_tiny_model("qwen2", "sdpa")
    sample = make_samples(model, [1, 3], count=1, prompt=60, response=10)[0]
    schedule = KeepSchedule([1, 3], 0.5, min_local=4)
    torch.manual_seed(0)
    pruner = PruningModule(schedule.layers, model.config.hidden_size)
    config = PrunerTrainConfig(mse_weight=0.0, rank_weight=0.0)  # the LM term alone: the straight-through path
    result = simulate_pruning(model, pruner, sample.input_ids, schedule, sample.prompt_length, config.temperature)
    for scores in result.scores.values():
        scores.retain_grad()
    lm_loss_at_labels(model, result.hidden, sample.labels).backward()
    grads = [p.grad for p in pruner.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    # Both kept and pruned (unprotected) tokens get an LM gradient: a pruned key's bias is finite (−70), so the
    # masked-softmax gradient does not vanish.
    stage0 = result.scores[1].grad
    kept = torch.zeros(60, dtype=torch.bool)
    kept[result.kept_positions[1]] = True
    assert torch.isfinite(stage0).all()
    assert (stage0[~kept] != 0).sum() > 10 and (stage0[kept][4:-6] != 0).sum() > 10


def test_mask_gradient_is_the_masked_softmax_gradient(monkeypatch):
    """dL/dm_j from the straight-through bias equals the finite difference of the loss in the multiplicative keep mask
    m_j (DynamicViT's masked softmax), for pruned (m_j = e^-70) and kept (m_j = 1) tokens alike."""
    model = make_tiny_model("qwen2", "sdpa", dtype=torch.float64, num_hidden_layers=3)
    sample = make_samples(model, [1], count=1, prompt=40, response=8)[0]
    schedule = KeepSchedule([1], 0.5, min_local=4)
    torch.manual_seed(0)
    pruner = PruningModule(schedule.layers, model.config.hidden_size)
    original = train_pruner_module.straight_through_log_keep
    seen, perturb = {}, {}

    def recording(scores, keep, protected, temperature):
        log_keep = original(scores, keep, protected, temperature)
        if perturb:  # replace token j's mask m_j by m_j + eps
            log_keep = log_keep.detach().double().clone()
            log_keep[perturb["j"]] = math.log(math.exp(log_keep[perturb["j"]].item()) + perturb["eps"])
        else:
            log_keep.retain_grad()
            seen.update(log_keep=log_keep, keep=keep)
        return log_keep

    monkeypatch.setattr(train_pruner_module, "straight_through_log_keep", recording)

    def loss() -> torch.Tensor:
        result = simulate_pruning(model, pruner, sample.input_ids, schedule, sample.prompt_length)
        return lm_loss_at_labels(model, result.hidden, sample.labels)

    def loss_with(j: int, eps: float) -> float:
        perturb.update(j=j, eps=eps)
        try:
            return loss().item()
        finally:
            perturb.clear()

    base = loss()
    base.backward()
    log_keep, kept = seen["log_keep"], set(seen["keep"].tolist())
    pruned = [j for j in range(40) if j not in kept]
    eps = 1e-2
    for j in pruned[:3] + sorted(kept)[4:7]:  # past the sinks
        autograd = log_keep.grad[j].item() / math.exp(log_keep[j].item())  # dL/dm = dL/dlog(m) / m
        # RMSNorm runs in float32 even in a float64 model: a step of 1e-2 with Richardson extrapolation (O(eps²)).
        slope, double_slope = [(loss_with(j, e) - base.item()) / e for e in (eps, 2 * eps)]
        assert autograd == pytest.approx(2 * slope - double_slope, rel=0.05, abs=1e-3), j


def test_full_loss_gradients_are_finite_in_bfloat16():
    model = make_tiny_model("llama", "sdpa", dtype=torch.bfloat16)
    sample = make_samples(make_tiny_model("llama", "sdpa"), [2], count=1, prompt=50, response=6)[0]
    schedule = KeepSchedule([2], 0.5, min_local=4)
    pruner = PruningModule(schedule.layers, model.config.hidden_size)
    terms = sample_loss(model, pruner, sample, schedule, PrunerTrainConfig(), torch.Generator().manual_seed(0))
    terms.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in pruner.parameters())
    assert math.isfinite(terms.total.item())


# --- training ---------------------------------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_is_deterministic():
    model = make_tiny_model("qwen2", "sdpa", num_hidden_layers=3)
    schedule = KeepSchedule([1, 2], 0.6, min_local=4)
    samples = make_samples(model, schedule.layers, count=4)
    config = PrunerTrainConfig(epochs=6, lr=1e-2, log_every=8)
    pruner, losses = train_pruner(model, samples, schedule, config, seed=0, model_name="tiny")
    assert list(losses.columns) == LOSS_COLUMNS and len(losses) == 24
    assert losses.step.tolist() == list(range(1, 25)) and set(losses["sample"]) == {0, 1, 2, 3}
    by_epoch = losses.groupby("epoch")[["total", "mse", "rank"]].mean()
    assert by_epoch.total.iloc[-1] < 0.85 * by_epoch.total.iloc[0]
    assert by_epoch.mse.iloc[-1] < by_epoch.mse.iloc[0] and by_epoch["rank"].iloc[-1] < by_epoch["rank"].iloc[0]
    assert (losses.total - (losses.lm + losses.mse + losses["rank"])).abs().max() < 1e-4
    assert not pruner.training and all(p.requires_grad for p in pruner.parameters())
    # The LM term alone trains through the straight-through mask: the pruner learns to keep what the response needs.
    lm_only = PrunerTrainConfig(epochs=4, lr=1e-2, mse_weight=0.0, rank_weight=0.0)
    _, lm_losses = train_pruner(model, samples, schedule, lm_only, seed=0)
    lm_by_epoch = lm_losses.groupby("epoch").lm.mean()
    assert lm_by_epoch.iloc[-1] < lm_by_epoch.iloc[0] - 0.1
    short = dataclasses.replace(config, epochs=1)
    first, _ = train_pruner(model, samples, schedule, short, seed=3)
    second, _ = train_pruner(model, samples, schedule, short, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


@pytest.mark.parametrize("off, optimizer", [("lm_weight", "sgd"), ("mse_weight", "adam"), ("rank_weight", "adamw")])
def test_each_loss_term_switches_off(off, optimizer):
    model = make_tiny_model("qwen2", "sdpa", num_hidden_layers=3)
    schedule = KeepSchedule([1, 2], 0.6, min_local=4)
    samples = make_samples(model, schedule.layers, count=2)
    other = "mse_weight" if off != "mse_weight" else "lm_weight"
    config = PrunerTrainConfig(epochs=1, optimizer=optimizer, **{off: 0.0, other: 2.0})
    torch.manual_seed(0)
    pruner = PruningModule(schedule.layers, model.config.hidden_size)
    terms = sample_loss(model, pruner, samples[0], schedule, config, torch.Generator().manual_seed(0))
    expected = config.lm_weight * terms.lm + config.mse_weight * terms.mse + config.rank_weight * terms.rank
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert getattr(terms, off.removesuffix("_weight")).item() > 0  # still reported, just not optimised
    _, losses = train_pruner(model, samples, schedule, config, seed=0)
    assert len(losses) == 2 and losses[["lm", "mse", "rank", "total"]].notna().all().all()


def test_config_rejects_unknown_keys_and_bad_values():
    assert PrunerTrainConfig.from_dict({"epochs": 1}).epochs == 1
    assert PrunerTrainConfig.from_dict(None) == PrunerTrainConfig()
    message = r"unknown pruner config key 'lrr' in config section `pruner`; valid keys: epochs, lr"
    with pytest.raises(ValueError, match=message):
        PrunerTrainConfig.from_dict({"epochs": 1, "lrr": 0.1})
    with pytest.raises(ValueError, match="optimizer = 'lion' must be one of adamw, adam, sgd"):
        PrunerTrainConfig.from_dict({"optimizer": "lion"})
    with pytest.raises(ValueError, match="epochs = 0 must be an integer >= 1"):
        PrunerTrainConfig(epochs=0)
    with pytest.raises(ValueError, match="all 0: nothing to train"):
        PrunerTrainConfig(lm_weight=0, mse_weight=0, rank_weight=0)


# --- the command ------------------------------------------------------------------------------------------------------


def test_train_pruner_command_end_to_end(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    settings = {
        "seed": 0,
        "model": TINY_MODEL_SETTINGS,
        "schedule": {"start": 1, "step": 1, "stages": 2, "min_local": 4},
        "pruner": {"epochs": 2},
    }
    layers = [1, 2]
    train_rows, score_rows = [], []
    for sample, sample_data in enumerate(make_samples(model, layers, count=5, prompt=36, response=6, seed=10)):
        split = "train" if sample < 3 else "heldout"
        ids, labels = sample_data.input_ids[0].tolist(), sample_data.labels[0].tolist()
        train_rows.append(
            dict(split=split, sample=sample, _id=f"s{sample}", tokens=len(ids), input_ids=ids, labels=labels)
        )
        for layer, scores in sample_data.saliency.items():
            score_rows.append(dict(split=split, sample=sample, layer=layer, scores=scores.tolist()))
    pd.DataFrame(train_rows).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame(score_rows).to_parquet(tmp_path / "scores.parquet")
    out, losses_path = tmp_path / "pruner" / "r0.5" / "pruner", tmp_path / "pruner" / "r0.5" / "losses.parquet"
    code = cli_main([
        "train-pruner", "--settings", json.dumps(settings), "--model-dir", str(tmp_path / "model"), "--ratio", "0.5",
        "--train", str(tmp_path / "train.parquet"), "--saliency", str(tmp_path / "scores.parquet"),
        "--out", str(out), "--losses", str(losses_path),
    ])
    assert code == 0
    pruner = PruningModule.load(out)
    assert pruner.layers == layers and pruner.hidden_size == 64
    meta = pruner.meta
    assert meta["base_model"] == "tiny" and meta["keep_ratio"] == 0.5 and meta["layers"] == layers
    assert meta["config"]["epochs"] == 2 and meta["steps"] == 6 and meta["train_s"] > 0
    assert set(meta["heldout_spearman"]) == {"1", "2"} and -1 <= meta["heldout_spearman_mean"] <= 1
    assert set(meta["heldout_salient_recall"]) == {"1", "2"}
    assert set(meta["heldout_token_type_spearman"]) == {"1", "2"}
    losses = pd.read_parquet(losses_path)
    assert list(losses.columns) == LOSS_COLUMNS and len(losses) == 6
    assert set(losses.model) == {"tiny"} and set(losses.keep_ratio) == {0.5} and set(losses["sample"]) == {0, 1, 2}
    assert not list(out.parent.glob(".*tmp"))
    scorer = get_scorer("sdtp", checkpoint=out)
    result = prefill_with_pruning(model, random_ids(40, 0), KeepSchedule(layers, 0.5, min_local=4), scorer)
    assert result.tokens_per_layer == [40, 20, 10, 10, 10]


def test_evaluate_pruner_rewards_the_saliency_ranking():
    """A stand-in pruner that outputs |π̂| itself scores Spearman 1; a random one scores less."""
    model = make_tiny_model("qwen2", "sdpa", num_hidden_layers=3)
    samples = make_samples(model, [1], count=2, prompt=30, response=4)
    train = pd.DataFrame([
        dict(split="heldout", sample=s.sample, input_ids=s.input_ids[0].tolist(), labels=s.labels[0].tolist())
        for s in samples
    ])
    saliency = pd.DataFrame([
        dict(split="heldout", sample=s.sample, layer=1, scores=s.saliency[1].tolist()) for s in samples
    ])
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
    from sdtp.train_pruner import PrunerSample, token_type_spearman

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
