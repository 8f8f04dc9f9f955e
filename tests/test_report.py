"""Figures and the dashboard (`sdtp.report`) on small hand-made tables shaped like the demo run's."""

from __future__ import annotations

import argparse
import html.parser
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from sdtp import report
from sdtp.io import write_parquet
from sdtp.tables import longbench_with_deltas, summarize_latency

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
                    prefill_s = 0.01 * length / 512 / ideal * (1 + 0.05 * repeat) * (1.1 if method == "attention" else 1)
                    decode_s = 0.002 * 32 * (1 + 0.01 * repeat)
                    rows.append(dict(
                        model=MODEL, method=method, keep_ratio=ratio, length=length, stages=0 if ratio == 1 else 3,
                        prune_layers=[] if ratio == 1 else PRUNE_LAYERS, repeat=repeat, new_tokens=32,
                        device="cpu (x86_64, 2 threads)", dtype="float32", prefill_s=prefill_s, decode_s=decode_s,
                        total_s=prefill_s + decode_s, peak_memory_bytes=500 * 2**20, memory_kind="cpu_rss",
                        kv_lengths=kv, kv_bytes_per_layer=[1024 * k for k in kv], kv_bytes=1024 * sum(kv),
                        prefill_flops=1e9 * sum(kv), baseline_prefill_flops=1e9 * LAYERS * length, ideal_speedup=ideal,
                        compression_ratio=length / (sum(kv) / LAYERS), torch_version="2.13.0+cpu",
                        transformers_version="5.1.0", status="ok",
                    ))
    return pd.DataFrame(rows)


def score_rows() -> pd.DataFrame:
    rows = []
    for t, task in enumerate(TASKS):
        for method in report.METHODS:
            for ratio in [1.0] if method == "baseline" else RATIOS:
                loss = 0.0 if method == "baseline" else {"sdtp": 2, "oracle": 1, "attention": 5}.get(method, 20) * (1 - ratio)
                rows.append(dict(
                    model=MODEL, method=method, keep_ratio=ratio, task=task, metric="qa_f1_score",
                    score=80.0 - 10 * t - loss, n=50, score_0_4k=80.0, score_4_8k=float("nan"),
                    score_8k_plus=float("nan"), mean_prompt_tokens=400.0,
                    mean_compression_ratio=1.0 if ratio == 1 else 400 / (sum(tokens_per_layer(400, ratio)) / LAYERS),
                    mean_prefill_s=0.01,
                ))
    return longbench_with_deltas(pd.DataFrame(rows))


def sparsity_rows() -> pd.DataFrame:
    return pd.DataFrame([
        dict(model=MODEL, split=split, sample=sample, layer=layer, tokens=300 + sample,
             sparsity=0.3 - 0.04 * layer + 0.01 * sample)
        for split, samples in (("train", range(4)), ("heldout", range(4, 6)))
        for sample in samples
        for layer in PRUNE_LAYERS
    ])


def loss_rows() -> pd.DataFrame:
    rows = []
    for ratio in RATIOS:
        for epoch in range(2):
            for step in range(5):
                for sample in range(2):
                    lm, mse, rank = 3.0 / (1 + epoch * 5 + step), 0.5 / (1 + step), 0.69 - 0.01 * step
                    rows.append(dict(model=MODEL, keep_ratio=ratio, epoch=epoch, step=step, sample=sample,
                                     lm=lm + 0.1 * sample, mse=mse, rank=rank, total=lm + 0.1 * sample + mse + rank))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    latency = latency_rows()
    return {
        "latency": latency,
        "summary": summarize_latency(latency),
        "longbench": score_rows(),
        "saliency_sparsity": sparsity_rows(),
        "pruner_losses": loss_rows(),
    }


def by_name(fig) -> dict:
    return {trace.name: trace for trace in fig.data}


def configs_of(methods) -> list[str]:
    return [m if m == "baseline" else f"{m} r={r:g}" for m in methods for r in ([1.0] if m == "baseline" else RATIOS)]


