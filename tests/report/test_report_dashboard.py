"""The dashboard (`sdtp.report.dashboard`) on small hand-made tables shaped like the demo run's (`report_data`)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from report_data import CONFIG, MODEL, PLOT_DIV, assert_offline, demo_tables

from sdtp.report.dashboard import build_dashboard
from sdtp.report.figures import FIGURES
from sdtp.report.tables import TABLES


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return demo_tables()


def test_dashboard_holds_everything_once(tables):
    page = build_dashboard(tables, CONFIG)
    assert_offline(page)
    assert PLOT_DIV.findall(page) == [spec.name for spec in FIGURES]
    assert "Not configured / no data" not in page
    assert "cpu (x86_64, 2 threads)" in page and "2.13.0+cpu" in page and "5.1.0" in page  # from the latency rows
    assert "keep_ratios:" in page and MODEL in page  # the config, as YAML
    summary_table = re.search(r'<table class="summary">.*?</table>', page, re.S).group(0)
    assert summary_table.count("<tr") == 1 + len(tables["summary"])
    # Which baseline each row's speedups divide by (the hand-made rows have no paired baseline).
    assert "<th>speedups vs</th>" in summary_table
    assert summary_table.count("<td>baseline job</td>") == len(tables["summary"])
    assert "sdtp r=0.5" in page  # headline card


def test_dashboard_says_no_data_for_empty_tables(tables):
    empty = {name: pd.DataFrame() for name in TABLES}
    page = build_dashboard(empty, None)
    assert_offline(page)
    assert PLOT_DIV.findall(page) == []
    assert page.count("Not configured / no data") == len(FIGURES) + 2  # + summary table + config
    partial = dict(
        tables, pruner_losses=pd.DataFrame(), saliency_sparsity=pd.DataFrame(), pruner_heldout=pd.DataFrame()
    )
    page = build_dashboard(partial, CONFIG)
    assert PLOT_DIV.findall(page) == [s.name for s in FIGURES if s.section != "Training"]
    assert "pruner_losses.parquet is empty" in page
