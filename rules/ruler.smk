# RULER (sdtp.ruler): records generated once per task x length with the model's tokenizer, the same for every method;
# then predict (every method x keep ratio) -> score (one row per sample) -> tables/ruler.parquet and its figures.
# Only when `ruler.tasks` names some; the tasks' data is checked before any job runs (rules/ruler_common.smk).
# qa_1 / qa_2 without `ruler.qa_data_dir`: their data comes from the hub (ruler_qa_data), converted to RULER's JSON.


rule ruler_essays:
    output:
        directory(f"{RESULTS}/data/ruler/essays"),
    log:
        f"{RESULTS}/logs/ruler/essays.log",
    conda:
        "../envs/sdtp.yaml"
    shell:
        "python -m sdtp ruler-generate --fetch-essays {output} > {log} 2>&1"


rule ruler_qa_data:
    output:
        f"{RESULTS}/data/ruler/qa/{{qa_dataset}}.json",
    log:
        f"{RESULTS}/logs/ruler/qa_{{qa_dataset}}.log",
    wildcard_constraints:
        qa_dataset="|".join(ruler_tasks.QA_DATASETS),
    conda:
        "../envs/sdtp.yaml"
    shell:
        "python -m sdtp ruler-generate --fetch-qa {wildcards.qa_dataset} --out {output} > {log} 2>&1"


rule ruler_generate:
    input:
        unpack(ruler_generate_input),
    output:
        f"{RESULTS}/ruler/records/{{model}}/{{task}}/L{{length}}.jsonl",
    log:
        f"{RESULTS}/logs/ruler/generate/{{model}}/{{task}}/L{{length}}.log",
    conda:
        "../envs/sdtp.yaml"
    params:
        settings=ruler_generate_settings(),
        model_dir=model_dir_arg,
        essays=ruler_essays_arg,
        qa=ruler_qa_arg,
    shell:
        "python -m sdtp ruler-generate --settings {params.settings:q} {params.model_dir} {params.essays} {params.qa}"
        " --task {wildcards.task} --length {wildcards.length} --out {output} > {log} 2>&1"


rule ruler_predict:
    input:
        unpack(pruner_input),
        model=model_dir,
        verify=verified,
        records=f"{RESULTS}/ruler/records/{{model}}/{{task}}/L{{length}}.jsonl",
    output:
        f"{RESULTS}/ruler/{{model}}/{{method}}/r{{ratio}}/{{task}}/L{{length}}.jsonl",
    log:
        f"{RESULTS}/logs/ruler/predict/{{model}}/{{method}}/r{{ratio}}/{{task}}/L{{length}}.log",
    conda:
        "../envs/sdtp.yaml"
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=ruler_predict_mem_mb,
        runtime=ruler_predict_runtime,
    params:
        settings=ruler_predict_settings,
        model_dir=model_dir_arg,
        pruner=pruner_arg,
    shell:
        "python -m sdtp ruler-predict --settings {params.settings:q} {params.model_dir} --gpus {resources.gpu}"
        " {params.pruner} --method {wildcards.method} --ratio {wildcards.ratio} --task {wildcards.task}"
        " --records {input.records} --out {output} > {log} 2>&1"


rule ruler_score:
    input:
        f"{RESULTS}/ruler/{{model}}/{{method}}/r{{ratio}}/{{task}}/L{{length}}.jsonl",
    output:
        f"{RESULTS}/ruler/{{model}}/{{method}}/r{{ratio}}/{{task}}/L{{length}}.score.parquet",
    log:
        f"{RESULTS}/logs/ruler/score/{{model}}/{{method}}/r{{ratio}}/{{task}}/L{{length}}.log",
    conda:
        "../envs/sdtp.yaml"
    shell:
        "python -m sdtp ruler-score --predictions {input} --model {wildcards.model} --method {wildcards.method}"
        " --ratio {wildcards.ratio} --out {output} > {log} 2>&1"


rule ruler_table:
    input:
        ruler_score_outputs(),
    output:
        f"{RESULTS}/tables/ruler.parquet",
    log:
        f"{RESULTS}/logs/ruler/table.log",
    conda:
        "../envs/sdtp.yaml"
    shell:
        "python -m sdtp ruler-table --scores {input} --out {output} > {log} 2>&1"


rule ruler_figures:
    input:
        f"{RESULTS}/tables/ruler.parquet",
    output:
        ruler_figure_items(),
    log:
        f"{RESULTS}/logs/report/ruler_figures.log",
    conda:
        "../envs/sdtp.yaml"
    params:
        figures_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m sdtp ruler-table --table {input} --figures-dir {params.figures_dir} > {log} 2>&1"
