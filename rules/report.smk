# Plotly figures, one standalone HTML file each (report items for `snakemake --report`), and the one-page offline
# dashboard. Both read every table; `python -m sdtp report` says "no data" where a table is empty.


rule figures:
    input:
        table_outputs(),
    output:
        figure_outputs(),
    log:
        f"{RESULTS}/logs/report/figures.log",
    conda:
        "../envs/sdtp.yaml"
    params:
        tables_dir=lambda wildcards, input: os.path.dirname(input[0]),
        figures_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m sdtp report --tables-dir {params.tables_dir} --figures-dir {params.figures_dir} > {log} 2>&1"


rule report:
    input:
        table_outputs() + ruler_table_outputs(),
    output:
        report(f"{RESULTS}/report/index.html", category="Dashboard", caption="../report/dashboard.rst"),
    log:
        f"{RESULTS}/logs/report/index.log",
    conda:
        "../envs/sdtp.yaml"
    params:
        tables_dir=lambda wildcards, input: os.path.dirname(input[0]),
        config=json.dumps(config, sort_keys=True),
    shell:
        "python -m sdtp report --tables-dir {params.tables_dir} --config {params.config:q} --out {output} > {log} 2>&1"
