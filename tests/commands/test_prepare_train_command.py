"""`python -m sdtp prepare-train` with a Dolly fixture file."""

from __future__ import annotations

import json

import pandas as pd
import torch
from tiny_models import write_dolly_fixture

from sdtp.commands.cli import main as cli_main
from sdtp.data.tokenizer import build_tokenizer


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


def test_training_prompts_are_encoded_as_the_evaluation_encodes_them(tmp_path):
    """With longbench.chat_template: model, the pruner learns on chat-wrapped prompts, like the LongBench prompts it
    will prune; the samples (and so pruner.json) say which encoding was used."""
    import json

    import pandas as pd
    from tiny_models import CHAT_TEMPLATE, make_fixture_model, make_fixture_tokenizer, run_cli, write_dolly_fixture

    tokenizer = make_fixture_tokenizer()
    make_fixture_model(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    dolly = write_dolly_fixture(tmp_path / "dolly.jsonl")
    section = {"source": "dolly", "path": str(dolly), "samples": 2, "heldout_samples": 1, "max_tokens": 512}
    for mode in ("model", "none"):
        settings = {"seed": 0, "model": {"name": "tiny", "source": "demo"}, "train_data": section,
                    "longbench": {"chat_template": mode}}  # fmt: skip
        out = tmp_path / f"{mode}.parquet"
        run_cli("prepare-train", "--settings", json.dumps(settings), "--model-dir", tmp_path / "model", "--out", out)
        frame = pd.read_parquet(out)
        assert set(frame.chat_template) == {mode}
        first = list(frame.input_ids[0])
        starts_with_user_turn = first[0] == tokenizer.convert_tokens_to_ids("<|user|>")
        assert starts_with_user_turn == (mode == "model"), (mode, tokenizer.convert_ids_to_tokens(first[:3]))
    assert CHAT_TEMPLATE.startswith("{% for message in messages %}<|user|>")
