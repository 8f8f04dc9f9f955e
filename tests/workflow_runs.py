"""Running the Snakemake workflow from tests: a copy of the project in a temporary directory, snakemake in a subprocess
with a PATH that lacks the test interpreter's directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ["Snakefile", "config.yaml", "rules", "schemas", "configs", "report", "envs", "profiles"]


# PATH without the directory of the interpreter that runs the tests (a virtualenv's bin/ in CI): as when a user runs
# `.venv/bin/snakemake` without activating the virtualenv. The jobs' `python -m sdtp` must still find this interpreter.
BARE_PATH = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if p != os.path.dirname(sys.executable))


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir, capture_output=True, text=True, timeout=900, env={**os.environ, "PATH": BARE_PATH},
    )  # fmt: skip
    if check and proc.returncode != 0:
        pytest.fail(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def copy_project(dest: Path) -> Path:
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name)
        elif source.exists():
            shutil.copy(source, dest / name)
    return dest
