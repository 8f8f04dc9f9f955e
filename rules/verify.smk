# Before any job that loads the model measures anything: the engine checked against the masked reference on the
# configured model, dtype, attention kernel and devices. A failed check stops the workflow (see its log).


rule verify:
    input:
        unpack(verify_prompt_input),
        model=model_dir,
    output:
        f"{RESULTS}/verify/{{model}}.json",
    log:
        f"{RESULTS}/logs/verify/{{model}}.log",
    conda:
        "../envs/sdtp.yaml"
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=mem_mb_of("verify"),
        runtime=runtime_of("verify"),
    params:
        settings=settings("seed", "model", "schedule"),
        model_dir=model_dir_arg,
        ratio=config["verify"]["keep_ratio"],
        train=lambda wildcards, input: f"--train {input.train}" if "train" in input.keys() else "",
        tokens=config["verify"]["tokens"],
    shell:
        "python -m sdtp verify --settings {params.settings:q} {params.model_dir} --gpus {resources.gpu}"
        " --ratio {params.ratio} --tokens {params.tokens} {params.train} --out {output} > {log} 2>&1"


# The same checks for method sdtp, once its pruner is trained: the latency and predict jobs of sdtp wait for it.
rule verify_pruner:
    input:
        unpack(verify_prompt_input),
        model=model_dir,
        pruner=f"{RESULTS}/pruner/{{model}}/r{{ratio}}/pruner",
    output:
        f"{RESULTS}/verify/{{model}}/sdtp-r{{ratio}}.json",
    log:
        f"{RESULTS}/logs/verify/{{model}}/sdtp-r{{ratio}}.log",
    conda:
        "../envs/sdtp.yaml"
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=mem_mb_of("verify_pruner"),
        runtime=runtime_of("verify_pruner"),
    params:
        settings=settings("seed", "model", "schedule"),
        model_dir=model_dir_arg,
        tokens=config["verify"]["tokens"],
        train=lambda wildcards, input: f"--train {input.train}" if "train" in input.keys() else "",
    shell:
        "python -m sdtp verify --settings {params.settings:q} {params.model_dir} --gpus {resources.gpu}"
        " --pruner {input.pruner} --ratio {wildcards.ratio} --tokens {params.tokens} {params.train}"
        " --out {output} > {log} 2>&1"
