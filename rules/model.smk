rule demo_model:
    output:
        directory(f"{RESULTS}/models/{{model}}/hf"),
    log:
        f"{RESULTS}/logs/demo_model/{{model}}.log",
    conda:
        "../envs/sdtp.yaml"
    resources:
        gpu=config["resources"]["gpu"],
    params:
        settings=settings("seed", "demo"),
    shell:
        "python -m sdtp demo-model --settings {params.settings:q} --out {output} > {log} 2>&1"
