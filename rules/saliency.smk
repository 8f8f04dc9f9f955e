rule saliency:
    input:
        model=model_dir,
        verify=verified,
        train=f"{RESULTS}/data/{{model}}/train.parquet",
    output:
        scores=f"{RESULTS}/saliency/{{model}}/scores.parquet",
        sparsity=f"{RESULTS}/saliency/{{model}}/sparsity.parquet",
    log:
        f"{RESULTS}/logs/saliency/{{model}}.log",
    conda:
        "../envs/sdtp.yaml"
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=mem_mb_of("saliency"),
        runtime=runtime_of("saliency"),
    params:
        settings=settings("seed", "model", "schedule", "saliency"),
        model_dir=model_dir_arg,
    shell:
        "python -m sdtp saliency --settings {params.settings:q} {params.model_dir}"
        " --gpus {resources.gpu} --train {input.train}"
        " --out {output.scores} --sparsity {output.sparsity} > {log} 2>&1"