# --- figures ----------------------------------------------------------------------------------------------------------


def test_prefill_latency_figure(tables):
    fig = report.prefill_latency_figure(tables["latency"])
    assert [t.name for t in fig.data] == configs_of(LATENCY_METHODS)
    trace = by_name(fig)["sdtp r=0.5"]
    assert list(trace.x) == LENGTHS
    rows = tables["latency"].query("method == 'sdtp' and keep_ratio == 0.5 and length == 1024").prefill_s
    assert trace.y[1] == pytest.approx(rows.median())
    assert trace.error_y.array[1] == pytest.approx(rows.max() - rows.median())
    assert trace.error_y.arrayminus[1] == pytest.approx(rows.median() - rows.min())
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "tokens" in fig.layout.xaxis.title.text and "(s" in fig.layout.yaxis.title.text
    assert trace.line.color == report.METHOD_COLOURS["sdtp"]
    assert by_name(fig)["sdtp r=0.7"].line.dash != trace.line.dash  # ratios differ by dash


def test_same_colour_for_a_method_in_every_figure(tables):
    figures = report.make_figures(tables)
    for fig in figures.values():
        for trace in fig.data:
            method = (trace.name or "").split(" ")[0]
            colour = getattr(getattr(trace, "line", None), "color", None)
            if method in report.METHOD_COLOURS and isinstance(colour, str):
                assert colour == report.METHOD_COLOURS[method], (trace.name, colour)


def test_speedup_vs_ideal_figure(tables):
    fig = report.speedup_vs_ideal_figure(tables["summary"])
    pruned = configs_of(LATENCY_METHODS[1:])
    names = [t.name for t in fig.data]
    assert names == [n for n in pruned for _ in range(2)] + ["ideal (measured = FLOPs ratio)"]
    summary = tables["summary"].query("method == 'random' and keep_ratio == 0.7").sort_values("length")
    scatter, per_length = [t for t in fig.data if t.name == "random r=0.7"]
    assert list(scatter.x) == pytest.approx(summary.ideal_speedup.tolist())
    assert list(scatter.y) == pytest.approx(summary.prefill_speedup.tolist())
    assert list(per_length.x) == LENGTHS
    assert list(per_length.y) == pytest.approx((summary.prefill_speedup / summary.ideal_speedup).tolist())
    ideal = fig.data[-1]
    assert list(ideal.x) == list(ideal.y)  # the y = x reference


def test_end2end_split_figure(tables):
    fig = report.end2end_split_figure(tables["summary"])
    assert [t.name for t in fig.data] == ["prefill", "decode"] * len(LENGTHS)
    assert all(t.type == "bar" for t in fig.data) and fig.layout.barmode == "stack"
    prefill, decode = fig.data[4], fig.data[5]  # L = 2048
    assert list(prefill.x) == configs_of(LATENCY_METHODS)
    summary = tables["summary"].query("length == 2048").set_index(["method", "keep_ratio"])
    assert prefill.y[0] == pytest.approx(summary.loc[("baseline", 1.0), "prefill_s"])
    assert decode.y[2] == pytest.approx(summary.loc[("sdtp", 0.5), "decode_s"])
    assert decode.text[2] == f"{summary.loc[('sdtp', 0.5), 'e2e_speedup']:.2f}×"
    assert prefill.marker.color[1] == report.METHOD_COLOURS["sdtp"]


