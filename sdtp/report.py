"""`python -m sdtp report`: the workflow's tables → Plotly figures and one self-contained HTML dashboard.

Each figure is one function that takes the DataFrame(s) read from `results/tables/*.parquet` and returns a
`plotly.graph_objects.Figure`, or None when its table holds no usable rows (the page then says so):

| function | table | shows |
|---|---|---|
| `prefill_latency_figure` | latency | median prefill time vs context length per method × keep ratio, min–max bars |
| `speedup_vs_ideal_figure` | summary | measured prefill speedup vs the FLOPs-ideal one (y = x), and their ratio |
| `end2end_split_figure` | summary | End2End time split into prefill and decode, per length |
| `kv_cache_figure` | latency | tokens alive per layer (the ragged cache) per keep ratio, and KV bytes vs length |
| `quality_vs_compression_figure` | longbench | score per task vs compression ratio per method, baseline as a line |
| `score_table_figure` | longbench | per-task scores with deltas vs the baseline, coloured (the paper's Table 1) |
| `saliency_sparsity_figure` | saliency_sparsity | fraction of salient tokens per prune layer |
| `pruner_losses_figure` | pruner_losses | pruner training curves, one line per loss term |

Every figure colours a method the same way (`METHOD_COLOURS`) and draws a keep ratio with the same dash and marker
(`ratio_styles`); hover text carries the exact numbers. The dashboard (`--out`) holds all figures, the summary table,
the config that produced them and the library versions and device of the latency rows, with plotly.js inlined once
(no CDN: the page opens offline). `--figures-dir` writes each figure as its own standalone HTML file (for
`snakemake --report`).
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sdtp.io import atomic_path

log = logging.getLogger(__name__)

METHODS = ("baseline", "sdtp", "random", "streaming", "attention", "oracle")
METHOD_COLOURS = {
    "baseline": "#4d4d4d",
    "sdtp": "#d62728",
    "random": "#9467bd",
    "streaming": "#1f77b4",
    "attention": "#2ca02c",
    "oracle": "#ff7f0e",
}
OTHER_COLOUR = "#8c564b"
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")
LOSS_TERMS = ("total", "lm", "mse", "rank")
LOSS_COLOURS = {"total": "#222222", "lm": "#1f77b4", "mse": "#ff7f0e", "rank": "#2ca02c"}
SPLIT_COLOURS = {"train": "#1f77b4", "heldout": "#ff7f0e"}
TABLES = ("latency", "summary", "longbench", "saliency_sparsity", "pruner_losses")
TEMPLATE = "plotly_white"
MIB = 2**20
LENGTH_TITLE = "context length (tokens, log scale)"


# ---------------------------------------------------------------------------------------------------------------------
# Shared styling


def method_colour(method: str) -> str:
    return METHOD_COLOURS.get(method, OTHER_COLOUR)


def method_rank(method: str) -> int:
    return METHODS.index(method) if method in METHODS else len(METHODS)


def ratio_styles(ratios) -> dict[float, tuple[str, str]]:
    """keep ratio → (line dash, marker symbol): 1.0 (no pruning) solid circles, then the others from the highest."""
    styles = {1.0: (DASHES[0], SYMBOLS[0])}
    others = sorted({float(r) for r in ratios if float(r) != 1.0}, reverse=True)
    for i, ratio in enumerate(others):
        styles[ratio] = (DASHES[i % len(DASHES)], SYMBOLS[(i + 1) % len(SYMBOLS)])
    return styles


def config_label(method: str, keep_ratio: float, model: str | None = None) -> str:
    """'baseline', 'sdtp r=0.7'; prefixed with the model when a table holds several."""
    label = method if method == "baseline" else f"{method} r={float(keep_ratio):g}"
    return f"{model} · {label}" if model else label


def _configs(frame: pd.DataFrame) -> list[tuple[str, str, float]]:
    """(model, method, keep_ratio) in display order: model, then METHODS order, then keep ratio from the highest."""
    keys = frame[["model", "method", "keep_ratio"]].drop_duplicates().itertuples(index=False, name=None)
    return sorted(keys, key=lambda k: (k[0], method_rank(k[1]), k[1], -float(k[2])))


def _model_label(frame: pd.DataFrame) -> Callable[[str], str | None]:
    """Label traces with the model only when the table holds more than one."""
    several = frame["model"].nunique() > 1
    return lambda model: model if several else None


def _has(frame: pd.DataFrame | None, *columns: str) -> bool:
    return frame is not None and not frame.empty and all(c in frame.columns for c in columns)


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"] if "status" in frame.columns else frame


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=title, x=0.01, xanchor="left"),
        height=height,
        margin=dict(l=70, r=30, t=80, b=60),
        legend=dict(groupclick="togglegroup"),
        hoverlabel=dict(namelength=-1),
    )
    return fig


def log_ticks(values) -> dict:
    """Tick values 1-2-5 × 10^k spanning `values`, labelled plainly (plotly's log axes label stray digits)."""
    positive = [float(v) for v in values if v is not None and not math.isnan(float(v)) and float(v) > 0]
    if not positive:
        return {}
    low, high = min(positive), max(positive)
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    mantissas = (1, 2, 5) if len(decades) <= 5 else (1,)
    ticks = [m * 10.0**e for e in decades for m in mantissas]
    ticks = [t for t in ticks if low / 1.6 <= t <= high * 1.6]
    if len(ticks) < 2:
        return {}
    return dict(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])


# ---------------------------------------------------------------------------------------------------------------------
# Figures


