"""Small hand-made tables shaped like the demo run's, and page checks, shared by the report tests.

Used by `tests/report/` (the library: figures, dashboard) and `tests/commands/test_report_command.py` (the command).
"""

from __future__ import annotations

import re

import pandas as pd
from plotly.offline import get_plotlyjs

from sdtp.report.style import METHODS
from sdtp.report.tables import longbench_with_deltas, pruner_heldout_table, summarize_latency

MODEL = "demo-qwen2"
LAYERS = 6
PRUNE_LAYERS = [2, 3, 4]
LENGTHS = [512, 1024, 2048]
RATIOS = [0.7, 0.5]
LATENCY_METHODS = ["baseline", "sdtp", "random", "streaming", "attention"]
TASKS = ["synthetic_kv", "synthetic_2hop"]
CONFIG = {"seed": 0, "results": "results", "model": {"name": MODEL, "source": "demo"}, "keep_ratios": RATIOS}


def tokens_per_layer(length: int, ratio: float) -> list[int]:
    kept, out = length, []
    for layer in range(LAYERS):
        if ratio < 1.0 and layer in PRUNE_LAYERS:
            kept = int(kept * ratio)
        out.append(kept)
    return out


def latency_rows() -> pd.DataFrame:
    rows = []
    for method in LATENCY_METHODS:
        for ratio in [1.0] if method == "baseline" else RATIOS:
            for length in LENGTHS:
                kv = tokens_per_layer(length, ratio)
                ideal = LAYERS * length / sum(kv)
                for repeat in range(3):
                    slower = 1.1 if method == "attention" else 1
                    prefill_s = 0.01 * length / 512 / ideal * (1 + 0.05 * repeat) * slower
                    decode_s = 0.002 * 32 * (1 + 0.01 * repeat)
                    rows.append(
                        dict(
                            model=MODEL,
                            method=method,
                            keep_ratio=ratio,
                            length=length,
                            stages=0 if ratio == 1 else 3,
                            prune_layers=[] if ratio == 1 else PRUNE_LAYERS,
                            repeat=repeat,
                            new_tokens=32,
                            device="cpu (x86_64, 2 threads)",
                            dtype="float32",
                            prefill_s=prefill_s,
                            decode_s=decode_s,
                            total_s=prefill_s + decode_s,
                            peak_memory_bytes=500 * 2**20,
                            memory_kind="cpu_rss",
                            kv_lengths=kv,
                            kv_bytes_per_layer=[1024 * k for k in kv],
                            kv_bytes=1024 * sum(kv),
                            prefill_flops=1e9 * sum(kv),
                            baseline_prefill_flops=1e9 * LAYERS * length,
                            ideal_speedup=ideal,
                            compression_ratio=length / (sum(kv) / LAYERS),
                            # The roofline's inputs: 1e7 weight bytes per decode step plus 1024 KV bytes per token.
                            prefill_bytes=1e7 + 1024 * sum(kv),
                            decode_flops=31 * 2e7,
                            decode_bytes=31 * (1e7 + 1024 * sum(kv)),
                            baseline_prefill_bytes=1e7 + 1024 * LAYERS * length,
                            baseline_decode_flops=31 * 2e7,
                            baseline_decode_bytes=31 * (1e7 + 1024 * LAYERS * length),
                            torch_version="2.13.0+cpu",
                            transformers_version="5.1.0",
                            accelerate_version="1.16.0",
                            status="ok",
                        )
                    )
    return pd.DataFrame(rows)


def score_rows() -> pd.DataFrame:
    rows = []
    for t, task in enumerate(TASKS):
        for method in METHODS:
            for ratio in [1.0] if method == "baseline" else RATIOS:
                cost = {"sdtp": 2, "oracle": 1, "attention": 5}.get(method, 20)
                loss = 0.0 if method == "baseline" else cost * (1 - ratio)
                rows.append(
                    dict(
                        model=MODEL,
                        method=method,
                        keep_ratio=ratio,
                        task=task,
                        metric="qa_f1_score",
                        score=80.0 - 10 * t - loss,
                        n=50,
                        score_0_4k=80.0,
                        score_4_8k=float("nan"),
                        score_8k_plus=float("nan"),
                        mean_prompt_tokens=400.0,
                        mean_compression_ratio=1.0
                        if ratio == 1
                        else 400 / (sum(tokens_per_layer(400, ratio)) / LAYERS),
                        mean_prefill_s=0.01,
                    )
                )
    return longbench_with_deltas(pd.DataFrame(rows))