def test_kv_cache_figure(tables):
    fig = report.kv_cache_figure(tables["latency"])
    assert len(fig.data) == 2 * 3  # per ratio (1.0, 0.7, 0.5): tokens per layer + KV bytes vs length
    names = [t.name for t in fig.data[::2]]
    compression = 2048 / (sum(tokens_per_layer(2048, 0.5)) / LAYERS)
    assert names == [
        "no pruning (1.00× compression)",
        f"keep 0.7 per stage ({2048 / (sum(tokens_per_layer(2048, 0.7)) / LAYERS):.2f}× compression)",
        f"keep 0.5 per stage ({compression:.2f}× compression)",
    ]
    per_layer, kv_bytes = fig.data[4], fig.data[5]
    assert list(per_layer.x) == list(range(LAYERS)) and list(per_layer.y) == tokens_per_layer(2048, 0.5)
    assert list(kv_bytes.x) == LENGTHS
    assert kv_bytes.y[0] == pytest.approx(1024 * sum(tokens_per_layer(512, 0.5)) / 2**20)


def test_quality_vs_compression_figure(tables):
    fig = report.quality_vs_compression_figure(tables["longbench"])
    per_task = ["baseline", "sdtp", "random", "streaming", "attention", "oracle"]
    assert [t.name for t in fig.data] == per_task * len(TASKS)
    assert [t.showlegend for t in fig.data] == [True] * 6 + [False] * 6
    scores = tables["longbench"]
    kv = scores[scores.task == "synthetic_2hop"]  # sorted tasks: synthetic_2hop first
    baseline = fig.data[0]
    assert set(baseline.y) == {kv[kv.method == "baseline"].score.iloc[0]} and baseline.line.dash == "dash"
    sdtp = fig.data[1]
    expected = kv[kv.method == "sdtp"].sort_values("mean_compression_ratio")
    assert list(sdtp.x) == pytest.approx(expected.mean_compression_ratio.tolist())
    assert list(sdtp.y) == pytest.approx(expected.score.tolist())
    assert fig.layout.xaxis.title.text.startswith("compression ratio")


def test_quality_falls_back_to_keep_ratio(tables):
    fig = report.quality_vs_compression_figure(tables["longbench"].drop(columns="mean_compression_ratio"))
    assert fig.layout.xaxis.title.text == "keep ratio per stage"
    assert sorted(fig.data[1].x) == sorted(RATIOS)


def test_score_table_figure(tables):
    fig = report.score_table_figure(tables["longbench"])
    (table,) = fig.data
    header = [re.sub("<[^>]+>", "", h) for h in table.header.values]
    assert header == ["task", "metric"] + configs_of(report.METHODS)
    cells = table.cells.values
    assert list(cells[0]) == ["synthetic_2hop", "synthetic_kv", "<b>average</b>"]
    assert cells[2][0] == "70.00"  # baseline, no delta
    random_05 = header.index("random r=0.5")
    assert cells[random_05][1] == "70.00<br>(-10.00)"
    assert table.cells.fill.color[random_05][1].startswith("rgba(214,39,40")  # red: worse than the baseline
    assert table.cells.fill.color[2][0] == "white"


def test_score_table_marks_improvements_green(tables):
    scores = tables["longbench"].copy()
    scores.loc[scores.method == "oracle", "score"] += 5
    fig = report.score_table_figure(longbench_with_deltas(scores.drop(columns="delta_vs_baseline")))
    header = [re.sub("<[^>]+>", "", h) for h in fig.data[0].header.values]
    column = header.index("oracle r=0.7")
    assert fig.data[0].cells.values[column][0] == "74.70<br>(+4.70)"
    assert fig.data[0].cells.fill.color[column][0].startswith("rgba(44,160,44")


def test_saliency_sparsity_figure(tables):
    fig = report.saliency_sparsity_figure(tables["saliency_sparsity"])
    assert [t.name for t in fig.data] == ["heldout", "train"]
    train = fig.data[1]
    assert list(train.x) == PRUNE_LAYERS
    expected = tables["saliency_sparsity"].query("split == 'train'").groupby("layer").sparsity.mean()
    assert list(train.y) == pytest.approx(expected.tolist())


