"""The self-contained offline HTML dashboard, and one standalone page per figure, as strings (the `report` command
writes them).

The dashboard holds all figures (`sdtp.report.figures.FIGURES`), headline cards for sdtp, the latency summary table,
the config that produced the tables and the library versions and device of the latency rows, with plotly.js inlined
once (no CDN: the page opens offline).
"""

from __future__ import annotations

import html
import math
import platform

import pandas as pd
import plotly.graph_objects as go

from sdtp.report.figures import FIGURES, SECTIONS, FigureSpec, make_figures
from sdtp.report.style import MIB, has_columns, method_colour, method_rank, ok_rows
from sdtp.report.tables import TABLES

NAV = ("Summary", *SECTIONS, "Table", "Config", "Environment")


def _environment(latency: pd.DataFrame) -> list[tuple[str, str]]:
    """What the measurements ran on (from the latency rows) and what drew this page."""
    import plotly
    import pyarrow

    import sdtp

    rows = []
    for column, label in (
        ("device", "device"),
        ("dtype", "dtype"),
        ("weights", "model weights"),
        ("torch_version", "torch"),
        ("transformers_version", "transformers"),
        ("accelerate_version", "accelerate"),
        ("memory_kind", "memory measured as"),
    ):
        if has_columns(latency, column):
            values = ", ".join(sorted(str(v) for v in latency[column].dropna().unique()))
            rows.append((f"{label} (latency runs)", values))
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
    ("model", "model", None),
    ("method", "method", None),
    ("keep_ratio", "keep r", "{:g}"),
    ("length", "length", None),
    ("repeats", "repeats", "{:.0f}"),
    ("prefill_s", "prefill (s)", "{:.4g}"),
    ("prefill_spread_s", "± spread (s)", "{:.2g}"),
    ("decode_s", "decode (s)", "{:.4g}"),
    ("total_s", "End2End (s)", "{:.4g}"),
    ("prefill_speedup", "prefill ×", "{:.3f}"),
    ("ideal_speedup", "ideal ×", "{:.3f}"),
    ("measured_over_ideal", "measured ÷ ideal", "{:.3f}"),
    ("decode_speedup", "decode ×", "{:.3f}"),
    ("decode_ideal_speedup", "decode ideal ×", "{:.3f}"),
    ("e2e_speedup", "End2End ×", "{:.3f}"),
    ("e2e_ideal_speedup", "End2End ideal ×", "{:.3f}"),
    ("speedup_baseline", "speedups vs", None),
    ("prefill_mfu", "prefill MFU", "{:.1%}"),
    ("decode_mbu", "decode MBU", "{:.1%}"),
    ("compression_ratio", "compression ×", "{:.3f}"),
    ("kv_bytes", "KV (MiB)", "mib"),
    ("peak_memory_bytes", "peak mem (MiB)", "mib"),
    ("status", "status", None),
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
        '<div class="scroll"><table class="summary"><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def _no_data(reason: str) -> str:
    return f'<div class="nodata"><b>Not configured / no data:</b> {html.escape(reason)}.</div>'


