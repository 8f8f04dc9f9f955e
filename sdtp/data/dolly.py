"""databricks-dolly-15k: the paper's saliency and pruner training data, as (prompt, response) pairs.

Loaded from a local JSONL file (config `train_data.path`) or downloaded once from the hub into the HF cache.
"""

from __future__ import annotations

import json
from pathlib import Path

DOLLY_REPO_ID = "databricks/databricks-dolly-15k"
DOLLY_FILENAME = "databricks-dolly-15k.jsonl"
FIELDS = ("instruction", "context", "response")


def dolly_path(local_path: str | None = None) -> Path:
    """The local JSONL file: `local_path` if given, else the hub file (downloaded once into the HF cache)."""
    if local_path is not None:
        path = Path(local_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"train_data.path: {path} does not exist (expected {DOLLY_FILENAME})")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=DOLLY_REPO_ID, filename=DOLLY_FILENAME, repo_type="dataset"))
    except Exception as error:  # offline, no cache, connection refused, … all end the same way for the user
        raise RuntimeError(
            f"could not download {DOLLY_REPO_ID}/{DOLLY_FILENAME} (is this machine offline?). Download the file "
            "elsewhere and set the config key `train_data.path` to its local path, or use "
            "`train_data.source: synthetic`."
        ) from error


def format_prompt(record: dict) -> str:
    """Instruction prompt of one Dolly record; the optional context goes between instruction and response."""
    parts = [f"### Instruction:\n{record['instruction'].strip()}"]
    if record.get("context", "").strip():
        parts.append(f"### Context:\n{record['context'].strip()}")
    parts.append("### Response:\n")
    return "\n\n".join(parts)


def load_dolly(local_path: str | None = None, limit: int | None = None) -> list[dict]:
    """The first `limit` records as {"prompt", "response", "_id", "task"}; a malformed line names file and line."""
    path = dolly_path(local_path)
    examples = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if limit is not None and len(examples) >= limit:
                break
            if not line.strip():
                continue
            record = json.loads(line)
            missing = [field for field in FIELDS if field not in record]
            if missing:
                raise ValueError(
                    f"{path}:{line_no}: record lacks field(s) {missing}; Dolly records have {list(FIELDS)}"
                )
            examples.append(
                {
                    "prompt": format_prompt(record),
                    "response": record["response"].strip(),
                    "_id": f"dolly-{line_no - 1}",
                    "task": record.get("category", "dolly"),
                }
            )
    return examples
