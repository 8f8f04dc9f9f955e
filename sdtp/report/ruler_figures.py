"""RULER figures from `tables/ruler.parquet` (`sdtp.ruler.table.aggregate`): score vs length per method with error
bars, mean RULER score vs KV budget, and a task x method heatmap. Each takes the table and returns a Plotly figure (an
empty one saying "no data" when the table is empty); writing HTML is the caller's job. When the table holds several
models, each model has its own traces (named "model · method", as the other figures name them) and heatmap columns;
their traces differ by opacity (`_model_styles`) as keep ratios differ by dash.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from sdtp.report.style import (
    apply_layout,
    config_keys,
    config_label,
    method_colour,
    method_rank,
    model_label,
    ratio_styles,
)
from sdtp.ruler.table import mean_over_tasks


def _no_data(title: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text="no RULER results", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return apply_layout(fig, title, 300)


def _configs(table: pd.DataFrame) -> list[tuple[str, str, float]]:
    """(model, method, keep ratio) in display order: model, the methods' order, keep ratio from the highest."""
    return [(model, method, float(ratio)) for model, method, ratio in config_keys(table)]


MODEL_OPACITY = (1.0, 0.6, 0.35)  # the first model full colour, the next ones lighter


def _model_styles(table: pd.DataFrame) -> dict[str, float]:
    """model -> marker and line opacity: one model is drawn as before, several are told apart."""
    return {model: MODEL_OPACITY[i % len(MODEL_OPACITY)] for i, model in enumerate(sorted(table.model.unique()))}


def score_vs_length(table: pd.DataFrame) -> go.Figure:
    """Mean RULER score over tasks vs target length, one line per method x keep ratio, error bars = standard error."""
    title = "RULER: mean score over tasks vs context length (error bars: standard error)"
    if table.empty:
        return _no_data(title)
    means = mean_over_tasks(table)
    styles = ratio_styles(means.keep_ratio.unique())
    model_of, opacity = model_label(means), _model_styles(means)
    fig = go.Figure()
    for model, method, ratio in _configs(means):
        of_config = (means.model == model) & (means.method == method) & (means.keep_ratio == ratio)
        rows = means[of_config].sort_values("max_seq_length")
        dash, symbol = styles[ratio]
        fig.add_trace(
            go.Scatter(
                x=rows.max_seq_length, y=rows.score, error_y=dict(type="data", array=rows.score_se.fillna(0)),
                mode="lines+markers", name=config_label(method, ratio, model_of(model)), marker=dict(symbol=symbol),
                line=dict(color=method_colour(method), dash=dash), opacity=opacity[model],
                customdata=rows[["n", "tasks"]],
                hovertemplate="%{y:.1f} ± %{error_y.array:.1f} (n=%{customdata[0]}, %{customdata[1]} tasks)",
            )
        )  # fmt: skip
    fig.update_xaxes(title="target length (tokens)", type="log" if means.max_seq_length.nunique() > 2 else "linear")
    fig.update_yaxes(title="RULER score (0-100)", range=[0, 101])
    return apply_layout(fig, title, 450)


def score_vs_kv_budget(table: pd.DataFrame) -> go.Figure:
    """Mean RULER score over tasks vs the mean KV fraction kept, one point per method x keep ratio x length (kvpress's
    leaderboard plot: score against compression)."""
    title = "RULER: mean score vs KV budget (mean KV per layer ÷ prompt tokens)"
    if table.empty:
        return _no_data(title)
    means = mean_over_tasks(table)
    model_of, opacity = model_label(means), _model_styles(means)
    keys = means[["model", "method"]].drop_duplicates().itertuples(index=False, name=None)
    fig = go.Figure()
    for model, method in sorted(keys, key=lambda k: (k[0], method_rank(k[1]), k[1])):
        rows = means[(means.model == model) & (means.method == method)].sort_values(["max_seq_length", "kv_fraction"])
        fig.add_trace(
            go.Scatter(
                x=rows.kv_fraction, y=rows.score, error_y=dict(type="data", array=rows.score_se.fillna(0)),
                mode="markers", name=f"{model_of(model)} · {method}" if model_of(model) else method,
                marker=dict(color=method_colour(method), size=9), opacity=opacity[model],
                customdata=rows[["keep_ratio", "max_seq_length"]],
                hovertemplate="r=%{customdata[0]}, L=%{customdata[1]}: %{y:.1f} at KV %{x:.2f}",
            )
        )  # fmt: skip
    fig.update_xaxes(title="KV budget (fraction of the full cache)", range=[0, 1.05])
    fig.update_yaxes(title="RULER score (0-100)", range=[0, 101])
    return apply_layout(fig, title, 450)


def task_heatmap(table: pd.DataFrame) -> go.Figure:
    """Score per task (rows) x model, method and keep ratio (columns), averaged over lengths."""
    title = "RULER: score per task and method (mean over lengths)"
    if table.empty:
        return _no_data(title)
    configs = _configs(table)
    tasks = sorted(table.task.unique())
    cells = table.groupby(["task", "model", "method", "keep_ratio"]).score.mean()
    z = [[cells.get((task, *config), float("nan")) for config in configs] for task in tasks]
    model_of = model_label(table)
    fig = go.Figure(
        go.Heatmap(
            z=z, x=[config_label(m, r, model_of(model)) for model, m, r in configs], y=tasks, zmin=0, zmax=100,
            colorscale="Viridis",
            text=[[f"{v:.0f}" for v in row] for row in z], texttemplate="%{text}", colorbar=dict(title="score"),
        )
    )  # fmt: skip
    return apply_layout(fig, title, 200 + 30 * len(tasks))


RULER_FIGURES = {
    "ruler_score_vs_length": score_vs_length,
    "ruler_score_vs_kv_budget": score_vs_kv_budget,
    "ruler_task_heatmap": task_heatmap,
}