def _headlines(summary: pd.DataFrame, longbench: pd.DataFrame) -> str:
    """One card per sdtp keep ratio: speedups at the longest length and the mean LongBench delta."""
    if not has_columns(summary, "method", "keep_ratio", "length", "prefill_speedup"):
        return ""
    rows = ok_rows(summary)
    rows = rows[rows.method == "sdtp"]
    if rows.empty:
        return ""
    cards = []
    for ratio in sorted(rows.keep_ratio.unique(), reverse=True):
        at = rows[rows.keep_ratio == ratio].sort_values("length").iloc[-1]
        nan = float("nan")
        prefill_ideal = at.get("prefill_ideal_speedup", at.get("ideal_speedup", nan))
        lines = [
            f"<div class='big'>{at.prefill_speedup:.2f}× prefill</div>",
            f"<div>ideal {prefill_ideal:.2f}× (FLOPs)</div>",
            f"<div>decode {at.get('decode_speedup', nan):.2f}× · ideal {at.get('decode_ideal_speedup', nan):.2f}×"
            "</div>",
            f"<div>End2End {at.get('e2e_speedup', nan):.2f}× · ideal {at.get('e2e_ideal_speedup', nan):.2f}×"
            " (roofline)</div>",
            f"<div>compression {at.get('compression_ratio', float('nan')):.2f}× at L = {int(at.length)}</div>",
        ]
        if has_columns(longbench, "method", "keep_ratio", "delta_vs_baseline"):
            scores = longbench[(longbench.method == "sdtp") & (longbench.keep_ratio == ratio)]
            if scores.delta_vs_baseline.notna().any():
                lines.append(
                    f"<div>LongBench Δ {scores.delta_vs_baseline.mean():+.2f} (mean over {len(scores)} tasks)</div>"
                )
        cards.append(f"<div class='card'><div class='cardtitle'>sdtp r={float(ratio):g}</div>{''.join(lines)}</div>")
    return "<div class='cards'>" + "".join(cards) + "</div>"


HEADLINES_ABOUT = (
    "<p class='about'>SDTP at each keep ratio, at the longest measured context length: prefill, decode and End2End"
    " speedup over the unpruned baseline, each next to its own ideal (prefill: the FLOPs ratio; decode and End2End:"
    " the roofline on this device's measured peaks), the cache compression, and the mean LongBench score change."
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
        "<nav>" + "".join(f"<a href='#{_anchor(s)}'>{s}</a>" for s in _nav(tables)) + "</nav>",
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
    parts += ruler_section(tables.get("ruler"), plot_config)
    config_text = _config_text(config)
    parts += [
        f"<section id='{_anchor('Table')}'><h2>Latency summary table</h2>",
        "<p class='about'>Medians over the successful timed repeats; speedups against the baseline of the same model"
        ' and length: "paired" = the median of per-repeat ratios to a baseline timed beside each repeat in the same'
        " job, \"baseline job\" = the baseline job's median ÷ this one's; ideal = analytic FLOPs ratio (decode and"
        " End2End: the roofline on the measured peaks); spread = slowest − fastest repeat. Failed runs (OOM, errors)"
        " in red.</p>",
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


def _nav(tables: dict[str, pd.DataFrame]) -> tuple[str, ...]:
    """The navigation bar: RULER after the figure sections when there is a RULER table."""
    if tables.get("ruler") is None or tables["ruler"].empty:
        return NAV
    return (*NAV[: NAV.index("Table")], "RULER", *NAV[NAV.index("Table") :])


RULER_ABOUT = (
    "RULER (NVIDIA): synthetic long-context tasks generated from the essays and word lists at each target length, the "
    "same records for every method; greedy answers from the pruned cache, RULER's metrics (0-100). Error bars and ± "
    "are standard errors over samples; records that ran out of memory count as 0 and are counted."
)


def ruler_section(table: pd.DataFrame | None, plot_config: dict) -> list[str]:
    """The RULER section (its three figures and the per-cell table), or nothing without a RULER table."""
    from sdtp.report.ruler_figures import RULER_FIGURES

    if table is None or table.empty:
        return []
    parts = [f"<section id='{_anchor('RULER')}'><h2>RULER</h2><p class='about'>{html.escape(RULER_ABOUT)}</p>"]
    for name, figure in RULER_FIGURES.items():
        parts.append(f"<div class='figure' id='{name}'>")
        parts.append(figure(table).to_html(include_plotlyjs=False, full_html=False, div_id=f"plot-{name}",
                                           config=plot_config))  # fmt: skip
        parts.append("</div>")
    columns = ["method", "keep_ratio", "task", "max_seq_length", "score", "score_se", "n", "kv_fraction", "oom_count"]
    rows = table.sort_values(["method", "keep_ratio", "task", "max_seq_length"])[columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in rows.itertuples(index=False)
    )
    parts.append(f'<div class="scroll"><table class="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
                 "</table></div></section>")  # fmt: skip
    return parts


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3g}"
    return str(value)


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
