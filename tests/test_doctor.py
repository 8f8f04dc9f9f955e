"""sdtp.doctor: the machine checks on fake CUDA devices, the memory estimate of a Qwen2-7B shape, the hub without
the network."""

import importlib.util
import shutil
import types
import urllib.error
from pathlib import Path

import pytest
import torch
from tiny_models import qwen2_7b_config

from sdtp import doctor, memory
from sdtp.doctor import storage
from sdtp.doctor.packages import normalise

GIB = 2**30
H100 = "NVIDIA H100 80GB HBM3"


def fake_cuda(monkeypatch, count=2, name=H100, memory=80 * GIB, capability=(9, 0), bf16=True):
    """Monkeypatch torch.cuda to report `count` devices with these properties."""
    props = types.SimpleNamespace(
        name=name, total_memory=memory, major=capability[0], minor=capability[1], is_bf16_supported=bf16
    )
    if bf16 is None:
        del props.is_bf16_supported
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.version, "cuda", "12.8")


def no_network(*args, **kwargs):
    raise AssertionError("the hub was contacted")


# --- devices --------------------------------------------------------------------------------------------------


def test_two_fake_gpus_are_listed_with_memory_capability_and_bf16(monkeypatch):
    fake_cuda(monkeypatch)
    checks = doctor.devices(dtype="bfloat16")
    by_item = {c.item: c for c in checks}
    assert by_item["cuda"].ok and "2 device(s) visible" in by_item["cuda"].detail
    for index in (0, 1):
        check = by_item[f"cuda:{index}"]
        assert check.ok
        assert check.line.startswith("ok")
        assert f"{H100}, 80.0 GiB, compute capability 9.0, bf16 yes" in check.detail
        assert check.data == {"name": H100, "total_memory": 80 * GIB, "capability": [9, 0], "bf16": True}


def test_bf16_on_a_device_without_it_is_a_problem_that_names_the_dtype_key(monkeypatch):
    # No is_bf16_supported on the properties (as real ones): capability 7.0 (V100) has no native bf16.
    fake_cuda(monkeypatch, count=1, name="Tesla V100-SXM2-32GB", memory=32 * GIB, capability=(7, 0), bf16=None)
    (device,) = doctor.cuda_devices()
    assert device.bf16 is False
    check = doctor.devices(dtype="bfloat16")[1]
    assert not check.ok and check.line.startswith("PROBLEM:")
    assert "bf16 no" in check.detail and "set model.dtype: float32" in check.advice
    assert doctor.devices(dtype="float32")[1].ok


def test_without_cuda_the_report_says_the_pipeline_runs_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (check,) = doctor.devices()
    assert check.ok
    assert "no CUDA: the pipeline runs on CPU" in check.detail and "cores" in check.detail
    assert check.data["cuda"] is False and check.data["cores"] >= 1


