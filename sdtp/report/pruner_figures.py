"""The trained pruner on held-out prompts (the `pruner_heldout` table, `sdtp.report.tables.pruner_heldout_table`).

Left: Spearman correlation of the pruner's scores with |saliency| per prune layer, one line per keep ratio, and the
context-free scorer (each token type's training percentile) dotted beside it: what a scorer that never looks at the
context already gets. Right: the share of salient tokens the pruner keeps in its top r.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sdtp.report.style import METHOD_COLOURS, OTHER_COLOUR, apply_layout, has_columns, model_label, ratio_styles

PANELS = (
    ("spearman", "Spearman(pruner, |saliency|)", 1),
    ("token_type_spearman", "Spearman(context-free scorer, |saliency|)", 1),
    ("salient_recall", "salient tokens kept in the pruner's top r", 2),
)


def pruner_heldout_figure(heldout: pd.DataFrame) -> go.Figure | None:
    """Held-out rank correlation and salient-token recall per prune layer, per keep ratio."""
    if not has_columns(heldout, "layer", "keep_ratio", "spearman", "salient_recall"):
        return None
    rows = heldout.dropna(subset=["spearman", "salient_recall"], how="all")
    if rows.empty:
        return None
    rows = rows.assign(model=rows["model"] if "model" in rows.columns else "model")
    model_of = model_label(rows)
    styles = ratio_styles(rows.keep_ratio.unique())
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("rank correlation with |saliency|", "recall of salient tokens (|saliency| > 0.1 × max)"),
        horizontal_spacing=0.1,
    )
    for (model, ratio), at in rows.groupby(["model", "keep_ratio"], sort=True):
        at = at.sort_values("layer")
        dash, symbol = styles[float(ratio)]
        prefix = f"{model_of(model)} · " if model_of(model) else ""
        samples = at.heldout_samples.iloc[0] if "heldout_samples" in at.columns else float("nan")
        for column, label, col in PANELS:
            if column not in at.columns or at[column].isna().all():
                continue
            context_free = column == "token_type_spearman"
            fig.add_trace(
                go.Scatter(
                    x=at.layer.tolist(),
                    y=at[column].tolist(),
                    name=f"{prefix}{'context-free' if context_free else 'sdtp pruner'} r={float(ratio):g}"
                    + (" · recall" if col == 2 else ""),
                    legendgroup=f"{model} {ratio}",
                    mode="lines+markers",
                    marker=dict(size=8, symbol=symbol),
                    line=dict(
                        color=OTHER_COLOUR if context_free else METHOD_COLOURS["sdtp"],
                        dash="dot" if context_free else dash,
                    ),
                    customdata=[[samples]] * len(at),
                    hovertemplate=(
                        f"<b>%{{fullData.name}}</b><br>layer %{{x}}<br>{label} %{{y:.3f}}"
                        "<br>%{customdata[0]} held-out prompts<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
    layers = sorted(rows.layer.unique())
    for col in (1, 2):
        fig.update_xaxes(title="prune layer (decoder layer index)", tickvals=layers, row=1, col=col)
    fig.update_yaxes(title="Spearman ρ (mean over held-out prompts)", range=[-1, 1], row=1, col=1)
    fig.update_yaxes(title="fraction of salient tokens kept", range=[0, 1.05], row=1, col=2)
    title = "The trained pruner on held-out prompts: ranking and recall against gradient saliency"
    return apply_layout(fig, title, 460)
