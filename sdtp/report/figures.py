"""The report's figures: which function draws which table, and `make_figures` to draw them all.

Each figure is one function that takes the DataFrame(s) read from `results/tables/*.parquet` and returns a
`plotly.graph_objects.Figure`, or None when its table holds no usable rows (the page then says so):

| function | table | shows |
|---|---|---|
| `prefill_latency_figure` | latency | median prefill time vs context length per method × keep ratio, min–max bars |
| `speedup_vs_ideal_figure` | summary | measured vs ideal speedup per phase (FLOPs for prefill, roofline otherwise) |
| `peak_fraction_figure` | summary | prefill MFU and decode MBU vs context length (share of the measured peaks) |
| `end2end_split_figure` | summary | End2End time split into prefill and decode, per length |
| `kv_cache_figure` | latency | tokens alive per layer (the ragged cache) per keep ratio, and KV bytes vs length |
| `quality_vs_compression_figure` | longbench | score per task vs KV budget per method × ratio, grouped legends |
| `score_table_figure` | longbench | per-task scores with deltas vs the baseline, coloured (the paper's Table 1) |
| `saliency_sparsity_figure` | saliency_sparsity | fraction of salient tokens per prune layer |
| `pruner_losses_figure` | pruner_losses | pruner training curves, one line per loss term |
| `pruner_heldout_figure` | pruner_heldout | held-out Spearman with saliency and salient-token recall per prune layer |
| `lm_eval_scores_figure` | lm_eval | harness score per task vs keep ratio per method, baseline as a line |

The latency and KV figures live in `sdtp.report.latency_figures` (the speedup and peak-fraction ones in
`sdtp.report.roofline_figures`), the harness's in `sdtp.report.lm_eval_figures`, the held-out pruner's in
`sdtp.report.pruner_figures`, the others in
`sdtp.report.quality_figures`; all are importable from here. Every figure colours a method the same way
(`METHOD_COLOURS`) and draws a keep ratio with the same dash and marker (`ratio_styles`, both in `sdtp.report.style`);
hover text carries the exact numbers. `FIGURES` is the list the dashboard, the standalone figure pages and the Snakemake
report follow.
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
)
from sdtp.report.lm_eval_figures import lm_eval_scores_figure
from sdtp.report.pruner_figures import pruner_heldout_figure
from sdtp.report.quality_figures import (
    pruner_losses_figure,
    quality_vs_compression_figure,
    saliency_sparsity_figure,
    score_table_figure,
)
from sdtp.report.roofline_figures import peak_fraction_figure, speedup_vs_ideal_figure

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
        "Top: each point is one (method, keep ratio, length); on the dotted line the measured speedup equals its"
        " ideal: prefill's is the analytic FLOPs ratio, decode's and End2End's the roofline (bytes and FLOPs on this"
        " device's measured peaks, `python -m sdtp peak`). Bottom: measured ÷ ideal per length (1 = ideal reached).",
        "needs the baseline and at least one pruning method in the latency runs",
    ),
    FigureSpec(
        "peak_fraction",
        "Latency",
        "summary",
        peak_fraction_figure,
        "Prefill MFU = analytic FLOPs ÷ prefill time ÷ the measured GEMM peak; decode MBU = analytic bytes moved"
        " (weights once per step, KV read and written) ÷ decode time ÷ the measured copy bandwidth. Far below 1 means"
        " the run is bound by something else (Python overhead, small kernels), and its ideal speedup is out of reach.",
        "no measured peaks for the latency rows' device (peak.parquet missing, or rows from before the roofline)",
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
        "lm_eval_scores",
        "Quality",
        "lm_eval",
        lm_eval_scores_figure,
        "lm-evaluation-harness tasks run through the pruning engine (only context tokens pruned, never the scored"
        " continuation): score per task and metric against the keep ratio per stage, ± the harness's stderr.",
        "no harness scores (lm_eval.parquet is missing or empty: `lm_eval.tasks` not configured)",
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
    FigureSpec(
        "pruner_heldout",
        "Training",
        "pruner_heldout",
        pruner_heldout_figure,
        "The trained pruner scoring prompts it never saw (train_data.heldout_samples), with the unpruned model's hidden"
        " states: Spearman correlation of its scores with |saliency| (dotted: a context-free scorer that gives each"
        " token type its mean training percentile, the bar to clear), and the share of salient tokens in its top r.",
        "no held-out figures (pruner_heldout.parquet is empty: `sdtp` not configured, or train_data.heldout_samples"
        " is 0)",
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
