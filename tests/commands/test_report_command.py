"""`python -m sdtp report` (`sdtp.commands.report`): tables on disk → the dashboard and standalone figure pages."""

from __future__ import annotations

import argparse
import html.parser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs
from report_data import CONFIG, PLOT_DIV, assert_offline, demo_tables

from sdtp.commands.cli import main as cli_main
from sdtp.commands.outputs import write_parquet
from sdtp.commands.report import add_arguments, main
from sdtp.report.figures import FIGURES


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return demo_tables()


def run_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return main(parser.parse_args(argv))


def write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    for name, table in tables.items():
        write_parquet(table, folder / f"{name}.parquet")
    return folder


def test_report_command_writes_dashboard_and_figures(tables, tmp_path):
    tables_dir = write_tables(dict(tables, pruner_losses=pd.DataFrame()), tmp_path / "tables")
    config_path = tmp_path / "config.yaml"
    config_path.write_text("seed: 0\nmodel: {name: demo-qwen2}\nkeep_ratios: [0.7, 0.5]\n")
    out, figures = tmp_path / "report" / "index.html", tmp_path / "report" / "figures"
    assert (
        run_report(
            [
                "--tables-dir",
                str(tables_dir),
                "--config",
                str(config_path),
                "--out",
                str(out),
                "--figures-dir",
                str(figures),
            ]
        )
        == 0
    )
    page = out.read_text()
    assert_offline(page)
    assert "keep_ratios:" in page
    assert sorted(p.name for p in figures.iterdir()) == sorted(f"{s.name}.html" for s in FIGURES)
    standalone = (figures / "prefill_latency.html").read_text()
    assert standalone.count(get_plotlyjs()) == 1 and "<html" in standalone
    assert "Not configured / no data" in (figures / "pruner_losses.html").read_text()
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes left nothing behind
    # the config as a JSON string (what the rule passes), and a tables folder that does not exist
    nowhere = str(tmp_path / "nowhere")
    assert run_report(["--tables-dir", nowhere, "--config", json.dumps(CONFIG), "--out", str(out)]) == 0
    assert out.read_text().count("Not configured / no data") == len(FIGURES) + 1


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
window.addEventListener('unhandledrejection', function (e) {
  window.__errors.push('rejection: ' + e.reason); __showErrors();
});
var __consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, ' ')); __showErrors();
  __consoleError.apply(console, arguments);
};
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
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
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
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium (`chromium` / `chromium-browser`) on PATH; "
    "install it (apt-get install chromium) to check that the dashboard renders in a real browser",
)
def test_dashboard_renders_in_chromium(tables, tmp_path):
    out = tmp_path / "report" / "index.html"
    assert (
        run_report(
            [
                "--tables-dir",
                str(write_tables(tables, tmp_path / "tables")),
                "--config",
                json.dumps(CONFIG),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    errors, svgs = load_in_browser(out, tmp_path)
    assert errors == []
    assert sorted(svgs) == sorted(f"plot-{spec.name}" for spec in FIGURES)
    assert all(count >= 1 for count in svgs.values()), svgs
    screenshot = tmp_path / "report.png"
    result = chromium(
        [f"--screenshot={screenshot}", "--window-size=1400,3000", "--virtual-time-budget=10000", out.as_uri()],
        tmp_path / "profile-shot",
    )
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


def test_cli_runs_the_report_command(tables, tmp_path):
    out = tmp_path / "index.html"
    tables_dir = write_tables(tables, tmp_path / "tables")
    assert cli_main(["report", "--tables-dir", str(tables_dir), "--config", json.dumps(CONFIG), "--out", str(out)]) == 0
    assert PLOT_DIV.findall(out.read_text()) == [spec.name for spec in FIGURES]
