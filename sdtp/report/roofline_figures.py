"""The figures that put measurements next to their physical limits (`sdtp.report.figures` lists them): measured vs
ideal speedup for prefill (FLOPs ideal), decode and End2End (roofline ideals on the measured peaks), and the fraction
of peak reached (prefill MFU, decode MBU).

Each takes the `summary` table and returns a Plotly figure, or None when it holds no usable rows.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sdtp.report.style import (
    LENGTH_TITLE,
    apply_layout,
    config_keys,
    config_label,
    has_columns,
    method_colour,
    model_label,
    ok_rows,
    ratio_styles,
)

# (phase, its measured speedup column, its ideal column, what the ideal is)
PHASES = (
    ("prefill", "prefill_speedup", "prefill_ideal_speedup", "FLOPs"),
    ("decode", "decode_speedup", "decode_ideal_speedup", "roofline"),
    ("End2End", "e2e_speedup", "e2e_ideal_speedup", "roofline"),
)


def _phases(rows: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """The phases whose measured and ideal speedups the table has for at least one row (older tables: prefill only,
    under its former name `ideal_speedup`)."""
    present = []
    for phase, measured, ideal, kind in PHASES:
        if ideal not in rows.columns and ideal == "prefill_ideal_speedup" and "ideal_speedup" in rows.columns:
            rows["prefill_ideal_speedup"] = rows.ideal_speedup
        if has_columns(rows, measured, ideal) and (rows[measured].notna() & rows[ideal].notna()).any():
            present.append((phase, measured, ideal, kind))
    return present


def _configurations(rows: pd.DataFrame):
    """Per (model, method, keep ratio): the method, its rows by length, its (dash, symbol) and its legend name."""
    styles, model_of = ratio_styles(rows.keep_ratio), model_label(rows)
    for model, method, ratio in config_keys(rows):
        config = rows[(rows.model == model) & (rows.method == method) & (rows.keep_ratio == ratio)]
        name = config_label(method, ratio, model_of(model))
        yield method, config.sort_values("length"), styles[float(ratio)], name


def speedup_vs_ideal_figure(summary: pd.DataFrame) -> go.Figure | None:
    """Per phase, measured speedup vs its ideal (top, y = x is ideal) and measured ÷ ideal per length (bottom)."""
    if not has_columns(summary, "model", "method", "keep_ratio", "length", "prefill_speedup"):
        return None
    rows = ok_rows(summary)
    rows = rows[rows.method != "baseline"].copy()
    phases = _phases(rows)
    if rows.empty or not phases:
        return None
    fig = make_subplots(
        rows=2,
        cols=len(phases),
        vertical_spacing=0.16,
        horizontal_spacing=0.07,
        subplot_titles=[f"{p}: measured vs {kind}-ideal" for p, _, _, kind in phases]
        + [f"{p}: measured ÷ ideal" for p, *_ in phases],
    )
    hover = (
        "<b>%{fullData.name}</b> · %{customdata[4]}<br>length %{customdata[0]} tokens<br>measured speedup"
        " %{customdata[1]:.4f}×<br>ideal speedup %{customdata[2]:.4f}×<br>measured ÷ ideal %{customdata[3]:.4f}"
        "<extra></extra>"
    )
    for method, config, (dash, symbol), name in _configurations(rows):
        for col, (phase, measured, ideal, _) in enumerate(phases, start=1):
            at = config.dropna(subset=[measured, ideal])
            custom = at[["length", measured, ideal]].assign(ratio=at[measured] / at[ideal], phase=phase).to_numpy()
            common = dict(
                name=name,
                legendgroup=name,
                line=dict(color=method_colour(method), dash=dash),
                marker=dict(symbol=symbol, size=9),
                customdata=custom,
                hovertemplate=hover,
            )
            fig.add_trace(
                go.Scatter(
                    x=at[ideal].tolist(), y=at[measured].tolist(), mode="markers", showlegend=col == 1, **common
                ),
                row=1,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=at.length.tolist(),
                    y=(at[measured] / at[ideal]).tolist(),
                    mode="lines+markers",
                    showlegend=False,
                    **common,
                ),
                row=2,
                col=col,
            )
    for col, (phase, measured, ideal, kind) in enumerate(phases, start=1):
        values = pd.concat([rows[measured], rows[ideal]]).dropna()
        top = max(1.0, float(values.max())) * 1.08
        low = min(1.0, float(values.min())) * 0.95
        fig.add_trace(
            go.Scatter(
                x=[low, top],
                y=[low, top],
                mode="lines",
                name="ideal (measured = ideal)",
                showlegend=col == 1,
                line=dict(color="#999999", dash="dot", width=1.5),
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        fig.add_hline(y=1.0, line=dict(color="#999999", dash="dot", width=1.5), row=2, col=col)
        fig.update_xaxes(title=f"{kind}-ideal {phase} speedup (×)", range=[low, top], row=1, col=col)
        fig.update_yaxes(title=f"measured {phase} speedup (×)", range=[low, top], row=1, col=col)
        fig.update_xaxes(type="log", title=LENGTH_TITLE, tickvals=sorted(rows.length.unique()), row=2, col=col)
        fig.update_yaxes(title="measured ÷ ideal (1 = ideal reached)", row=2, col=col)
    return apply_layout(fig, "Is the speedup honest? Measured speedup vs its ideal, per phase", 820)


def peak_fraction_figure(summary: pd.DataFrame) -> go.Figure | None:
    """Prefill MFU (analytic FLOPs ÷ time ÷ measured GEMM peak) and decode MBU (analytic bytes ÷ time ÷ measured copy
    bandwidth) vs length, one line per (method, keep ratio), baseline included."""
    if not has_columns(summary, "model", "method", "keep_ratio", "length", "prefill_mfu", "decode_mbu"):
        return None
    rows = ok_rows(summary)
    rows = rows[rows.prefill_mfu.notna() | rows.decode_mbu.notna()]
    if rows.empty:
        return None
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=("prefill: model FLOPs utilisation (MFU)", "decode: memory bandwidth utilisation (MBU)"),
    )
    panels = (
        ("prefill_mfu", "prefill_tflops_per_s", "TFLOP/s", "MFU"),
        ("decode_mbu", "decode_gbytes_per_s", "GB/s", "MBU"),
    )
    for method, config, (dash, symbol), name in _configurations(rows):
        for col, (fraction, rate, unit, label) in enumerate(panels, start=1):
            rate_values = config[rate] if rate in config.columns else pd.Series(float("nan"), index=config.index)
            fig.add_trace(
                go.Scatter(
                    x=config.length.tolist(),
                    y=config[fraction].tolist(),
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    mode="lines+markers",
                    line=dict(color=method_colour(method), dash=dash),
                    marker=dict(symbol=symbol, size=8),
                    customdata=rate_values.to_numpy().reshape(-1, 1),
                    hovertemplate=(
                        f"<b>%{{fullData.name}}</b><br>length %{{x}} tokens<br>{label} %{{y:.1%}}"
                        f"<br>%{{customdata[0]:.4g}} {unit}<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
    for col in (1, 2):
        fig.update_xaxes(type="log", title=LENGTH_TITLE, tickvals=sorted(rows.length.unique()), row=1, col=col)
    fig.update_yaxes(title="fraction of the measured GEMM peak", tickformat=".0%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(
        title="fraction of the measured copy bandwidth", tickformat=".0%", rangemode="tozero", row=1, col=2
    )
    return apply_layout(fig, "Fraction of the device's measured peak reached: prefill MFU and decode MBU", 500)
