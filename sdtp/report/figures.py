"""The report's figures: which function draws which table, and `make_figures` to draw them all.

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

The first four live in `sdtp.report.latency_figures`, the others in `sdtp.report.quality_figures`; all are importable
from here. Every figure colours a method the same way (`METHOD_COLOURS`) and draws a keep ratio with the same dash and
marker (`ratio_styles`, both in `sdtp.report.style`); hover text carries the exact numbers. `FIGURES` is the list the
dashboard, the standalone figure pages and the Snakemake report follow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from sdtp.report.latency_figures import (
    end2end_split_figure,
    kv_cache_figure,
    prefill_latency_figure,
    speedup_vs_ideal_figure,
)
from sdtp.report.quality_figures import (
    pruner_losses_figure,
    quality_vs_compression_figure,
    saliency_sparsity_figure,
    score_table_figure,
)

log = logging.getLogger(__name__)


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
        "prefill_latency",
        "Latency",
        "latency",
        prefill_latency_figure,
        "Median prefill time of a prompt of exactly L tokens; error bars span the fastest and slowest timed repeat.",
        "no successful latency repeats (latency.parquet is missing or empty: `latency.methods` / `latency.lengths` not"
        " configured, or every run failed)",
    ),
    FigureSpec(
        "speedup_vs_ideal",
        "Latency",
        "summary",
        speedup_vs_ideal_figure,
        "Left: each point is one (method, keep ratio, length); on the dotted line the measured speedup equals the"
        " analytic FLOPs ratio. Right: measured ÷ ideal per length (1 = all the saved FLOPs became saved time).",
        "needs the baseline and at least one pruning method in the latency runs",
    ),
    FigureSpec(
        "end2end_split",
        "Latency",
        "summary",
        end2end_split_figure,
        "End2End = prefill + exactly N greedy decoded tokens from the (pruned) cache; solid: prefill, striped: decode.",
        "no latency summary (latency.parquet empty)",
    ),
    FigureSpec(
        "kv_cache",
        "KV cache",
        "latency",
        kv_cache_figure,
        "Each prune point keeps r of the tokens reaching it, so later layers cache fewer tokens; compression ratio ="
        " original tokens ÷ mean tokens over all layers (the paper's definition). Every method shares the schedule.",
        "no successful latency repeats with per-layer KV lengths",
    ),
    FigureSpec(
        "quality_vs_compression",
        "Quality",
        "longbench",
        quality_vs_compression_figure,
        "LongBench score (official metric, 0–100) against the predictions' mean compression ratio, per task.",
        "no LongBench scores (longbench.parquet is missing or empty: `methods` / `longbench.tasks` not configured)",
    ),
    FigureSpec(
        "score_table",
        "Quality",
        "longbench",
        score_table_figure,
        "Scores per task and method × keep ratio, with the difference to the unpruned baseline in brackets.",
        "no LongBench scores (longbench.parquet is missing or empty)",
    ),
    FigureSpec(
        "saliency_sparsity",
        "Training",
        "saliency_sparsity",
        saliency_sparsity_figure,
        "Gradient saliency (∂T/∂x · x, T = mean logit of the answer tokens by default, reduced over the hidden"
        " dimension as config `saliency` says) at each prune layer: the fraction of tokens above 10% of the sample's"
        " largest |saliency|. Few salient tokens is what makes pruning possible.",
        "no saliency rows (saliency_sparsity.parquet is empty: `sdtp` is not among the configured methods)",
    ),
    FigureSpec(
        "pruner_losses",
        "Training",
        "pruner_losses",
        pruner_losses_figure,
        "Stage-2 training of the pruning modules with the LLM frozen: LM loss of the masked model, MSE to the"
        " saliency, pairwise ranking loss, and their total.",
        "no pruner training losses (pruner_losses.parquet is empty: `sdtp` not configured, or training logged none)",
    ),
)
SECTIONS = ("Latency", "KV cache", "Quality", "Training")


def make_figures(tables: dict[str, pd.DataFrame]) -> dict[str, go.Figure | None]:
    figures = {}
    for spec in FIGURES:
        table = tables.get(spec.table, pd.DataFrame())
        figures[spec.name] = spec.make(table)
        state = "no data" if figures[spec.name] is None else "ok"
        log.info("%s: %s (%d rows of %s)", spec.name, state, len(table), spec.table)
    return figures
