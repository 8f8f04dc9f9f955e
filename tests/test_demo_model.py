"""The demo model trainer (a few steps of a tiny config)."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast, Qwen2ForCausalLM

from sdtp.data.tokenizer import build_tokenizer
from sdtp.demo_model import (
    SHIPPED_CHECKPOINT,
    active_tasks,
    build_demo_model,
    curriculum_stage,
    demo_config,
    encode_examples,
    evaluate_exact_match,
    learning_rate,
    recipe,
    shipped_recipe,
    train,
    train_demo_model,
)

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "steps": 6, "batch_size": 4, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 2, "curriculum": [[0, 80, 90], [3, 90, 100]],
    "eval_lengths": [90], "eval_records": 4, "eval_batch_size": 4, "warmup_steps": 2, "log_every": 3,
}  # fmt: skip


def test_demo_model_is_saved_like_a_hub_model_and_is_deterministic(tmp_path):
    metrics = train_demo_model(tmp_path / "hf", {**TINY, "seed": 3})
    assert len(metrics["losses"]) == 6 and all(loss > 0 for loss in metrics["losses"])
    assert set(metrics["exact_match"]) == {"synthetic_passkey", "synthetic_needle_qa"}
    assert json.loads((tmp_path / "hf" / "metrics.json").read_text())["steps"] == 6
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert model.config.model_type == "qwen2" and model.config.vocab_size == len(tokenizer)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    # Same seed, same run.
    _, _, again = train({**TINY, "seed": 3})
    assert again["losses"] == metrics["losses"]


def test_training_lowers_the_answer_loss():
    _, _, metrics = train({**TINY, "steps": 40, "lr": 3e-3, "curriculum": [[0, 80, 90]], "log_every": 40})
    first, last = sum(metrics["losses"][:5]) / 5, sum(metrics["losses"][-5:]) / 5
    assert last < first - 0.5, (first, last)


def test_unknown_demo_key_is_an_error():
    with pytest.raises(ValueError, match="hidden_sise"):
        train({"hidden_sise": 8})


def test_labels_cover_only_the_answer_and_eos():
    tokenizer = build_tokenizer()
    ids, labels = encode_examples(tokenizer, ["question : what ? answer :", "answer :"], ["red wolf 12", "blue"])
    assert ids.shape == labels.shape == (2, 11)
    row0 = [t for t in labels[0].tolist() if t != -100]
    assert tokenizer.decode(row0) == "red wolf 12 </s>"
    assert labels[1].tolist()[:3] == [-100, -100, -100] and labels[1, 4] == tokenizer.eos_token_id
    assert (ids[1, 5:] == tokenizer.pad_token_id).all() and (labels[1, 5:] == -100).all()


def test_tasks_join_at_their_start_step():
    config = {"tasks": ["synthetic_passkey", "synthetic_needle_qa"], "task_start": {"synthetic_needle_qa": 5}}
    assert active_tasks(config, 4) == ["synthetic_passkey"]
    assert active_tasks(config, 5) == ["synthetic_passkey", "synthetic_needle_qa"]


def test_curriculum_and_learning_rate_schedule():
    config = {"curriculum": [[0, 10, 20], [5, 30, 40]], "lr": 1.0, "warmup_steps": 2, "steps": 12, "min_lr_ratio": 0.1}
    assert curriculum_stage(config, 4) == (10, 20) and curriculum_stage(config, 5) == (30, 40)
    assert learning_rate(config, 0) == 0.5 and learning_rate(config, 2) == pytest.approx(1.0)
    assert learning_rate(config, 12) == pytest.approx(0.1)


def test_shipped_checkpoint_is_the_default_configs_recipe_and_answers():
    """The checkpoint in the package is what `demo-model --retrain` builds from config.yaml's `demo:` and `seed`, and
    it really answers the demo tasks (re-measured here on fresh held-out records, not read from its metrics)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert shipped_recipe() == recipe({"seed": config["seed"], **(config.get("demo") or {})})
    files = {path.name: path.stat().st_size for path in SHIPPED_CHECKPOINT.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json"} <= set(files)
    assert sum(files.values()) < 4 * 2**20  # a few MB at most in git
    metrics = json.loads((SHIPPED_CHECKPOINT / "metrics.json").read_text())
    assert all(v == 1.0 for per_task in metrics["exact_match"].values() for v in per_task.values())
    model = Qwen2ForCausalLM.from_pretrained(SHIPPED_CHECKPOINT)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(SHIPPED_CHECKPOINT)
    check = demo_config({"eval_lengths": [300], "eval_records": 20, "eval_seed": 777, "eval_batch_size": 20})
    accuracy = evaluate_exact_match(model, tokenizer, check)
    assert all(per_task["300"] >= 0.95 for per_task in accuracy.values()), accuracy


def test_build_demo_model_copies_a_matching_checkpoint_and_trains_otherwise(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    train_demo_model(checkpoint, {**TINY, "seed": 3})
    metrics, trained = build_demo_model(tmp_path / "copy", {**TINY, "seed": 3}, checkpoint=checkpoint)
    assert not trained and metrics["steps"] == 6
    assert filecmp.cmp(checkpoint / "model.safetensors", tmp_path / "copy" / "model.safetensors", shallow=False)
    # log_every and threads change how training runs, not the model: still a match.
    assert not build_demo_model(tmp_path / "copy2", {**TINY, "seed": 3, "log_every": 1}, checkpoint=checkpoint)[1]
    assert build_demo_model(tmp_path / "other", {**TINY, "seed": 4}, checkpoint=checkpoint)[1]
    assert build_demo_model(tmp_path / "forced", {**TINY, "seed": 3}, checkpoint=checkpoint, retrain=True)[1]
    assert build_demo_model(tmp_path / "none", {**TINY, "seed": 3}, checkpoint=tmp_path / "missing")[1]
