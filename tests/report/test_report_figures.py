"""The figures (`sdtp.report.figures`) on small hand-made tables shaped like the demo run's (`report_data`)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from report_data import (
    CONFIG,
    LATENCY_METHODS,
    LAYERS,
    LENGTHS,
    MODEL,
    PEAKS,
    PRUNE_LAYERS,
    RATIOS,
    TASKS,
    by_name,
    configs_of,
    demo_tables,
    tokens_per_layer,
)

from sdtp.report import figures
from sdtp.report.dashboard import build_dashboard
from sdtp.report.figures import (
    FIGURES,
    end2end_split_figure,
    kv_cache_figure,
    make_figures,
    prefill_latency_figure,
    pruner_heldout_figure,
    pruner_losses_figure,
    quality_vs_compression_figure,
    saliency_sparsity_figure,
    score_table_figure,
    speedup_vs_ideal_figure,
)
from sdtp.report.style import LOSS_TERMS, METHOD_COLOURS, METHODS
from sdtp.report.tables import longbench_with_deltas, summarize_latency


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return demo_tables()


def test_prefill_latency_figure(tables):
    fig = prefill_latency_figure(tables["latency"])
    assert [t.name for t in fig.data] == configs_of(LATENCY_METHODS)
    trace = by_name(fig)["sdtp r=0.5"]
    assert list(trace.x) == LENGTHS
    rows = tables["latency"].query("method == 'sdtp' and keep_ratio == 0.5 and length == 1024").prefill_s
    assert trace.y[1] == pytest.approx(rows.median())
    assert trace.error_y.array[1] == pytest.approx(rows.max() - rows.median())
    assert trace.error_y.arrayminus[1] == pytest.approx(rows.median() - rows.min())
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "tokens" in fig.layout.xaxis.title.text and "(s" in fig.layout.yaxis.title.text
    assert trace.line.color == METHOD_COLOURS["sdtp"]
    assert by_name(fig)["sdtp r=0.7"].line.dash != trace.line.dash  # ratios differ by dash


def test_same_colour_for_a_method_in_every_figure(tables):
    figures = make_figures(tables)
    for fig in figures.values():
        for trace in fig.data:
            method = (trace.name or "").split(" ")[0]
            colour = getattr(getattr(trace, "line", None), "color", None)
            if method in METHOD_COLOURS and isinstance(colour, str):
                assert colour == METHOD_COLOURS[method], (trace.name, colour)


def test_speedup_vs_ideal_figure(tables):
    fig = speedup_vs_ideal_figure(tables["summary"])
    pruned = configs_of(LATENCY_METHODS[1:])
    names = [t.name for t in fig.data]
    assert names == [n for n in pruned for _ in range(6)] + ["ideal (measured = ideal)"] * 3  # 3 phases × 2 panels
    summary = tables["summary"].query("method == 'random' and keep_ratio == 0.7").sort_values("length")
    traces = [t for t in fig.data if t.name == "random r=0.7"]
    for (scatter, per_length), (measured, ideal) in zip(
        (traces[0:2], traces[2:4], traces[4:6]),
        (
            ("prefill_speedup", "ideal_speedup"),
            ("decode_speedup", "decode_ideal_speedup"),
            ("e2e_speedup", "e2e_ideal_speedup"),
        ),
        strict=True,
    ):
        assert list(scatter.x) == pytest.approx(summary[ideal].tolist())
        assert list(scatter.y) == pytest.approx(summary[measured].tolist())
        assert list(per_length.x) == LENGTHS
        assert list(per_length.y) == pytest.approx((summary[measured] / summary[ideal]).tolist())
    ideal = fig.data[-1]
    assert list(ideal.x) == list(ideal.y)  # the y = x reference
    # A summary without measured peaks still shows the prefill phase.
    no_peaks = tables["summary"].assign(decode_ideal_speedup=float("nan"), e2e_ideal_speedup=float("nan"))
    assert len(speedup_vs_ideal_figure(no_peaks).data) == 2 * len(pruned) + 1


def test_peak_fraction_figure(tables):
    fig = figures.peak_fraction_figure(tables["summary"])
    names = [t.name for t in fig.data]
    assert names == [n for n in configs_of(LATENCY_METHODS) for _ in range(2)]
    summary = tables["summary"].query("method == 'baseline'").sort_values("length")
    mfu, mbu = fig.data[0], fig.data[1]
    assert list(mfu.y) == pytest.approx((summary.prefill_flops / summary.prefill_s / 1e11).tolist())
    assert list(mbu.y) == pytest.approx((summary.decode_bytes / summary.decode_s / 2e10).tolist())
    assert (
        figures.peak_fraction_figure(tables["summary"].assign(prefill_mfu=float("nan"), decode_mbu=float("nan")))
        is None
    )


def test_end2end_split_figure(tables):
    fig = end2end_split_figure(tables["summary"])
    assert [t.name for t in fig.data] == ["prefill", "decode"] * len(LENGTHS)
    assert all(t.type == "bar" for t in fig.data) and fig.layout.barmode == "stack"
    prefill, decode = fig.data[4], fig.data[5]  # L = 2048
    assert list(prefill.x) == configs_of(LATENCY_METHODS)
    summary = tables["summary"].query("length == 2048").set_index(["method", "keep_ratio"])
    assert prefill.y[0] == pytest.approx(summary.loc[("baseline", 1.0), "prefill_s"])
    assert decode.y[2] == pytest.approx(summary.loc[("sdtp", 0.5), "decode_s"])
    assert decode.text[2] == f"{summary.loc[('sdtp', 0.5), 'e2e_speedup']:.2f}×"
    assert prefill.marker.color[1] == METHOD_COLOURS["sdtp"]


def test_kv_cache_figure(tables):
    fig = kv_cache_figure(tables["latency"])
    assert len(fig.data) == 2 * 3  # per ratio (1.0, 0.7, 0.5): tokens per layer + KV bytes vs length
    names = [t.name for t in fig.data[::2]]
    compression = 2048 / (sum(tokens_per_layer(2048, 0.5)) / LAYERS)
    assert names == [
        "no pruning (1.00× compression)",
        f"keep 0.7 per stage ({2048 / (sum(tokens_per_layer(2048, 0.7)) / LAYERS):.2f}× compression)",
        f"keep 0.5 per stage ({compression:.2f}× compression)",
    ]
    per_layer, kv_bytes = fig.data[4], fig.data[5]
    assert list(per_layer.x) == list(range(LAYERS)) and list(per_layer.y) == tokens_per_layer(2048, 0.5)
    assert list(kv_bytes.x) == LENGTHS
    assert kv_bytes.y[0] == pytest.approx(1024 * sum(tokens_per_layer(512, 0.5)) / 2**20)


def test_quality_vs_compression_figure(tables):
    fig = quality_vs_compression_figure(tables["longbench"])
    per_task = ["baseline", "sdtp", "random", "streaming", "attention", "oracle"]
    assert [t.name for t in fig.data] == per_task * len(TASKS)
    assert [t.showlegend for t in fig.data] == [True] * 6 + [False] * 6
    scores = tables["longbench"]
    kv = scores[scores.task == "synthetic_2hop"]  # sorted tasks: synthetic_2hop first
    baseline = fig.data[0]
    assert set(baseline.y) == {kv[kv.method == "baseline"].score.iloc[0]} and baseline.line.dash == "dash"
    sdtp = fig.data[1]
    # x: the KV budget (1 / the compression ratio where the rows have no mean_kv_fraction)
    expected = kv[kv.method == "sdtp"].assign(kv=lambda f: 1 / f.mean_compression_ratio).sort_values("kv")
    assert list(sdtp.x) == pytest.approx(expected.kv.tolist())
    assert list(sdtp.y) == pytest.approx(expected.score.tolist())
    assert fig.layout.xaxis.title.text == "KV budget: mean KV per layer ÷ prompt tokens"
    assert fig.layout.legend.title.text == "<b>prefill pruning</b>"


def test_quality_vs_kv_budget_groups_presses_and_combined_methods(tables):
    scores = tables["longbench"]
    sdtp = scores[scores.method == "sdtp"]
    presses = [
        sdtp.assign(method=method, score=sdtp.score - shift, mean_kv_fraction=fraction)
        for method, shift, fraction in (("kvpress:snapkv", 3.0, 0.4), ("sdtp+snapkv", 5.0, 0.2))
    ]
    rows = pd.concat([scores.assign(mean_kv_fraction=1 / scores.mean_compression_ratio), *presses])
    fig = quality_vs_compression_figure(rows)
    legend_of = {t.name: t.legend for t in fig.data if t.showlegend}
    assert legend_of["baseline"] == legend_of["sdtp"] == "legend"
    assert (legend_of["kvpress:snapkv"], legend_of["sdtp+snapkv"]) == ("legend2", "legend3")
    assert [fig.layout[key].title.text for key in ("legend", "legend2", "legend3")] == [
        "<b>prefill pruning</b>", "<b>KV compression</b>", "<b>combined</b>",
    ]  # fmt: skip
    press = next(t for t in fig.data if t.name == "kvpress:snapkv")
    combined = next(t for t in fig.data if t.name == "sdtp+snapkv")
    assert set(press.x) == {0.4} and set(combined.x) == {0.2}
    assert press.line.color == combined.line.color != fig.data[1].line.color  # the press's colour, not sdtp's
    assert set(press.marker.symbol) == {"diamond"} and set(combined.marker.symbol) == {"star"}


def test_quality_falls_back_to_keep_ratio(tables):
    fig = quality_vs_compression_figure(tables["longbench"].drop(columns="mean_compression_ratio"))
    assert fig.layout.xaxis.title.text == "keep ratio per stage"
    assert sorted(fig.data[1].x) == sorted(RATIOS)


def test_score_table_figure(tables):
    fig = score_table_figure(tables["longbench"])
    (table,) = fig.data
    header = [re.sub("<[^>]+>", "", h) for h in table.header.values]
    assert header == ["task", "metric"] + configs_of(METHODS)
    cells = table.cells.values
    assert list(cells[0]) == ["synthetic_2hop", "synthetic_kv", "<b>average</b>"]
    assert cells[2][0] == "70.00"  # baseline, no delta
    random_05 = header.index("random r=0.5")
    assert cells[random_05][1] == "70.00<br>(-10.00)"
    assert table.cells.fill.color[random_05][1].startswith("rgba(214,39,40")  # red: worse than the baseline
    assert table.cells.fill.color[2][0] == "white"


def test_score_table_marks_improvements_green(tables):
    scores = tables["longbench"].copy()
    scores.loc[scores.method == "oracle", "score"] += 5
    fig = score_table_figure(longbench_with_deltas(scores.drop(columns="delta_vs_baseline")))
    header = [re.sub("<[^>]+>", "", h) for h in fig.data[0].header.values]
    column = header.index("oracle r=0.7")
    assert fig.data[0].cells.values[column][0] == "74.70<br>(+4.70)"
    assert fig.data[0].cells.fill.color[column][0].startswith("rgba(44,160,44")


def test_saliency_sparsity_figure(tables):
    fig = saliency_sparsity_figure(tables["saliency_sparsity"])
    assert [t.name for t in fig.data] == ["heldout", "train"]
    train = fig.data[1]
    assert list(train.x) == PRUNE_LAYERS
    expected = tables["saliency_sparsity"].query("split == 'train'").groupby("layer").sparsity.mean()
    assert list(train.y) == pytest.approx(expected.tolist())


def test_pruner_losses_figure(tables):
    fig = pruner_losses_figure(tables["pruner_losses"])
    assert [t.name for t in fig.data] == list(LOSS_TERMS) * 2  # two keep ratios, one panel each
    total = fig.data[0]
    assert len(total.x) == 10  # 2 epochs × 5 steps, the two samples of a step averaged
    assert [a.text for a in fig.layout.annotations] == ["keep 0.7 per stage", "keep 0.5 per stage"]
    losses = tables["pruner_losses"].query("keep_ratio == 0.7 and epoch == 0 and step == 0")
    assert total.y[0] == pytest.approx(losses.total.mean())
    assert fig.layout.yaxis.type == "log"


def test_pruner_losses_smooth_long_runs():
    """One row per sample and a global step (as train-pruner logs): 2 × 50 steps are drawn as a running mean of 4."""
    rows = pd.DataFrame(
        [
            dict(
                model=MODEL,
                keep_ratio=0.7,
                epoch=i // 50,
                step=i + 1,
                sample=i % 50,
                lm=1.0 + (i % 2),
                mse=0.1,
                rank=0.5,
                total=1.6 + (i % 2),
            )
            for i in range(100)
        ]
    )
    fig = pruner_losses_figure(rows)
    lm = fig.data[1]
    assert lm.name == "lm" and len(lm.x) == 100 and list(lm.x[:2]) == [1, 2]
    assert lm.y[0] == 1.0 and lm.y[3] == pytest.approx(1.5)  # mean of 1, 2, 1, 2
    assert lm.customdata[3][2] == 2.0  # the step's own value is in the hover text
    assert "running mean over 4 steps" in fig.layout.title.text


def test_pruner_heldout_figure(tables):
    fig = pruner_heldout_figure(tables["pruner_heldout"])
    names = [t.name for t in fig.data]
    assert names == [
        "sdtp pruner r=0.5", "context-free r=0.5", "sdtp pruner r=0.5 · recall",
        "sdtp pruner r=0.7", "context-free r=0.7", "sdtp pruner r=0.7 · recall",
    ]  # fmt: skip
    spearman, context_free, recall = by_name(fig)["sdtp pruner r=0.7"], fig.data[4], fig.data[5]
    assert list(spearman.x) == PRUNE_LAYERS and spearman.xaxis == "x" and recall.xaxis == "x2"
    assert list(spearman.y) == pytest.approx([0.37, 0.47, 0.57])
    assert math.isnan(by_name(fig)["sdtp pruner r=0.5"].y[-1])  # a figure train-pruner could not compute stays a gap
    assert list(recall.y) == pytest.approx([0.85] * 3) and list(context_free.y) == pytest.approx([0.2] * 3)
    assert context_free.line.dash == "dot" and spearman.line.color == METHOD_COLOURS["sdtp"]
    assert spearman.customdata[0][0] == 4 and "held-out prompts" in spearman.hovertemplate


EMPTY_CASES = {
    "prefill_latency_figure": "latency",
    "speedup_vs_ideal_figure": "summary",
    "end2end_split_figure": "summary",
    "kv_cache_figure": "latency",
    "quality_vs_compression_figure": "longbench",
    "score_table_figure": "longbench",
    "saliency_sparsity_figure": "saliency_sparsity",
    "pruner_losses_figure": "pruner_losses",
    "pruner_heldout_figure": "pruner_heldout",
}


@pytest.mark.parametrize("function, table", EMPTY_CASES.items())
def test_empty_tables_give_no_figure(tables, function, table):
    make = getattr(figures, function)
    assert make(pd.DataFrame()) is None  # what `tables` writes when nothing was configured
    assert make(tables[table].iloc[:0]) is None  # columns but no rows


def test_failed_runs_only_give_no_latency_figures(tables):
    oom = tables["latency"].assign(status="oom", prefill_s=float("nan"), kv_lengths=[[]] * len(tables["latency"]))
    assert prefill_latency_figure(oom) is None
    assert kv_cache_figure(oom) is None
    only_baseline = tables["summary"].query("method == 'baseline'")
    assert speedup_vs_ideal_figure(only_baseline) is None


# --- wiring -----------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_every_figure_is_a_captioned_report_item():
    rules = (ROOT / "rules" / "common.smk").read_text()  # REPORT_FIGURES lives with the other target lists
    listed = re.search(r"REPORT_FIGURES = \{(.*?)\n\}", rules, re.S).group(1)
    assert re.findall(r'^\s+"([a-z0-9_]+)":', listed, re.M) == [spec.name for spec in FIGURES]
    for name in [spec.name for spec in FIGURES] + ["dashboard", "workflow"]:
        assert (ROOT / "report" / f"{name}.rst").read_text().strip(), name


def test_several_models_and_failed_runs(tables):
    """Two models in one table: every trace names its model; an OOM configuration shows in the table, not the plots."""
    other = {name: table.assign(model="other-model") for name, table in tables.items() if "model" in table.columns}
    both = {name: pd.concat([tables[name], other[name]], ignore_index=True) for name in other}
    oom = both["latency"].query("method == 'sdtp' and keep_ratio == 0.5 and length == 2048 and model == 'other-model'")
    failed = ["oom", math.nan, math.nan, math.nan]
    both["latency"].loc[oom.index, ["status", "prefill_s", "decode_s", "total_s"]] = failed
    both["summary"] = summarize_latency(both["latency"], PEAKS)
    figures = make_figures(both)
    assert all(fig is not None for fig in figures.values())
    names = [t.name for t in figures["prefill_latency"].data]
    assert len(names) == 2 * 9 and "other-model · sdtp r=0.5" in names and "demo-qwen2 · baseline" in names
    assert len(figures["kv_cache"].data) == 2 * 2 * 3
    assert list(by_name(figures["prefill_latency"])["other-model · sdtp r=0.5"].x) == LENGTHS[:2]
    page = build_dashboard(both, CONFIG)
    assert page.count('<tr class="failed">') == 1
