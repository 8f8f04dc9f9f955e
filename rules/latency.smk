rule latency:
    input:
        unpack(pruner_input),
        model=model_dir,
        verify=verified,
    output:
        f"{RESULTS}/latency/{{model}}/{{method}}/r{{ratio}}/L{{length}}.parquet",
    log:
        f"{RESULTS}/logs/latency/{{model}}/{{method}}/r{{ratio}}/L{{length}}.log",
    conda:
        "../envs/sdtp.yaml"
    threads: latency_threads()
    resources:
        gpu=config["resources"]["gpu"],
    params:
        settings=settings("seed", "model", "schedule", latency=["warmup", "repeats", "new_tokens"]),
        model_dir=model_dir_arg,
        pruner=pruner_arg,
    shell:
        "python -m sdtp latency --settings {params.settings:q} {params.model_dir}"
        " --gpus {resources.gpu} {params.pruner}"
        " --method {wildcards.method} --ratio {wildcards.ratio} --length {wildcards.length} --out {output} > {log} 2>&1"
