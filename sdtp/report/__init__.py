"""The workflow's results as tables, figures and one HTML dashboard, without any file I/O.

- `tables`: per-job rows → the aggregated tables (latency summary with speedups, LongBench deltas vs the baseline).
- `figures`: tables → Plotly figures (`FIGURES`, `make_figures`), drawn in `latency_figures` and `quality_figures`
  with the shared colours and helpers of `style`.
- `dashboard`: tables → the self-contained offline HTML dashboard and standalone figure pages, as strings.

Reading and writing files is the commands' part (`sdtp.commands.tables`, `sdtp.commands.report`).
"""
