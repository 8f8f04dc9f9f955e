rule demo_model:
    output:
        directory(f"{RESULTS}/models/{{model}}/hf"),
    conda:
        "../envs/sdtp.yaml"
    log:
        f"{RESULTS}/logs/demo_model/{{model}}.log",
    params:
        settings=settings("seed", "demo"),
    resources:
        gpu=config["resources"]["gpu"],
    shell:
        "{SDTP} demo-model --settings {params.settings:q} --out {output} > {log} 2>&1"
