# Everything that is not a rule: config validation, wildcard constraints, targets and input functions.
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

RESULTS = config["results"]
# A random-weight model (latency without downloading weights) gets its own label, so its results never land on, or
# pass for, the pretrained model's. Its LongBench scores would mean nothing: it is refused for quality jobs.
RANDOM_WEIGHTS = config["model"].get("weights") == "random"
MODEL = config["model"]["name"] + ("-random-weights" if RANDOM_WEIGHTS else "")
if RANDOM_WEIGHTS and config["methods"]:
    raise WorkflowError(
        "config: model.weights is random, and LongBench scores of a random-weight model are meaningless; set "
        "`methods: []` for a latency-only run (latency.methods still runs), or use pretrained weights"
    )
BASELINE_RATIO = "1.0"


def put_interpreter_first_on_path():
    """Jobs run `python -m sdtp`: make that `python` the interpreter running Snakemake, so a virtualenv's `snakemake`
    works without activating the virtualenv (a bare `python` could be another one). With `--sdm conda` the job's own
    environment is activated on top and its `python` comes first."""
    interpreter_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[:1] != [interpreter_dir]:
        os.environ["PATH"] = os.pathsep.join([interpreter_dir, *path])


put_interpreter_first_on_path()


wildcard_constraints:
    model=r"[A-Za-z0-9_.-]+",
    method=r"baseline|sdtp|random|streaming|attention|oracle",
    ratio=r"[01]\.[0-9]+",
    length=r"[0-9]+",
    task=r"[A-Za-z0-9_-]+",
    kind=r"cpu|cuda",


def ratio_label(ratio):
    """Keep ratios as they appear in paths: 0.7 -> '0.7', 1 -> '1.0'."""
    return str(float(ratio))


RATIOS = [ratio_label(r) for r in config["keep_ratios"]]


def ratios_of(method):
    """The baseline runs once (keep ratio 1.0); every other method at each configured keep ratio."""
    return [BASELINE_RATIO] if method == "baseline" else RATIOS


def settings(*sections, **subsections):
    """The config a job reads, as one JSON string: a change reruns exactly the jobs that read it (params trigger).

    settings("seed", "model", latency=["warmup", "repeats"]) passes two whole sections and two keys of a third, so
    adding a length to `latency.lengths` adds jobs without rerunning the existing ones.
    """
    chosen = {name: config[name] for name in sections}
    chosen.update({name: {key: config[name][key] for key in keys} for name, keys in subsections.items()})
    return json.dumps(chosen, sort_keys=True)


def predict_settings(wildcards):
    """A prediction's settings; only the oracle reads `saliency` (it marks tokens as stage 1 does), so changing that
    section reruns the oracle's predictions and no other method's."""
    if wildcards.method == "oracle":
        return settings("seed", "model", "schedule", "saliency", longbench=["max_input_tokens", "chat_template"])
    return settings("seed", "model", "schedule", longbench=["max_input_tokens", "chat_template"])


def model_dir(wildcards):
    """The demo model is built by the workflow; a hub model needs no input (transformers downloads it)."""
    if config["model"]["source"] == "demo":
        return f"{RESULTS}/models/{wildcards.model}/hf"
    return []


def verify_prompt_input(wildcards):
    """The verification prompt comes from the configured training data; a random-weight model uses random ids."""
    return {} if RANDOM_WEIGHTS else {"train": f"{RESULTS}/data/{wildcards.model}/train.parquet"}


def verified(wildcards):
    """Every job that loads the model waits for the engine's verification on that model. (Its settings are the model's
    and the schedule's, which those jobs read too, plus the `verify` section: it reruns only when they would.)"""
    return f"{RESULTS}/verify/{wildcards.model}.json"


def model_dir_arg(wildcards, input):
    return f"--model-dir {input.model}" if config["model"]["source"] == "demo" else ""


