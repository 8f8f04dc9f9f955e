"""RULER's table: per-sample scores (failed records score 0), the aggregate per cell (mean, standard error, n, KV
fraction, failure counts), the mean over tasks, and the three figures."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import pytest

from sdtp.report.ruler_figures import RULER_FIGURES, score_vs_kv_budget, score_vs_length, task_heatmap
from sdtp.ruler.table import TABLE_COLUMNS, aggregate, mean_over_tasks, sample_rows, standard_error


def prediction(index, pred, outputs, status="ok", task="niah_multivalue", length=4096, kv_fraction=0.5,
               weights="Q4_1 values dequantized to float32"):  # fmt: skip
    ok = status == "ok"
    return {
        "_id": index, "task": task, "max_seq_length": length, "length": length - 10, "input_tokens": length - 138,
        "tokens_to_generate": 128, "chat_template": "none", "seed": 42, "outputs": outputs, "pred": pred if ok else "",
        "prompt_tokens": length - 138, "kv_fraction": kv_fraction if ok else None,
        "compression_ratio": 1 / kv_fraction if ok else None, "new_tokens": 5 if ok else 0, "status": status,
        "reason": "" if ok else "CUDA out of memory", "host": "node1", "slurm_job_id": None,
        "cuda_visible_devices": "0", "weights": weights,
    }  # fmt: skip


ROWS = [
    prediction(0, " 11, 22, 33 and 44.", ["11", "22", "33", "44"]),  # 4 of 4
    prediction(1, "11 and 22\n", ["11", "22", "33", "44"]),  # 2 of 4
    prediction(2, "33", ["11", "22", "33", "44"], status="oom"),  # would be 1 of 4, but failed: 0
]


def test_sample_rows_score_each_record_by_the_task_metric_and_failed_records_as_zero():
    samples = sample_rows(ROWS, "m", "sdtp", 0.7)
    assert samples.score.tolist() == [100.0, 50.0, 0.0]
    assert samples.status.tolist() == ["ok", "ok", "oom"]
    assert set(samples.metric) == {"string_match_all"} and set(samples.keep_ratio) == {0.7}


def test_aggregate_gives_mean_standard_error_n_and_failure_counts_per_cell():
    samples = pd.concat(
        [sample_rows(ROWS, "m", "sdtp", 0.7), sample_rows([prediction(0, "x", ["y"], task="vt")], "m", "sdtp", 0.7)]
    )
    table = aggregate(samples)
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 2
    niah = table[table.task == "niah_multivalue"].iloc[0]
    assert niah.score == pytest.approx(50.0) and niah.n == 3
    assert niah.score_se == pytest.approx(math.sqrt(((50**2) + 0 + 50**2) / 2) / math.sqrt(3))  # sd (ddof 1) / sqrt n
    assert niah.oom_count == 1 and niah.error_count == 0
    assert niah.kv_fraction == pytest.approx(0.5)  # over the measured records only
    assert niah.host == "node1" and niah.cuda_visible_devices == "0" and niah.slurm_job_id is None
    assert niah.weights == "Q4_1 values dequantized to float32"
    vt = table[table.task == "vt"].iloc[0]
    assert vt.n == 1 and math.isnan(vt.score_se) and vt.score == 0.0


def test_rows_predicted_before_weights_were_recorded_aggregate_to_none():
    old = [{k: v for k, v in row.items() if k != "weights"} for row in ROWS]
    table = aggregate(sample_rows(old, "m", "sdtp", 0.7))
    assert table.weights.tolist() == [None] and table.n.tolist() == [3]


def test_standard_error_of_a_single_value_is_nan():
    assert math.isnan(standard_error(pd.Series([1.0])))
    assert standard_error(pd.Series([0.0, 100.0])) == pytest.approx(50.0)


def test_an_empty_table_has_the_columns():
    assert list(aggregate(pd.DataFrame()).columns) == TABLE_COLUMNS


def _table() -> pd.DataFrame:
    rows = []
    for method, ratio, fraction in (("baseline", 1.0, 1.0), ("streaming", 0.5, 0.5), ("sdtp", 0.5, 0.5)):
        for task in ("niah_single_1", "vt"):
            for length in (1024, 4096):
                rows += [prediction(i, "7" if i else "", ["7"], task=task, length=length, kv_fraction=fraction)
                         for i in range(4)]  # fmt: skip
                samples = sample_rows(rows[-4:], "m", method, ratio)
                rows[-4:] = []
                rows.append(samples)
    return aggregate(pd.concat(rows))


def test_mean_over_tasks_weights_tasks_equally_and_combines_their_errors():
    means = mean_over_tasks(_table())
    assert len(means) == 3 * 2 and (means.tasks == 2).all() and (means.n == 8).all()
    assert means.score.tolist() == pytest.approx([75.0] * 6)
    cell_se = 50 / math.sqrt(4)  # scores 0, 100, 100, 100: sd (ddof 1) 50, over sqrt(4)
    assert means.score_se.tolist() == pytest.approx([math.sqrt(2 * cell_se**2) / 2] * 6)


@pytest.mark.parametrize("figure", [score_vs_length, score_vs_kv_budget, task_heatmap])
def test_figures_draw_the_table_and_say_no_data_for_an_empty_one(figure):
    fig = figure(_table())
    assert isinstance(fig, go.Figure) and len(fig.data) >= 1
    empty = figure(aggregate(pd.DataFrame()))
    assert len(empty.data) == 0 and "no RULER results" in empty.layout.annotations[0].text


def test_score_vs_length_has_one_line_per_method_and_ratio_with_error_bars():
    fig = score_vs_length(_table())
    assert [trace.name for trace in fig.data] == ["baseline", "sdtp r=0.5", "streaming r=0.5"]
    assert all(list(trace.x) == [1024, 4096] and trace.error_y.array is not None for trace in fig.data)
    assert set(RULER_FIGURES) == {"ruler_score_vs_length", "ruler_score_vs_kv_budget", "ruler_task_heatmap"}


def test_heatmap_has_a_row_per_task_and_a_column_per_configuration():
    fig = task_heatmap(_table())
    assert list(fig.data[0].y) == ["niah_single_1", "vt"] and len(fig.data[0].x) == 3


def test_the_dashboard_has_a_ruler_section_only_with_a_ruler_table():
    from sdtp.report.dashboard import build_dashboard

    page = build_dashboard({"ruler": _table()})
    assert "<section id='ruler'>" in page and "href='#ruler'" in page
    assert all(f"plot-{name}" in page for name in RULER_FIGURES)
    assert "<section id='ruler'>" not in build_dashboard({}) and "href='#ruler'" not in build_dashboard({})


def test_figures_keep_the_models_of_a_two_model_table_apart():
    """Two models with the same methods: one trace (and heatmap column) per model, named "model · ...", each holding
    only its model's points; a one-model table keeps its plain names."""
    first, second = _table(), _table()
    second["model"] = "other"
    second["score"] = second.score / 2
    table = pd.concat([first, second], ignore_index=True)
    fig = score_vs_length(table)
    names = [trace.name for trace in fig.data]
    assert names == [f"{model} · {label}" for model in ("m", "other")
                     for label in ("baseline", "sdtp r=0.5", "streaming r=0.5")]  # fmt: skip
    scores = {trace.name: list(trace.y) for trace in fig.data}
    assert scores["m · sdtp r=0.5"] == pytest.approx([75.0, 75.0])
    assert scores["other · sdtp r=0.5"] == pytest.approx([37.5, 37.5])
    assert fig.data[0].opacity != fig.data[3].opacity
    budget = score_vs_kv_budget(table)
    assert [trace.name for trace in budget.data] == [f"{model} · {method}" for model in ("m", "other")
                                                     for method in ("baseline", "sdtp", "streaming")]  # fmt: skip
    assert all(len(trace.x) == 2 for trace in budget.data)  # one point per length, not both models' points
    heatmap = task_heatmap(table).data[0]
    assert len(heatmap.x) == 6 and heatmap.x[0] == "m · baseline" and heatmap.x[3] == "other · baseline"
    assert [row[3] for row in heatmap.z] == pytest.approx([row[0] / 2 for row in heatmap.z])
    assert [trace.name for trace in score_vs_kv_budget(first).data] == ["baseline", "sdtp", "streaming"]


def test_press_cells_carry_the_kv_budget_the_press_ratio_and_uncompressed_records():
    pressed = [
        {**prediction(0, "11 22 33 44", ["11"]), "kv_budget": "combined", "press_compression_ratio": 0.5,
         "press_uncompressed_layers": []},
        {**prediction(1, "11", ["11"]), "kv_budget": "combined", "press_compression_ratio": 0.3,
         "press_uncompressed_layers": [3, 4]},
        {**prediction(2, "", ["11"], status="error"), "kv_budget": "", "press_compression_ratio": None,
         "press_uncompressed_layers": []},
    ]  # fmt: skip
    cell = aggregate(sample_rows(pressed, "m", "sdtp+snapkv", 0.5)).iloc[0]
    assert cell.kv_budget == "combined" and cell.press_compression_ratio == pytest.approx(0.4)
    assert cell.press_uncompressed_records == 1 and cell.error_count == 1
    plain = aggregate(sample_rows(ROWS, "m", "sdtp", 0.7)).iloc[0]  # rows written before presses were recorded
    assert (plain.kv_budget, plain.press_compression_ratio, plain.press_uncompressed_records) == ("", 0.0, 0)
