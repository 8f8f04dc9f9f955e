"""LongBench data: one download and atomic extraction of data.zip, record loading and its error messages."""

import json
import zipfile

import huggingface_hub.constants
import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from sdtp.longbench import data as lb_data
from sdtp.longbench.data import download_longbench, load_task_records


def make_record(task: str, i: int) -> dict:
    return {
        "input": f"question {i}",
        "context": f"context {i}",
        "answers": [f"answer {i}"],
        "length": 100 + i,
        "dataset": task,
        "language": "en",
        "all_classes": ["A", "B"] if task == "trec" else None,
        "_id": f"{task}-{i}",
    }


def jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def fixture_zip(tmp_path):
    """A small data.zip laid out like the official one: data/<task>.jsonl (plus a folder entry and macOS junk)."""
    path = tmp_path / "hub" / "data.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/", "")
        zf.writestr("data/narrativeqa.jsonl", jsonl(make_record("narrativeqa", i) for i in range(5)))
        zf.writestr("data/trec.jsonl", jsonl(make_record("trec", i) for i in range(3)))
        zf.writestr("__MACOSX/data/._trec.jsonl", "junk")
    return path


@pytest.fixture
def fake_hub(monkeypatch, fixture_zip):
    """Replace hf_hub_download by one that returns the fixture zip and records its calls."""
    calls = []

    def fake_download(**kwargs):
        calls.append(kwargs)
        return str(fixture_zip)

    monkeypatch.setattr(lb_data, "hf_hub_download", fake_download)
    return calls


def test_download_extracts_flat_once(tmp_path, fake_hub):
    target = tmp_path / "resources" / "longbench"
    assert download_longbench(target_dir=target) == target
    assert sorted(p.name for p in target.iterdir()) == ["narrativeqa.jsonl", "trec.jsonl"]
    assert [p.name for p in target.parent.iterdir()] == ["longbench"]  # no temporary directory left behind
    assert fake_hub == [
        {"repo_id": "THUDM/LongBench", "filename": "data.zip", "repo_type": "dataset", "cache_dir": None}
    ]
    download_longbench(target_dir=target)
    assert len(fake_hub) == 1  # already extracted: the hub is not asked again


def test_load_without_data_dir_downloads_into_resources(tmp_path, monkeypatch, fake_hub):
    monkeypatch.chdir(tmp_path)
    records = load_task_records("narrativeqa", data_dir=None)
    assert [r["_id"] for r in records] == [f"narrativeqa-{i}" for i in range(5)]
    assert (tmp_path / "resources" / "longbench" / "narrativeqa.jsonl").is_file()
    assert load_task_records("trec")[0]["all_classes"] == ["A", "B"]
    assert len(fake_hub) == 1


def test_max_samples_keeps_the_first_records(tmp_path):
    (tmp_path / "narrativeqa.jsonl").write_text(jsonl(make_record("narrativeqa", i) for i in range(5)))
    records = load_task_records("narrativeqa", tmp_path, max_samples=2)
    assert [r["_id"] for r in records] == ["narrativeqa-0", "narrativeqa-1"]
    assert len(load_task_records("narrativeqa", tmp_path, max_samples=50)) == 5
    with pytest.raises(ValueError, match="max_samples"):
        load_task_records("narrativeqa", tmp_path, max_samples=0)


def test_local_dir_with_data_subfolder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "trec.jsonl").write_text(jsonl([make_record("trec", 0)]))
    assert load_task_records("trec", tmp_path)[0]["_id"] == "trec-0"


def test_bad_record_names_file_line_and_field(tmp_path):
    bad = make_record("hotpotqa", 1)
    del bad["answers"]
    path = tmp_path / "hotpotqa.jsonl"
    path.write_text(jsonl([make_record("hotpotqa", 0), bad]))
    with pytest.raises(ValueError, match=r"hotpotqa\.jsonl, line 2: record lacks the field\(s\) answers"):
        load_task_records("hotpotqa", tmp_path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 1: not valid JSON"),
        ("[1, 2]", "line 1: expected a JSON object"),
        (json.dumps(make_record("qasper", 0) | {"answers": "yes"}), "line 1: field 'answers' must be a list"),
        (json.dumps(make_record("qasper", 0) | {"length": "12"}), "line 1: field 'length' must be an int"),
    ],
)
def test_malformed_lines(tmp_path, line, message):
    (tmp_path / "qasper.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        load_task_records("qasper", tmp_path)


def test_missing_task_file_names_path_and_task(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'musique'.*musique\.jsonl"):
        load_task_records("musique", tmp_path)


def test_offline_miss_says_to_set_data_dir(tmp_path, monkeypatch):
    def offline_download(**kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr(lb_data, "hf_hub_download", offline_download)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match=r"could not be downloaded.*longbench\.data_dir"):
        load_task_records("narrativeqa")


def test_offline_mode_with_the_real_hub_client(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match=r"longbench\.data_dir"):
        download_longbench(cache_dir=tmp_path / "hf-cache", target_dir=tmp_path / "longbench")
    assert not (tmp_path / "longbench").exists()


def test_archive_without_jsonl_leaves_nothing(tmp_path):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("README.md", "not LongBench")
    with pytest.raises(RuntimeError, match="no .jsonl files"):
        lb_data.extract_archive(archive, tmp_path / "out" / "longbench")
    assert not (tmp_path / "out" / "longbench").exists()
