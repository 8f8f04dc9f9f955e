"""`python -m sdtp report`: the workflow's tables → Plotly figures and one self-contained HTML dashboard.

Reads `results/tables/*.parquet` (a missing or unreadable table becomes an empty one, whose figures say "no data"),
draws them with `sdtp.report.figures` and writes, atomically:
- `--out`: the dashboard (`sdtp.report.dashboard.build_dashboard`): all figures, the summary table, the config that
  produced them (`--config`) and the library versions and device of the latency rows, with plotly.js inlined once
  (no CDN: the page opens offline);
- `--figures-dir`: each figure as its own standalone HTML file (for `snakemake --report`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from sdtp.io import atomic_path
from sdtp.report.dashboard import build_dashboard, figure_page
from sdtp.report.figures import FIGURES, make_figures
from sdtp.report.tables import TABLES

log = logging.getLogger(__name__)


def read_tables(tables_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Every table in `tables_dir`; a missing or unreadable file becomes an empty frame (its figures say so)."""
    tables = {}
    for name in TABLES:
        path = Path(tables_dir) / f"{name}.parquet"
        try:
            tables[name] = pd.read_parquet(path)
        except FileNotFoundError:
            log.warning("%s: missing, its figures will say 'no data'", path)
            tables[name] = pd.DataFrame()
        except Exception as error:  # noqa: BLE001 - a broken table must not take the whole report down
            log.warning("%s: unreadable (%s), its figures will say 'no data'", path, error)
            tables[name] = pd.DataFrame()
    ruler = Path(tables_dir) / "ruler.parquet"  # only when RULER ran (ruler.tasks): its own section
    if ruler.is_file():
        tables["ruler"] = pd.read_parquet(ruler)
    return tables


def load_config(value: str | None) -> dict | None:
    """`--config`: a YAML/JSON file path or a JSON string; None when not given."""
    if not value:
        return None
    path = Path(value)
    if not value.lstrip().startswith("{") and path.is_file():
        import yaml

        return yaml.safe_load(path.read_text())
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--config: {value!r} is neither an existing file nor a JSON object ({error})") from error


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_figures(tables: dict[str, pd.DataFrame], figures_dir: str | Path) -> list[Path]:
    """Each figure as `<figures_dir>/<name>.html` (written even when there is no data, saying so)."""
    figures = make_figures(tables)
    paths = []
    for spec in FIGURES:
        path = Path(figures_dir) / f"{spec.name}.html"
        _write_text(path, figure_page(spec, figures[spec.name]))
        paths.append(path)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables-dir", required=True, help="folder with the tables' Parquet files (results/tables)")
    parser.add_argument("--config", default=None, help="the run's config: a YAML/JSON file or a JSON string")
    parser.add_argument("--out", default=None, help="dashboard HTML file to write (results/report/index.html)")
    parser.add_argument("--figures-dir", default=None, help="folder for one standalone HTML file per figure")


def main(args: argparse.Namespace) -> int:
    if not args.out and not args.figures_dir:
        raise SystemExit("report: give --out and/or --figures-dir")
    tables = read_tables(args.tables_dir)
    if args.figures_dir:
        paths = write_figures(tables, args.figures_dir)
        log.info("wrote %d figure pages to %s", len(paths), args.figures_dir)
    if args.out:
        _write_text(Path(args.out), build_dashboard(tables, load_config(args.config)))
        log.info("wrote the dashboard to %s", args.out)
    return 0
