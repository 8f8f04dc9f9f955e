rule predict:
    input:
        model=model_dir,
        pruner=pruner_input,
        records=f"{RESULTS}/tasks/{{task}}.jsonl",
    output:
        f"{RESULTS}/longbench/{{model}}/{{method}}/r{{ratio}}/{{task}}.jsonl",
    conda:
        "../envs/sdtp.yaml"
    log:
        f"{RESULTS}/logs/predict/{{model}}/{{method}}/r{{ratio}}/{{task}}.log",
    params:
        settings=predict_settings,
        model_dir=model_dir_arg,
        pruner=pruner_arg,
    resources:
        gpu=config["resources"]["gpu"],
    shell:
        "{SDTP} longbench-predict --settings {params.settings:q} {params.model_dir} {params.pruner}"
        " --method {wildcards.method} --ratio {wildcards.ratio} --task {wildcards.task}"
        " --records {input.records} --out {output} > {log} 2>&1"


rule score:
    input:
        f"{RESULTS}/longbench/{{model}}/{{method}}/r{{ratio}}/{{task}}.jsonl",
    output:
        f"{RESULTS}/longbench/{{model}}/{{method}}/r{{ratio}}/{{task}}.score.parquet",
    conda:
        "../envs/sdtp.yaml"
    log:
        f"{RESULTS}/logs/score/{{model}}/{{method}}/r{{ratio}}/{{task}}.log",
    shell:
        "{SDTP} longbench-score --predictions {input} --model {wildcards.model} --method {wildcards.method}"
        " --ratio {wildcards.ratio} --task {wildcards.task} --out {output} > {log} 2>&1"
