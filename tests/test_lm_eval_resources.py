"""What an lm_eval job asks the scheduler for (`sdtp.lm_eval_resources`): the harness's longest context in memory,
its documents in time, by `sdtp.job_resources`' own estimates — not the profile's 4000 MB for a 7B model."""

import math
import subprocess
import sys

import pytest
from tiny_models import qwen2_7b_config

from sdtp import job_resources, lm_eval_resources, memory
from sdtp.lm_eval_resources import CHOICES, CONTEXT_TOKENS, DOCUMENTS, harness_max_length, lm_eval_request

SETTINGS = {
    "model": {"dtype": "bfloat16", "attn_implementation": "sdpa", "id": None, "config_overrides": {}},
    "schedule": {"start": 4, "step": 3, "stages": 8},
    "lm_eval": {"num_fewshot": 0, "limit": None, "synthetic_records": 8},
}
QWEN2_7B_CONTEXT = 32768  # max_position_embeddings: the harness's max_length, a rolling window's length


@pytest.fixture
def qwen2_7b_dir(tmp_path):
    (tmp_path / "config.json").write_text(qwen2_7b_config().to_json_string())
    return tmp_path


def with_lm_eval(**section):
    return {**SETTINGS, "lm_eval": {**SETTINGS["lm_eval"], **section}}


def test_memory_holds_the_longest_context_and_its_scoring(qwen2_7b_dir):
    """A 32K-token window in bfloat16: the inference estimate, the continuation block's mask (a bool and two bf16
    elements per query-key pair) and one chunk of float32 logits with its log-softmax."""
    estimate, _ = lm_eval_request(SETTINGS, "arc_easy", qwen2_7b_dir, "sdtp")
    inference = memory.memory_estimate(qwen2_7b_config(), "bfloat16", QWEN2_7B_CONTEXT, 0)
    mask, logits = QWEN2_7B_CONTEXT**2 * 5, 1024 * 152064 * 4 * 2
    assert estimate.total_bytes == inference.total_bytes + mask + logits
    assert estimate.dtype == "bfloat16" and estimate.job.startswith("lm-eval arc_easy")
    assert 30_000 < job_resources.mem_mb(estimate) < 40_000  # ~26 GiB × 1.25 + 2 GiB, where the profile gave 4000 MB


def test_time_follows_the_documents_their_shots_and_choices(qwen2_7b_dir):
    config = qwen2_7b_config().to_dict()

    def seconds(settings, task="arc_easy", method="sdtp"):
        return lm_eval_request(settings, task, qwen2_7b_dir, method, demo_tasks=("synthetic_needle_choice",))[1]

    def work(documents, tokens=CONTEXT_TOKENS, forwards_per_document=1):
        return job_resources.work_seconds(
            config, "bfloat16", documents * forwards_per_document, tokens, decode_steps=documents * CHOICES
        )

    assert seconds(SETTINGS) == pytest.approx(work(DOCUMENTS))  # no limit: the largest task of the paper overlay
    assert seconds(with_lm_eval(limit=100)) == pytest.approx(work(100))
    assert seconds(with_lm_eval(limit=0.1)) == pytest.approx(work(math.ceil(DOCUMENTS * 0.1)))
    assert seconds(with_lm_eval(num_fewshot=5)) == pytest.approx(work(DOCUMENTS, 6 * CONTEXT_TOKENS))
    assert seconds(with_lm_eval(num_fewshot=100)) == pytest.approx(work(DOCUMENTS, QWEN2_7B_CONTEXT))  # max_length
    assert seconds(SETTINGS, "synthetic_needle_choice") == pytest.approx(work(8))  # the demo's generated records
    assert seconds(SETTINGS, method="oracle+snapkv") == pytest.approx(work(DOCUMENTS, forwards_per_document=4))
    assert seconds(with_lm_eval(limit=100)) < seconds(SETTINGS) < seconds(with_lm_eval(num_fewshot=5))


def test_the_oracle_needs_the_gradient_estimate(qwen2_7b_dir):
    oracle, _ = lm_eval_request(SETTINGS, "arc_easy", qwen2_7b_dir, "oracle")
    plain, _ = lm_eval_request(SETTINGS, "arc_easy", qwen2_7b_dir, "random")
    assert oracle.kv_bytes == 0 and oracle.total_bytes != plain.total_bytes  # the saliency job keeps no cache


def test_max_length_is_the_harness_s():
    assert harness_max_length({"max_position_embeddings": 8192}) == 8192
    assert harness_max_length({"n_positions": 1024, "max_position_embeddings": 8192}) == 1024  # HFLM's order
    assert harness_max_length({"text_config": {"max_position_embeddings": 4096}, "n_ctx": 512}) == 4096
    assert harness_max_length({}) == 2048


def test_an_absent_model_config_falls_back_to_the_unknown_model_request(monkeypatch):
    monkeypatch.setattr(lm_eval_resources, "model_config", lambda model, model_dir: None)
    assert lm_eval_request(SETTINGS, "arc_easy") == (None, None)


def test_restated_constants_match_the_modules_that_import_torch():
    from sdtp.continuation import LOGIT_CHUNK
    from sdtp.lm_eval import DEFAULT_MAX_LENGTH

    assert lm_eval_resources.LOGIT_CHUNK == LOGIT_CHUNK
    assert lm_eval_resources.HARNESS_MAX_LENGTH == DEFAULT_MAX_LENGTH


def test_the_rule_asks_for_them():
    from pathlib import Path

    rule = Path(__file__).resolve().parents[1].joinpath("rules", "lm_eval.smk").read_text().split("rule lm_eval:")[1]
    assert 'mem_mb=mem_mb_of("lm_eval")' in rule and 'runtime=runtime_of("lm_eval")' in rule


def test_lm_eval_resources_import_no_torch():
    code = "import sys, sdtp.lm_eval_resources; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
