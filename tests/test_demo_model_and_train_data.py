"""The demo model trainer (a few steps of a tiny config), Dolly loading (offline fixture) and prepare-train."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sdtp.cli import main as cli_main
from sdtp.data import dolly
from sdtp.data.tokenizer import build_tokenizer
from sdtp.demo_model import active_tasks, curriculum_stage, encode_examples, learning_rate, train, train_demo_model
from sdtp.train_data import build_samples

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


def write_dolly_fixture(path):
    records = [
        {"instruction": "Name a colour.", "context": "", "response": "Red.", "category": "open_qa"},
        {"instruction": "Summarise.", "context": "A long text.", "response": "Short.", "category": "summarization"},
        {"instruction": "Count.", "context": "", "response": "Three.", "category": "open_qa"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_dolly_from_a_local_file(tmp_path):
    path = write_dolly_fixture(tmp_path / "dolly.jsonl")
    examples = dolly.load_dolly(str(path), limit=2)
    assert [e["_id"] for e in examples] == ["dolly-0", "dolly-1"]
    assert examples[0]["prompt"] == "### Instruction:\nName a colour.\n\n### Response:\n"
    assert "### Context:\nA long text." in examples[1]["prompt"] and examples[1]["response"] == "Short."


def test_dolly_download_goes_through_the_hub(tmp_path, monkeypatch):
    path = write_dolly_fixture(tmp_path / "cached.jsonl")
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(path)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert len(dolly.load_dolly(None)) == 3
    assert calls == [{"repo_id": "databricks/databricks-dolly-15k", "filename": "databricks-dolly-15k.jsonl",
                      "repo_type": "dataset"}]  # fmt: skip


def test_dolly_offline_names_the_config_key(monkeypatch):
    def offline(**kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(RuntimeError, match="train_data.path"):
        dolly.load_dolly(None)
    with pytest.raises(FileNotFoundError, match="train_data.path"):
        dolly.load_dolly("/nonexistent/dolly.jsonl")


def test_dolly_malformed_record_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"instruction": "x", "context": ""}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*response"):
        dolly.load_dolly(str(path))


def test_training_samples_split_and_label_the_response(tmp_path):
    tokenizer = build_tokenizer()
    section = {"source": "synthetic", "samples": 3, "heldout_samples": 2, "max_tokens": 400, "context_words": [80, 100]}
    samples = build_samples(tokenizer, section, seed=0)
    assert samples.split.tolist() == ["train"] * 3 + ["heldout"] * 2
    assert samples.equals(build_samples(tokenizer, section, seed=0))
    for row in samples.itertuples():
        labelled = [t for t in row.labels if t != -100]
        assert row.input_ids[-len(labelled):] == labelled and labelled[-1] == tokenizer.eos_token_id
        assert row.tokens == len(row.input_ids) <= 400
    with pytest.raises(ValueError, match="train_data.max_tokens"):
        build_samples(tokenizer, {**section, "max_tokens": 50}, seed=0)


def test_prepare_train_command_with_dolly(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "config.json").write_text("{}")
    path = write_dolly_fixture(tmp_path / "dolly.jsonl")
    settings = {
        "seed": 0,
        "model": {"name": "tiny", "source": "demo"},
        "train_data": {"source": "dolly", "path": str(path), "samples": 2, "heldout_samples": 1, "max_tokens": 64},
    }
    out = tmp_path / "train.parquet"
    assert cli_main(["prepare-train", "--settings", json.dumps(settings), "--model-dir", str(tmp_path / "model"),
                     "--out", str(out)]) == 0  # fmt: skip
    table = pd.read_parquet(out)
    assert table._id.tolist() == ["dolly-0", "dolly-1", "dolly-2"]
    assert table.split.tolist() == ["train", "train", "heldout"]
    assert torch.tensor(list(table.tokens)).min() > 0
