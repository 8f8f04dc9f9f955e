"""Styling shared by every figure and the dashboard: method colours, keep-ratio dashes and markers, labels, helpers.

Every figure colours a method the same way (`METHOD_COLOURS`) and draws a keep ratio with the same dash and marker
(`ratio_styles`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go

from sdtp.kv_compression import method_kind, parse_method

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
# KV-cache presses (sdtp.kv_compression): a press alone and SDTP (or another scorer) + that press share its colour;
# the legend's group (`METHOD_GROUPS`) and the marker (`GROUP_SYMBOLS`) tell them apart.
PRESS_COLOURS = {
    "snapkv": "#17becf",
    "streaming_llm": "#bcbd22",
    "pyramidkv": "#e377c2",
    "tova": "#7f7f7f",
    "knorm": "#aec7e8",
    "expected_attention": "#98df8a",
    "keydiff": "#c5b0d5",
    "lagkv": "#ffbb78",
    "random": "#c49c94",
}
METHOD_GROUPS = ("baseline", "prefill pruning", "KV compression", "combined")
GROUP_SYMBOLS = {"prefill pruning": "circle", "KV compression": "diamond", "combined": "star", "baseline": "circle"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")
LOSS_TERMS = ("total", "lm", "mse", "rank")
LOSS_COLOURS = {"total": "#222222", "lm": "#1f77b4", "mse": "#ff7f0e", "rank": "#2ca02c"}
SPLIT_COLOURS = {"train": "#1f77b4", "heldout": "#ff7f0e"}
TEMPLATE = "plotly_white"
MIB = 2**20
LENGTH_TITLE = "context length (tokens, log scale)"


def method_colour(method: str) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    press = _press_of(method)
    return PRESS_COLOURS.get(press, OTHER_COLOUR) if press else OTHER_COLOUR


def _press_of(method: str) -> str | None:
    try:
        return parse_method(method).press
    except ValueError:
        return None


def method_group(method: str) -> str:
    """The legend group: baseline, prefill pruning (token pruning), KV compression (a press alone) or combined."""
    return method_kind(method)


def method_rank(method: str) -> int:
    """Display order: METHODS first, then presses alone, then combined methods."""
    if method in METHODS:
        return METHODS.index(method)
    return len(METHODS) + METHOD_GROUPS.index(method_group(method))


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


def config_keys(frame: pd.DataFrame) -> list[tuple[str, str, float]]:
    """(model, method, keep_ratio) in display order: model, then METHODS order, then keep ratio from the highest."""
    keys = frame[["model", "method", "keep_ratio"]].drop_duplicates().itertuples(index=False, name=None)
    return sorted(keys, key=lambda k: (k[0], method_rank(k[1]), k[1], -float(k[2])))


def model_label(frame: pd.DataFrame) -> Callable[[str], str | None]:
    """Label traces with the model only when the table holds more than one."""
    several = frame["model"].nunique() > 1
    return lambda model: model if several else None


def has_columns(frame: pd.DataFrame | None, *columns: str) -> bool:
    """`frame` is given, has rows and holds every one of `columns`."""
    return frame is not None and not frame.empty and all(c in frame.columns for c in columns)


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose `status` is "ok" (all rows when there is no status column)."""
    return frame[frame["status"] == "ok"] if "status" in frame.columns else frame


def apply_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    """The layout every figure shares: template, title at the top left, height, margins, legend and hover labels."""
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
