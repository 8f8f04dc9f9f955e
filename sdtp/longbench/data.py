"""LongBench v1 data: download the official archive once, read one task's records.

The official data is `data.zip` in the Hugging Face dataset repo THUDM/LongBench: one JSONL file per task
(`data/narrativeqa.jsonl`, …, plus the LongBench-E files `data/qasper_e.jsonl`, …). We extract the JSONL files flat into
one directory (default `resources/longbench/`), atomically: into a temporary directory beside it, then one rename, so a
killed job leaves either nothing or the complete set. Once that directory holds JSONL files the hub is not contacted
again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

LONGBENCH_REPO_ID = "THUDM/LongBench"
LONGBENCH_ARCHIVE = "data.zip"
DEFAULT_DATA_DIR = Path("resources/longbench")
REQUIRED_FIELDS = ("input", "context", "answers", "length", "dataset", "language", "all_classes", "_id")

_DOWNLOAD_FAILED = (
    "LongBench could not be downloaded from the Hugging Face Hub ({repo}/{archive}: {error}). "
    "If this machine is offline, set the config key `longbench.data_dir` to a local directory holding the task "
    "JSONL files (narrativeqa.jsonl, qasper.jsonl, ...), e.g. the extracted data.zip of the THUDM/LongBench dataset."
)


def _is_extracted(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*.jsonl"))


def _archive_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's task JSONL files, wherever they sit (`data/x.jsonl` or `x.jsonl`); macOS resource forks skipped."""
    members = []
    for info in archive.infolist():
        path = PurePosixPath(info.filename)
        if info.is_dir() or path.suffix != ".jsonl" or "__MACOSX" in path.parts or path.name.startswith("._"):
            continue
        members.append(info)
    return members


def extract_archive(archive: str | Path, target_dir: str | Path) -> Path:
    """Extract the JSONL files of `archive` flat into `target_dir`, atomically; return `target_dir`.

    If another process completed `target_dir` meanwhile, its copy is kept and ours discarded.
    """
    archive, target_dir = Path(archive), Path(target_dir)
    with zipfile.ZipFile(archive) as zf:
        members = _archive_members(zf)
        if not members:
            raise RuntimeError(f"{archive} holds no .jsonl files; is it the LongBench data.zip?")
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.", suffix=".tmp", dir=target_dir.parent))
        try:
            for info in members:
                with zf.open(info) as src, open(tmp / PurePosixPath(info.filename).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            try:
                os.rename(tmp, target_dir)  # atomic; replaces target_dir only if it is an empty directory
            except OSError:
                if not _is_extracted(target_dir):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target_dir


def download_longbench(cache_dir: str | Path | None = None, target_dir: str | Path = DEFAULT_DATA_DIR) -> Path:
    """Directory holding the LongBench task JSONL files, downloading and extracting `data.zip` the first time.

    `cache_dir` is the Hugging Face cache for the archive (None: the hub's default). When `target_dir` already holds
    JSONL files nothing is downloaded. A failed download (offline, `HF_HUB_OFFLINE=1`, HTTP error) raises one
    RuntimeError that says to set the config key `longbench.data_dir`.
    """
    target_dir = Path(target_dir)
    if _is_extracted(target_dir):
        return target_dir
    try:
        archive = hf_hub_download(
            repo_id=LONGBENCH_REPO_ID, filename=LONGBENCH_ARCHIVE, repo_type="dataset", cache_dir=cache_dir
        )
    except (HfHubHTTPError, OSError) as exc:
        # LocalEntryNotFoundError (offline, nothing cached), OfflineModeIsEnabled and connection errors are OSErrors.
        message = _DOWNLOAD_FAILED.format(repo=LONGBENCH_REPO_ID, archive=LONGBENCH_ARCHIVE, error=type(exc).__name__)
        raise RuntimeError(message) from exc
    return extract_archive(archive, target_dir)


def task_file(task: str, data_dir: str | Path) -> Path:
    """The JSONL file of `task` in `data_dir` (`<task>.jsonl`, or `data/<task>.jsonl` as in the official archive)."""
    data_dir = Path(data_dir)
    candidates = (data_dir / f"{task}.jsonl", data_dir / "data" / f"{task}.jsonl")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no data for LongBench task {task!r}: {candidates[0]} does not exist (nor {candidates[1]})"
    )


def _validate_record(record: Any, path: Path, line_no: int) -> None:
    """Raise ValueError naming the file, line and field when `record` is not a LongBench record."""
    where = f"{path}, line {line_no}"
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [field for field in REQUIRED_FIELDS if field not in record]
    if missing:
        raise ValueError(
            f"{where}: record lacks the field(s) {', '.join(missing)} "
            f"(LongBench records have {', '.join(REQUIRED_FIELDS)})"
        )
    for field in ("input", "context"):
        if not isinstance(record[field], str):
            raise ValueError(f"{where}: field {field!r} must be a string, got {type(record[field]).__name__}")
    answers = record["answers"]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"{where}: field 'answers' must be a list of strings, got {answers!r:.80}")
    length = record["length"]
    if not isinstance(length, int) or isinstance(length, bool):
        raise ValueError(f"{where}: field 'length' must be an int, got {length!r}")
    all_classes = record["all_classes"]
    if all_classes is not None and not (isinstance(all_classes, list) and all(isinstance(c, str) for c in all_classes)):
        raise ValueError(f"{where}: field 'all_classes' must be null or a list of strings, got {all_classes!r:.80}")


def load_task_records(
    task: str, data_dir: str | Path | None = None, max_samples: int | None = None
) -> list[dict[str, Any]]:
    """The records of `task`, validated, in file order.

    data_dir:    directory holding `<task>.jsonl` (config key `longbench.data_dir`); None downloads the official data
                 (`download_longbench`) into `resources/longbench/`.
    max_samples: keep the first `max_samples` records of the file (no shuffling, so every method and run sees the same
                 samples); only those are read and validated. None keeps all.
    """
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
    path = task_file(task, download_longbench() if data_dir is None else data_dir)
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if max_samples is not None and len(records) >= max_samples:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc.msg})") from None
            _validate_record(record, path, line_no)
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no records for LongBench task {task!r}")
    return records
