rule tables:
    input:
        latency=latency_outputs(),
        scores=score_outputs(),
        losses=training_outputs(),
        pruners=pruner_outputs(),
        sparsity=sparsity_outputs(),
        peaks=peak_outputs(),
        lm_eval=lm_eval_outputs(),
    output:
        table_outputs(),
    log:
        f"{RESULTS}/logs/tables.log",
    conda:
        "../envs/sdtp.yaml"
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m sdtp tables --latency {input.latency} --scores {input.scores} --losses {input.losses}"
        " --pruners {input.pruners}"
        " --sparsity {input.sparsity} --peaks {input.peaks}"
        " --lm-eval {input.lm_eval} --out-dir {params.out_dir} > {log} 2>&1"
