"""The latency and KV-cache figures (`sdtp.report.figures` lists them): prefill time vs context length, the End2End
prefill/decode split, and the ragged KV cache. (Speedups next to their ideals: `sdtp.report.roofline_figures`.)

Each takes the `latency` or `summary` table and returns a Plotly figure, or None when the table holds no usable rows.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sdtp.report.style import (
    LENGTH_TITLE,
    MIB,
    apply_layout,
    config_keys,
    config_label,
    has_columns,
    log_ticks,
    method_colour,
    method_rank,
    model_label,
    ok_rows,
    ratio_styles,
)


def prefill_latency_figure(latency: pd.DataFrame) -> go.Figure | None:
    """Median prefill time vs prompt length, one line per (method, keep ratio); error bars span min–max over repeats."""
    if not has_columns(latency, "model", "method", "keep_ratio", "length", "prefill_s"):
        return None
    ok = ok_rows(latency).dropna(subset=["prefill_s"])
    if ok.empty:
        return None
    stats = (
        ok.groupby(["model", "method", "keep_ratio", "length"])
        .prefill_s.agg(median="median", low="min", high="max", repeats="count")
        .reset_index()
    )
    styles = ratio_styles(stats.keep_ratio)
    model_of = model_label(stats)
    fig = go.Figure()
    for model, method, ratio in config_keys(stats):
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
                    type="data",
                    symmetric=False,
                    array=(rows.high - rows["median"]).tolist(),
                    arrayminus=(rows["median"] - rows.low).tolist(),
                    thickness=1.2,
                    width=4,
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
    return apply_layout(fig, "Prefill latency vs context length (median; bars: min–max over repeats)", 520)


def end2end_split_figure(summary: pd.DataFrame) -> go.Figure | None:
    """End2End time (median) as stacked prefill + decode bars per configuration, one panel per context length."""
    if not has_columns(summary, "model", "method", "keep_ratio", "length", "prefill_s", "decode_s"):
        return None
    rows = ok_rows(summary).dropna(subset=["prefill_s", "decode_s"])
    if rows.empty:
        return None
    rows = rows.assign(total=rows.prefill_s + rows.decode_s)
    lengths = sorted(rows.length.unique())
    model_of = model_label(rows)
    rank = {key: i for i, key in enumerate(config_keys(rows))}
    rows = rows.assign(_order=[rank[k] for k in zip(rows.model, rows.method, rows.keep_ratio, strict=True)])
    fig = make_subplots(
        rows=1,
        cols=len(lengths),
        horizontal_spacing=0.06 if len(lengths) > 1 else 0.1,
        subplot_titles=[f"L = {length} tokens" for length in lengths],
    )
    for col, length in enumerate(lengths, start=1):
        at = rows[rows.length == length].sort_values("_order")
        labels = [config_label(m, r, model_of(mo)) for mo, m, r in zip(at.model, at.method, at.keep_ratio, strict=True)]
        colours = [method_colour(m) for m in at.method]
        speedup = at["e2e_speedup"] if "e2e_speedup" in at.columns else pd.Series(float("nan"), index=at.index)
        new_tokens = at["new_tokens"] if "new_tokens" in at.columns else pd.Series(float("nan"), index=at.index)
        custom = pd.DataFrame(
            dict(
                prefill=at.prefill_s.to_numpy(),
                decode=at.decode_s.to_numpy(),
                total=at.total.to_numpy(),
                speedup=speedup.to_numpy(),
                tokens=new_tokens.to_numpy(),
                length=at.length.to_numpy(),
            )
        ).to_numpy()
        hover = (
            "<b>%{x}</b> at %{customdata[5]} tokens<br>prefill %{customdata[0]:.6g} s<br>decode %{customdata[1]:.6g} s"
            " (%{customdata[4]} new tokens)<br>End2End %{customdata[2]:.6g} s<br>End2End speedup %{customdata[3]:.3f}×"
            "<extra>%{fullData.name}</extra>"
        )
        fig.add_trace(
            go.Bar(
                x=labels,
                y=at.prefill_s.tolist(),
                name="prefill",
                legendgroup="prefill",
                showlegend=col == 1,
                marker=dict(color=colours, line=dict(color="white", width=0.5)),
                customdata=custom,
                hovertemplate=hover,
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Bar(
                x=labels,
                y=at.decode_s.tolist(),
                name="decode",
                legendgroup="decode",
                showlegend=col == 1,
                marker=dict(
                    color=colours,
                    opacity=0.55,
                    line=dict(color="white", width=0.5),
                    pattern=dict(shape="/", fgcolor="white", fillmode="overlay", size=6),
                ),
                text=[f"{s:.2f}×" if not math.isnan(s) else "" for s in speedup.astype(float)],
                textposition="outside",
                constraintext="none",
                textfont=dict(size=11),
                cliponaxis=False,
                customdata=custom,
                hovertemplate=hover,
            ),
            row=1,
            col=col,
        )
    fig.update_layout(barmode="stack", bargap=0.25)
    fig.update_yaxes(title="End2End time (s)", row=1, col=1)
    fig.update_xaxes(tickangle=-40)
    tokens = sorted(rows["new_tokens"].dropna().unique()) if "new_tokens" in rows.columns else []
    suffix = f" (+ {', '.join(str(int(t)) for t in tokens)} decoded tokens)" if tokens else ""
    return apply_layout(fig, f"End2End time split into prefill and decode{suffix}; labels: End2End speedup", 560)


def kv_cache_figure(latency: pd.DataFrame) -> go.Figure | None:
    """Tokens alive per layer (the ragged cache) per keep ratio at the longest length, and KV bytes vs length.

    All methods share a keep schedule, so each keep ratio is drawn once (from sdtp's rows when present).
    """
    if not has_columns(latency, "method", "keep_ratio", "length", "kv_lengths", "kv_bytes"):
        return None
    ok = ok_rows(latency)
    ok = ok[ok.kv_lengths.map(lambda v: v is not None and len(v) > 0)]
    if ok.empty:
        return None
    ok = ok.assign(
        model=ok["model"] if "model" in ok.columns else "model",
        _rank=ok.method.map(lambda m: 0 if m == "sdtp" else 1 + method_rank(m)),
    )
    first = ok.sort_values(["model", "keep_ratio", "length", "_rank"], kind="stable")
    first = first.drop_duplicates(["model", "keep_ratio", "length"])  # one row each, sdtp's when present
    model_of = model_label(first)
    longest = int(first.length.max())
    styles = ratio_styles(first.keep_ratio)
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.55, 0.45],
        horizontal_spacing=0.1,
        subplot_titles=(f"tokens alive per layer at L = {longest} tokens", "KV cache size after prefill"),
    )
    for model, ratio in sorted(set(zip(first.model, first.keep_ratio, strict=True)), key=lambda k: (k[0], -k[1])):
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
                x=list(range(len(kv))),
                y=kv,
                mode="lines+markers",
                line_shape="hv",
                marker=dict(symbol=symbol, size=7),
                customdata=[
                    [b / 1024, k / row.length, int(row.length)] for b, k in zip(per_layer_bytes, kv, strict=True)
                ],
                hovertemplate=(
                    "<b>%{fullData.name}</b><br>layer %{x}: %{y} of %{customdata[2]} tokens alive"
                    " (%{customdata[1]:.1%})<br>KV of this layer %{customdata[0]:.6g} KiB<extra></extra>"
                ),
                **common,
            ),
            row=1,
            col=1,
        )
        compressions = [r.length / (sum(r.kv_lengths) / len(r.kv_lengths)) for r in per_length.itertuples()]
        fig.add_trace(
            go.Scatter(
                x=per_length.length.tolist(),
                y=(per_length.kv_bytes / MIB).tolist(),
                mode="lines+markers",
                marker=dict(symbol=symbol, size=8),
                showlegend=False,
                customdata=[[b, c] for b, c in zip(per_length.kv_bytes.tolist(), compressions, strict=True)],
                hovertemplate=(
                    "<b>%{fullData.name}</b><br>length %{x} tokens<br>KV cache %{y:.6g} MiB (%{customdata[0]} bytes)"
                    "<br>compression %{customdata[1]:.4f}×<extra></extra>"
                ),
                **common,
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title="decoder layer", dtick=1 if len(first.iloc[0].kv_lengths) <= 40 else None, row=1, col=1)
    fig.update_yaxes(title="tokens in the layer's KV cache", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(type="log", title=LENGTH_TITLE, tickvals=sorted(first.length.unique()), row=1, col=2)
    fig.update_yaxes(type="log", title="KV cache (MiB, log scale)", **log_ticks(first.kv_bytes / MIB), row=1, col=2)
    title = "The ragged KV cache: tokens alive per layer, and KV bytes (compression = original ÷ mean)"
    return apply_layout(fig, title, 500)