def pruner_input(wildcards):
    """Only sdtp reads a trained pruner, once `verify_pruner` has checked it; other methods do not depend on it."""
    if wildcards.method == "sdtp":
        return {
            "pruner": f"{RESULTS}/pruner/{wildcards.model}/r{wildcards.ratio}/pruner",
            "pruner_verified": f"{RESULTS}/verify/{wildcards.model}/sdtp-r{wildcards.ratio}.json",
        }
    return {}


def pruner_arg(wildcards, input):
    return f"--pruner {input.pruner}" if wildcards.method == "sdtp" else ""


def latency_threads():
    """On CPU a latency job takes every core, so no other job runs beside it and skews its timing."""
    if config["resources"]["gpu"] != 0:
        return 1
    try:
        return workflow.cores or 1
    except WorkflowError:  # no --cores (e.g. `snakemake --report`): nothing is scheduled anyway
        return 1


def latency_outputs():
    return [
        f"{RESULTS}/latency/{MODEL}/{method}/r{ratio}/L{length}.parquet"
        for method in config["latency"]["methods"]
        for ratio in ratios_of(method)
        for length in config["latency"]["lengths"]
    ]


# The kind of device latency jobs run on: where `python -m sdtp peak` measures the peaks their roofline divides by.
DEVICE_KIND = "cuda" if config["resources"]["gpu"] > 0 else "cpu"


def peak_outputs():
    """The measured peaks of the latency jobs' device kind, when there are latency jobs."""
    return [f"{RESULTS}/peak/{DEVICE_KIND}.parquet"] if latency_outputs() else []


def peak_dtypes():
    """The GEMM dtypes to measure: the model's (both a CPU's and a GPU's usual ones when it is `auto`)."""
    dtype = config["model"]["dtype"]
    return "float32 bfloat16" if dtype == "auto" else dtype


def score_outputs():
    return [
        f"{RESULTS}/longbench/{MODEL}/{method}/r{ratio}/{task}.score.parquet"
        for method in config["methods"]
        for ratio in ratios_of(method)
        for task in config["longbench"]["tasks"]
    ]


def training_outputs():
    if "sdtp" not in config["methods"] + config["latency"]["methods"]:
        return []
    return [f"{RESULTS}/pruner/{MODEL}/r{ratio}/losses.parquet" for ratio in RATIOS]


def sparsity_outputs():
    return [f"{RESULTS}/saliency/{MODEL}/sparsity.parquet"] if training_outputs() else []


def table_outputs():
    return [
        f"{RESULTS}/tables/{name}.parquet"
        for name in ("latency", "summary", "longbench", "saliency_sparsity", "pruner_losses")
    ]


def final_outputs():
    return table_outputs() + report_outputs()


# sdtp.report.figures.FIGURES, by file name: (report category, subcategory); captions are report/<name>.rst.
REPORT_FIGURES = {
    "prefill_latency": ("Latency", "Prefill"),
    "speedup_vs_ideal": ("Latency", "Prefill"),
    "end2end_split": ("Latency", "End2End"),
    "kv_cache": ("KV cache", "Tokens per layer"),
    "quality_vs_compression": ("Quality", "LongBench"),
    "score_table": ("Quality", "LongBench"),
    "saliency_sparsity": ("Training", "Saliency"),
    "pruner_losses": ("Training", "Pruner"),
}


def figure_outputs():
    """Every figure page, wrapped as a report item with its caption (path relative to this file)."""
    items = []  # (no line may start with `report(`: Snakemake's parser would take it for the `report:` directive)
    for name, (category, subcategory) in REPORT_FIGURES.items():
        page, caption = f"{RESULTS}/report/figures/{name}.html", f"../report/{name}.rst"
        items.append(report(page, category=category, subcategory=subcategory, caption=caption))
    return items


def report_outputs():
    return [f"{RESULTS}/report/index.html"] + [f"{RESULTS}/report/figures/{name}.html" for name in REPORT_FIGURES]
