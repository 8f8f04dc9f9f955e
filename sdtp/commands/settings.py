"""Settings a job receives from the workflow, and the objects built from them.

Rules pass each command only the config sections it reads, as one JSON string (`--settings`), through Snakemake
`params`: a change to a section reruns exactly the jobs that read it (Snakemake's params rerun trigger), nothing else.
"""

from __future__ import annotations

import argparse
import json
import logging

from sdtp.kv_compression import kv_compression_for, parse_method
from sdtp.models import load_model
from sdtp.saliency import SaliencyConfig
from sdtp.schedule import KeepSchedule
from sdtp.scorers import get_scorer

log = logging.getLogger(__name__)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings", required=True, type=json.loads, help="JSON object with the config sections this job reads"
    )
    parser.add_argument(
        "--model-dir", default=None, help="local model directory built by the workflow (demo model, gguf checkpoint)"
    )
    parser.add_argument(
        "--gpus", type=int, default=1, help="GPUs this job claims from the pool (the rule's gpu resource; 0 = none)"
    )


def model_label(settings: dict) -> str:
    """The model's name in result paths and table rows: `model.name`, marked `-random-weights` for `weights: random`
    (the same label rules/common.smk puts in the paths)."""
    section = settings["model"]
    return section["name"] + ("-random-weights" if section.get("weights") == "random" else "")


def wrapping_name(settings: dict) -> str:
    """What LongBench's official chat wrappers recognise a model family by: its `model.name` and `model.id` (e.g.
    `llama2-7b-chat` or `meta-llama/Llama-2-7b-chat-hf`)."""
    model = settings["model"]
    return " ".join(str(model[key]) for key in ("name", "id") if model.get(key))


def model_spec(settings: dict, model_dir: str | None = None) -> dict:
    """The `sdtp.models.load_model` spec from the config's `model:` section (workflow-only keys dropped)."""
    workflow_only = ("name", "source", "demo", "gguf")
    spec = {k: v for k, v in settings["model"].items() if k not in workflow_only and v is not None}
    if model_dir is not None:
        spec["id"] = model_dir
    if spec.get("device") == "auto":
        spec.pop("device")
    return spec


# Attention implementations that apply an arbitrary additive (1, 1, n, n) mask; FlashAttention-2 reads any mask as a
# 2-D padding mask.
ADDITIVE_MASK_ATTENTION = ("sdpa", "eager")


def load_run_model(args: argparse.Namespace, additive_mask: bool = False):
    """Find the job's GPUs (claimed from the pool, or bound by SLURM; before torch touches CUDA), then load the model:
    (settings, model, tokenizer). A job with more than one GPU spreads the model over them (`device_map: auto`) unless
    `model.device_map` says otherwise or `model.device` is cpu.

    `additive_mask`: the job masks keys with an additive attention mask (stage 1's and stage 2's simulated pruning,
    saliency-check): an attention implementation that cannot take one is replaced by SDPA, and the log says so.
    """
    from sdtp.commands.gpu_pool import job_devices

    devices = job_devices(getattr(args, "gpus", 1))
    spec = model_spec(args.settings, args.model_dir)
    if len(devices) > 1 and not spec.get("device_map") and spec.get("device") != "cpu":
        log.info("GPUs %s: spreading the model over them (device_map: auto)", ",".join(devices))
        spec["device_map"] = "auto"
    configured = spec.get("attn_implementation", "sdpa")
    if additive_mask and configured not in ADDITIVE_MASK_ATTENTION:
        log.warning(
            "model.attn_implementation is %s, which cannot apply the additive attention mask this job needs; "
            "loading the model with sdpa for this job (inference jobs keep %s)", configured, configured,
        )  # fmt: skip
        spec["attn_implementation"] = "sdpa"
    model, tokenizer = load_model(spec)
    log.info("model loaded with attn_implementation=%s", model.config._attn_implementation)
    return args.settings, model, tokenizer


def schedule_for(settings: dict, model, keep_ratio: float) -> KeepSchedule:
    """The config's `schedule:` (explicit `layers`, else start/step/stages) at `keep_ratio`, checked against the
    model."""
    section = settings["schedule"]
    extra = {k: section[k] for k in ("sink_tokens", "local_ratio", "min_local") if k in section}
    num_layers = model.config.num_hidden_layers
    if section.get("layers"):
        schedule = KeepSchedule(list(section["layers"]), keep_ratio, **extra)
        schedule.validate(num_layers)
        return schedule
    return KeepSchedule.from_config(
        section["start"], section["step"], section["stages"], keep_ratio, num_layers, **extra
    )


def scorer_for(settings: dict, method: str, pruner_dir: str | None):
    """The scorer of `method` (of its token-pruning part: `sdtp` for `sdtp+snapkv`, `baseline` for `kvpress:snapkv`);
    the oracle marks tokens as stage 1 does (the `saliency` section, when passed)."""
    return get_scorer(
        parse_method(method).scorer,
        seed=settings.get("seed", 0),
        checkpoint=pruner_dir,
        saliency=SaliencyConfig.from_dict(settings.get("saliency")),
    )


def kv_compression_job(settings: dict, method: str, keep_ratio: float, schedule: KeepSchedule):
    """The press of a `kvpress:<press>` or `<scorer>+<press>` method (`sdtp.kv_compression`), its parameters from the
    `kvpress` section (passed to press jobs only); None for the other methods."""
    return kv_compression_for(method, keep_ratio, schedule, settings.get("kvpress"))
