rule saliency:
    input:
        model=model_dir,
        train=f"{RESULTS}/data/{{model}}/train.parquet",
    output:
        scores=f"{RESULTS}/saliency/{{model}}/scores.parquet",
        sparsity=f"{RESULTS}/saliency/{{model}}/sparsity.parquet",
    conda:
        "../envs/sdtp.yaml"
    log:
        f"{RESULTS}/logs/saliency/{{model}}.log",
    params:
        settings=settings("seed", "model", "schedule", "saliency"),
        model_dir=model_dir_arg,
    resources:
        gpu=config["resources"]["gpu"],
    shell:
        "{SDTP} saliency --settings {params.settings:q} {params.model_dir} --train {input.train}"
        " --out {output.scores} --sparsity {output.sparsity} > {log} 2>&1"
