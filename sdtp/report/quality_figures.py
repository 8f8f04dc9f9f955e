"""The quality and training figures (`sdtp.report.figures` lists them): LongBench score vs compression and the score
table with deltas vs the baseline, saliency sparsity per prune layer, and the pruner's training losses.

Each takes the `longbench`, `saliency_sparsity` or `pruner_losses` table and returns a Plotly figure, or None when the
table holds no usable rows.
"""

from __future__ import annotations

import html
import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sdtp.report.style import (
    DASHES,
    GROUP_SYMBOLS,
    LOSS_COLOURS,
    LOSS_TERMS,
    METHOD_GROUPS,
    OTHER_COLOUR,
    SPLIT_COLOURS,
    SYMBOLS,
    apply_layout,
    config_keys,
    config_label,
    has_columns,
    log_ticks,
    method_colour,
    method_group,
    method_rank,
    model_label,
    ratio_styles,
)


def kv_fraction_column(rows: pd.DataFrame) -> tuple[str, str]:
    """(column, axis title) of the KV budget of score rows: `mean_kv_fraction` (mean KV per layer ÷ prompt tokens,
    presses included), else 1 / `mean_compression_ratio` (rows written before presses existed), else the keep ratio."""
    if "mean_kv_fraction" in rows.columns and rows.mean_kv_fraction.notna().all():
        return "mean_kv_fraction", "KV budget: mean KV per layer ÷ prompt tokens"
    if "mean_compression_ratio" in rows.columns:  # score files from before presses existed: no mean_kv_fraction
        inverse = 1.0 / rows.mean_compression_ratio
        rows["mean_kv_fraction"] = rows.mean_kv_fraction.fillna(inverse) if "mean_kv_fraction" in rows else inverse
        return "mean_kv_fraction", "KV budget: mean KV per layer ÷ prompt tokens"
    return "keep_ratio", "keep ratio per stage"


def _group_legends(fig: go.Figure, groups: list[str]) -> dict[str, str]:
    """One legend per method group (prefill pruning, KV compression, combined), stacked right of the plot, titled."""
    ids = {group: "legend" if i == 0 else f"legend{i + 1}" for i, group in enumerate(groups)}
    for i, (group, legend) in enumerate(ids.items()):
        fig.update_layout(
            {
                legend: dict(
                    title=dict(text=f"<b>{group}</b>"), x=1.02, xanchor="left", y=1 - i / len(ids), yanchor="top"
                )
            }
        )
    return ids


