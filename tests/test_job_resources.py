import math
import subprocess
import sys

import pytest
from tiny_models import qwen2_7b_config

from sdtp import job_resources, memory

SETTINGS = {
    "model": {"dtype": "bfloat16", "attn_implementation": "sdpa", "id": None, "config_overrides": {}},
    "schedule": {"start": 4, "step": 3, "stages": 8},
    "latency": {"warmup": 2, "repeats": 5, "new_tokens": 128},
    "longbench": {"max_input_tokens": 3500, "max_samples": None, "source": "v1", "synthetic_records": 50},
    "train_data": {"samples": 64, "heldout_samples": 16, "max_tokens": 2048},
    "pruner": {},
    "verify": {"tokens": 512},
}


@pytest.fixture
def qwen2_7b_dir(tmp_path):
    (tmp_path / "config.json").write_text(qwen2_7b_config().to_json_string())
    return tmp_path


def test_latency_memory_is_the_doctors_estimate_plus_headroom(qwen2_7b_dir):
    estimate, seconds = job_resources.rule_request(SETTINGS, "latency", model_dir=qwen2_7b_dir, length=32768 - 128)
    doctor_estimate = memory.memory_estimate(qwen2_7b_config(), "bfloat16", 32768 - 128, 128)
    assert estimate.total_bytes == doctor_estimate.total_bytes  # the same estimate `doctor` prints
    mem = job_resources.mem_mb(estimate)
    assert mem == math.ceil(doctor_estimate.total_bytes * 1.25 / 2**20) + 2048
    assert 26_000 < mem < 32_000  # ~20 GiB estimate × 1.25 + 2 GiB, not a fixed 64 GB
    assert job_resources.mem_mb(estimate, attempt=2) == 2 * mem
    # 7 runs of a 32K prefill (≈ 0.7 PFLOPs each at 10 TFLOP/s) plus 7 × 128 decode steps reading 15 GB at 200 GB/s
    assert 400 < seconds < 1_000
    assert job_resources.runtime_min(seconds) == 10 + math.ceil(3 * seconds / 60)


def test_a_paired_latency_job_is_given_the_time_of_its_baseline_runs_too(qwen2_7b_dir):
    request = lambda settings, method: job_resources.rule_request(  # noqa: E731
        settings, "latency", model_dir=qwen2_7b_dir, length=8192, method=method
    )
    paired = {**SETTINGS, "latency": {**SETTINGS["latency"], "paired_baseline": True}}
    unpaired = {**SETTINGS, "latency": {**SETTINGS["latency"], "paired_baseline": False}}
    alone = request(unpaired, "sdtp")[1]
    assert request(paired, "sdtp")[1] == 2 * alone and request(paired, "kvpress:snapkv")[1] == 2 * alone
    assert request(paired, "baseline")[1] == alone  # the baseline job times only itself
    assert request(paired, "sdtp")[0] == request(unpaired, "sdtp")[0]  # one run at a time: memory unchanged


def test_memory_and_time_follow_the_prompt_length(qwen2_7b_dir):
    short, short_s = job_resources.rule_request(SETTINGS, "latency", model_dir=qwen2_7b_dir, length=1024)
    long, long_s = job_resources.rule_request(SETTINGS, "latency", model_dir=qwen2_7b_dir, length=8192)
    assert short.weights_bytes == long.weights_bytes == 2 * 7_615_616_512
    assert long.kv_bytes > 7 * short.kv_bytes and long_s > 2 * short_s


def test_gradient_rules_use_the_gradient_estimates(qwen2_7b_dir):
    config = qwen2_7b_config()
    saliency, _ = job_resources.rule_request(SETTINGS, "saliency", model_dir=qwen2_7b_dir)
    training, _ = job_resources.rule_request(SETTINGS, "train_pruner", model_dir=qwen2_7b_dir)
    oracle, _ = job_resources.rule_request(SETTINGS, "predict", model_dir=qwen2_7b_dir, method="oracle", new_tokens=32)
    params = memory.parameter_count(config)
    assert saliency == memory.gradient_memory_estimate(config, "bfloat16", 2048, 4, True, params, job="saliency")
    assert training == memory.gradient_memory_estimate(config, "bfloat16", 2048, 4, False, params, job="training")
    assert oracle.total_bytes == memory.gradient_memory_estimate(config, "bfloat16", 3532, 4, True, params).total_bytes
    no_lm = {**SETTINGS, "pruner": {"lm_weight": 0}}
    assert job_resources.rule_request(no_lm, "train_pruner", model_dir=qwen2_7b_dir)[0].job == "inference"


def test_overrides_change_the_shape_and_an_absent_config_falls_back(qwen2_7b_dir, monkeypatch, tmp_path):
    model = {**SETTINGS["model"], "id": str(qwen2_7b_dir), "config_overrides": {"num_hidden_layers": 2}}
    small, _ = job_resources.rule_request(SETTINGS, "latency", model, length=1024)
    assert small.params == memory.parameter_count(qwen2_7b_config(num_hidden_layers=2))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    hub = {**SETTINGS["model"], "id": "Qwen/Qwen2-7B-Instruct"}
    assert job_resources.rule_request(SETTINGS, "latency", hub, length=1024) == (None, None)
    assert job_resources.mem_mb(None) == job_resources.UNKNOWN_MODEL_MEM_MB
    assert job_resources.runtime_min(None) == job_resources.UNKNOWN_MODEL_RUNTIME_MIN


def test_a_model_dir_not_built_yet_is_a_missing_input_for_snakemake(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        job_resources.rule_request(SETTINGS, "verify", model_dir=str(tmp_path / "hf"))
    assert error.value.filename == str(tmp_path / "hf")  # how Snakemake defers the resource (<TBD>)


def test_a_rule_without_an_estimate_is_an_error(qwen2_7b_dir):
    with pytest.raises(ValueError, match="no resource estimate for rule 'tables'"):
        job_resources.rule_request(SETTINGS, "tables", model_dir=qwen2_7b_dir)


def test_job_resources_import_no_torch():
    code = "import sys, sdtp.job_resources; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
