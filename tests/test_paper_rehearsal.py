"""The paper path (`configs/paper-qwen2-7b.yaml`) rehearsed end to end on CPU with local stand-ins for everything it
downloads: a tiny 8-layer Qwen2 with a byte-level BPE tokenizer and a ChatML chat template as `model.id` (a local
directory, `source: hub`), a Dolly-format JSONL as `train_data.path`, LongBench v1-format JSONL files as
`longbench.data_dir`, bf16 as the paper config says, every method. Only what a CPU cannot do is overridden (device,
sizes)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from tiny_models import WORDS, fixture_record, make_tiny_model
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast
from workflow_runs import copy_project, snakemake

TASKS = ["narrativeqa", "hotpotqa", "triviaqa"]
METHODS = ["baseline", "sdtp", "random", "streaming", "attention", "oracle"]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def dolly_records(n: int) -> list[dict]:
    return [
        {
            "instruction": f"Which word follows {WORDS[i % len(WORDS)]}?",
            "context": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(30 + 5 * i)),
            "response": f"It is {WORDS[(i + 1) % len(WORDS)]}.",
            "category": "open_qa",
        }
        for i in range(n)
    ]


def save_stand_in_model(directory, corpus: list[str]) -> None:
    """A Qwen2-style checkpoint directory: byte-level BPE tokenizer with ChatML, 8 decoder layers."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                                                    "<|im_end|>"])  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768
    )
    tokenizer.chat_template = CHATML
    model = make_tiny_model(
        "qwen2", "sdpa", num_hidden_layers=8, vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, max_position_embeddings=32768,
    )  # fmt: skip
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    workdir = copy_project(tmp_path_factory.mktemp("paper"))
    dolly = dolly_records(10)
    (workdir / "dolly.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dolly))
    longbench = workdir / "longbench"
    longbench.mkdir()
    for task in TASKS:
        (longbench / f"{task}.jsonl").write_text("".join(json.dumps(fixture_record(task, i)) + "\n" for i in range(3)))
    corpus = [json.dumps(r) for r in dolly] + [json.dumps(fixture_record(t, i)) for t in TASKS for i in range(3)]
    save_stand_in_model(workdir / "stand-in-qwen2", corpus)
    (workdir / "cpu.yaml").write_text(
        "model: {id: stand-in-qwen2, device: cpu}\n"
        "schedule: {start: 1, step: 2, stages: 3}\n"
        "keep_ratios: [0.7]\n"
        "train_data: {path: dolly.jsonl, samples: 6, heldout_samples: 2, max_tokens: 512}\n"
        "latency: {lengths: [256], warmup: 0, repeats: 1, new_tokens: 4}\n"
        "longbench: {data_dir: longbench, tasks: [narrativeqa, hotpotqa, triviaqa], max_samples: 2,"
        " max_input_tokens: 256}\n"
        "resources: {gpu: 0}\n"
    )
    snakemake(workdir, "--configfile", "configs/paper-qwen2-7b.yaml", "cpu.yaml")
    return workdir


def test_the_paper_path_runs_every_method_on_local_stand_ins(paper_run):
    tables = paper_run / "results" / "tables"
    scores = pd.read_parquet(tables / "longbench.parquet")
    assert set(scores.method) == set(METHODS) and set(scores.task) == set(TASKS)
    assert set(scores.model) == {"qwen2-7b-instruct"}
    latency = pd.read_parquet(tables / "latency.parquet")
    assert set(latency.method) == {"baseline", "sdtp", "random", "streaming", "attention"}
    assert set(latency.dtype) == {"bfloat16"} and (latency.status == "ok").all()
    pruner = json.loads((paper_run / "results" / "pruner" / "qwen2-7b-instruct" / "r0.7" / "pruner" / "pruner.json")
                        .read_text())  # fmt: skip
    assert pruner["layers"] == [1, 3, 5] and pruner["meta"]["train_samples"] == 6
    assert (paper_run / "results" / "report" / "index.html").is_file()