def quality_vs_compression_figure(longbench: pd.DataFrame) -> go.Figure | None:
    """Score per task vs KV budget, one point per method × keep ratio (one panel per task); the baseline is a
    horizontal line. The legend groups methods: prefill pruning, KV compression (kvpress presses alone) and combined
    (token pruning, then a press).

    x is the mean KV cached per layer ÷ the prompt's tokens (the SDTP paper's compression, inverted: 1 = everything
    kept), from the score rows' `mean_kv_fraction` (older tables: 1 / `mean_compression_ratio`; else the keep ratio).
    """
    if not has_columns(longbench, "model", "method", "keep_ratio", "task", "score"):
        return None
    rows = longbench.dropna(subset=["score"])
    if rows.empty:
        return None
    rows = rows.copy()
    xcol, xtitle = kv_fraction_column(rows)
    tasks = sorted(rows.task.unique())
    cols = min(len(tasks), 3)
    nrows = math.ceil(len(tasks) / cols)
    metric = rows.groupby("task").metric.first() if "metric" in rows.columns else pd.Series(dtype=str)
    titles = [f"{task} ({metric[task]})" if task in metric.index else task for task in tasks]
    fig = make_subplots(
        rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.08, vertical_spacing=0.08 + 0.16 / nrows
    )
    groups = [g for g in METHOD_GROUPS if g in set(rows.method.map(method_group)) and g != "baseline"]
    legends = _group_legends(fig, groups or ["prefill pruning"])
    first_legend = next(iter(legends.values()))
    styles = ratio_styles(rows.keep_ratio)
    model_of = model_label(rows)
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
                        x=[min(x_min, 1.0), max(x_max, 1.0)],
                        y=[score, score],
                        mode="lines",
                        name=name,
                        legend=first_legend,
                        legendgroup=name,
                        showlegend=name not in shown,
                        line=dict(color=method_colour("baseline"), dash="dash", width=2),
                        hovertemplate=f"<b>{html.escape(name)}</b><br>{html.escape(task)}: score {score:.4g}"
                        "<extra></extra>",
                    ),
                    row=r + 1,
                    col=c + 1,
                )
                shown.add(name)
            for method in sorted(of_model.method.unique(), key=method_rank):
                if method == "baseline":
                    continue
                group = method_group(method)
                points = of_model[of_model.method == method].sort_values(xcol)
                name = f"{model_of(model)} · {method}" if model_of(model) else method
                nan = points.score * float("nan")
                delta = points["delta_vs_baseline"] if "delta_vs_baseline" in points.columns else nan
                n = points["n"] if "n" in points.columns else nan
                fig.add_trace(
                    go.Scatter(
                        x=points[xcol].tolist(),
                        y=points.score.tolist(),
                        mode="lines+markers",
                        name=name,
                        legend=legends.get(group, first_legend),
                        legendgroup=name,
                        showlegend=name not in shown,
                        line=dict(color=method_colour(method), dash="dot" if group == "combined" else "solid"),
                        marker=dict(
                            size=10 if group == "prefill pruning" else 12,
                            symbol=[
                                styles[float(k)][1] if group == "prefill pruning" else GROUP_SYMBOLS[group]
                                for k in points.keep_ratio
                            ],
                        ),  # fmt: skip
                        customdata=list(zip(points.keep_ratio, points[xcol], delta, n, strict=True)),
                        hovertemplate=(
                            f"<b>{html.escape(name)}</b> ({group}) · {html.escape(task)}"
                            "<br>keep ratio %{customdata[0]:g}<br>KV budget %{customdata[1]:.4f} of the prompt"
                            "<br>score %{y:.4g} (Δ vs baseline %{customdata[2]:+.4g})"
                            "<br>%{customdata[3]} samples<extra></extra>"
                        ),
                    ),
                    row=r + 1,
                    col=c + 1,
                )
                shown.add(name)
    fig.update_xaxes(title=xtitle)
    fig.update_yaxes(title="score (0–100)")
    title = "Quality vs KV budget per task (one point per method × keep ratio; dashed: the unpruned baseline)"
    return apply_layout(fig, title, 180 + 340 * nrows)


def _delta_colour(delta: float, scale: float) -> str:
    if delta is None or math.isnan(delta) or scale == 0:
        return "white"
    alpha = 0.12 + 0.55 * min(abs(delta) / scale, 1.0)
    return f"rgba(44,160,44,{alpha:.2f})" if delta > 0 else f"rgba(214,39,40,{alpha:.2f})" if delta < 0 else "white"


def score_table_figure(longbench: pd.DataFrame) -> go.Figure | None:
    """Per-task scores, one column per method × keep ratio, delta vs the baseline in brackets (green up, red down)."""
    if not has_columns(longbench, "model", "method", "keep_ratio", "task", "score"):
        return None
    rows = longbench.copy()
    if "delta_vs_baseline" not in rows.columns:
        base = rows[rows.method == "baseline"].set_index(["model", "task"]).score
        base = base.reindex(pd.MultiIndex.from_frame(rows[["model", "task"]])).to_numpy()
        rows["delta_vs_baseline"] = rows.score - base
    model_of = model_label(rows)
    configs = config_keys(rows)
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
            valid = [(s, d) for s, d in zip(scores, deltas, strict=True) if not math.isnan(s)]
            scores.append(sum(s for s, _ in valid) / len(valid) if valid else float("nan"))
            ds = [d for _, d in valid if not math.isnan(d)]
            deltas.append(sum(ds) / len(ds) if ds and len(ds) == len(valid) else float("nan"))
        for s, d in zip(scores, deltas, strict=True):
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
            header=dict(
                values=[f"<b>{html.escape(h)}</b>" for h in header],
                fill_color="#e8e8e8",
                align="center",
                font=dict(size=13),
                height=30,
            ),
            cells=dict(
                values=values,
                fill_color=fills,
                align=["left", "left"] + ["center"] * len(configs),
                font=dict(size=13),
                height=42,
            ),
            columnwidth=[2.4, 1.8] + [1.4] * len(configs),
        )
    )
    return apply_layout(
        fig,
        "LongBench scores per task (Δ vs the unpruned baseline in brackets; green better, red worse)",
        60 + 50 + 44 * len(task_col) + 20,
    ).update_layout(margin=dict(l=20, r=20, t=60, b=10))


