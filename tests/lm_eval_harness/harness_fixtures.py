"""Fixtures and constants of the lm-evaluation-harness tests: a tiny local model with a word-level tokenizer, and
local harness tasks (multiple choice, rolling log-likelihood, generation) written as the harness reads them
(`dataset_path: json`)."""

from __future__ import annotations

import json
import os

import pytest
from tiny_models import WORDS, make_fixture_model, make_fixture_tokenizer

HARNESS_MISSING = "lm-evaluation-harness is not installed (pip install -e '.[lm-eval]'; .ci/extras.sh runs these)"

MC_YAML = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

ROLLING_YAML = """task: tiny_rolling
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""

GEN_YAML = """task: tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{query}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["?"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def passage(i: int, words: int = 60) -> str:
    return " ".join(WORDS[(i * 7 + k * (1 + i % 3)) % len(WORDS)] for k in range(words))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2 (5 layers, SDPA, fp32) and its tokenizer, saved where `pretrained=` can find them."""
    directory = tmp_path_factory.mktemp("tiny-lm")
    tokenizer = make_fixture_tokenizer()
    model = make_fixture_model(tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory):
    """tiny_mc (one- and multi-token choices), tiny_rolling and tiny_gen over the fixture's words."""
    directory = tmp_path_factory.mktemp("tiny-tasks")
    docs = []
    for i in range(10):
        width = 1 + i % 3  # choices of 1, 2 and 3 words: multi-token continuations go through the cache as a block
        choices = [" ".join(WORDS[(i + j + k) % len(WORDS)] for k in range(width)) for j in range(4)]
        docs.append({"query": f"{passage(i)} which word follows {WORDS[i]} ?", "choices": choices, "label": i % 4})
    rolling = [{"text": passage(i, 30 + 10 * i)} for i in range(4)]
    gen = [{"query": f"{passage(i, 40)} which word follows {WORDS[i]}", "answer": WORDS[i + 1]} for i in range(6)]
    for name, template, rows in (("mc", MC_YAML, docs), ("rolling", ROLLING_YAML, rolling), ("gen", GEN_YAML, gen)):
        data = directory / f"{name}.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        (directory / f"{name}.yaml").write_text(template.format(data=json.dumps(str(data))))
    return directory


@pytest.fixture
def offline_env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
