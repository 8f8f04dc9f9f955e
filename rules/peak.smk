# The device's measured peaks (GEMM FLOP/s in the model's dtype, memory-copy bandwidth), once per device kind the
# latency jobs run on; the summary table's roofline ideals, MFU and MBU divide by them.


rule peak:
    output:
        f"{RESULTS}/peak/{{kind}}.parquet",
    log:
        f"{RESULTS}/logs/peak/{{kind}}.log",
    conda:
        "../envs/sdtp.yaml"
    threads: latency_threads()
    resources:
        gpu=config["resources"]["gpu"],
    params:
        dtypes=peak_dtypes(),
    shell:
        "python -m sdtp peak --kind {wildcards.kind} --dtypes {params.dtypes} --gpus {resources.gpu} --out {output}"
        " > {log} 2>&1"
