"""qa_1 / qa_2's data from the hub (sdtp.ruler.qa_hub), on local fixtures: Parquet files shaped as the hub's
(`rajpurkar/squad_v2`, `hotpotqa/hotpot_qa` distractor), served by a stand-in for `snapshot_download`; the conversion
to RULER's JSON exactly; the command; the parse-time check online (a local HTTP endpoint) and offline."""

from __future__ import annotations

import http.server
import json
import threading

import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_models import run_cli
from workflow_runs import copy_project, snakemake

from sdtp.ruler import qa_hub
from sdtp.ruler.generate import generate_records
from sdtp.ruler.qa import read_hotpotqa, read_squad
from sdtp.ruler.tasks import check_tasks_available

SQUAD_ROWS = [
    {"id": "q1", "title": "Super_Bowl", "context": "Denver won the fiftieth game against Carolina.",
     "question": "Who won?", "answers": {"text": ["Denver", "Denver Broncos"], "answer_start": [0, 0]}},
    {"id": "q2", "title": "Super_Bowl", "context": "Denver won the fiftieth game against Carolina.",
     "question": "Who lost badly?", "answers": {"text": [], "answer_start": []}},
    {"id": "q3", "title": "Super_Bowl", "context": "The game was played in Santa Clara in February.",
     "question": "Where was it played?", "answers": {"text": ["Santa Clara"], "answer_start": [23]}},
    {"id": "q4", "title": "Rivers", "context": "The Rhine flows north.",
     "question": "Which way does the Rhine flow?", "answers": {"text": ["north"], "answer_start": [16]}},
]  # fmt: skip
SQUAD_JSON = {"version": "v2.0", "data": [
    {"title": "Super_Bowl", "paragraphs": [
        {"context": "Denver won the fiftieth game against Carolina.", "qas": [
            {"id": "q1", "question": "Who won?", "answers": [{"text": "Denver", "answer_start": 0},
                                                             {"text": "Denver Broncos", "answer_start": 0}],
             "is_impossible": False},
            {"id": "q2", "question": "Who lost badly?", "answers": [], "is_impossible": True}]},
        {"context": "The game was played in Santa Clara in February.", "qas": [
            {"id": "q3", "question": "Where was it played?", "answers": [{"text": "Santa Clara", "answer_start": 23}],
             "is_impossible": False}]}]},
    {"title": "Rivers", "paragraphs": [
        {"context": "The Rhine flows north.", "qas": [
            {"id": "q4", "question": "Which way does the Rhine flow?",
             "answers": [{"text": "north", "answer_start": 16}], "is_impossible": False}]}]},
]}  # fmt: skip
HOTPOT_ROWS = [
    {"id": f"h{q}", "question": f"Question {q}?", "answer": f"answer {q}", "type": "bridge", "level": "hard",
     "supporting_facts": {"title": [f"Title {q}-0", f"Title {q}-1"], "sent_id": [0, 1]},
     "context": {"title": [f"Title {q}-{i}" for i in range(10)],
                 "sentences": [[f"Sentence {q}.{i}. ", "More text."] for i in range(10)]}}
    for q in range(3)
]  # fmt: skip
HOTPOT_JSON = [
    {"_id": f"h{q}", "question": f"Question {q}?", "answer": f"answer {q}", "type": "bridge", "level": "hard",
     "supporting_facts": [[f"Title {q}-0", 0], [f"Title {q}-1", 1]],
     "context": [[f"Title {q}-{i}", [f"Sentence {q}.{i}. ", "More text."]] for i in range(10)]}
    for q in range(3)
]  # fmt: skip


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A stand-in for the hub: `snapshot_download` returns a local snapshot holding the two datasets' Parquet files
    (SQuAD split in two shards, to check their order) and records its calls."""
    snapshot = tmp_path / "snapshot"
    (snapshot / "squad_v2").mkdir(parents=True)
    (snapshot / "distractor").mkdir()
    pq.write_table(pa.Table.from_pylist(SQUAD_ROWS[:2]), snapshot / "squad_v2" / "validation-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(SQUAD_ROWS[2:]), snapshot / "squad_v2" / "validation-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(SQUAD_ROWS), snapshot / "squad_v2" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(HOTPOT_ROWS), snapshot / "distractor" / "validation-00000-of-00001.parquet")
    calls = []

    def snapshot_download(**kwargs):
        calls.append(kwargs)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_squad_from_the_hub_is_rulers_json_exactly(hub, tmp_path):
    out = qa_hub.download_qa_data("squad", tmp_path / "qa" / "squad.json")
    assert json.loads(out.read_text()) == SQUAD_JSON
    assert hub == [{"repo_id": "rajpurkar/squad_v2", "repo_type": "dataset",
                    "allow_patterns": ["squad_v2/validation-*.parquet"], "revision": None}]  # fmt: skip
    questions, docs = read_squad(out)
    assert [q.query for q in questions] == ["Who won?", "Where was it played?", "Which way does the Rhine flow?"]
    assert [q.outputs for q in questions] == [["Denver", "Denver Broncos"], ["Santa Clara"], ["north"]]
    assert [docs[q.gold[0]] for q in questions] == [r["context"] for r in (SQUAD_ROWS[0], SQUAD_ROWS[2], SQUAD_ROWS[3])]
    assert [[docs[i] for i in q.more] for q in questions] == [
        [SQUAD_ROWS[2]["context"]],
        [SQUAD_ROWS[0]["context"]],
        [],
    ]


def test_hotpotqa_from_the_hub_is_rulers_json_exactly(hub, tmp_path):
    out = qa_hub.download_qa_data("hotpotqa", tmp_path / "hotpotqa.json")
    assert json.loads(out.read_text()) == HOTPOT_JSON
    assert hub[0]["repo_id"] == "hotpotqa/hotpot_qa" and hub[0]["allow_patterns"] == ["distractor/validation-*.parquet"]
    questions, docs = read_hotpotqa(out)
    assert [q.outputs for q in questions] == [["answer 0"], ["answer 1"], ["answer 2"]]
    assert docs[questions[1].gold[3]] == "Title 1-3\nSentence 1.3. More text."


def test_a_failed_download_says_to_set_qa_data_dir(monkeypatch, tmp_path):
    def offline(**kwargs):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(RuntimeError, match=r"rajpurkar/squad_v2.*OSError: offline.*`ruler.qa_data_dir`"):
        qa_hub.download_qa_data("squad", tmp_path / "squad.json")
    assert not (tmp_path / "squad.json").exists()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kwargs: str(tmp_path))
    with pytest.raises(RuntimeError, match="no file matching distractor/validation-"):
        qa_hub.download_qa_data("hotpotqa", tmp_path / "hotpotqa.json")


def test_fetch_qa_command_then_records(hub, tmp_path, tokenizer):
    run_cli("ruler-generate", "--fetch-qa", "squad", "--out", tmp_path / "qa" / "squad.json")
    records = generate_records(tokenizer, "qa_1", 1024, 0, 3, qa_data_dir=tmp_path / "qa")
    assert [r["outputs"] for r in records] == [["Denver", "Denver Broncos"], ["Santa Clara"], ["north"]]


def test_without_qa_data_dir_the_hub_or_an_earlier_download_serves(tmp_path):
    with pytest.raises(ValueError, match=r"'qa_1' needs .*rajpurkar/squad_v2.*Hub is not reachable"):
        check_tasks_available(["qa_1"])
    check_tasks_available(["qa_1", "qa_2"], hub_reachable=True)
    (tmp_path / "squad.json").write_text("{}")
    check_tasks_available(["qa_1"], fetched_dir=tmp_path)
    with pytest.raises(ValueError, match="'qa_2' needs the HotpotQA"):
        check_tasks_available(["qa_1", "qa_2"], fetched_dir=tmp_path)
    with pytest.raises(ValueError, match="does not exist"):  # a configured directory is never second-guessed
        check_tasks_available(["qa_1"], qa_data_dir=tmp_path / "elsewhere", hub_reachable=True)


class _Hub(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_qa_tasks_plan_a_hub_download_when_the_hub_answers(tmp_path, monkeypatch):
    """Online (HF_ENDPOINT: a local server that answers HEAD), qa_1 without `ruler.qa_data_dir` plans the download
    and conversion (rule ruler_qa_data) before its records; with HF_HUB_OFFLINE=1 it stops at parse time."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        workdir = copy_project(tmp_path)
        (workdir / "qa.yaml").write_text("ruler: {tasks: [qa_1], lengths: [1024]}\n")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        plan = snakemake(workdir, "-n", "--configfile", "configs/smoke.yaml", "qa.yaml").stdout
    finally:
        server.shutdown()
    assert "rule ruler_qa_data:" in plan and "results-smoke/data/ruler/qa/squad.json" in plan
    assert "hotpotqa.json" not in plan
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = snakemake(workdir, "-n", "--configfile", "configs/smoke.yaml", "qa.yaml", check=False)
    assert proc.returncode != 0
    assert "config: ruler.tasks: RULER task 'qa_1' needs the SQuAD v2.0 dev set" in proc.stdout + proc.stderr
