# The model every job loads, when the workflow writes it: the demo's tiny Qwen2 (trained here), or a GGUF file
# dequantized once into a plain checkpoint (source: gguf). A hub model needs no rule (transformers fetches it).
if config["model"]["source"] == "gguf":

    rule gguf_model:
        output:
            directory(f"{RESULTS}/models/{{model}}/hf"),
        log:
            f"{RESULTS}/logs/gguf_model/{{model}}.log",
        # First of all jobs: a bad hash, file, index or architecture stops the run before any model job.
        priority: 100
        conda:
            "../envs/sdtp.yaml"
        params:
            settings=settings(model=["gguf", "dtype"]),
        shell:
            "python -m sdtp gguf-model --settings {params.settings:q} --out {output} > {log} 2>&1"

else:

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
