# Everything that is not a rule: config validation, wildcard constraints, targets and input functions.
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from sdtp import job_resources, lm_eval_resources
from sdtp.longbench.tasks import get_task

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
    # kvpress-<press> (config: kvpress:<press>) and <scorer>+<press>: sdtp.kv_compression's methods, as in paths
    method=r"(baseline|sdtp|random|streaming|attention|oracle)(\+[a-z_]+)?|kvpress-[a-z_]+",
    ratio=r"[01]\.[0-9]+",
    length=r"[0-9]+",
    task=r"[A-Za-z0-9_-]+",
    kind=r"cpu|cuda",


def ratio_label(ratio):
    """Keep ratios as they appear in paths: 0.7 -> '0.7', 1 -> '1.0'."""
    return str(float(ratio))


RATIOS = [ratio_label(r) for r in config["keep_ratios"]]


SCORERS = ("baseline", "sdtp", "random", "streaming", "attention", "oracle")


def scorer_of(method):
    """The token-pruning part of a method, in either form: sdtp+snapkv -> sdtp, kvpress:snapkv -> baseline."""
    return "baseline" if method.startswith(("kvpress:", "kvpress-")) else method.split("+")[0]


def has_press(method):
    """kvpress:<press> and <scorer>+<press> (sdtp.kv_compression) compress the KV cache with a kvpress press."""
    return method.startswith(("kvpress:", "kvpress-")) or "+" in method


def method_path(method):
    """A method's name in result paths: kvpress:snapkv -> kvpress-snapkv (colons are not portable in file names)."""
    return method.replace("kvpress:", "kvpress-")


# The model the jobs load is a directory the workflow writes (the demo model, trained here; a GGUF file, dequantized
# once), or, for source hub, whatever model.id names (transformers fetches it).
BUILT_MODEL = config["model"]["source"] in ("demo", "gguf")


def check_gguf_config():
    """source: gguf: the model.gguf section complete, the gguf package importable, and a local model.gguf.path an
    existing GGUF of a supported architecture (its header only: cheap). A package's wheel is checked by its job."""
    import importlib.util

    if config["model"]["source"] != "gguf":
        return
    from sdtp.gguf_model import GgufSource, GgufSourceError, local_gguf

    if config["model"]["id"] is not None:
        raise WorkflowError(
            "config: model.id is for source hub; with source gguf the checkpoint is written under "
            f"{RESULTS}/models/<name>/hf from model.gguf: remove model.id"
        )
    if importlib.util.find_spec("gguf") is None:
        raise WorkflowError(
            f"config: model.source is gguf, which needs the `gguf` package (a dependency of this project) in "
            f"{sys.executable}: reinstall with `pip install -e .`"
        )
    try:
        source = GgufSource.from_dict(config["model"]["gguf"])
        if source.path:
            local_gguf(source)
    except (ValueError, GgufSourceError) as error:
        raise WorkflowError(f"config: {error}") from None


check_gguf_config()


def check_kvpress_config():
    """A kvpress method needs the [kvpress] extra in the interpreter that runs the jobs (this one): fail before any
    job. (importlib finds kvpress without importing it, so parsing stays fast.)"""
    import importlib.util

    pressed = sorted({m for m in config["methods"] + config["latency"]["methods"] if has_press(m)})
    spec = importlib.util.find_spec("kvpress") if pressed else None
    if pressed and (spec is None or spec.origin is None):
        raise WorkflowError(
            f"config: methods {', '.join(pressed)} need NVIDIA kvpress, which is not installed for {sys.executable}; "
            "install the extra with `pip install -e '.[kvpress]'` (or remove those methods)"
        )


check_kvpress_config()


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
    if has_press(wildcards.method):  # only press jobs read (and rerun on) the kvpress section
        return settings("seed", "model", "schedule", "kvpress", longbench=["max_input_tokens", "chat_template"])
    return settings("seed", "model", "schedule", longbench=["max_input_tokens", "chat_template"])


def model_dir(wildcards):
    """The demo and gguf models are built by the workflow; a hub model needs no input (transformers downloads it)."""
    if BUILT_MODEL:
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
    return f"--model-dir {input.model}" if BUILT_MODEL else ""


def pruner_input(wildcards):
    """Only sdtp (and sdtp+<press>) reads a trained pruner, once `verify_pruner` has checked it; other methods do not
    depend on it."""
    if scorer_of(wildcards.method) == "sdtp":
        return {
            "pruner": f"{RESULTS}/pruner/{wildcards.model}/r{wildcards.ratio}/pruner",
            "pruner_verified": f"{RESULTS}/verify/{wildcards.model}/sdtp-r{wildcards.ratio}.json",
        }
    return {}


def pruner_arg(wildcards, input):
    return f"--pruner {input.pruner}" if scorer_of(wildcards.method) == "sdtp" else ""


# The model latency jobs time: the quality model, or the shape of `latency.model` (random weights, its own label).
LATENCY_SHAPE = config["latency"]["model"]