def test_a_cpu_torch_on_a_machine_with_nvidia_gpus_is_a_problem(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    (check,) = doctor.devices()
    assert not check.ok and "CPU build" in check.detail and "built for your CUDA" in check.advice


# --- attention ------------------------------------------------------------------------------------------------


def test_sdpa_kernels_on_cuda_and_flash_attn_missing_for_flash_attention_2(monkeypatch):
    fake_cuda(monkeypatch)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    sdpa, flash = doctor.attention_backends("sdpa")
    assert sdpa.ok and "flash enabled" in sdpa.detail and "mem-efficient" in sdpa.detail and "math" in sdpa.detail
    assert flash.ok and "not installed" in flash.detail
    _, flash = doctor.attention_backends("flash_attention_2")
    assert not flash.ok
    assert flash.advice.startswith("install flash-attn") and "keep attn_implementation: sdpa" in flash.advice


def test_only_the_math_kernel_left_is_a_problem(monkeypatch):
    fake_cuda(monkeypatch)
    monkeypatch.setattr(torch.backends.cuda, "flash_sdp_enabled", lambda: False)
    monkeypatch.setattr(torch.backends.cuda, "mem_efficient_sdp_enabled", lambda: False)
    sdpa = doctor.attention_backends("sdpa")[0]
    assert not sdpa.ok and "math kernel" in sdpa.detail


# --- versions -------------------------------------------------------------------------------------------------


# The ranges of pyproject.toml, as the installed distribution's metadata gives them (extras with their markers).
DECLARED = doctor.declared_ranges(
    [
        "torch<3,>=2.4",
        "transformers<6,>=5",
        "accelerate<2,>=1.0",
        "pandas>=2.2",
        'kvpress<0.5.3,>=0.5.2; extra == "kvpress"',
        'lm_eval[hf]<0.5,>=0.4.13; extra == "lm-eval"',
        'accelerate>=0.2; extra == "lm-eval"',
    ]
)
TESTED = {"torch": "2.13.0", "transformers": "5.24.0", "pandas": "3.1.1", "accelerate": "1.15.0"}


def by_item(installed, tested=TESTED, tested_extras=None):
    checks = doctor.versions(tested, tested_extras, DECLARED, installed.get)
    return {c.item: c for c in checks}


def test_declared_ranges_read_requirement_strings_with_their_extras():
    assert str(DECLARED["transformers"].specifier) == "<6,>=5" and DECLARED["transformers"].extra is None
    assert DECLARED["accelerate"].extra is None  # the core requirement wins over an extra's
    assert DECLARED["kvpress"].extra == "kvpress" and DECLARED["lm-eval"].extra == "lm-eval"


def test_the_installed_distribution_declares_the_pipelines_ranges():
    declared = doctor.declared_ranges()
    assert {"torch", "transformers", "accelerate", "snakemake", "pandas"} <= set(declared)
    assert declared["kvpress"].extra == "kvpress"


def test_the_tested_version_is_ok_and_a_local_label_is_no_difference():
    checks = by_item({"torch": "2.13.0+cu128", "transformers": "5.24.0", "accelerate": "1.15.0", "pandas": "3.1.1"})
    assert checks["python"].ok
    assert checks["torch"].ok and checks["torch"].detail == "2.13.0+cu128 (tested)"
    assert checks["transformers"].detail == "5.24.0 (tested)"


def test_a_newer_release_inside_the_range_is_ok_and_names_the_constraints_that_reproduce_the_tested_set():
    checks = by_item({"torch": "2.99.1+cpu", "transformers": "5.25.0", "accelerate": "1.16.0", "pandas": "3.1.1"})
    for name in ("torch", "transformers", "accelerate"):
        assert checks[name].ok, checks[name].line
    assert checks["transformers"].line == (
        "ok       transformers: 5.25.0 (tested: 5.24.0; in the declared range <6,>=5; "
        "`-c envs/constraints.txt` reproduces the tested set)"
    )


def test_a_version_outside_the_declared_range_is_a_problem_with_the_command_that_fixes_it():
    checks = by_item({"torch": "2.3.1+cu121", "transformers": "6.0.0", "accelerate": "1.15.0", "pandas": "2.1.0"})
    transformers = checks["transformers"]
    assert not transformers.ok
    assert transformers.detail == "6.0.0 is outside the range sdtp-bench declares (<6,>=5)"
    assert transformers.advice.startswith('pip install "transformers<6,>=5"')
    assert "-c envs/constraints.txt" in transformers.advice
    assert not checks["torch"].ok and "built for your CUDA" in checks["torch"].advice
    assert not checks["pandas"].ok and 'pip install "pandas>=2.2"' in checks["pandas"].advice
    assert checks["accelerate"].ok


def test_a_missing_package_is_a_problem_and_an_extra_that_is_not_installed_is_left_out():
    checks = by_item({"torch": "2.13.0", "accelerate": "1.15.0", "pandas": "3.1.1"})
    assert not checks["transformers"].ok and checks["transformers"].detail == "not installed"
    assert "kvpress" not in checks and "lm_eval" not in checks


def test_extras_follow_the_same_policy_against_their_own_pins():
    installed = {"torch": "2.13.0", "transformers": "5.24.0", "kvpress": "0.5.2", "lm_eval": "0.4.14"}
    checks = by_item(installed, tested_extras={"kvpress": "0.5.2", "lm-eval": "0.4.13"})
    assert checks["kvpress"].ok and checks["kvpress"].detail == "0.5.2 (tested)"
    assert checks["lm_eval"].ok and "tested: 0.4.13" in checks["lm_eval"].detail
    assert "-c envs/constraints-extras.txt" in checks["lm_eval"].detail
    kvpress = by_item({**installed, "kvpress": "0.5.5"})["kvpress"]
    assert not kvpress.ok and "extra [kvpress]" in kvpress.detail
    assert '-e ".[kvpress]" -c envs/constraints-extras.txt' in kvpress.advice


def test_without_a_constraints_file_versions_are_only_checked_against_the_range():
    checks = by_item({"torch": "2.13.0", "transformers": "5.25.0"}, tested=None)
    assert checks["transformers"].ok and "not compared: no envs/constraints.txt" in checks["transformers"].detail
    assert "in the declared range <6,>=5" in checks["transformers"].detail


def test_the_repository_constraints_files_pin_versions_inside_the_declared_ranges():
    """The tested sets themselves must satisfy what the package declares (a stale pin would make `-c` fail)."""
    repo = Path(__file__).resolve().parents[1]
    declared = doctor.declared_ranges()
    for name in ("constraints.txt", "constraints-extras.txt"):
        pins = doctor.read_constraints(repo / "envs" / name)
        assert pins, name
        for package, version in pins.items():
            key = normalise(package)
            if key in declared:
                assert declared[key].specifier.contains(version, prereleases=True), (name, package, version)


# --- SLURM, disk ----------------------------------------------------------------------------------------------


def test_slurm_detection(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert "not in a SLURM job" in doctor.slurm(False)[0].detail
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    (check,) = doctor.slurm(True)
    assert check.ok and "job 42, step 0: SLURM binds" in check.detail
    assert check.data == {"job_id": "42", "step_id": "0", "step_pins_devices": True}
    assert "through the file-lock pool" in doctor.slurm(False)[0].detail


def test_disk_checks_the_nearest_existing_parent(tmp_path):
    check = doctor.disk(tmp_path / "results" / "deep", item="disk results")
    assert check.ok and check.data["checked"] == str(tmp_path) and "not there yet" in check.detail
    assert not doctor.disk(tmp_path, need_bytes=2**62).ok


# --- hub ------------------------------------------------------------------------------------------------------


def test_offline_hub_makes_no_request_and_is_not_a_problem(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(storage, "_head", no_network)
    status = doctor.hub_status()
    assert status.offline and not status.reachable
    hub = doctor.hub(status, needed=["model Qwen/Qwen2-7B-Instruct"])[-1]
    assert hub.ok and hub.detail.startswith("offline (HF_HUB_OFFLINE=1): no request made")


def test_unreachable_hub_is_a_problem_only_when_something_must_be_downloaded(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(url, timeout_s):
        assert timeout_s == 3.0
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(storage, "_head", unreachable)
    status = doctor.hub_status()
    assert not status.reachable and "URLError" in status.error
    assert doctor.hub(status)[-1].ok
    hub = doctor.hub(status, needed=["model Qwen/Qwen2-7B-Instruct"])[-1]
    assert not hub.ok and "unreachable" in hub.detail and "Qwen/Qwen2-7B-Instruct" in hub.detail
    assert "HF_HUB_OFFLINE=1" in hub.advice


def test_reachable_hub_and_a_token_that_is_never_shown(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token_123")
    monkeypatch.setenv("HF_HOME", "/data/hf")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(storage, "_head", lambda url, timeout_s: 200)
    checks = doctor.hub()
    by_item = {c.item: c for c in checks}
    assert by_item["hub"].ok and "reachable (HTTP 200" in by_item["hub"].detail
    assert by_item["hf token"].detail == "set (HF_TOKEN)"
    assert by_item["hf cache"].detail.startswith("/data/hf/hub (HF_HOME=/data/hf")
    assert "hf_not_a_real_token_123" not in repr([c.to_dict() for c in checks])


# --- memory ---------------------------------------------------------------------------------------------------


def test_a_24_gib_device_is_too_small_for_the_oracle_at_32k_and_an_80_gib_one_fits(monkeypatch):
    config = qwen2_7b_config()
    params = memory.parameter_count(config)
    estimates = [
        memory.memory_estimate(config, torch.bfloat16, 32768 - 128, 128, params=params),
        memory.gradient_memory_estimate(
            config, torch.bfloat16, 32768, first_layer=4, params=params, job="oracle saliency", remedy="drop oracle"
        ),
    ]
    oracle = estimates[1]
    d, inter, kv_width = 3584, 18944, 512
    n = 32768
    kept = n * (2 * d + 3 * d + 3 * kv_width + 4 * inter) * 2
    assert oracle.activation_bytes == 25 * n * d * 2 + kept + n * (d + 2 * inter) * 2 + 1024 * 152064 * 4
    assert oracle.kv_bytes == 0

    fake_cuda(monkeypatch, name="NVIDIA GeForce RTX 4090", memory=24 * GIB, capability=(8, 9))
    small = doctor.memory_fit(estimates, doctor.cuda_devices(), gpus_per_job=1)
    assert [c.item for c in small] == ["fit cuda:0", "fit cuda:1"]
    for check in small:
        assert not check.ok and check.line.startswith("PROBLEM:")
        assert "too small for oracle saliency" in check.detail
        assert "set resources.gpu: 2 to spread the model" in check.advice and "drop oracle" in check.advice
        assert check.data["short"] == ["oracle saliency"]  # prefill + decode alone fits 24 GiB
    (spread,) = doctor.memory_fit(estimates, doctor.cuda_devices(), gpus_per_job=2)
    assert spread.ok and spread.item == "fit cuda:0+cuda:1"

    fake_cuda(monkeypatch)
    big = doctor.memory_fit(estimates, doctor.cuda_devices(), gpus_per_job=1)
    assert all(c.ok for c in big)
    assert "fits every job; the largest, oracle saliency" in big[0].detail and "headroom" in big[0].detail


def test_float32_that_does_not_fit_is_told_to_use_bfloat16(monkeypatch):
    fake_cuda(monkeypatch, count=1, name="NVIDIA A10", memory=24 * GIB, capability=(8, 6))
    estimate = memory.memory_estimate(qwen2_7b_config(), torch.float32, 4096, 128)
    (check,) = doctor.memory_fit([estimate], doctor.cuda_devices())
    assert not check.ok and check.advice.startswith("set model.dtype: bfloat16")


def test_without_cuda_the_fit_is_against_available_ram():
    estimate = memory.memory_estimate(qwen2_7b_config(), torch.bfloat16, 1024, 16)
    (fits,) = doctor.memory_fit([estimate], [], ram_available=64 * GIB)
    (short,) = doctor.memory_fit([estimate], [], ram_available=8 * GIB)
    assert fits.ok and fits.item == "fit ram" and not short.ok


@pytest.mark.parametrize("num_bytes, text", [(15_231_233_024, "14.2 GiB"), (3 * 2**20, "3.0 MiB")])
def test_sizes_read_in_gib_or_mib(num_bytes, text):
    assert memory.gib(num_bytes) == text
