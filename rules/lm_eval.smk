# lm-evaluation-harness tasks with pruning (sdtp.lm_eval): one job per method x keep ratio x task, only when
# `lm_eval.tasks` names some. The offline demo's local task is generated from the synthetic world.


rule lm_eval_task:
    output:
        directory(f"{RESULTS}/lm_eval/tasks/{{task}}"),
    log:
        f"{RESULTS}/logs/lm_eval/tasks/{{task}}.log",
    wildcard_constraints:
        task="|".join(LM_EVAL_DEMO_TASKS),
    conda:
        "../envs/sdtp.yaml"
    params:
        settings=settings("seed", lm_eval=["synthetic_records", "synthetic_context_words"]),
    shell:
        "python -m sdtp lm-eval-task --settings {params.settings:q} --task {wildcards.task} --out-dir {output}"
        " > {log} 2>&1"


rule lm_eval:
    input:
        unpack(pruner_input),
        unpack(lm_eval_task_input),
        model=model_dir,
        verify=verified,
    output:
        f"{RESULTS}/lm_eval/{{model}}/{{method}}/r{{ratio}}/{{task}}.parquet",
    log:
        f"{RESULTS}/logs/lm_eval/{{model}}/{{method}}/r{{ratio}}/{{task}}.log",
    conda:
        "../envs/sdtp.yaml"
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=mem_mb_of("lm_eval"),
        runtime=runtime_of("lm_eval"),
    params:
        settings=lm_eval_settings,
        model_dir=model_dir_arg,
        pruner=pruner_arg,
        include=lm_eval_include_arg,
    shell:
        "python -m sdtp lm-eval-run --settings {params.settings:q} {params.model_dir} --gpus {resources.gpu}"
        " {params.pruner} --method {wildcards.method} --ratio {wildcards.ratio} --task {wildcards.task}"
        " {params.include} --out {output} > {log} 2>&1"