def latency_model_section():
    """The `model:` settings latency jobs load: the quality model's, with `latency.model`'s overrides, random weights
    and its own name when that section is set (one definition, shared with `python -m sdtp job-resources`)."""
    return job_resources.latency_model_section(config)


LATENCY_MODEL = MODEL if LATENCY_SHAPE is None else latency_model_section()["name"] + "-random-weights"


def latency_settings(wildcards=None):
    """What a latency job reads: seed, its model section, the schedule and the latency keys of one repeat (and, but
    for the baseline, whether it times a paired baseline); a press job (kvpress-<press>, <scorer>+<press>) also the
    kvpress section."""
    latency = {key: config["latency"][key] for key in ("warmup", "repeats", "new_tokens")}
    if wildcards is not None and wildcards.method != "baseline":  # a baseline job is not rerun when it changes
        latency["paired_baseline"] = config["latency"]["paired_baseline"]
    chosen = {"seed": config["seed"], "model": latency_model_section(), "schedule": config["schedule"]}
    if wildcards is not None and has_press(wildcards.method):
        chosen["kvpress"] = config["kvpress"]
    return json.dumps({**chosen, "latency": latency}, sort_keys=True)


def latency_input(wildcards):
    """A latency job's inputs: the quality model (whose config a `latency.model` shape overrides), the engine's
    verification on it, and, for sdtp on the quality model, its trained and verified pruner (a `latency.model` shape
    has no trained pruner: its sdtp jobs use a random-init pruning module of its size, timing only)."""
    inputs = {"verify": f"{RESULTS}/verify/{MODEL}.json"}
    if BUILT_MODEL:
        inputs["model"] = f"{RESULTS}/models/{MODEL}/hf"
    if LATENCY_SHAPE is None:
        inputs.update(pruner_input(wildcards))
    return inputs


def latency_pruner_arg(wildcards, input):
    if scorer_of(wildcards.method) == "sdtp" and LATENCY_SHAPE is not None:
        return "--pruner-init random"
    return pruner_arg(wildcards, input)


def job_request(name, wildcards, input):
    """(memory estimate, assumed seconds) of one job of `name` (a rule's name), by sdtp.job_resources (no torch) from
    the model's config.json (the demo model the workflow built, a local model.id, or the HF cache) and the job's work.
    Latency jobs estimate the model they time (`latency.model` when set); a prediction its task's records file once
    it exists (an upper bound before: Snakemake evaluates the resources again before it submits the job)."""
    model_dir = getattr(input, "model", None) or None
    if name == "lm_eval":  # sdtp.lm_eval_resources: the harness's longest context, its documents
        return lm_eval_resources.lm_eval_request(
            config, wildcards.task, model_dir, wildcards.method, demo_tasks=LM_EVAL_DEMO_TASKS
        )
    if name == "latency":
        model, length = latency_model_section(), int(wildcards.length)
        return job_resources.rule_request(config, name, model, model_dir, length=length, method=wildcards.method)
    if name == "predict":
        task = get_task(wildcards.task)
        return job_resources.rule_request(
            config,
            name,
            None,
            model_dir,
            method=wildcards.method,
            new_tokens=task.max_new_tokens,
            task=task.name,
            records=input.records,
        )
    return job_resources.rule_request(config, name, None, model_dir)


def mem_mb_of(name):
    """A rule's `mem_mb` (SLURM --mem): its job's estimate + headroom, twice that on a retry; a profile's
    set-resources overrides it."""
    return lambda wildcards, input, attempt: job_resources.mem_mb(job_request(name, wildcards, input)[0], attempt)


def runtime_of(name):
    """A rule's `runtime` in minutes (SLURM --time), from its job's FLOPs and bytes at a slow GPU's rates, twice that
    on a retry."""
    return lambda wildcards, input, attempt: job_resources.runtime_min(job_request(name, wildcards, input)[1], attempt)


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
        f"{RESULTS}/latency/{LATENCY_MODEL}/{method_path(method)}/r{ratio}/L{length}.parquet"
        for method in config["latency"]["methods"]
        for ratio in ratios_of(method)
        for length in config["latency"]["lengths"]
    ]


# The kind of device latency jobs run on: where `python -m sdtp peak` measures the peaks their roofline divides by.
# (model.device: cpu runs on CPU whatever the GPUs a job is given, as configs/slurm-smoke.yaml on fake GPUs does.)
DEVICE_KIND = "cuda" if config["resources"]["gpu"] > 0 and config["model"]["device"] != "cpu" else "cpu"


def peak_outputs():
    """The measured peaks of the latency jobs' device kind, when there are latency jobs."""
    return [f"{RESULTS}/peak/{DEVICE_KIND}.parquet"] if latency_outputs() else []


def peak_dtypes():
    """The GEMM dtypes to measure: the model's (both a CPU's and a GPU's usual ones when it is `auto`)."""
    dtype = config["model"]["dtype"]
    return "float32 bfloat16" if dtype == "auto" else dtype


