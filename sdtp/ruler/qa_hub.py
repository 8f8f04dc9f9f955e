"""qa_1 / qa_2's data from the Hugging Face Hub, converted to the files RULER reads (`sdtp.ruler.qa`).

RULER reads the original SQuAD v2.0 dev JSON and the HotpotQA distractor dev JSON. The hub holds the same splits as
Parquet (`tasks.QA_DATASETS`: `rajpurkar/squad_v2`, files `squad_v2/validation-*.parquet`; `hotpotqa/hotpot_qa`,
files `distractor/validation-*.parquet`), one row per question, in the original files' order:

- SQuAD rows: `id, title, context, question, answers{text: [...], answer_start: [...]}`; an unanswerable question
  has no answer text. `squad_json` regroups consecutive rows into articles (same title) and paragraphs (same context)
  and writes `is_impossible` as "no answer", the fields `qa.read_squad` reads;
- HotpotQA rows: `id, question, answer, type, level, supporting_facts{title, sent_id}, context{title, sentences}`.
  `hotpotqa_json` writes the original records: `_id`, `context` as `[title, sentences]` pairs, `supporting_facts` as
  `[title, sent_id]` pairs.

`download_qa_data` downloads the matching files once into the hub cache (`snapshot_download`, `allow_patterns`) and
writes RULER's file atomically. Offline, the workflow never calls it: a config asking for qa_1 / qa_2 without
`ruler.qa_data_dir` stops at parse time (`tasks.check_tasks_available`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from sdtp.io import atomic_path
from sdtp.ruler.tasks import QA_DATASETS

log = logging.getLogger(__name__)


def read_parquet_rows(paths: Sequence[str | Path]) -> list[dict]:
    """The rows of `paths`, in order, as plain Python dicts and lists (nested structs included)."""
    import pyarrow.parquet as pq

    return [row for path in paths for row in pq.read_table(path).to_pylist()]


def squad_json(rows: Iterable[dict]) -> dict:
    """SQuAD v2.0's JSON (`{"version", "data": [{"title", "paragraphs": [{"context", "qas"}]}]}`) of the hub's rows."""
    articles: list[dict] = []
    for row in rows:
        if not articles or articles[-1]["title"] != row["title"]:
            articles.append({"title": row["title"], "paragraphs": []})
        paragraphs = articles[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != row["context"]:
            paragraphs.append({"context": row["context"], "qas": []})
        texts, starts = row["answers"]["text"], row["answers"]["answer_start"]
        paragraphs[-1]["qas"].append({
            "id": row["id"],
            "question": row["question"],
            "answers": [{"text": text, "answer_start": start} for text, start in zip(texts, starts, strict=True)],
            "is_impossible": not texts,
        })  # fmt: skip
    return {"version": "v2.0", "data": articles}


def hotpotqa_json(rows: Iterable[dict]) -> list[dict]:
    """HotpotQA's JSON (a list of records with `[title, sentences]` context pairs) of the hub's rows."""
    return [
        {
            "_id": row["id"],
            "question": row["question"],
            "answer": row["answer"],
            "type": row["type"],
            "level": row["level"],
            "supporting_facts": [
                [title, sent_id]
                for title, sent_id in zip(
                    row["supporting_facts"]["title"], row["supporting_facts"]["sent_id"], strict=True
                )
            ],
            "context": [
                [title, list(sentences)]
                for title, sentences in zip(row["context"]["title"], row["context"]["sentences"], strict=True)
            ],
        }
        for row in rows
    ]


CONVERTERS = {"squad": squad_json, "hotpotqa": hotpotqa_json}


def hub_parquet_files(dataset: str, revision: str | None = None) -> list[Path]:
    """The hub's Parquet files of `dataset` (`tasks.QA_DATASETS`), downloaded once into the hub cache, sorted."""
    from huggingface_hub import snapshot_download

    source = QA_DATASETS[dataset]
    try:
        root = snapshot_download(
            repo_id=source.hub_repo, repo_type="dataset", allow_patterns=[source.hub_files], revision=revision
        )
    except Exception as error:  # offline, no cache, HTTP error, ... all end the same way for the user
        raise RuntimeError(
            f"could not download {source.hub_repo} ({source.hub_files}) from the Hugging Face Hub: "
            f"{type(error).__name__}: {error}. Download the {source.description} from {source.url} to "
            f"<dir>/{source.file_name} and set the config key `ruler.qa_data_dir` to <dir>."
        ) from error
    files = sorted(Path(root).glob(source.hub_files))
    if not files:
        raise RuntimeError(f"{source.hub_repo} has no file matching {source.hub_files} (in {root})")
    log.info("%s: %s", source.hub_repo, ", ".join(str(path.relative_to(root)) for path in files))
    return files


def download_qa_data(dataset: str, out: str | Path, revision: str | None = None) -> Path:
    """Write RULER's file for `dataset` ("squad" | "hotpotqa") at `out`, converted from the hub's Parquet files."""
    if dataset not in CONVERTERS:
        raise ValueError(f"QA dataset {dataset!r} is not one of {tuple(CONVERTERS)}")
    rows = read_parquet_rows(hub_parquet_files(dataset, revision))
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(CONVERTERS[dataset](rows), ensure_ascii=False), encoding="utf-8")
    log.info("%s: %d questions -> %s", QA_DATASETS[dataset].description, len(rows), out)
    return Path(out)
