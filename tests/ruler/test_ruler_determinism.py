"""The same config gives the same RULER records, byte for byte, across processes: `python -m sdtp ruler-generate`
run twice in fresh interpreters with different hash seeds (set and dict orders of strings differ between them, so
word lists, uuids and document choices must not depend on them), for a needle task with uuids, common words, and qa_1
from a SQuAD file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ruler_bpe import save_bpe_model

TASKS = ["niah_multikey_3", "cwe", "qa_1"]
LENGTH = 2048
SETTINGS = {
    "model": {"name": "tiny", "source": "hub", "id": None, "dtype": "float32", "weights": "pretrained",
              "revision": None},
    "ruler": {"samples": 3, "seed": 11, "chat_template": "none", "qa_data_dir": None},
}  # fmt: skip
SCRIPT = """
import sys
from sdtp.commands.cli import main
settings, model, qa, out = sys.argv[1:5]
for task in sys.argv[5:]:
    argv = ["ruler-generate", "--settings", settings, "--model-dir", model, "--qa-data-dir", qa, "--task", task,
            "--length", "{length}", "--out", f"{{out}}/{{task}}.jsonl"]
    assert main(argv) == 0
"""


def generate(tmp_path, run: str, hash_seed: str) -> dict[str, bytes]:
    out = tmp_path / run
    out.mkdir()
    argv = [sys.executable, "-c", SCRIPT.format(length=LENGTH), json.dumps(SETTINGS), str(tmp_path / "model"),
            str(tmp_path / "qa"), str(out), *TASKS]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(argv, env=env, timeout=600, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {task: (out / f"{task}.jsonl").read_bytes() for task in TASKS}


def test_two_generate_runs_write_identical_records(tmp_path):
    save_bpe_model(tmp_path / "model")
    (tmp_path / "qa").mkdir()
    squad = {"version": "v2.0", "data": [
        {"title": f"Article {a}", "paragraphs": [
            {"context": f"Paragraph {a}.{p}: the river {a} meets town {p}.", "qas": [
                {"question": f"Where does river {a} meet town {p}?", "answers": [{"text": f"town {p}"}],
                 "is_impossible": p % 3 == 2}]}
            for p in range(8)]}
        for a in range(6)]}  # fmt: skip
    (tmp_path / "qa" / "squad.json").write_text(json.dumps(squad))
    first, second = generate(tmp_path, "first", "1"), generate(tmp_path, "second", "2")
    assert first == second
    for task in TASKS:
        records = [json.loads(line) for line in first[task].decode().splitlines()]
        assert len(records) == 3 and {r["task"] for r in records} == {task} and {r["seed"] for r in records} == {11}
