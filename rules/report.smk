# Plotly figures, one standalone HTML file each (report items for `snakemake --report`), and the one-page offline
# dashboard. Both read every table; `python -m sdtp report` says "no data" where a table is empty.

# sdtp.report.FIGURES, by file name: (report category, subcategory); captions are report/<name>.rst.
REPORT_FIGURES = {
    "prefill_latency": ("Latency", "Prefill"),
    "speedup_vs_ideal": ("Latency", "Prefill"),
    "end2end_split": ("Latency", "End2End"),
    "kv_cache": ("KV cache", "Tokens per layer"),
    "quality_vs_compression": ("Quality", "LongBench"),
    "score_table": ("Quality", "LongBench"),
    "saliency_sparsity": ("Training", "Saliency"),
    "pruner_losses": ("Training", "Pruner"),
}


def figure_outputs():
    """Every figure page, wrapped as a report item with its caption (path relative to this file)."""
    items = []  # (no line may start with `report(`: Snakemake's parser would take it for the `report:` directive)
    for name, (category, subcategory) in REPORT_FIGURES.items():
        page, caption = f"{RESULTS}/report/figures/{name}.html", f"../report/{name}.rst"
        items.append(report(page, category=category, subcategory=subcategory, caption=caption))
    return items


def report_outputs():
    return [f"{RESULTS}/report/index.html"] + [f"{RESULTS}/report/figures/{name}.html" for name in REPORT_FIGURES]


rule figures:
    input:
        table_outputs(),
    output:
        figure_outputs(),
    log:
        f"{RESULTS}/logs/report/figures.log",
    params:
        tables_dir=f"{RESULTS}/tables",
        figures_dir=f"{RESULTS}/report/figures",
    shell:
        "python -m sdtp report --tables-dir {params.tables_dir} --figures-dir {params.figures_dir} > {log} 2>&1"


rule report:
    input:
        table_outputs(),
    output:
        report(f"{RESULTS}/report/index.html", category="Dashboard", caption="../report/dashboard.rst"),
    log:
        f"{RESULTS}/logs/report/index.log",
    params:
        tables_dir=f"{RESULTS}/tables",
        config=json.dumps(config, sort_keys=True),
    shell:
        "python -m sdtp report --tables-dir {params.tables_dir} --config {params.config:q} --out {output} > {log} 2>&1"
