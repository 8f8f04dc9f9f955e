"""`python -m sdtp lm-eval-run`: one (method, keep ratio, task) through `lm_eval.simple_evaluate`, as Parquet rows.

The model is `sdtp.lm_eval.SdtpLM` on the configured model (`model:`), schedule (`schedule:`) and seed (a press
method's parameters from `kvpress:`); the harness settings come from the `lm_eval:` section (`num_fewshot`, `limit`,
`offline`) and `--include-path` (local task folders). One row per (task, metric, filter) of the harness's results (a
group task gives one per subtask too): `score` and `stderr` as the harness reports them (fractions for accuracies;
stderr NaN where it reports "N/A"), `higher_is_better`, `samples` evaluated, `num_fewshot`, the prefills'
`mean_compression_ratio` (context tokens ÷ mean cached tokens over layers), `prefills` and
`press_uncompressed_prefills` (those in which a context layer was too short for the method's press, left uncompressed),
the wall time, `weights` (what the model's weights are, `sdtp.models.weights_of`), and `status` "ok". A job that
cannot measure its configuration (`sdtp.failures`: out of memory, or a press that fails) writes one row with NaN
scores, its `status` ("oom" | "error") and `reason`, so the tables and the report are still built. Written atomically.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

import pandas as pd

from sdtp.commands.outputs import write_parquet
from sdtp.commands.settings import add_settings_arguments, load_run_model, model_label
from sdtp.failures import recorded_failure
from sdtp.models import weights_of
from sdtp.oom import free_memory

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--pruner", default=None, help="pruner checkpoint directory (method sdtp)")
    parser.add_argument("--method", required=True)
    parser.add_argument("--ratio", type=float, required=True, help="keep ratio per stage (1.0 for baseline)")
    parser.add_argument("--task", required=True, help="lm-evaluation-harness task (or group) name")
    parser.add_argument("--include-path", nargs="*", default=[], help="folders of local task YAMLs")
    parser.add_argument("--out", required=True, help="Parquet file to write")


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # the harness writes "N/A" for a stderr it did not compute
        return math.nan


def result_rows(results: dict, task: str) -> list[dict]:
    """One dict per (result entry, metric, filter) of `simple_evaluate`'s output: the entry (`subtask`: the task itself,
    a group, or a group's subtask), `metric`, `filter`, `score`, `stderr`, `higher_is_better`, `samples`,
    `num_fewshot`."""
    rows = []
    for name, metrics in results["results"].items():
        higher = results.get("higher_is_better", {}).get(name, {})
        samples = results.get("n-samples", {}).get(name, {}).get("effective")
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filter_name = key.split(",", 1)
            score = _number(value)
            if math.isnan(score) and not isinstance(value, (int, float)):
                continue  # not a score (e.g. a text field)
            rows.append(
                {
                    "task": task,
                    "subtask": name,
                    "metric": metric,
                    "filter": filter_name,
                    "score": score,
                    "stderr": _number(metrics.get(f"{metric}_stderr,{filter_name}")),
                    "higher_is_better": higher.get(metric),
                    "samples": samples,
                    "num_fewshot": results.get("n-shot", {}).get(name),
                }
            )
    return rows


def failure_rows(task: str, num_fewshot: int | None) -> list[dict]:
    """The one row of a job that could not measure its task: `result_rows`' columns, no metric, NaN scores."""
    nan = math.nan
    return [
        {
            "task": task, "subtask": task, "metric": "", "filter": "", "score": nan, "stderr": nan,
            "higher_is_better": None, "samples": 0, "num_fewshot": num_fewshot,
        }
    ]  # fmt: skip


def task_manager(task_manager_class, task: str, include_path: list[str]):
    """The harness's task index: of the include path alone when it holds `task` (indexing the harness's thousands of
    built-in task YAMLs takes tens of seconds), else of both."""
    if include_path:
        local = task_manager_class(include_path=include_path, include_defaults=False)
        if task in local.all_tasks:
            return local
    return task_manager_class(include_path=include_path or None)


def main(args: argparse.Namespace) -> int:
    section = args.settings["lm_eval"]
    if section.get("offline"):  # before `datasets` is imported: no hub lookups, no telemetry
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    from sdtp.lm_eval import SdtpLM, require_harness

    require_harness()
    import lm_eval
    from lm_eval.tasks import TaskManager

    settings, model, tokenizer = load_run_model(args)
    if tokenizer is None:
        raise ValueError(f"model {settings['model'].get('name')!r} has no tokenizer: harness requests are text")
    schedule = settings["schedule"]
    layers = ";".join(str(layer) for layer in schedule.get("layers") or [])
    always_kept = {k: schedule[k] for k in ("sink_tokens", "local_ratio", "min_local") if k in schedule}
    lm = SdtpLM(
        pretrained=model,
        tokenizer=tokenizer,
        method=args.method,
        keep_ratio=args.ratio,
        pruner=args.pruner,
        start=schedule.get("start", 0),
        step=schedule.get("step", 1),
        stages=schedule.get("stages", 0),
        layers=layers or None,
        seed=settings.get("seed", 0),
        kvpress=settings.get("kvpress"),
        **always_kept,
    )
    seed = int(settings.get("seed", 0))
    start = time.perf_counter()
    failure = None
    try:
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=[args.task],
            num_fewshot=section.get("num_fewshot"),
            limit=section.get("limit"),
            task_manager=task_manager(TaskManager, args.task, args.include_path),
            log_samples=False,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    except RuntimeError as error:  # torch.OutOfMemoryError and sdtp.failures.CannotMeasure are RuntimeErrors
        failure = recorded_failure(error)
        if failure is None:
            raise
    evaluate_s = time.perf_counter() - start
    if failure is not None:
        free_memory()  # outside the except block: its traceback holds the failed request's tensors
        log.warning("%s r=%s %s: could not be measured (%s): %s", args.method, lm.keep_ratio, args.task, *failure)
        rows = failure_rows(args.task, section.get("num_fewshot"))
    else:
        rows = result_rows(results, args.task)
        if not rows:
            raise RuntimeError(f"lm_eval returned no metrics for task {args.task!r}: {results.get('results')}")
    table = pd.DataFrame(rows)
    table.insert(0, "model", model_label(settings))
    table.insert(1, "method", args.method)
    table.insert(2, "keep_ratio", lm.keep_ratio)
    table["limit"] = section.get("limit")
    table["mean_compression_ratio"] = lm.mean_compression_ratio
    table["prefills"] = len(lm.compression_ratios)
    table["press_uncompressed_prefills"] = lm.press_uncompressed_prefills
    table["evaluate_s"] = evaluate_s
    table["lm_eval_version"] = lm_eval.__version__
    table["weights"] = weights_of(model)
    status, reason = failure or ("ok", "")
    table["status"] = status
    table["reason"] = reason
    write_parquet(table, args.out)
    for row in rows:
        log.info(
            "%s r=%s %s %s (%s): %.4f ± %.4f", args.method, lm.keep_ratio, row["subtask"], row["metric"],
            row["filter"], row["score"], row["stderr"],
        )  # fmt: skip
    log.info("wrote %d rows to %s in %.1f s", len(rows), args.out, evaluate_s)
    return 0
