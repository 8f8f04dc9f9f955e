"""The lm-evaluation-harness figure (`sdtp.report.figures` lists it): score per task vs keep ratio, baseline as a line.

Takes the `lm_eval` table (`sdtp.report.tables.lm_eval_with_deltas`) and returns a Plotly figure, or None when it holds
no usable rows.
"""

from __future__ import annotations

import html
import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sdtp.report.style import apply_layout, has_columns, method_colour, method_rank, model_label

PANEL_KEYS = ["subtask", "metric", "filter"]


def _panel_title(subtask: str, metric: str, filter_name: str) -> str:
    return f"{subtask} · {metric}" + ("" if filter_name == "none" else f" ({filter_name})")


def lm_eval_scores_figure(lm_eval: pd.DataFrame) -> go.Figure | None:
    """One panel per (task, metric, filter): the score of each method against its keep ratio per stage, ± the harness's
    stderr as error bars; the unpruned baseline is a dashed horizontal line (its stderr in the hover text)."""
    if not has_columns(lm_eval, "model", "method", "keep_ratio", "score", *PANEL_KEYS):
        return None
    rows = lm_eval.dropna(subset=["score"])
    if rows.empty:
        return None
    panels = sorted(rows[PANEL_KEYS].drop_duplicates().itertuples(index=False, name=None))
    cols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / cols)
    fig = make_subplots(
        rows=nrows,
        cols=cols,
        subplot_titles=[_panel_title(*panel) for panel in panels],
        horizontal_spacing=0.08,
        vertical_spacing=0.08 + 0.16 / nrows,
    )
    model_of = model_label(rows)
    ratios = rows.keep_ratio.astype(float)
    x_range = [min(float(ratios.min()), 1.0) - 0.05, 1.05]
    shown: set[str] = set()
    for i, (subtask, metric, filter_name) in enumerate(panels):
        r, c = divmod(i, cols)
        at = rows[(rows.subtask == subtask) & (rows.metric == metric) & (rows["filter"] == filter_name)]
        for model in sorted(at.model.unique()):
            of_model = at[at.model == model]
            for method in sorted(of_model.method.unique(), key=method_rank):
                points = of_model[of_model.method == method].sort_values("keep_ratio")
                name = f"{model_of(model)} · {method}" if model_of(model) else method
                stderr = points["stderr"] if "stderr" in points.columns else points.score * math.nan
                if method == "baseline":
                    score, err = float(points.score.iloc[0]), float(stderr.iloc[0])
                    trace = go.Scatter(
                        x=x_range,
                        y=[score, score],
                        mode="lines",
                        line=dict(color=method_colour("baseline"), dash="dash", width=2),
                        hovertemplate=f"<b>{html.escape(name)}</b><br>{html.escape(subtask)} {html.escape(metric)}: "
                        f"{score:.4g} ± {err:.3g}<extra></extra>",
                    )
                else:
                    delta = points.get("delta_vs_baseline", points.score * math.nan)
                    trace = go.Scatter(
                        x=points.keep_ratio.tolist(),
                        y=points.score.tolist(),
                        mode="lines+markers",
                        line=dict(color=method_colour(method)),
                        marker=dict(size=9),
                        error_y=dict(type="data", array=stderr.fillna(0).tolist(), visible=True, thickness=1),
                        customdata=list(zip(stderr, delta, strict=True)),
                        hovertemplate=(
                            f"<b>{html.escape(name)}</b> · {html.escape(subtask)} {html.escape(metric)}"
                            "<br>keep ratio %{x:g} per stage<br>score %{y:.4g} ± %{customdata[0]:.3g}"
                            "<br>Δ vs baseline %{customdata[1]:+.4g}<extra></extra>"
                        ),
                    )
                trace.update(name=name, legendgroup=name, showlegend=name not in shown)
                fig.add_trace(trace, row=r + 1, col=c + 1)
                shown.add(name)
    fig.update_xaxes(title="keep ratio per stage", range=x_range)
    fig.update_yaxes(title="score")
    return apply_layout(
        fig, "lm-evaluation-harness score vs keep ratio (dashed: the unpruned baseline)", 180 + 340 * nrows
    )