def test_pruner_losses_figure(tables):
    fig = report.pruner_losses_figure(tables["pruner_losses"])
    assert [t.name for t in fig.data] == list(report.LOSS_TERMS) * 2  # two keep ratios, one panel each
    total = fig.data[0]
    assert len(total.x) == 10  # 2 epochs × 5 steps, the two samples of a step averaged
    assert [a.text for a in fig.layout.annotations] == ["keep 0.7 per stage", "keep 0.5 per stage"]
    losses = tables["pruner_losses"].query("keep_ratio == 0.7 and epoch == 0 and step == 0")
    assert total.y[0] == pytest.approx(losses.total.mean())
    assert fig.layout.yaxis.type == "log"


def test_pruner_losses_smooth_long_runs():
    """One row per sample and a global step (as train-pruner logs): 2 × 50 steps are drawn as a running mean of 4."""
    rows = pd.DataFrame([
        dict(model=MODEL, keep_ratio=0.7, epoch=i // 50, step=i + 1, sample=i % 50, lm=1.0 + (i % 2), mse=0.1,
             rank=0.5, total=1.6 + (i % 2))
        for i in range(100)
    ])
    fig = report.pruner_losses_figure(rows)
    lm = fig.data[1]
    assert lm.name == "lm" and len(lm.x) == 100 and list(lm.x[:2]) == [1, 2]
    assert lm.y[0] == 1.0 and lm.y[3] == pytest.approx(1.5)  # mean of 1, 2, 1, 2
    assert lm.customdata[3][2] == 2.0  # the step's own value is in the hover text
    assert "running mean over 4 steps" in fig.layout.title.text


EMPTY_CASES = {
    "prefill_latency_figure": "latency",
    "speedup_vs_ideal_figure": "summary",
    "end2end_split_figure": "summary",
    "kv_cache_figure": "latency",
    "quality_vs_compression_figure": "longbench",
    "score_table_figure": "longbench",
    "saliency_sparsity_figure": "saliency_sparsity",
    "pruner_losses_figure": "pruner_losses",
}


@pytest.mark.parametrize("function, table", EMPTY_CASES.items())
def test_empty_tables_give_no_figure(tables, function, table):
    make = getattr(report, function)
    assert make(pd.DataFrame()) is None  # what `tables` writes when nothing was configured
    assert make(tables[table].iloc[:0]) is None  # columns but no rows


def test_failed_runs_only_give_no_latency_figures(tables):
    oom = tables["latency"].assign(status="oom", prefill_s=float("nan"), kv_lengths=[[]] * len(tables["latency"]))
    assert report.prefill_latency_figure(oom) is None
    assert report.kv_cache_figure(oom) is None
    only_baseline = tables["summary"].query("method == 'baseline'")
    assert report.speedup_vs_ideal_figure(only_baseline) is None


# --- pages ------------------------------------------------------------------------------------------------------------

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


def test_dashboard_holds_everything_once(tables):
    page = report.build_dashboard(tables, CONFIG)
    assert_offline(page)
    assert PLOT_DIV.findall(page) == [spec.name for spec in report.FIGURES]
    assert "Not configured / no data" not in page
    assert "cpu (x86_64, 2 threads)" in page and "2.13.0+cpu" in page and "5.1.0" in page  # from the latency rows
    assert "keep_ratios:" in page and MODEL in page  # the config, as YAML
    summary_rows = re.search(r'<table class="summary">.*?</table>', page, re.S).group(0).count("<tr")
    assert summary_rows == 1 + len(tables["summary"])
    assert "sdtp r=0.5" in page  # headline card


def test_dashboard_says_no_data_for_empty_tables(tables):
    empty = {name: pd.DataFrame() for name in report.TABLES}
    page = report.build_dashboard(empty, None)
    assert_offline(page)
    assert PLOT_DIV.findall(page) == []
    assert page.count("Not configured / no data") == len(report.FIGURES) + 2  # + summary table + config
    partial = dict(tables, pruner_losses=pd.DataFrame(), saliency_sparsity=pd.DataFrame())
    page = report.build_dashboard(partial, CONFIG)
    assert PLOT_DIV.findall(page) == [s.name for s in report.FIGURES if s.section != "Training"]
    assert "pruner_losses.parquet is empty" in page


