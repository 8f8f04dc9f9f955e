rule train_pruner:
    input:
        model=model_dir,
        verify=verified,
        train=f"{RESULTS}/data/{{model}}/train.parquet",
        saliency=f"{RESULTS}/saliency/{{model}}/scores.parquet",
    output:
        pruner=directory(f"{RESULTS}/pruner/{{model}}/r{{ratio}}/pruner"),
        losses=f"{RESULTS}/pruner/{{model}}/r{{ratio}}/losses.parquet",
    log:
        f"{RESULTS}/logs/train_pruner/{{model}}/r{{ratio}}.log",
    conda:
        "../envs/sdtp.yaml"
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=mem_mb_of("train_pruner"),
        runtime=runtime_of("train_pruner"),
    params:
        settings=settings("seed", "model", "schedule", "pruner"),
        model_dir=model_dir_arg,
    shell:
        "python -m sdtp train-pruner --settings {params.settings:q} {params.model_dir}"
        " --gpus {resources.gpu} --ratio {wildcards.ratio}"
        " --train {input.train} --saliency {input.saliency} --out {output.pruner} --losses {output.losses} > {log} 2>&1"
