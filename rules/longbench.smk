rule predict:
    input:
        unpack(pruner_input),
        model=model_dir,
        verify=verified,
        records=f"{RESULTS}/tasks/{{task}}.jsonl",
    output:
        f"{RESULTS}/longbench/{{model}}/{{method}}/r{{ratio}}/{{task}}.jsonl",
    log:
        f"{RESULTS}/logs/predict/{{model}}/{{method}}/r{{ratio}}/{{task}}.log",
    conda:
        "../envs/sdtp.yaml"
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=mem_mb_of("predict"),
        runtime=runtime_of("predict"),
    params:
        settings=predict_settings,
        model_dir=model_dir_arg,
        pruner=pruner_arg,
    shell:
        "python -m sdtp longbench-predict --settings {params.settings:q} {params.model_dir}"
        " --gpus {resources.gpu} {params.pruner}"
        " --method {wildcards.method} --ratio {wildcards.ratio} --task {wildcards.task}"
        " --records {input.records} --out {output} > {log} 2>&1"


rule score:
    input:
        f"{RESULTS}/longbench/{{model}}/{{method}}/r{{ratio}}/{{task}}.jsonl",
    output:
        f"{RESULTS}/longbench/{{model}}/{{method}}/r{{ratio}}/{{task}}.score.parquet",
    log:
        f"{RESULTS}/logs/score/{{model}}/{{method}}/r{{ratio}}/{{task}}.log",
    conda:
        "../envs/sdtp.yaml"
    shell:
        "python -m sdtp longbench-score --predictions {input} --model {wildcards.model} --method {wildcards.method}"
        " --ratio {wildcards.ratio} --task {wildcards.task} --out {output} > {log} 2>&1"