def run_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    return report.main(parser.parse_args(argv))


def write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    for name, table in tables.items():
        write_parquet(table, folder / f"{name}.parquet")
    return folder


def test_report_command_writes_dashboard_and_figures(tables, tmp_path):
    tables_dir = write_tables(dict(tables, pruner_losses=pd.DataFrame()), tmp_path / "tables")
    config_path = tmp_path / "config.yaml"
    config_path.write_text("seed: 0\nmodel: {name: demo-qwen2}\nkeep_ratios: [0.7, 0.5]\n")
    out, figures = tmp_path / "report" / "index.html", tmp_path / "report" / "figures"
    assert run_report(["--tables-dir", str(tables_dir), "--config", str(config_path), "--out", str(out),
                       "--figures-dir", str(figures)]) == 0
    page = out.read_text()
    assert_offline(page)
    assert "keep_ratios:" in page
    assert sorted(p.name for p in figures.iterdir()) == sorted(f"{s.name}.html" for s in report.FIGURES)
    standalone = (figures / "prefill_latency.html").read_text()
    assert standalone.count(get_plotlyjs()) == 1 and "<html" in standalone
    assert "Not configured / no data" in (figures / "pruner_losses.html").read_text()
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes left nothing behind
    # the config as a JSON string (what the rule passes), and a tables folder that does not exist
    assert run_report(["--tables-dir", str(tmp_path / "nowhere"), "--config", json.dumps(CONFIG), "--out", str(out)]) == 0
    assert out.read_text().count("Not configured / no data") == len(report.FIGURES) + 1


# --- a real browser ---------------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ERROR_COLLECTOR = """<script>
window.__errors = [];
function __showErrors() {
  var el = document.getElementById('js-errors');
  if (!el && document.body) { el = document.createElement('pre'); el.id = 'js-errors'; document.body.appendChild(el); }
  if (el) { el.textContent = 'JS-ERRORS:' + JSON.stringify(window.__errors) + ':END'; }
}
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); __showErrors(); });
window.addEventListener('unhandledrejection', function (e) { window.__errors.push('rejection: ' + e.reason); __showErrors(); });
var __consoleError = console.error;
console.error = function () { window.__errors.push(Array.prototype.join.call(arguments, ' ')); __showErrors(); __consoleError.apply(console, arguments); };
window.addEventListener('load', __showErrors);
</script>"""


class PlotSvgCounter(html.parser.HTMLParser):
    """Per plot div (`plotly-graph-div`), how many `<svg class="main-svg">` it holds once rendered."""

    def __init__(self):
        super().__init__()
        self.svgs: dict[str, int] = {}
        self._stack: list[str | None] = []  # per open div: the plot id it opens, else None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div":
            plot = attrs.get("id") if "plotly-graph-div" in (attrs.get("class") or "") else None
            if plot:
                self.svgs[plot] = 0
            self._stack.append(plot)
        elif tag == "svg" and "main-svg" in (attrs.get("class") or "").split():
            for plot in reversed(self._stack):
                if plot:
                    self.svgs[plot] += 1
                    break

    def handle_endtag(self, tag):
        if tag == "div" and self._stack:
            self._stack.pop()


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )


def load_in_browser(page: Path, tmp_path: Path) -> tuple[list[str], dict[str, int]]:
    """Open `page` (with the error collector injected) in headless Chromium: (JS errors, main SVGs per plot div)."""
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text().replace("<head>", "<head>" + ERROR_COLLECTOR, 1))
    result = chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], tmp_path / "profile-dom")
    match = re.search(r'<pre id="js-errors">JS-ERRORS:(.*?):END</pre>', result.stdout, re.S)
    assert match, f"Chromium returned no page (rc {result.returncode}): {result.stderr[-2000:]}"
    counter = PlotSvgCounter()
    counter.feed(result.stdout)
    return json.loads(html.unescape(match.group(1))), counter.svgs


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (`chromium` / `chromium-browser`) on PATH; "
                    "install it (apt-get install chromium) to check that the dashboard renders in a real browser")
def test_dashboard_renders_in_chromium(tables, tmp_path):
    out = tmp_path / "report" / "index.html"
    assert run_report(["--tables-dir", str(write_tables(tables, tmp_path / "tables")), "--config", json.dumps(CONFIG),
                       "--out", str(out)]) == 0
    errors, svgs = load_in_browser(out, tmp_path)
    assert errors == []
    assert sorted(svgs) == sorted(f"plot-{spec.name}" for spec in report.FIGURES)
    assert all(count >= 1 for count in svgs.values()), svgs
    screenshot = tmp_path / "report.png"
    result = chromium([f"--screenshot={screenshot}", "--window-size=1400,3000", "--virtual-time-budget=10000",
                       out.as_uri()], tmp_path / "profile-shot")
    assert screenshot.exists() and screenshot.stat().st_size > 20_000, result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on PATH")
def test_browser_check_catches_errors(tmp_path):
    """The harness itself: a page that throws is reported, and a plot div that never renders counts 0 SVGs."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><head></head><body><div id='plot-x' class='plotly-graph-div'></div>"
        "<script>Plotly.newPlot('plot-x', []);</script></body></html>"
    )
    errors, svgs = load_in_browser(page, tmp_path)
    assert errors and "Plotly" in errors[0]
    assert svgs == {"plot-x": 0}


