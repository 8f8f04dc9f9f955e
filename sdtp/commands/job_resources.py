"""`python -m sdtp job-resources`: what every job of a config asks a cluster scheduler for (SLURM's `--time` and
`--mem`), as the workflow's rules compute it (`sdtp.job_resources`), one row per rule and estimate, without Snakemake.

    python -m sdtp job-resources --configfile configs/paper-qwen2-7b.yaml --model-config qwen2-7b

The README's SLURM table is this command's output. `--configfile`: as Snakemake's (several files merge, the later
winning; none: the demo's config.yaml). The model's config.json comes from where the rules find it (the demo model
the workflow built, a local `model.id`, the Hugging Face cache) unless `--model-config` gives one. A prediction job
counts its task's records file under `<results>/tasks/` when it exists, else the upper bound of the config's record
count, each at `longbench.max_input_tokens` (what a first run's dry run shows).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from sdtp import job_resources

log = logging.getLogger(__name__)

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
BASELINE_RATIO = "1.0"
WILDCARDS_SHOWN = {"latency": ("method", "length"), "predict": ("method", "task")}  # what changes the estimate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile", nargs="+", default=["config.yaml"], help="the workflow's config file(s) (default: config.yaml)"
    )
    parser.add_argument(
        "--model-config",
        default=None,
        help="the model's config.json, a directory holding one, or a known shape (sdtp.roofline.KNOWN_SHAPES: "
        "qwen2-7b, mistral-7b); default: where the rules find it",
    )
    parser.add_argument("--attempt", type=int, default=1, help="Snakemake's attempt (2 and later: a retried job)")


def load_workflow_config(paths: list[str]) -> dict:
    """The config files merged as Snakemake merges them, validated against the schema with its defaults filled in."""
    import yaml
    from snakemake.utils import update_config, validate

    config: dict = {}
    for path in paths:
        update_config(config, yaml.safe_load(Path(path).read_text()) or {})
    validate(config, str(SCHEMA), set_default=True)
    return config


def load_model_config(value: str) -> dict:
    """A config.json, a directory holding one, or a known shape's name, as a dict."""
    path = Path(value)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    from sdtp.roofline import KNOWN_SHAPES  # imports torch: only for a shape's name

    if value not in KNOWN_SHAPES:
        raise SystemExit(f"--model-config {value!r}: no such file or directory, nor a known shape")
    return dict(KNOWN_SHAPES[value])


def ratio_label(ratio) -> str:
    return str(float(ratio))


def planned_jobs(config: dict) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job whose resources are estimated, as rules/common.smk plans them."""
    ratios = [ratio_label(r) for r in config["keep_ratios"]]

    def ratios_of(method):
        return [BASELINE_RATIO] if method == "baseline" else ratios

    def scorer_of(method):
        return "baseline" if method.startswith("kvpress:") else method.split("+")[0]

    trained_for = config["methods"] + (config["latency"]["methods"] if config["latency"].get("model") is None else [])
    trains = "sdtp" in map(scorer_of, trained_for)
    jobs = [("verify", {})]
    if trains:
        jobs += [("saliency", {})] + [
            (rule, {"ratio": r}) for rule in ("train_pruner", "verify_pruner") for r in ratios
        ]
    jobs += [
        ("latency", {"method": method, "ratio": ratio, "length": length})
        for method in config["latency"]["methods"]
        for ratio in ratios_of(method)
        for length in config["latency"]["lengths"]
    ]
    jobs += [
        ("predict", {"method": method, "ratio": ratio, "task": task})
        for method in config["methods"]
        for ratio in ratios_of(method)
        for task in config["longbench"]["tasks"]
    ]
    return jobs


def job_request(config: dict, rule: str, wildcards: dict, model_config: dict | None):
    """(memory estimate, seconds) of one job, with the arguments rules/common.smk's `job_request` passes."""
    model = job_resources.latency_model_section(config) if rule == "latency" else config["model"]
    model_dir = None
    if model_config is None and config["model"]["source"] in ("demo", "gguf"):  # built by a rule
        name = config["model"]["name"] + ("-random-weights" if config["model"].get("weights") == "random" else "")
        model_dir = Path(config["results"]) / "models" / name / "hf"
    kwargs = {}
    if rule == "latency":
        kwargs = {"length": int(wildcards["length"]), "method": wildcards["method"]}
    elif rule == "predict":
        from sdtp.longbench.tasks import get_task

        task = get_task(wildcards["task"])
        records = Path(config["results"]) / "tasks" / f"{task.name}.jsonl"
        kwargs = {
            "method": wildcards["method"],
            "new_tokens": task.max_new_tokens,
            "task": task.name,
            "records": records,
        }
    config_json = None if model_config is None else {**model_config, **(model.get("config_overrides") or {})}
    return job_resources.rule_request(config, rule, model, model_dir, config_json=config_json, **kwargs)


def estimate_rows(config: dict, model_config: dict | None = None, attempt: int = 1) -> list[dict]:
    """One row per rule and distinct (--time, --mem): the rule, the wildcards that set the estimate (every value its
    jobs take; keep ratios do not change an estimate), the number of jobs, --time in minutes and --mem in MB."""
    groups: dict[tuple, list[dict]] = {}
    for rule, wildcards in planned_jobs(config):
        estimate, seconds = job_request(config, rule, wildcards, model_config)
        key = (rule, job_resources.runtime_min(seconds, attempt), job_resources.mem_mb(estimate, attempt))
        groups.setdefault(key, []).append(wildcards)
    rows = []
    for (rule, minutes, mem), jobs in groups.items():
        shown = WILDCARDS_SHOWN.get(rule, ("ratio",))
        values = {name: list(dict.fromkeys(str(job[name]) for job in jobs if name in job)) for name in shown}
        wildcards = "; ".join(f"{name}: {', '.join(found)}" for name, found in values.items() if found)
        rows.append({"rule": rule, "wildcards": wildcards, "jobs": len(jobs), "time_min": minutes, "mem_mb": mem})
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| rule | wildcards | jobs | `--time` | `--mem` |", "|---|---|---:|---:|---:|"]
    for row in rows:
        hours, minutes = divmod(row["time_min"], 60)
        time = f"{row['time_min']} min ({hours}:{minutes:02d})"
        lines.append(f"| {row['rule']} | {row['wildcards'] or '–'} | {row['jobs']} | {time} | {row['mem_mb']} MB |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    config = load_workflow_config(args.configfile)
    model_config = None if args.model_config is None else load_model_config(args.model_config)
    try:
        rows = estimate_rows(config, model_config, args.attempt)
    except FileNotFoundError as error:  # the demo model, not built yet
        raise SystemExit(f"{error.filename}: not built yet; build it or pass --model-config") from None
    print(markdown_table(rows))
    if any(row["time_min"] == job_resources.UNKNOWN_MODEL_RUNTIME_MIN for row in rows) and model_config is None:
        log.warning(
            "the model's config.json is not on this machine: fallback requests; pass --model-config, or fetch it "
            "(huggingface-cli download %s config.json)",
            config["model"].get("id"),
        )
    records = Path(config["results"]) / "tasks"
    if any(rule == "predict" for rule, _ in planned_jobs(config)) and not any(records.glob("*.jsonl")):
        log.info("no records files under %s: predict rows are upper bounds (every record at max_input_tokens)", records)
    return 0
