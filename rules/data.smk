rule train_data:
    input:
        model=model_dir,
    output:
        f"{RESULTS}/data/{{model}}/train.parquet",
    log:
        f"{RESULTS}/logs/train_data/{{model}}.log",
    conda:
        "../envs/sdtp.yaml"
    params:
        settings=settings("seed", "model", "train_data", longbench=["chat_template"]),
        model_dir=model_dir_arg,
    shell:
        "python -m sdtp prepare-train --settings {params.settings:q} {params.model_dir} --out {output} > {log} 2>&1"


rule task_records:
    output:
        f"{RESULTS}/tasks/{{task}}.jsonl",
    log:
        f"{RESULTS}/logs/task_records/{{task}}.log",
    conda:
        "../envs/sdtp.yaml"
    params:
        settings=settings("seed", longbench=["source", "data_dir", "max_samples", "context_words", "synthetic_records"]),
    shell:
        "python -m sdtp task-records --settings {params.settings:q} --task {wildcards.task} --out {output} > {log} 2>&1"