# --- wiring -----------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_every_figure_is_a_captioned_report_item():
    rules = (ROOT / "rules" / "common.smk").read_text()  # REPORT_FIGURES lives with the other target lists
    listed = re.search(r"REPORT_FIGURES = \{(.*?)\n\}", rules, re.S).group(1)
    assert re.findall(r'^\s+"([a-z0-9_]+)":', listed, re.M) == [spec.name for spec in report.FIGURES]
    for name in [spec.name for spec in report.FIGURES] + ["dashboard", "workflow"]:
        assert (ROOT / "report" / f"{name}.rst").read_text().strip(), name


def test_cli_runs_the_report_command(tables, tmp_path):
    from sdtp.cli import main as cli_main

    out = tmp_path / "index.html"
    tables_dir = write_tables(tables, tmp_path / "tables")
    assert cli_main(["report", "--tables-dir", str(tables_dir), "--config", json.dumps(CONFIG), "--out", str(out)]) == 0
    assert PLOT_DIV.findall(out.read_text()) == [spec.name for spec in report.FIGURES]


def test_several_models_and_failed_runs(tables):
    """Two models in one table: every trace names its model; an OOM configuration shows in the table, not the plots."""
    other = {name: table.assign(model="other-model") for name, table in tables.items() if "model" in table.columns}
    both = {name: pd.concat([tables[name], other[name]], ignore_index=True) for name in other}
    oom = both["latency"].query("method == 'sdtp' and keep_ratio == 0.5 and length == 2048 and model == 'other-model'")
    both["latency"].loc[oom.index, ["status", "prefill_s", "decode_s", "total_s"]] = ["oom", math.nan, math.nan, math.nan]
    both["summary"] = summarize_latency(both["latency"])
    figures = report.make_figures(both)
    assert all(fig is not None for fig in figures.values())
    names = [t.name for t in figures["prefill_latency"].data]
    assert len(names) == 2 * 9 and "other-model · sdtp r=0.5" in names and "demo-qwen2 · baseline" in names
    assert len(figures["kv_cache"].data) == 2 * 2 * 3
    assert list(by_name(figures["prefill_latency"])["other-model · sdtp r=0.5"].x) == LENGTHS[:2]
    page = report.build_dashboard(both, CONFIG)
    assert page.count('<tr class="failed">') == 1