def saliency_sparsity_figure(sparsity: pd.DataFrame) -> go.Figure | None:
    """Fraction of salient tokens per prune layer, mean over samples with min–max bars, one line per split."""
    if not has_columns(sparsity, "layer", "sparsity"):
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
        .agg(
            mean=("sparsity", "mean"),
            low=("sparsity", "min"),
            high=("sparsity", "max"),
            samples=("sparsity", "count"),
            tokens=("tokens", "mean"),
        )
        .reset_index()
    )
    model_of = model_label(stats)
    fig = go.Figure()
    for i, ((model, split), at) in enumerate(stats.groupby(["model", "split"], sort=True)):
        at = at.sort_values("layer")
        prefix = model_of(model)
        fig.add_trace(
            go.Scatter(
                x=at.layer.tolist(),
                y=at["mean"].tolist(),
                name=f"{prefix} · {split}" if prefix else split,
                mode="lines+markers",
                marker=dict(size=8, symbol=SYMBOLS[i % len(SYMBOLS)]),
                line=dict(color=SPLIT_COLOURS.get(split, OTHER_COLOUR), dash=DASHES[i // 2 % len(DASHES)]),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(at.high - at["mean"]).tolist(),
                    arrayminus=(at["mean"] - at.low).tolist(),
                    thickness=1.2,
                    width=4,
                ),
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
    return apply_layout(fig, title, 460)


def pruner_losses_figure(losses: pd.DataFrame) -> go.Figure | None:
    """Pruner training curves, one panel per keep ratio and one line per loss term.

    Rows of one (epoch, step) are averaged; with many steps each line is a trailing running mean over about 1/25 of
    the steps (the hover text gives the step's own value too), since one step is one sample and per-sample losses jump.
    """
    terms = [t for t in LOSS_TERMS if losses is not None and t in losses.columns]
    if not has_columns(losses, "keep_ratio") or not terms:
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
    # as the other figures
    panels = sorted(set(zip(steps.model, steps.keep_ratio, strict=True)), key=lambda k: (k[0], -k[1]))
    model_of = model_label(steps)
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
                    x=list(range(1, len(at) + 1)),
                    y=smooth.tolist(),
                    name=term,
                    legendgroup=term,
                    showlegend=col == 1,
                    mode="lines",
                    line=dict(color=LOSS_COLOURS[term], width=2.5 if term == "total" else 1.5),
                    customdata=list(zip(at.epoch, at.step, at[term], at["rows"], strict=True)),
                    hovertemplate=(
                        f"<b>{term}</b><br>epoch %{{customdata[0]}}, step %{{customdata[1]}}"
                        "<br>loss %{customdata[2]:.6g} (mean of %{customdata[3]} rows)"
                        f"<br>running mean over {window} steps %{{y:.6g}}<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title="training step (in order of epoch, step)")
    ticks = log_ticks(steps[terms].to_numpy().ravel()) if positive else {}
    fig.update_yaxes(type="log" if positive else "linear", **ticks)
    fig.update_yaxes(title="loss" + (" (log scale)" if positive else ""), row=1, col=1)
    smoothing = f" (running mean over {longest} steps)" if longest > 1 else ""
    return apply_layout(fig, f"Pruner training: LM, MSE and ranking losses and their total{smoothing}", 460)