def score_outputs():
    return [
        f"{RESULTS}/longbench/{MODEL}/{method_path(method)}/r{ratio}/{task}.score.parquet"
        for method in config["methods"]
        for ratio in ratios_of(method)
        for task in config["longbench"]["tasks"]
    ]


# lm-evaluation-harness tasks (rules/lm_eval.smk): only when `lm_eval.tasks` names some, and then the harness must be
# importable by the interpreter that runs the jobs (this one), checked before any job runs.
LM_EVAL = config["lm_eval"]
LM_EVAL_DEMO_TASKS = ("synthetic_needle_choice",)  # sdtp.data.harness_task.HARNESS_TASKS: generated by lm_eval_task
LM_EVAL_METHODS = config["methods"] if LM_EVAL["methods"] is None else LM_EVAL["methods"]


def check_lm_eval_config():
    if not LM_EVAL["tasks"]:
        return
    if RANDOM_WEIGHTS:
        raise WorkflowError(
            "config: model.weights is random, and harness scores of a random-weight model are meaningless; set "
            "`lm_eval: {tasks: []}` or use pretrained weights"
        )
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise WorkflowError(
            f"config: lm_eval.tasks is set ({', '.join(LM_EVAL['tasks'])}) but lm-evaluation-harness is not installed "
            f'for {sys.executable}; install it with `pip install -e ".[lm-eval]"` (or remove lm_eval.tasks)'
        )
    pressed = sorted(m for m in LM_EVAL_METHODS if has_press(m))
    spec = importlib.util.find_spec("kvpress") if pressed else None
    if pressed and (spec is None or spec.origin is None):
        raise WorkflowError(
            f"config: lm_eval methods {', '.join(pressed)} need NVIDIA kvpress, which is not installed for "
            f"{sys.executable}; install the extra with `pip install -e '.[kvpress]'` (or set lm_eval.methods)"
        )


check_lm_eval_config()


def lm_eval_outputs():
    return [
        f"{RESULTS}/lm_eval/{MODEL}/{method_path(method)}/r{ratio}/{task}.parquet"
        for method in LM_EVAL_METHODS
        for ratio in ratios_of(method)
        for task in LM_EVAL["tasks"]
    ]


def lm_eval_settings(wildcards):
    """A harness job's settings; only press methods read (and rerun on) the kvpress section."""
    sections = ["seed", "model", "schedule"] + (["kvpress"] if has_press(wildcards.method) else [])
    return settings(*sections, lm_eval=["num_fewshot", "limit", "offline"])


def lm_eval_task_input(wildcards):
    """The demo's local harness task is generated by the workflow; other tasks come from the harness or include_path."""
    if wildcards.task in LM_EVAL_DEMO_TASKS:
        return {"task_dir": f"{RESULTS}/lm_eval/tasks/{wildcards.task}"}
    return {}


def lm_eval_include_arg(wildcards, input):
    paths = list(LM_EVAL["include_path"]) + ([input.task_dir] if "task_dir" in input.keys() else [])
    return "--include-path " + " ".join(f"'{path}'" for path in paths) if paths else ""


def training_outputs():
    latency_methods = config["latency"]["methods"] if LATENCY_SHAPE is None else []  # a shape's sdtp: no training
    if "sdtp" not in map(scorer_of, config["methods"] + latency_methods):
        return []
    return [f"{RESULTS}/pruner/{MODEL}/r{ratio}/losses.parquet" for ratio in RATIOS]


def pruner_outputs():
    return [os.path.join(os.path.dirname(losses), "pruner") for losses in training_outputs()]


def sparsity_outputs():
    return [f"{RESULTS}/saliency/{MODEL}/sparsity.parquet"] if training_outputs() else []


def table_outputs():
    return [
        f"{RESULTS}/tables/{name}.parquet"
        for name in (
            "latency",
            "summary",
            "longbench",
            "saliency_sparsity",
            "pruner_losses",
            "pruner_heldout",
            "lm_eval",
        )
    ]


def final_outputs():
    return table_outputs() + report_outputs()


# sdtp.report.figures.FIGURES, by file name: (report category, subcategory); captions are report/<name>.rst.
REPORT_FIGURES = {
    "prefill_latency": ("Latency", "Prefill"),
    "speedup_vs_ideal": ("Latency", "Speedup vs ideal"),
    "peak_fraction": ("Latency", "Fraction of peak"),
    "end2end_split": ("Latency", "End2End"),
    "kv_cache": ("KV cache", "Tokens per layer"),
    "quality_vs_compression": ("Quality", "LongBench"),
    "score_table": ("Quality", "LongBench"),
    "lm_eval_scores": ("Quality", "lm-evaluation-harness"),
    "saliency_sparsity": ("Training", "Saliency"),
    "pruner_losses": ("Training", "Pruner"),
    "pruner_heldout": ("Training", "Pruner on held-out prompts"),
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
