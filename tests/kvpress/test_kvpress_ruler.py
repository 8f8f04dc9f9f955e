"""Press methods in RULER, through the commands: ruler-generate -> ruler-predict for baseline, `kvpress:snapkv` and
`sdtp+snapkv` (a pruner checkpoint saved here) -> ruler-score -> ruler-table. The table's cells carry the press's KV
fraction and budget, and count the records whose layers were too short for the press's window."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from ruler_bpe import save_bpe_model
from tiny_models import run_cli

from sdtp.commands import gpu_pool
from sdtp.kv_compression import kvpress_installed

pytestmark = pytest.mark.skipif(
    not kvpress_installed(), reason="the kvpress extra is not installed: pip install -e '.[kvpress]'"
)

MODEL = {"name": "tiny", "source": "hub", "id": None, "dtype": "float32", "attn_implementation": "sdpa",
         "device": "cpu", "weights": "pretrained", "revision": None}  # fmt: skip
SCHEDULE = {"layers": [1, 2], "sink_tokens": 2, "local_ratio": 0.1, "min_local": 2}
LENGTH = 512
# window 4: every layer is longer than it; window 300: the layers after the first prune point (1-3) are not.
PRESS = {"budget": "sdtp_mean_kv", "snapkv": {"window_size": 4}}


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def ruler_table(tmp_path_factory):
    """The RULER table of baseline, kvpress:snapkv and sdtp+snapkv (window 4), and sdtp+snapkv with a window of 300
    tokens (method path `sdtp+snapkv`, model `wide`); and the prediction rows, by (model, method)."""
    from sdtp.pruner import PruningModule

    root = tmp_path_factory.mktemp("ruler-press")
    save_bpe_model(root / "model")
    pruner = PruningModule([1, 2], hidden_size=64).save(root / "pruner")
    records = root / "records.jsonl"
    settings = json.dumps({"model": MODEL, "ruler": {"samples": 2, "seed": 3, "chat_template": "none"}})
    run_cli("ruler-generate", "--settings", settings, "--model-dir", root / "model", "--task", "niah_single_1",
            "--length", LENGTH, "--out", records)  # fmt: skip
    scores, rows = [], {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpu_pool, "claim_devices", lambda *args, **kwargs: None)
        for model, method, press in (("tiny", "baseline", PRESS), ("tiny", "kvpress-snapkv", PRESS),
                                     ("tiny", "sdtp+snapkv", PRESS),
                                     ("wide", "sdtp+snapkv", {**PRESS, "snapkv": {"window_size": 300}})):  # fmt: skip
            ratio = 1.0 if method == "baseline" else 0.5
            out = root / model / method / "p.jsonl"
            predict = {"seed": 0, "model": MODEL, "schedule": SCHEDULE, "kvpress": press}
            run_cli("ruler-predict", "--settings", json.dumps(predict), "--model-dir", root / "model", "--gpus", 0,
                    "--pruner", pruner, "--method", method, "--ratio", ratio, "--task", "niah_single_1",
                    "--records", records, "--out", out)  # fmt: skip
            score = out.with_suffix(".score.parquet")
            run_cli("ruler-score", "--predictions", out, "--model", model, "--method", method, "--ratio", ratio,
                    "--out", score)  # fmt: skip
            scores.append(score)
            rows[model, method.replace("kvpress-", "kvpress:")] = lines(out)
    table = root / "ruler.parquet"
    run_cli("ruler-table", "--scores", *scores, "--out", table)
    return pd.read_parquet(table).set_index(["model", "method"]), rows


def test_press_rows_carry_their_kv_fraction_and_budget(ruler_table):
    table, rows = ruler_table
    assert set(table.index) == {("tiny", "baseline"), ("tiny", "kvpress:snapkv"), ("tiny", "sdtp+snapkv"),
                                ("wide", "sdtp+snapkv")}  # fmt: skip
    assert (table.n == 2).all() and (table.oom_count == 0).all() and (table.error_count == 0).all()
    base, alone, combined = (table.loc["tiny", m] for m in ("baseline", "kvpress:snapkv", "sdtp+snapkv"))
    assert (base.kv_fraction, base.kv_budget, base.press_compression_ratio) == (1.0, "", 0.0)
    # the press alone at SDTP's mean KV: every layer cut to the same length, the fraction the records measured
    assert alone.kv_budget == "sdtp_mean_kv" and 0.0 < alone.press_compression_ratio < 1.0
    for row in rows["tiny", "kvpress:snapkv"]:
        assert len(set(row["kv_lengths"])) == 1 and row["kv_lengths"][0] < row["prompt_tokens"]
        assert row["kv_fraction"] == pytest.approx(
            sum(row["kv_lengths"]) / len(row["kv_lengths"]) / row["prompt_tokens"]
        )
    assert alone.kv_fraction == pytest.approx(sum(r["kv_fraction"] for r in rows["tiny", "kvpress:snapkv"]) / 2)
    assert alone.kv_fraction == pytest.approx(1.0 - alone.press_compression_ratio, abs=0.02)
    # pruning, then the press on what it left: below both, compressing every layer by 1 - r
    assert combined.kv_budget == "combined" and combined.press_compression_ratio == pytest.approx(0.5, abs=0.02)
    assert combined.kv_fraction < alone.kv_fraction < base.kv_fraction
    for row in rows["tiny", "sdtp+snapkv"]:
        assert all(kv < tokens for kv, tokens in zip(row["kv_lengths"], row["tokens_per_layer"], strict=True))
    assert table.press_uncompressed_records.loc["tiny"].tolist() == [0, 0, 0]


def test_layers_shorter_than_the_press_window_are_left_uncompressed_and_counted(ruler_table):
    table, rows = ruler_table
    wide = table.loc["wide", "sdtp+snapkv"]
    assert wide.press_uncompressed_records == 2 and wide.kv_budget == "combined"
    for row in rows["wide", "sdtp+snapkv"]:
        short = [layer for layer, tokens in enumerate(row["tokens_per_layer"]) if tokens <= 300]
        assert row["press_uncompressed_layers"] == short and short  # the layers after the first prune point
        assert [row["kv_lengths"][layer] for layer in short] == [row["tokens_per_layer"][layer] for layer in short]
    assert wide.kv_fraction > table.loc["tiny", "sdtp+snapkv"].kv_fraction