def prefill_latency_figure(latency: pd.DataFrame) -> go.Figure | None:
    """Median prefill time vs prompt length, one line per (method, keep ratio); error bars span min–max over repeats."""
    if not _has(latency, "model", "method", "keep_ratio", "length", "prefill_s"):
        return None
    ok = _ok(latency).dropna(subset=["prefill_s"])
    if ok.empty:
        return None
    stats = (
        ok.groupby(["model", "method", "keep_ratio", "length"])
        .prefill_s.agg(median="median", low="min", high="max", repeats="count")
        .reset_index()
    )
    styles = ratio_styles(stats.keep_ratio)
    model_of = _model_label(stats)
    fig = go.Figure()
    for model, method, ratio in _configs(stats):
        rows = stats[(stats.model == model) & (stats.method == method) & (stats.keep_ratio == ratio)]
        rows = rows.sort_values("length")
        dash, symbol = styles[float(ratio)]
        fig.add_trace(
            go.Scatter(
                x=rows.length.tolist(),
                y=rows["median"].tolist(),
                name=config_label(method, ratio, model_of(model)),
                mode="lines+markers",
                line=dict(color=method_colour(method), dash=dash),
                marker=dict(symbol=symbol, size=8),
                error_y=dict(
                    type="data", symmetric=False, array=(rows.high - rows["median"]).tolist(),
                    arrayminus=(rows["median"] - rows.low).tolist(), thickness=1.2, width=4,
                ),
                customdata=rows[["low", "high", "repeats"]].to_numpy(),
                hovertemplate=(
                    "<b>%{fullData.name}</b><br>length %{x} tokens<br>median prefill %{y:.6g} s"
                    "<br>min %{customdata[0]:.6g} s · max %{customdata[1]:.6g} s<br>%{customdata[2]} repeats"
                    "<extra></extra>"
                ),
            )
        )
    fig.update_xaxes(type="log", title=LENGTH_TITLE, tickvals=sorted(stats.length.unique()))
    fig.update_yaxes(type="log", title="prefill time (s, log scale)", **log_ticks([*stats.low, *stats.high]))
    return _layout(fig, "Prefill latency vs context length (median; bars: min–max over repeats)", 520)


def speedup_vs_ideal_figure(summary: pd.DataFrame) -> go.Figure | None:
    """Measured prefill speedup vs the FLOPs-ideal speedup (y = x is ideal), and measured ÷ ideal per length."""
    if not _has(summary, "model", "method", "keep_ratio", "length", "prefill_speedup", "ideal_speedup"):
        return None
    rows = _ok(summary)
    rows = rows[rows.method != "baseline"].dropna(subset=["prefill_speedup", "ideal_speedup"])
    if rows.empty:
        return None
    rows = rows.assign(measured_over_ideal=rows.prefill_speedup / rows.ideal_speedup)
    styles = ratio_styles(rows.keep_ratio)
    model_of = _model_label(rows)
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.5, 0.5], horizontal_spacing=0.1,
        subplot_titles=("measured vs FLOPs-ideal prefill speedup", "measured ÷ ideal, per context length"),
    )
    hover = (
        "<b>%{fullData.name}</b><br>length %{customdata[0]} tokens<br>measured prefill speedup %{customdata[1]:.4f}×"
        "<br>FLOPs-ideal speedup %{customdata[2]:.4f}×<br>measured ÷ ideal %{customdata[3]:.4f}<extra></extra>"
    )
    for model, method, ratio in _configs(rows):
        config = rows[(rows.model == model) & (rows.method == method) & (rows.keep_ratio == ratio)].sort_values("length")
        dash, symbol = styles[float(ratio)]
        name = config_label(method, ratio, model_of(model))
        custom = config[["length", "prefill_speedup", "ideal_speedup", "measured_over_ideal"]].to_numpy()
        common = dict(
            name=name, legendgroup=name, line=dict(color=method_colour(method), dash=dash),
            marker=dict(symbol=symbol, size=9), customdata=custom, hovertemplate=hover,
        )
        fig.add_trace(
            go.Scatter(x=config.ideal_speedup.tolist(), y=config.prefill_speedup.tolist(), mode="markers", **common),
            row=1, col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=config.length.tolist(), y=config.measured_over_ideal.tolist(), mode="lines+markers",
                showlegend=False, **common,
            ),
            row=1, col=2,
        )
    top = max(1.0, float(rows.ideal_speedup.max()), float(rows.prefill_speedup.max())) * 1.08
    low = min(1.0, float(rows.ideal_speedup.min()), float(rows.prefill_speedup.min())) * 0.95
    fig.add_trace(
        go.Scatter(
            x=[low, top], y=[low, top], mode="lines", name="ideal (measured = FLOPs ratio)",
            line=dict(color="#999999", dash="dot", width=1.5), hoverinfo="skip",
        ),
        row=1, col=1,
    )
    fig.add_hline(y=1.0, line=dict(color="#999999", dash="dot", width=1.5), row=1, col=2)
    fig.update_xaxes(title="FLOPs-ideal prefill speedup (×)", range=[low, top], row=1, col=1)
    fig.update_yaxes(title="measured prefill speedup (×)", range=[low, top], row=1, col=1)
    fig.update_xaxes(type="log", title=LENGTH_TITLE, tickvals=sorted(rows.length.unique()), row=1, col=2)
    fig.update_yaxes(title="measured ÷ ideal (1 = ideal reached)", row=1, col=2)
    return _layout(fig, "Is the speedup honest? Measured prefill speedup vs the FLOPs-ideal one", 500)