def sparsity_rows() -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(
                model=MODEL,
                split=split,
                sample=sample,
                layer=layer,
                tokens=300 + sample,
                sparsity=0.3 - 0.04 * layer + 0.01 * sample,
            )
            for split, samples in (("train", range(4)), ("heldout", range(4, 6)))
            for sample in samples
            for layer in PRUNE_LAYERS
        ]
    )


def loss_rows() -> pd.DataFrame:
    rows = []
    for ratio in RATIOS:
        for epoch in range(2):
            for step in range(5):
                for sample in range(2):
                    lm, mse, rank = 3.0 / (1 + epoch * 5 + step), 0.5 / (1 + step), 0.69 - 0.01 * step
                    rows.append(
                        dict(
                            model=MODEL,
                            keep_ratio=ratio,
                            epoch=epoch,
                            step=step,
                            sample=sample,
                            lm=lm + 0.1 * sample,
                            mse=mse,
                            rank=rank,
                            total=lm + 0.1 * sample + mse + rank,
                        )
                    )
    return pd.DataFrame(rows)


# What `python -m sdtp peak` measures on the CPU the rows above name.
PEAKS = pd.DataFrame(
    [dict(device="cpu (x86_64, 2 threads)", dtype="float32", gemm_flops_per_s=1e11, copy_bytes_per_s=2e10)]
)


def lm_eval_rows() -> pd.DataFrame:
    """lm-eval-run rows of the demo's harness task (acc, acc_norm) per method × keep ratio, with deltas."""
    from sdtp.report.tables import lm_eval_with_deltas

    rows = []
    for method in METHODS:
        for ratio in [1.0] if method == "baseline" else RATIOS:
            for metric in ("acc", "acc_norm"):
                score = 1.0 if method in ("baseline", "sdtp", "attention") else 0.25 + ratio / 2
                rows.append(
                    dict(model=MODEL, method=method, keep_ratio=ratio, task="synthetic_needle_choice",
                         subtask="synthetic_needle_choice", metric=metric, filter="none", score=score,
                         stderr=(score * (1 - score) / 99) ** 0.5, higher_is_better=True, samples=100)
                )  # fmt: skip
    return lm_eval_with_deltas(pd.DataFrame(rows))


def heldout_metas() -> list[dict]:
    """Pruner checkpoint metas as train-pruner writes them: figures keyed by layer (a string), one not finite."""
    metas = []
    for ratio in RATIOS:
        spearman = {str(layer): 0.3 + 0.1 * i + ratio / 10 for i, layer in enumerate(PRUNE_LAYERS)}
        spearman[str(PRUNE_LAYERS[-1])] = None if ratio == 0.5 else spearman[str(PRUNE_LAYERS[-1])]
        metas.append(
            dict(base_model=MODEL, keep_ratio=ratio, layers=PRUNE_LAYERS, train_samples=8, heldout_samples=4,
                 heldout_spearman=spearman,
                 heldout_salient_recall={str(layer): 0.5 + ratio / 2 for layer in PRUNE_LAYERS},
                 heldout_token_type_spearman={str(layer): 0.2 for layer in PRUNE_LAYERS})
        )  # fmt: skip
    return metas


def demo_tables() -> dict[str, pd.DataFrame]:
    """Every table the report reads, as `python -m sdtp tables` would write them for a small demo run."""
    latency = latency_rows()
    return {
        "latency": latency,
        "summary": summarize_latency(latency, PEAKS),
        "longbench": score_rows(),
        "saliency_sparsity": sparsity_rows(),
        "pruner_losses": loss_rows(),
        "pruner_heldout": pruner_heldout_table(heldout_metas()),
        "lm_eval": lm_eval_rows(),
    }


def by_name(fig) -> dict:
    return {trace.name: trace for trace in fig.data}


def configs_of(methods) -> list[str]:
    return [m if m == "baseline" else f"{m} r={r:g}" for m in methods for r in ([1.0] if m == "baseline" else RATIOS)]


PLOT_DIV = re.compile(r'<div id="plot-([a-z0-9_]+)" class="plotly-graph-div')


def without_plotlyjs(page: str) -> str:
    """plotly.js itself names cdn.plot.ly (its topojson default, unused here); check the rest of the page."""
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1, "plotly.js must be inlined exactly once"
    return page.replace(bundle, "")


def assert_offline(page: str) -> None:
    rest = without_plotlyjs(page)
    assert "cdn.plot.ly" not in rest and "https://cdn" not in rest
    assert not re.search(r"<script[^>]+src=", rest), "no external scripts"
