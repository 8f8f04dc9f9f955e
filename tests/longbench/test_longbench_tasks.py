"""The LongBench task table: the official tasks, name lookup, and the synthetic tasks registered beside them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sdtp.data.synthetic import SYNTHETIC_TASKS
from sdtp.longbench.tasks import DEFAULT_TASKS, ENGLISH_TASKS, OFFICIAL_TASKS, TASKS, get_task

NO_CHAT_TEMPLATE_TASKS = {"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"}


def test_task_table():
    assert len(OFFICIAL_TASKS) == 21 and set(OFFICIAL_TASKS) <= set(TASKS)
    assert len(ENGLISH_TASKS) == 16
    assert set(DEFAULT_TASKS) <= set(ENGLISH_TASKS)
    assert {name for name in OFFICIAL_TASKS if not TASKS[name].uses_chat_template} == NO_CHAT_TEMPLATE_TASKS
    assert get_task("narrativeqa").max_new_tokens == 128
    assert get_task("gov_report").metric_name == "rouge_score"
    assert get_task("lsht").language == "zh"


def test_get_task_lists_valid_names():
    with pytest.raises(ValueError, match="narrativeqa"):
        get_task("narrative_qa")


def test_synthetic_tasks_are_registered_without_importing_torch():
    for name, entry in SYNTHETIC_TASKS.items():
        spec = get_task(name)
        assert spec.metric_name == entry["metric"] and spec.max_new_tokens == entry["max_new_tokens"]
        assert not spec.uses_chat_template and spec.language == "en"
    code = "import sys, sdtp.longbench.tasks; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