def end2end_split_figure(summary: pd.DataFrame) -> go.Figure | None:
    """End2End time (median) as stacked prefill + decode bars per configuration, one panel per context length."""
    if not _has(summary, "model", "method", "keep_ratio", "length", "prefill_s", "decode_s"):
        return None
    rows = _ok(summary).dropna(subset=["prefill_s", "decode_s"])
    if rows.empty:
        return None
    rows = rows.assign(total=rows.prefill_s + rows.decode_s)
    lengths = sorted(rows.length.unique())
    model_of = _model_label(rows)
    rank = {key: i for i, key in enumerate(_configs(rows))}
    rows = rows.assign(_order=[rank[k] for k in zip(rows.model, rows.method, rows.keep_ratio)])
    fig = make_subplots(
        rows=1, cols=len(lengths), horizontal_spacing=0.06 if len(lengths) > 1 else 0.1,
        subplot_titles=[f"L = {length} tokens" for length in lengths],
    )
    for col, length in enumerate(lengths, start=1):
        at = rows[rows.length == length].sort_values("_order")
        labels = [config_label(m, r, model_of(mo)) for mo, m, r in zip(at.model, at.method, at.keep_ratio)]
        colours = [method_colour(m) for m in at.method]
        speedup = at["e2e_speedup"] if "e2e_speedup" in at.columns else pd.Series(float("nan"), index=at.index)
        new_tokens = at["new_tokens"] if "new_tokens" in at.columns else pd.Series(float("nan"), index=at.index)
        custom = pd.DataFrame(
            dict(
                prefill=at.prefill_s.to_numpy(), decode=at.decode_s.to_numpy(), total=at.total.to_numpy(),
                speedup=speedup.to_numpy(), tokens=new_tokens.to_numpy(), length=at.length.to_numpy(),
            )
        ).to_numpy()
        hover = (
            "<b>%{x}</b> at %{customdata[5]} tokens<br>prefill %{customdata[0]:.6g} s<br>decode %{customdata[1]:.6g} s"
            " (%{customdata[4]} new tokens)<br>End2End %{customdata[2]:.6g} s<br>End2End speedup %{customdata[3]:.3f}×"
            "<extra>%{fullData.name}</extra>"
        )
        fig.add_trace(
            go.Bar(
                x=labels, y=at.prefill_s.tolist(), name="prefill", legendgroup="prefill", showlegend=col == 1,
                marker=dict(color=colours, line=dict(color="white", width=0.5)), customdata=custom,
                hovertemplate=hover,
            ),
            row=1, col=col,
        )
        fig.add_trace(
            go.Bar(
                x=labels, y=at.decode_s.tolist(), name="decode", legendgroup="decode", showlegend=col == 1,
                marker=dict(
                    color=colours, opacity=0.55, line=dict(color="white", width=0.5),
                    pattern=dict(shape="/", fgcolor="white", fillmode="overlay", size=6),
                ),
                text=[f"{s:.2f}×" if not math.isnan(s) else "" for s in speedup.astype(float)],
                textposition="outside", constraintext="none", textfont=dict(size=11), cliponaxis=False,
                customdata=custom, hovertemplate=hover,
            ),
            row=1, col=col,
        )
    fig.update_layout(barmode="stack", bargap=0.25)
    fig.update_yaxes(title="End2End time (s)", row=1, col=1)
    fig.update_xaxes(tickangle=-40)
    tokens = sorted(rows["new_tokens"].dropna().unique()) if "new_tokens" in rows.columns else []
    suffix = f" (+ {', '.join(str(int(t)) for t in tokens)} decoded tokens)" if tokens else ""
    return _layout(fig, f"End2End time split into prefill and decode{suffix}; labels: End2End speedup", 560)


