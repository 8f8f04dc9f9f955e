"""`python -m sdtp train-pruner` end to end on a tiny model."""

from __future__ import annotations

import json

import pandas as pd
from tiny_models import TINY_MODEL_SETTINGS, make_samples, random_ids, save_tiny_model

from sdtp import provenance
from sdtp.commands.cli import main as cli_main
from sdtp.engine import prefill_with_pruning
from sdtp.pruner import PruningModule
from sdtp.pruner_training import LOSS_COLUMNS
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer


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
    code = cli_main(
        [
            "train-pruner",
            "--settings",
            json.dumps(settings),
            "--model-dir",
            str(tmp_path / "model"),
            "--ratio",
            "0.5",
            "--train",
            str(tmp_path / "train.parquet"),
            "--saliency",
            str(tmp_path / "scores.parquet"),
            "--out",
            str(out),
            "--losses",
            str(losses_path),
        ]
    )
    assert code == 0
    pruner = PruningModule.load(out)
    assert pruner.layers == layers and pruner.hidden_size == 64
    meta = pruner.meta
    assert meta["base_model"] == "tiny" and meta["keep_ratio"] == 0.5 and meta["layers"] == layers
    assert meta["config"]["epochs"] == 2 and meta["steps"] == 6 and meta["train_s"] > 0
    assert set(meta["heldout_spearman"]) == {"1", "2"} and -1 <= meta["heldout_spearman_mean"] <= 1
    assert set(meta["heldout_salient_recall"]) == {"1", "2"}
    assert set(meta["heldout_token_type_spearman"]) == {"1", "2"}
    assert meta["train_prompt_chat_template"] == "unrecorded"  # train.parquet written without the column
    losses = pd.read_parquet(losses_path)
    assert list(losses.columns) == [*LOSS_COLUMNS, *provenance.COLUMNS] and len(losses) == 6
    assert losses.host.notna().all() and losses.slurm_job_id.isna().all()  # outside SLURM
    assert set(losses.model) == {"tiny"} and set(losses.keep_ratio) == {0.5} and set(losses["sample"]) == {0, 1, 2}
    assert not list(out.parent.glob(".*tmp"))
    scorer = get_scorer("sdtp", checkpoint=out)
    result = prefill_with_pruning(model, random_ids(40, 0), KeepSchedule(layers, 0.5, min_local=4), scorer)
    assert result.tokens_per_layer == [40, 20, 10, 10, 10]


def test_samples_the_saliency_job_skipped_are_left_out(caplog):
    """The saliency job skips a sample that runs out of memory: train-pruner trains and evaluates without it, and
    says so."""
    from sdtp.commands.train_pruner import with_saliency

    train = pd.DataFrame(dict(split=["train", "train", "heldout", "heldout"], sample=[0, 1, 2, 3]))
    saliency = pd.DataFrame(dict(split=["train", "train", "heldout"], sample=[0, 0, 3], layer=[1, 2, 1]))
    with caplog.at_level("WARNING"):
        kept = with_saliency(train, saliency)
    assert list(kept["sample"]) == [0, 3]
    assert "2 of 4 samples have no saliency" in caplog.text and "train sample 1, heldout sample 2" in caplog.text
    assert with_saliency(train, pd.DataFrame()).empty
