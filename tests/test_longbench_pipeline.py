"""LongBench path end to end: fixture data.zip -> task-records -> longbench-predict (tiny model) -> longbench-score.

One module-scoped run drives the real commands through `sdtp.cli.main` (hub download faked, a tiny Qwen2 and a
word-level tokenizer saved with `save_pretrained`); the tests below check its outputs. Smaller tests cover the
synthetic records, EOS stopping and the scoring of hand-made predictions.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import types
import zipfile

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from sdtp import cli
from sdtp.data.synthetic import SYNTHETIC_TASKS, generate_records
from sdtp.longbench import data as lb_data
from sdtp.longbench.predict import predict_record
from sdtp.longbench.prompts import build_prompt, encode_record
from sdtp.longbench.score import score_predictions
from sdtp.longbench.tasks import get_task
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer
from tiny_models import make_tiny_model

V1_TASKS = ("hotpotqa", "triviaqa")  # hotpotqa gets the chat template, triviaqa (few-shot) does not
METHODS = {"baseline": "1.0", "random": "0.5"}
MAX_INPUT_TOKENS = 96
MAX_SAMPLES = 2
EOS, PAD, BOS, UNK, USER, ASSISTANT = "</s>", "<pad>", "<s>", "<unk>", "<|user|>", "<|assistant|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|user|>{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()
SETTINGS_MODEL = {
    "name": "tiny",
    "source": "demo",
    "dtype": "float32",
    "attn_implementation": "sdpa",
    "device": "cpu",
    "weights": "pretrained",
}
SCHEDULE = {"layers": [1, 2], "sink_tokens": 2, "local_ratio": 0.1, "min_local": 2}
SCORE_COLUMNS = [
    "model", "method", "keep_ratio", "task", "metric", "score", "n", "score_0_4k", "score_4_8k", "score_8k_plus",
    "mean_prompt_tokens", "mean_compression_ratio", "mean_prefill_s",
]
PREDICTION_FIELDS = {
    "_id", "pred", "answers", "all_classes", "length", "prompt_tokens", "tokens_per_layer", "compression_ratio",
    "prefill_s", "new_tokens",
}


# --- fixtures: data, tokenizer, model ---------------------------------------------------------------------------------


def fixture_record(task: str, i: int) -> dict:
    """Record i of a fixture task: record 0 is long (the prompt gets truncated), the others short. Lengths 3000 + 2000 i
    put the first two records in LongBench-E buckets 0-4k and 4-8k."""
    num_words = 150 if i == 0 else 40
    context = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(num_words))
    return {
        "input": f"which word follows {WORDS[i]} ?",
        "context": context,
        "answers": [WORDS[i + 1]],
        "length": 3000 + 2000 * i,
        "dataset": task,
        "language": "en",
        "all_classes": None,
        "_id": f"{task}-{i}",
    }


def make_fixture_zip(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/", "")
        for task in V1_TASKS:
            zf.writestr(f"data/{task}.jsonl", "".join(json.dumps(fixture_record(task, i)) + "\n" for i in range(3)))
    return path


def make_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the fixture's words and the two tasks' templates; `<s>` prepended; EOS is id 0 and a
    simple chat template wraps a user turn in <|user|> … <|assistant|>."""
    normalizer = normalizers.Lowercase()
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    vocab = [EOS, PAD, BOS, UNK, USER, ASSISTANT]
    texts = [get_task(t).prompt_template for t in V1_TASKS] + [" ".join(WORDS), "which word follows ?"]
    for text in texts:
        for token, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            if token not in vocab:
                vocab.append(token)
    ids = {token: i for i, token in enumerate(vocab)}
    backend = Tokenizer(models.WordLevel(vocab=ids, unk_token=UNK))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, ids[BOS])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT],
        model_max_length=1_000_000,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_model(tokenizer):
    return make_tiny_model(
        "qwen2",
        attn="sdpa",
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def run_cli(*argv: str) -> None:
    assert cli.main([*map(str, argv)]) == 0


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run task-records (v1 via the faked hub, and synthetic), predict and score; return the paths."""
    root = tmp_path_factory.mktemp("pipeline")
    archive = make_fixture_zip(root / "data.zip")
    tokenizer = make_tokenizer()
    model_dir = root / "model"
    make_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    hub_calls = []

    def fake_download(**kwargs):
        hub_calls.append(kwargs)
        return str(archive)

    record_settings = {
        "seed": 0,
        "longbench": {
            "source": "v1", "data_dir": None, "max_samples": MAX_SAMPLES, "context_words": 80, "synthetic_records": 3,
        },
    }
    predict_settings = {
        "seed": 0,
        "model": SETTINGS_MODEL,
        "schedule": SCHEDULE,
        "longbench": {"max_input_tokens": MAX_INPUT_TOKENS},
    }
    runs = [(task, method) for task in V1_TASKS for method in METHODS] + [("synthetic_passkey", "baseline")]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # data_dir null extracts into ./resources/longbench
        mp.setattr(lb_data, "hf_hub_download", fake_download)
        if importlib.util.find_spec("sdtp.gpu") is None:  # the GPU pool module may not exist yet: a CPU no-op
            mp.setitem(sys.modules, "sdtp.gpu", types.SimpleNamespace(claim_device=lambda: None))
        for task in V1_TASKS:
            run_cli("task-records", "--settings", json.dumps(record_settings), "--task", task,
                    "--out", root / "tasks" / f"{task}.jsonl")
        synthetic = {**record_settings, "longbench": {**record_settings["longbench"], "source": "synthetic"}}
        run_cli("task-records", "--settings", json.dumps(synthetic), "--task", "synthetic_passkey",
                "--out", root / "tasks" / "synthetic_passkey.jsonl")
        for task, method in runs:
            out = root / "longbench" / method / f"{task}.jsonl"
            run_cli("longbench-predict", "--settings", json.dumps(predict_settings), "--model-dir", model_dir,
                    "--method", method, "--ratio", METHODS[method], "--task", task,
                    "--records", root / "tasks" / f"{task}.jsonl", "--out", out)
            run_cli("longbench-score", "--predictions", out, "--model", "tiny", "--method", method,
                    "--ratio", METHODS[method], "--task", task, "--out", out.with_suffix(".score.parquet"))
    return types.SimpleNamespace(root=root, model_dir=model_dir, hub_calls=hub_calls, runs=runs)


def predictions(pipeline, method, task) -> list[dict]:
    path = pipeline.root / "longbench" / method / f"{task}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def score_row(pipeline, method, task) -> pd.Series:
    frame = pd.read_parquet(pipeline.root / "longbench" / method / f"{task}.score.parquet")
    assert len(frame) == 1
    return frame.iloc[0]


# --- the end-to-end run ------------------------------------------------------------------------------------------------


def test_task_records_from_the_downloaded_zip(pipeline):
    assert len(pipeline.hub_calls) == 1  # extracted once into resources/longbench, then read from there
    assert (pipeline.root / "resources" / "longbench" / "hotpotqa.jsonl").is_file()
    for task in V1_TASKS:
        lines = (pipeline.root / "tasks" / f"{task}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == [fixture_record(task, i) for i in range(MAX_SAMPLES)]
    assert not list((pipeline.root / "tasks").glob(".*"))  # no temporary files left behind


def test_predictions_have_the_fields_and_follow_the_prompt_rules(pipeline):
    from transformers import AutoModelForCausalLM

    tokenizer = PreTrainedTokenizerFast.from_pretrained(pipeline.model_dir)
    model = AutoModelForCausalLM.from_pretrained(pipeline.model_dir).eval()
    assistant_id = tokenizer.convert_tokens_to_ids(ASSISTANT)
    for task in V1_TASKS:
        spec = get_task(task)
        for method in METHODS:
            rows = predictions(pipeline, method, task)
            assert [row["_id"] for row in rows] == [f"{task}-{i}" for i in range(MAX_SAMPLES)]
            for i, row in enumerate(rows):
                assert set(row) == PREDICTION_FIELDS
                record = fixture_record(task, i)
                assert row["answers"] == record["answers"] and row["length"] == record["length"]
                assert row["all_classes"] is None
                ids = encode_record(spec, record, tokenizer, MAX_INPUT_TOKENS)
                assert row["prompt_tokens"] == len(ids)
                assert (assistant_id in ids) == (task == "hotpotqa")  # chat template for hotpotqa only
                assert isinstance(row["pred"], str) and row["prefill_s"] > 0
                assert len(row["pred"].split()) <= row["new_tokens"]
                if method == "baseline":  # unpruned: exactly what transformers' own greedy `generate` produces
                    generated = model.generate(
                        torch.tensor([ids]), max_new_tokens=spec.max_new_tokens, do_sample=False,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                    )[0, len(ids):].tolist()  # fmt: skip
                    assert row["new_tokens"] == len(generated)
                    assert row["pred"] == tokenizer.decode(generated, skip_special_tokens=True)
        # record 0 is longer than max_input_tokens: truncated in the middle (+ 2 chat-template tokens for hotpotqa)
        full = len(tokenizer(build_prompt(spec, fixture_record(task, 0)))["input_ids"])
        first = predictions(pipeline, "baseline", task)[0]
        assert full > MAX_INPUT_TOKENS >= first["prompt_tokens"] - (2 if task == "hotpotqa" else 0)


def test_tokens_per_layer_reflect_pruning_for_random_only(pipeline):
    schedule = KeepSchedule(SCHEDULE["layers"], 0.5, sink_tokens=2, local_ratio=0.1, min_local=2)
    num_layers = 5  # tests/tiny_models.py
    for task in V1_TASKS:
        for row in predictions(pipeline, "baseline", task):
            assert row["tokens_per_layer"] == [row["prompt_tokens"]] * num_layers
            assert row["compression_ratio"] == 1.0
        for row in predictions(pipeline, "random", task):
            tokens = row["tokens_per_layer"]
            assert tokens == schedule.tokens_per_layer(row["prompt_tokens"], num_layers)
            assert tokens[0] == row["prompt_tokens"] > tokens[1] > tokens[2] == tokens[4]
            assert row["compression_ratio"] == pytest.approx(row["prompt_tokens"] / (sum(tokens) / num_layers))


def test_score_parquet_rows(pipeline):
    for task, method in pipeline.runs:
        row = score_row(pipeline, method, task)
        rows = predictions(pipeline, method, task)
        assert list(row.index) == SCORE_COLUMNS
        assert row["model"] == "tiny" and row["method"] == method and row["task"] == task
        assert row["keep_ratio"] == float(METHODS[method])
        assert row["metric"] == get_task(task).metric_name == "qa_f1_score"
        assert row["n"] == len(rows) == MAX_SAMPLES
        assert 0.0 <= row["score"] <= 100.0
        assert row["mean_prompt_tokens"] == pytest.approx(sum(r["prompt_tokens"] for r in rows) / len(rows))
        assert row["mean_prefill_s"] > 0
        if method == "baseline":
            assert row["mean_compression_ratio"] == 1.0
        else:
            assert row["mean_compression_ratio"] > 1.5
        if task in V1_TASKS:  # lengths 3000 and 5000: one sample in each of the first two buckets
            assert not math.isnan(row["score_0_4k"]) and not math.isnan(row["score_4_8k"])
            assert math.isnan(row["score_8k_plus"])


def test_synthetic_task_runs_through_the_same_path(pipeline):
    rows = predictions(pipeline, "baseline", "synthetic_passkey")
    expected = generate_records("synthetic_passkey", n=MAX_SAMPLES, context_words=80, seed=0)
    assert [row["_id"] for row in rows] == [r["_id"] for r in expected]
    assert all(row["new_tokens"] <= SYNTHETIC_TASKS["synthetic_passkey"]["max_new_tokens"] for row in rows)


# --- smaller pieces ----------------------------------------------------------------------------------------------------


def test_synthetic_tasks_are_registered_without_importing_torch():
    for name, entry in SYNTHETIC_TASKS.items():
        spec = get_task(name)
        assert spec.metric_name == entry["metric"] and spec.max_new_tokens == entry["max_new_tokens"]
        assert not spec.uses_chat_template and spec.language == "en"
    code = "import sys, sdtp.longbench.tasks; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_synthetic_task_records_are_deterministic(tmp_path):
    def run(seed: int, name: str, max_samples=None):
        settings = {
            "seed": seed,
            "longbench": {
                "source": "synthetic", "data_dir": None, "max_samples": max_samples, "context_words": 100,
                "synthetic_records": 4,
            },
        }
        out = tmp_path / name
        run_cli("task-records", "--settings", json.dumps(settings), "--task", "synthetic_needle_qa", "--out", out)
        return out.read_text()

    first, again, other = run(0, "a.jsonl"), run(0, "b.jsonl"), run(1, "c.jsonl")
    assert first == again != other
    records = [json.loads(line) for line in first.splitlines()]
    assert records == generate_records("synthetic_needle_qa", n=4, context_words=100, seed=0)
    assert run(0, "d.jsonl", max_samples=2).splitlines() == first.splitlines()[:2]


@pytest.mark.parametrize(
    ("source", "task", "message"),
    [
        ("synthetic", "hotpotqa", "not a synthetic task"),
        ("synthetic", "no_such_task", "not a synthetic task"),
        ("v1", "no_such_task", "unknown LongBench task 'no_such_task'"),
        ("v1", "synthetic_passkey", "is a synthetic task"),
    ],
)
def test_unknown_task_is_a_clear_error(tmp_path, source, task, message):
    settings = {
        "seed": 0,
        "longbench": {"source": source, "data_dir": str(tmp_path), "max_samples": None, "context_words": 100,
                      "synthetic_records": 2},
    }
    out = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match=message):
        run_cli("task-records", "--settings", json.dumps(settings), "--task", task, "--out", out)
    assert not out.exists()


def test_decoding_stops_at_eos():
    """A model whose final norm is zero gives all-zero logits: the argmax is id 0, the EOS, at the first step."""
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    schedule = KeepSchedule([1, 2], 1.0)
    row = predict_record(
        model, tokenizer, get_task("hotpotqa"), fixture_record("hotpotqa", 1), schedule, get_scorer("baseline"), 96
    )
    assert row.new_tokens == 1 and row.pred == ""


def test_score_of_handmade_predictions():
    def rows(preds, answers, lengths):
        return [
            {"pred": p, "answers": a, "length": n, "all_classes": None, "prompt_tokens": 10, "compression_ratio": 2.0,
             "prefill_s": 0.5}
            for p, a, n in zip(preds, answers, lengths)
        ]

    # triviaqa scores only the first line; F1 of "echo" against "echo foxtrot" is 2/3
    row = score_predictions(
        rows(["bravo\ncharlie", "echo", "x"], [["bravo"], ["echo foxtrot"], ["y"]], [100, 5000, 9000]),
        model="m", method="random", keep_ratio=0.5, task="triviaqa",
    )
    assert row.score == round(100 * (1 + 2 / 3 + 0) / 3, 2)
    assert (row.score_0_4k, row.score_4_8k, row.score_8k_plus) == (100.0, 66.67, 0.0)
    assert row.n == 3 and row.metric == "qa_f1_score" and row.keep_ratio == 0.5
    assert row.mean_compression_ratio == 2.0 and row.mean_prefill_s == 0.5
    with pytest.raises(ValueError, match="no predictions"):
        score_predictions([], model="m", method="baseline", keep_ratio=1.0, task="triviaqa")