def kv_cache_figure(latency: pd.DataFrame) -> go.Figure | None:
    """Tokens alive per layer (the ragged cache) per keep ratio at the longest length, and KV bytes vs length.

    All methods share a keep schedule, so each keep ratio is drawn once (from sdtp's rows when present).
    """
    if not _has(latency, "method", "keep_ratio", "length", "kv_lengths", "kv_bytes"):
        return None
    ok = _ok(latency)
    ok = ok[ok.kv_lengths.map(lambda v: v is not None and len(v) > 0)]
    if ok.empty:
        return None
    ok = ok.assign(
        model=ok["model"] if "model" in ok.columns else "model",
        _rank=ok.method.map(lambda m: 0 if m == "sdtp" else 1 + method_rank(m)),
    )
    first = ok.sort_values(["model", "keep_ratio", "length", "_rank"], kind="stable")
    first = first.drop_duplicates(["model", "keep_ratio", "length"])  # one row each, sdtp's when present
    model_of = _model_label(first)
    longest = int(first.length.max())
    styles = ratio_styles(first.keep_ratio)
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
        subplot_titles=(f"tokens alive per layer at L = {longest} tokens", "KV cache size after prefill"),
    )
    for model, ratio in sorted(set(zip(first.model, first.keep_ratio)), key=lambda k: (k[0], -k[1])):
        per_length = first[(first.model == model) & (first.keep_ratio == ratio)].sort_values("length")
        row = per_length.iloc[-1]  # its longest length (the overall longest unless that one failed)
        kv = [int(v) for v in row.kv_lengths]
        per_layer_bytes = list(row.kv_bytes_per_layer) if "kv_bytes_per_layer" in row.index else []
        per_layer_bytes = per_layer_bytes if len(per_layer_bytes) == len(kv) else [float("nan")] * len(kv)
        compression = row.length / (sum(kv) / len(kv))
        method = "baseline" if float(ratio) == 1.0 else row.method
        label = "no pruning" if float(ratio) == 1.0 else f"keep {float(ratio):g} per stage"
        name = f"{model_of(model) + ' · ' if model_of(model) else ''}{label} ({compression:.2f}× compression)"
        dash, symbol = styles[float(ratio)]
        common = dict(name=name, legendgroup=name, line=dict(color=method_colour(method), dash=dash))
        fig.add_trace(
            go.Scatter(
                x=list(range(len(kv))), y=kv, mode="lines+markers", line_shape="hv", marker=dict(symbol=symbol, size=7),
                customdata=[[b / 1024, k / row.length, int(row.length)] for b, k in zip(per_layer_bytes, kv)],
                hovertemplate=(
                    "<b>%{fullData.name}</b><br>layer %{x}: %{y} of %{customdata[2]} tokens alive"
                    " (%{customdata[1]:.1%})<br>KV of this layer %{customdata[0]:.6g} KiB<extra></extra>"
                ),
                **common,
            ),
            row=1, col=1,
        )
        compressions = [r.length / (sum(r.kv_lengths) / len(r.kv_lengths)) for r in per_length.itertuples()]
        fig.add_trace(
            go.Scatter(
                x=per_length.length.tolist(), y=(per_length.kv_bytes / MIB).tolist(), mode="lines+markers",
                marker=dict(symbol=symbol, size=8), showlegend=False,
                customdata=[[b, c] for b, c in zip(per_length.kv_bytes.tolist(), compressions)],
                hovertemplate=(
                    "<b>%{fullData.name}</b><br>length %{x} tokens<br>KV cache %{y:.6g} MiB (%{customdata[0]} bytes)"
                    "<br>compression %{customdata[1]:.4f}×<extra></extra>"
                ),
                **common,
            ),
            row=1, col=2,
        )
    fig.update_xaxes(title="decoder layer", dtick=1 if len(first.iloc[0].kv_lengths) <= 40 else None, row=1, col=1)
    fig.update_yaxes(title="tokens in the layer's KV cache", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(type="log", title=LENGTH_TITLE, tickvals=sorted(first.length.unique()), row=1, col=2)
    fig.update_yaxes(type="log", title="KV cache (MiB, log scale)", **log_ticks(first.kv_bytes / MIB), row=1, col=2)
    return _layout(fig, "The ragged KV cache: tokens alive per layer, and KV bytes (compression = original ÷ mean)", 500)


def quality_vs_compression_figure(longbench: pd.DataFrame) -> go.Figure | None:
    """Score per task vs compression ratio per method (one panel per task); the baseline is a horizontal line.

    x is the predictions' mean compression ratio (original tokens ÷ mean tokens over layers); tables without that
    column fall back to the keep ratio per stage.
    """
    if not _has(longbench, "model", "method", "keep_ratio", "task", "score"):
        return None
    rows = longbench.dropna(subset=["score"])
    if rows.empty:
        return None
    if "mean_compression_ratio" in rows.columns:
        xcol, xtitle = "mean_compression_ratio", "compression ratio (×)"
    else:
        xcol, xtitle = "keep_ratio", "keep ratio per stage"
    tasks = sorted(rows.task.unique())
    cols = min(len(tasks), 3)
    nrows = math.ceil(len(tasks) / cols)
    metric = rows.groupby("task").metric.first() if "metric" in rows.columns else pd.Series(dtype=str)
    titles = [f"{task} ({metric[task]})" if task in metric.index else task for task in tasks]
    fig = make_subplots(
        rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.08, vertical_spacing=0.08 + 0.16 / nrows
    )
    styles = ratio_styles(rows.keep_ratio)
    model_of = _model_label(rows)
    x_max = float(rows[xcol].max())
    x_min = float(rows[xcol].min())
    shown: set[str] = set()
    for i, task in enumerate(tasks):
        r, c = divmod(i, cols)
        at = rows[rows.task == task]
        for model in sorted(at.model.unique()):
            of_model = at[at.model == model]
            base = of_model[of_model.method == "baseline"]
            if not base.empty:
                name = config_label("baseline", 1.0, model_of(model))
                score = float(base.score.iloc[0])
                fig.add_trace(
                    go.Scatter(
                        x=[min(x_min, 1.0), max(x_max, 1.0)], y=[score, score], mode="lines", name=name, legendgroup=name,
                        showlegend=name not in shown, line=dict(color=method_colour("baseline"), dash="dash", width=2),
                        hovertemplate=f"<b>{html.escape(name)}</b><br>{html.escape(task)}: score {score:.4g}"
                        "<extra></extra>",
                    ),
                    row=r + 1, col=c + 1,
                )
                shown.add(name)
            for method in sorted(of_model.method.unique(), key=method_rank):
                if method == "baseline":
                    continue
                points = of_model[of_model.method == method].sort_values(xcol)
                name = f"{model_of(model)} · {method}" if model_of(model) else method
                nan = points.score * float("nan")
                delta = points["delta_vs_baseline"] if "delta_vs_baseline" in points.columns else nan
                n = points["n"] if "n" in points.columns else nan
                fig.add_trace(
                    go.Scatter(
                        x=points[xcol].tolist(), y=points.score.tolist(), mode="lines+markers", name=name,
                        legendgroup=name, showlegend=name not in shown, line=dict(color=method_colour(method)),
                        marker=dict(size=9, symbol=[styles[float(k)][1] for k in points.keep_ratio]),
                        customdata=list(zip(points.keep_ratio, points[xcol], delta, n)),
                        hovertemplate=(
                            f"<b>{html.escape(name)}</b> · {html.escape(task)}"
                            "<br>keep ratio %{customdata[0]:g} per stage<br>compression %{customdata[1]:.4f}×"
                            "<br>score %{y:.4g} (Δ vs baseline %{customdata[2]:+.4g})"
                            "<br>%{customdata[3]} samples<extra></extra>"
                        ),
                    ),
                    row=r + 1, col=c + 1,
                )
                shown.add(name)
    fig.update_xaxes(title=xtitle)
    fig.update_yaxes(title="score (0–100)")
    return _layout(fig, "Quality vs compression per task (dashed: the unpruned baseline)", 180 + 340 * nrows)


def _delta_colour(delta: float, scale: float) -> str:
    if delta is None or math.isnan(delta) or scale == 0:
        return "white"
    alpha = 0.12 + 0.55 * min(abs(delta) / scale, 1.0)
    return f"rgba(44,160,44,{alpha:.2f})" if delta > 0 else f"rgba(214,39,40,{alpha:.2f})" if delta < 0 else "white"


def score_table_figure(longbench: pd.DataFrame) -> go.Figure | None:
    """Per-task scores, one column per method × keep ratio, delta vs the baseline in brackets (green up, red down)."""
    if not _has(longbench, "model", "method", "keep_ratio", "task", "score"):
        return None
    rows = longbench.copy()
    if "delta_vs_baseline" not in rows.columns:
        base = rows[rows.method == "baseline"].set_index(["model", "task"]).score
        base = base.reindex(pd.MultiIndex.from_frame(rows[["model", "task"]])).to_numpy()
        rows["delta_vs_baseline"] = rows.score - base
    model_of = _model_label(rows)
    configs = _configs(rows)
    row_keys = sorted(rows[["model", "task"]].drop_duplicates().itertuples(index=False, name=None))
    score = rows.set_index(["model", "task", "method", "keep_ratio"]).score
    delta = rows.set_index(["model", "task", "method", "keep_ratio"]).delta_vs_baseline
    metric = rows.groupby("task").metric.first() if "metric" in rows.columns else pd.Series(dtype=str)
    task_col = [f"{model_of(m) + ' · ' if model_of(m) else ''}{t}" for m, t in row_keys]
    metric_col = [metric.get(t, "") for _, t in row_keys]
    average = len(row_keys) > 1
    if average:
        task_col.append("<b>average</b>")
        metric_col.append("")
    scale = float(rows.delta_vs_baseline.abs().max()) if rows.delta_vs_baseline.notna().any() else 0.0
    header = ["task", "metric"]
    values = [task_col, metric_col]
    fills = [["#f7f7f7"] * len(task_col), ["#f7f7f7"] * len(task_col)]
    for model, method, ratio in configs:
        header.append(config_label(method, ratio, model_of(model)))
        texts, colours, scores, deltas = [], [], [], []
        for m, t in row_keys:
            s = score.get((m, t, method, ratio), float("nan"))
            d = delta.get((m, t, method, ratio), float("nan"))
            if m != model:
                s = d = float("nan")
            scores.append(s)
            deltas.append(d)
        if average:
            valid = [(s, d) for s, d in zip(scores, deltas) if not math.isnan(s)]
            scores.append(sum(s for s, _ in valid) / len(valid) if valid else float("nan"))
            ds = [d for _, d in valid if not math.isnan(d)]
            deltas.append(sum(ds) / len(ds) if ds and len(ds) == len(valid) else float("nan"))
        for s, d in zip(scores, deltas):
            if math.isnan(s):
                texts.append("–")
            elif method == "baseline" or math.isnan(d):
                texts.append(f"{s:.2f}")
            else:
                texts.append(f"{s:.2f}<br>({d:+.2f})")
            colours.append("white" if method == "baseline" else _delta_colour(d, scale))
        values.append(texts)
        fills.append(colours)
    fig = go.Figure(
        go.Table(
            header=dict(values=[f"<b>{html.escape(h)}</b>" for h in header], fill_color="#e8e8e8", align="center",
                        font=dict(size=13), height=30),
            cells=dict(values=values, fill_color=fills, align=["left", "left"] + ["center"] * len(configs),
                       font=dict(size=13), height=42),
            columnwidth=[2.4, 1.8] + [1.4] * len(configs),
        )
    )
    return _layout(
        fig, "LongBench scores per task (Δ vs the unpruned baseline in brackets; green better, red worse)",
        60 + 50 + 44 * len(task_col) + 20,
    ).update_layout(margin=dict(l=20, r=20, t=60, b=10))


def saliency_sparsity_figure(sparsity: pd.DataFrame) -> go.Figure | None:
    """Fraction of salient tokens per prune layer, mean over samples with min–max bars, one line per split."""
    if not _has(sparsity, "layer", "sparsity"):
        return None
    rows = sparsity.dropna(subset=["sparsity"])
    if rows.empty:
        return None
    rows = rows.assign(
        model=rows["model"] if "model" in rows.columns else "model",
        split=rows["split"] if "split" in rows.columns else "all",
        tokens=rows["tokens"] if "tokens" in rows.columns else float("nan"),
    )
    stats = (
        rows.groupby(["model", "split", "layer"])
        .agg(mean=("sparsity", "mean"), low=("sparsity", "min"), high=("sparsity", "max"),
             samples=("sparsity", "count"), tokens=("tokens", "mean"))
        .reset_index()
    )
    model_of = _model_label(stats)
    fig = go.Figure()
    for i, ((model, split), at) in enumerate(stats.groupby(["model", "split"], sort=True)):
        at = at.sort_values("layer")
        prefix = model_of(model)
        fig.add_trace(
            go.Scatter(
                x=at.layer.tolist(), y=at["mean"].tolist(), name=f"{prefix} · {split}" if prefix else split,
                mode="lines+markers", marker=dict(size=8, symbol=SYMBOLS[i % len(SYMBOLS)]),
                line=dict(color=SPLIT_COLOURS.get(split, OTHER_COLOUR), dash=DASHES[i // 2 % len(DASHES)]),
                error_y=dict(type="data", symmetric=False, array=(at.high - at["mean"]).tolist(),
                             arrayminus=(at["mean"] - at.low).tolist(), thickness=1.2, width=4),
                customdata=at[["low", "high", "samples", "tokens"]].to_numpy(),
                hovertemplate=(
                    "<b>%{fullData.name}</b><br>layer %{x}<br>mean fraction salient %{y:.4f}"
                    "<br>min %{customdata[0]:.4f} · max %{customdata[1]:.4f}<br>%{customdata[2]} samples,"
                    " %{customdata[3]:.1f} tokens on average<extra></extra>"
                ),
            )
        )
    fig.update_xaxes(title="prune layer (decoder layer index)", tickvals=sorted(stats.layer.unique()))
    fig.update_yaxes(title="fraction of tokens with |saliency| > 0.1 × max", rangemode="tozero")
    title = "Saliency is sparse: fraction of salient tokens per layer (mean; bars: min–max over samples)"
    return _layout(fig, title, 460)


def pruner_losses_figure(losses: pd.DataFrame) -> go.Figure | None:
    """Pruner training curves, one panel per keep ratio and one line per loss term.

    Rows of one (epoch, step) are averaged; with many steps each line is a trailing running mean over about 1/25 of
    the steps (the hover text gives the step's own value too), since one step is one sample and per-sample losses jump.
    """
    terms = [t for t in LOSS_TERMS if losses is not None and t in losses.columns]
    if not _has(losses, "keep_ratio") or not terms:
        return None
    rows = losses.dropna(subset=terms, how="all")
    if rows.empty:
        return None
    rows = rows.assign(
        model=rows["model"] if "model" in rows.columns else "model",
        epoch=rows["epoch"] if "epoch" in rows.columns else 0,
        step=rows["step"] if "step" in rows.columns else range(len(rows)),
    )
    keys = ["model", "keep_ratio", "epoch", "step"]
    steps = rows.groupby(keys, sort=True).agg(**{t: (t, "mean") for t in terms}, rows=(terms[0], "size")).reset_index()
    panels = sorted(set(zip(steps.model, steps.keep_ratio)), key=lambda k: (k[0], -k[1]))  # as the other figures
    model_of = _model_label(steps)
    titles = [f"{model_of(m) + ' · ' if model_of(m) else ''}keep {float(r):g} per stage" for m, r in panels]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, horizontal_spacing=0.08)
    positive = all((steps[t].dropna() > 0).all() for t in terms)
    longest = 1
    for col, (model, ratio) in enumerate(panels, start=1):
        at = steps[(steps.model == model) & (steps.keep_ratio == ratio)].sort_values(["epoch", "step"])
        window = max(1, round(len(at) / 25))
        longest = max(longest, window)
        for term in terms:
            smooth = at[term].rolling(window, min_periods=1).mean()
            fig.add_trace(
                go.Scatter(
                    x=list(range(1, len(at) + 1)), y=smooth.tolist(), name=term, legendgroup=term, showlegend=col == 1,
                    mode="lines", line=dict(color=LOSS_COLOURS[term], width=2.5 if term == "total" else 1.5),
                    customdata=list(zip(at.epoch, at.step, at[term], at["rows"])),
                    hovertemplate=(
                        f"<b>{term}</b><br>epoch %{{customdata[0]}}, step %{{customdata[1]}}"
                        "<br>loss %{customdata[2]:.6g} (mean of %{customdata[3]} rows)"
                        f"<br>running mean over {window} steps %{{y:.6g}}<extra></extra>"
                    ),
                ),
                row=1, col=col,
            )
    fig.update_xaxes(title="training step (in order of epoch, step)")
    ticks = log_ticks(steps[terms].to_numpy().ravel()) if positive else {}
    fig.update_yaxes(type="log" if positive else "linear", **ticks)
    fig.update_yaxes(title="loss" + (" (log scale)" if positive else ""), row=1, col=1)
    smoothing = f" (running mean over {longest} steps)" if longest > 1 else ""
    return _layout(fig, f"Pruner training: LM, MSE and ranking losses and their total{smoothing}", 460)


# ---------------------------------------------------------------------------------------------------------------------
# Pages


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file name stem and the dashboard anchor
    section: str
    table: str
    make: Callable[[pd.DataFrame], go.Figure | None]
    about: str  # one sentence under the figure
    no_data: str  # why it may be missing


FIGURES = (
    FigureSpec(
        "prefill_latency", "Latency", "latency", prefill_latency_figure,
        "Median prefill time of a prompt of exactly L tokens; error bars span the fastest and slowest timed repeat.",
        "no successful latency repeats (latency.parquet is missing or empty: `latency.methods` / `latency.lengths` not"
        " configured, or every run failed)",
    ),
    FigureSpec(
        "speedup_vs_ideal", "Latency", "summary", speedup_vs_ideal_figure,
        "Left: each point is one (method, keep ratio, length); on the dotted line the measured speedup equals the"
        " analytic FLOPs ratio. Right: measured ÷ ideal per length (1 = all the saved FLOPs became saved time).",
        "needs the baseline and at least one pruning method in the latency runs",
    ),
    FigureSpec(
        "end2end_split", "Latency", "summary", end2end_split_figure,
        "End2End = prefill + exactly N greedy decoded tokens from the (pruned) cache; solid: prefill, striped: decode.",
        "no latency summary (latency.parquet empty)",
    ),
    FigureSpec(
        "kv_cache", "KV cache", "latency", kv_cache_figure,
        "Each prune point keeps r of the tokens reaching it, so later layers cache fewer tokens; compression ratio ="
        " original tokens ÷ mean tokens over all layers (the paper's definition). Every method shares the schedule.",
        "no successful latency repeats with per-layer KV lengths",
    ),
    FigureSpec(
        "quality_vs_compression", "Quality", "longbench", quality_vs_compression_figure,
        "LongBench score (official metric, 0–100) against the predictions' mean compression ratio, per task.",
        "no LongBench scores (longbench.parquet is missing or empty: `methods` / `longbench.tasks` not configured)",
    ),
    FigureSpec(
        "score_table", "Quality", "longbench", score_table_figure,
        "Scores per task and method × keep ratio, with the difference to the unpruned baseline in brackets.",
        "no LongBench scores (longbench.parquet is missing or empty)",
    ),
    FigureSpec(
        "saliency_sparsity", "Training", "saliency_sparsity", saliency_sparsity_figure,
        "Gradient saliency (∂T/∂x · x, T = mean logit of the answer tokens by default, reduced over the hidden dimension"
        " as config `saliency` says) at each prune layer: the fraction of tokens above 10% of the sample's"
        " largest |saliency|. Few salient tokens is what makes pruning possible.",
        "no saliency rows (saliency_sparsity.parquet is empty: `sdtp` is not among the configured methods)",
    ),
    FigureSpec(
        "pruner_losses", "Training", "pruner_losses", pruner_losses_figure,
        "Stage-2 training of the pruning modules with the LLM frozen: LM loss of the masked model, MSE to the"
        " saliency, pairwise ranking loss, and their total.",
        "no pruner training losses (pruner_losses.parquet is empty: `sdtp` not configured, or training logged none)",
    ),
)
SECTIONS = ("Latency", "KV cache", "Quality", "Training")
NAV = ("Summary", *SECTIONS, "Table", "Config", "Environment")


def read_tables(tables_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Every table in `tables_dir`; a missing or unreadable file becomes an empty frame (its figures say so)."""
    tables = {}
    for name in TABLES:
        path = Path(tables_dir) / f"{name}.parquet"
        try:
            tables[name] = pd.read_parquet(path)
        except FileNotFoundError:
            log.warning("%s: missing, its figures will say 'no data'", path)
            tables[name] = pd.DataFrame()
        except Exception as error:  # noqa: BLE001 - a broken table must not take the whole report down
            log.warning("%s: unreadable (%s), its figures will say 'no data'", path, error)
            tables[name] = pd.DataFrame()
    return tables


def make_figures(tables: dict[str, pd.DataFrame]) -> dict[str, go.Figure | None]:
    figures = {}
    for spec in FIGURES:
        table = tables.get(spec.table, pd.DataFrame())
        figures[spec.name] = spec.make(table)
        state = "no data" if figures[spec.name] is None else "ok"
        log.info("%s: %s (%d rows of %s)", spec.name, state, len(table), spec.table)
    return figures


def load_config(value: str | None) -> dict | None:
    """`--config`: a YAML/JSON file path or a JSON string; None when not given."""
    if not value:
        return None
    path = Path(value)
    if not value.lstrip().startswith("{") and path.is_file():
        import yaml

        return yaml.safe_load(path.read_text())
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--config: {value!r} is neither an existing file nor a JSON object ({error})") from error


def _environment(latency: pd.DataFrame) -> list[tuple[str, str]]:
    """What the measurements ran on (from the latency rows) and what drew this page."""
    import plotly
    import pyarrow

    import sdtp

    rows = []
    for column, label in (
        ("device", "device"), ("dtype", "dtype"), ("torch_version", "torch"),
        ("transformers_version", "transformers"), ("memory_kind", "memory measured as"),
    ):
        if _has(latency, column):
            rows.append((f"{label} (latency runs)", ", ".join(sorted(str(v) for v in latency[column].dropna().unique()))))
    if not rows:
        rows.append(("latency runs", "none: device and library versions unknown"))
    rows += [
        ("sdtp-bench (report)", sdtp.__version__),
        ("python (report)", platform.python_version()),
        ("pandas (report)", pd.__version__),
        ("pyarrow (report)", pyarrow.__version__),
        ("plotly (report)", plotly.__version__),
    ]
    return rows


SUMMARY_COLUMNS = (
    ("model", "model", None), ("method", "method", None), ("keep_ratio", "keep r", "{:g}"), ("length", "length", None),
    ("repeats", "repeats", "{:.0f}"), ("prefill_s", "prefill (s)", "{:.4g}"),
    ("prefill_spread_s", "± spread (s)", "{:.2g}"),
    ("decode_s", "decode (s)", "{:.4g}"), ("total_s", "End2End (s)", "{:.4g}"),
    ("prefill_speedup", "prefill ×", "{:.3f}"), ("ideal_speedup", "ideal ×", "{:.3f}"),
    ("measured_over_ideal", "measured ÷ ideal", "{:.3f}"), ("e2e_speedup", "End2End ×", "{:.3f}"),
    ("compression_ratio", "compression ×", "{:.3f}"), ("kv_bytes", "KV (MiB)", "mib"),
    ("peak_memory_bytes", "peak mem (MiB)", "mib"), ("status", "status", None),
)


def summary_table_html(summary: pd.DataFrame) -> str:
    if summary is None or summary.empty:
        return _no_data("no latency summary (summary.parquet is missing or empty)")
    single_model = "model" in summary.columns and summary.model.nunique() == 1
    columns = [c for c in SUMMARY_COLUMNS if c[0] in summary.columns and not (c[0] == "model" and single_model)]
    summary = summary.assign(
        _method=summary.method.map(method_rank) if "method" in summary.columns else 0,
        _ratio=-summary.keep_ratio if "keep_ratio" in summary.columns else 0,
    )
    summary = summary.sort_values([c for c in ("model", "length", "_method", "_ratio") if c in summary.columns])
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    body = []
    for _, row in summary.iterrows():
        cells = []
        for column, _, fmt in columns:
            value = row[column]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                text = "–"
            elif fmt == "mib":
                text = f"{value / MIB:.4g}"
            elif fmt:
                text = fmt.format(value)
            else:
                text = str(value)
            style = f' style="border-left: 4px solid {method_colour(value)}"' if column == "method" else ""
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        failed = ' class="failed"' if str(row.get("status", "ok")) != "ok" else ""
        body.append(f"<tr{failed}>{''.join(cells)}</tr>")
    return (
        '<div class="scroll"><table class="summary"><thead><tr>' + head + "</tr></thead><tbody>"
        + "".join(body) + "</tbody></table></div>"
    )


def _no_data(reason: str) -> str:
    return f'<div class="nodata"><b>Not configured / no data:</b> {html.escape(reason)}.</div>'


def _headlines(summary: pd.DataFrame, longbench: pd.DataFrame) -> str:
    """One card per sdtp keep ratio: speedups at the longest length and the mean LongBench delta."""
    if not _has(summary, "method", "keep_ratio", "length", "prefill_speedup"):
        return ""
    rows = _ok(summary)
    rows = rows[rows.method == "sdtp"]
    if rows.empty:
        return ""
    cards = []
    for ratio in sorted(rows.keep_ratio.unique(), reverse=True):
        at = rows[rows.keep_ratio == ratio].sort_values("length").iloc[-1]
        lines = [
            f"<div class='big'>{at.prefill_speedup:.2f}× prefill</div>",
            f"<div>FLOPs-ideal {at.ideal_speedup:.2f}× · End2End {at.get('e2e_speedup', float('nan')):.2f}×</div>",
            f"<div>compression {at.get('compression_ratio', float('nan')):.2f}× at L = {int(at.length)}</div>",
        ]
        if _has(longbench, "method", "keep_ratio", "delta_vs_baseline"):
            scores = longbench[(longbench.method == "sdtp") & (longbench.keep_ratio == ratio)]
            if scores.delta_vs_baseline.notna().any():
                lines.append(
                    f"<div>LongBench Δ {scores.delta_vs_baseline.mean():+.2f} (mean over {len(scores)} tasks)</div>"
                )
        cards.append(f"<div class='card'><div class='cardtitle'>sdtp r={float(ratio):g}</div>{''.join(lines)}</div>")
    return "<div class='cards'>" + "".join(cards) + "</div>"


HEADLINES_ABOUT = (
    "<p class='about'>SDTP at each keep ratio, at the longest measured context length: prefill and End2End speedup over"
    " the unpruned baseline, the FLOPs-ideal speedup, the cache compression, and the mean LongBench score change."
    " Every latency number is in the <a href='#table'>table</a> below the figures.</p>"
)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
       background: #fafafa; }
header { background: #2b2d42; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header .sub { opacity: 0.85; font-size: 14px; }
nav { position: sticky; top: 0; background: white; border-bottom: 1px solid #ddd; padding: 8px 32px; z-index: 10; }
nav a { margin-right: 18px; color: #2b2d42; text-decoration: none; font-weight: 600; }
main { max-width: 1400px; margin: 0 auto; padding: 8px 32px 48px 32px; }
section { margin-top: 28px; }
h2 { border-bottom: 2px solid #2b2d42; padding-bottom: 4px; }
.figure { background: white; border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px; margin: 16px 0; }
.about { color: #555; font-size: 14px; margin: 4px 8px 8px 8px; }
.nodata { background: #fff8e1; border: 1px solid #f0d98c; border-radius: 6px; padding: 12px 16px; margin: 12px 0; }
.scroll { overflow-x: auto; }
table.summary, table.kv { border-collapse: collapse; font-size: 13px; background: white; }
table.summary th, table.summary td, table.kv th, table.kv td { border: 1px solid #e3e3e3; padding: 4px 8px;
                                                               text-align: right; }
table.summary th { background: #f0f0f0; position: sticky; top: 0; }
table.summary td:nth-child(-n+2), table.kv th, table.kv td { text-align: left; }
table.summary tr.failed td { background: #fdecea; }
pre { background: white; border: 1px solid #e3e3e3; border-radius: 6px; padding: 12px; font-size: 13px;
      overflow-x: auto; }
.cards { display: flex; gap: 16px; flex-wrap: wrap; margin-top: 16px; }
.card { background: white; border: 1px solid #e3e3e3; border-left: 6px solid #d62728; border-radius: 6px;
        padding: 10px 16px; font-size: 14px; }
.cardtitle { font-weight: 700; color: #d62728; }
.card .big { font-size: 22px; font-weight: 700; margin: 2px 0; }
"""


def build_dashboard(tables: dict[str, pd.DataFrame], config: dict | None = None) -> str:
    """The whole dashboard as one HTML string; plotly.js is inlined once in <head>, no network needed."""
    from plotly.offline import get_plotlyjs

    figures = make_figures(tables)
    latency = tables.get("latency", pd.DataFrame())
    models = sorted({str(m) for t in tables.values() if "model" in t.columns for m in t["model"].dropna()})
    if not models and config:
        models = [str(config.get("model", {}).get("name", ""))]
    title = "sdtp-bench report" + (f": {', '.join(models)}" if models and models != [""] else "")
    counts = " · ".join(f"{name}: {len(tables.get(name, pd.DataFrame()))} rows" for name in TABLES)
    plot_config = {"displaylogo": False, "responsive": True}
    headlines = _headlines(tables.get("summary"), tables.get("longbench"))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<header><h1>{html.escape(title)}</h1>",
        "<div class='sub'>Saliency-driven Dynamic Token Pruning, reproduced and benchmarked · "
        f"tables: {html.escape(counts)}</div></header>",
        "<nav>" + "".join(f"<a href='#{_anchor(s)}'>{s}</a>" for s in NAV) + "</nav>",
        "<main>",
        f"<section id='{_anchor('Summary')}'><h2>Summary</h2>",
        (headlines + HEADLINES_ABOUT) if headlines else "<p class='about'>No sdtp latency runs to summarise.</p>",
        "</section>",
    ]
    for section in SECTIONS:
        parts.append(f"<section id='{_anchor(section)}'><h2>{html.escape(section)}</h2>")
        for spec in (s for s in FIGURES if s.section == section):
            figure = figures[spec.name]
            parts.append(f"<div class='figure' id='{spec.name}'>")
            if figure is None:
                parts.append(f"<h3>{html.escape(spec.name.replace('_', ' '))}</h3>{_no_data(spec.no_data)}")
            else:
                div_id = f"plot-{spec.name}"
                parts.append(figure.to_html(include_plotlyjs=False, full_html=False, div_id=div_id, config=plot_config))
            parts.append(f"<p class='about'>{html.escape(spec.about)}</p></div>")
        parts.append("</section>")
    config_text = _config_text(config)
    parts += [
        f"<section id='{_anchor('Table')}'><h2>Latency summary table</h2>",
        "<p class='about'>Medians over the successful timed repeats; speedups against the baseline of the same model and"
        " length; ideal = analytic FLOPs ratio; spread = slowest − fastest repeat. Failed runs (OOM, errors) in"
        " red.</p>",
        summary_table_html(tables.get("summary")),
        "</section>",
        f"<section id='{_anchor('Config')}'><h2>Config</h2>",
        "<p class='about'>The workflow config that produced these tables (after schema defaults).</p>",
        f"<pre>{html.escape(config_text)}</pre>" if config_text else _no_data("no config was passed (--config)"),
        "</section>",
        f"<section id='{_anchor('Environment')}'><h2>Environment</h2><table class='kv'>",
        "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _environment(latency)),
        "</table></section>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _anchor(name: str) -> str:
    return name.lower().replace(" ", "-")


def _config_text(config: dict | None) -> str:
    if not config:
        return ""
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=110)


def figure_page(spec: FigureSpec, figure: go.Figure | None) -> str:
    """One figure as a standalone page (plotly.js inline), or a short page saying why there is no figure."""
    if figure is not None:
        return figure.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False, "responsive": True})
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{spec.name}</title><style>{CSS}</style>"
        f"</head><body><main><h2>{html.escape(spec.name.replace('_', ' '))}</h2>{_no_data(spec.no_data)}</main>"
        "</body></html>"
    )


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_figures(tables: dict[str, pd.DataFrame], figures_dir: str | Path) -> list[Path]:
    """Each figure as `<figures_dir>/<name>.html` (written even when there is no data, saying so)."""
    figures = make_figures(tables)
    paths = []
    for spec in FIGURES:
        path = Path(figures_dir) / f"{spec.name}.html"
        _write_text(path, figure_page(spec, figures[spec.name]))
        paths.append(path)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables-dir", required=True, help="folder with the tables' Parquet files (results/tables)")
    parser.add_argument("--config", default=None, help="the run's config: a YAML/JSON file or a JSON string")
    parser.add_argument("--out", default=None, help="dashboard HTML file to write (results/report/index.html)")
    parser.add_argument("--figures-dir", default=None, help="folder for one standalone HTML file per figure")


def main(args: argparse.Namespace) -> int:
    if not args.out and not args.figures_dir:
        raise SystemExit("report: give --out and/or --figures-dir")
    tables = read_tables(args.tables_dir)
    if args.figures_dir:
        paths = write_figures(tables, args.figures_dir)
        log.info("wrote %d figure pages to %s", len(paths), args.figures_dir)
    if args.out:
        _write_text(Path(args.out), build_dashboard(tables, load_config(args.config)))
        log.info("wrote the dashboard to %s", args.out)
    return 0
