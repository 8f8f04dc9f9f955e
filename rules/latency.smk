rule latency:
    input:
        unpack(latency_input),
    output:
        f"{RESULTS}/latency/{{model}}/{{method}}/r{{ratio}}/L{{length}}.parquet",
    log:
        f"{RESULTS}/logs/latency/{{model}}/{{method}}/r{{ratio}}/L{{length}}.log",
    conda:
        "../envs/sdtp.yaml"
    threads: latency_threads()
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=mem_mb_of("latency"),
        runtime=runtime_of("latency"),
    params:
        settings=latency_settings,
        model_dir=model_dir_arg,
        pruner=latency_pruner_arg,
    shell:
        "python -m sdtp latency --settings {params.settings:q} {params.model_dir}"
        " --gpus {resources.gpu} {params.pruner}"
        " --method {wildcards.method} --ratio {wildcards.ratio} --length {wildcards.length} --out {output} > {log} 2>&1"
