"""Dolly-15k loading: a local file (offline fixture), the hub download and its error messages."""

from __future__ import annotations

import json

import pytest
from tiny_models import write_dolly_fixture

from sdtp.data import dolly


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
