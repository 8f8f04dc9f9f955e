"""Load a causal LM (and its tokenizer, when there is one) from the `model:` section of the config.

Two ways to get weights:

- `weights: pretrained` loads a checkpoint from the hub (or the local HF cache) or from a local directory.
- `weights: random` builds the architecture from its config alone, seeded, for latency runs where the weights cannot be
  downloaded; `config_overrides` can shrink it (e.g. `num_hidden_layers`). Runtime and FLOPs do not depend on the
  weight values, quality numbers do — never score a random model.

Failures to find a model become one `ModelLoadError` that says which config key to change.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import EntryNotFoundError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.models.auto.tokenization_auto import get_tokenizer_config

log = logging.getLogger(__name__)

WEIGHTS = ("pretrained", "random")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
# Config keys that change only how far attention reaches, not the weights' shapes: overridable on a pretrained model.
ATTENTION_EXTENT_KEYS = ("sliding_window", "use_sliding_window", "max_window_layers", "rope_scaling", "rope_parameters")
_DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?|auto")
# tokenizer_config.json classes that just mean "the tokenizer.json next to me"; loaded as such (see _load_tokenizer).
_GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
# Files any saved tokenizer has at least one of.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


# A checkpoint the workflow wrote from another format (sdtp.gguf_model) says in this file what its weights are
# ({"weights": "Q4_1 values dequantized to float32", ...}); `load_model` puts that on `model.config.sdtp_weights`.
SOURCE_NOTE = "sdtp_source.json"


class ModelLoadError(RuntimeError):
    """The model named in the config could not be loaded; the message says which config key to change."""


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class ModelSpec:
    """What to load; one field per key of the config's `model:` section.

    Fields:
        id: hub id ("Qwen/Qwen2-7B-Instruct") or a local directory with config.json (and weights).
        weights: "pretrained" loads the checkpoint; "random" builds the architecture from its config, seeded.
        dtype: parameter dtype; "auto" takes the checkpoint's (float32 if it names none).
        attn_implementation: "sdpa" | "eager" | "flash_attention_2".
        device: "cpu" | "cuda" | "cuda:N" | "auto" (= cuda if available, else cpu). Ignored when device_map is set.
        device_map: accelerate dispatch over several devices (e.g. "auto"), or None for a single device.
        revision: hub revision (branch, tag or commit); None = default branch.
        seed: seed of the random initialisation (weights: random only).
        config_overrides: config attributes to replace before building. With `weights: random`, any attribute (e.g.
            `num_hidden_layers`); with pretrained weights only those that change how far attention reaches
            (`ATTENTION_EXTENT_KEYS`: e.g. `sliding_window: null` to run Mistral-7B-v0.1 past 4,096 tokens with full
            attention, `rope_scaling` for long context), since any other would not match the saved weights.
        trust_remote_code: allow custom modelling code from the hub.
    """

    id: str
    weights: str = "pretrained"
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    device: str = field(default_factory=_default_device)
    device_map: str | None = None
    revision: str | None = None
    seed: int = 0
    config_overrides: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError(f"model.id = {self.id!r} must be a hub id or a local directory path")
        _check_choice("weights", self.weights, WEIGHTS)
        _check_choice("dtype", self.dtype, tuple(DTYPES))
        _check_choice("attn_implementation", self.attn_implementation, ATTN_IMPLEMENTATIONS)
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"model.device = {self.device!r} must be one of cpu, cuda, cuda:N, auto")
        if self.device_map is not None and not isinstance(self.device_map, str):
            raise ValueError(f"model.device_map = {self.device_map!r} must be a string such as 'auto', or null")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"model.seed = {self.seed!r} must be an integer")
        if not isinstance(self.config_overrides, dict):
            raise ValueError(f"model.config_overrides = {self.config_overrides!r} must be a mapping")
        shape_keys = sorted(set(self.config_overrides) - set(ATTENTION_EXTENT_KEYS))
        if shape_keys and self.weights != "random":
            raise ValueError(
                f"model.config_overrides {', '.join(shape_keys)} only apply to weights: random (a pretrained "
                f"checkpoint is loaded as saved); with pretrained weights only {', '.join(ATTENTION_EXTENT_KEYS)} "
                "may be overridden"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Build from the config's `model:` mapping, rejecting keys this class does not know."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown model key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
        if "id" not in d:
            raise ValueError("model.id is required: a hub id or a local directory with config.json and weights")
        return cls(**d)

    @property
    def torch_device(self) -> torch.device:
        """The single device the model goes to when device_map is not set."""
        return torch.device(_default_device() if self.device == "auto" else self.device)


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"model.{key} = {value!r} must be one of {', '.join(choices)}")


def _looks_local(model_id: str) -> bool:
    """True for ids that can only be filesystem paths (hub ids are `name` or `namespace/name`)."""
    return (
        model_id.startswith(("/", "./", "../", "~"))
        or (os.sep != "/" and os.sep in model_id)
        or model_id.count("/") > 1
        or Path(model_id).expanduser().exists()
    )


def _check_local_dir(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(
            f"model path {str(path)!r} does not exist; set model.id to a directory holding config.json "
            f"(and weights for weights: pretrained), or to a hub id"
        )
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"model path {str(path)!r} has no config.json, so it is not a saved transformers model; "
            f"set model.id to the directory that save_pretrained wrote"
        )


def _download_error(spec: ModelSpec, error: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"model {spec.id!r} (revision {spec.revision or 'default'}) could not be downloaded and is not in the local "
        f"HF cache; this machine may be offline. Set model.id to a local directory with config.json and weights, "
        f"or weights: random for latency-only runs (needs only the config.json, from a local directory or the cache), "
        f"or set HF_HUB_OFFLINE=1 with a pre-populated HF cache (HF_HOME / HF_HUB_CACHE). For a gated repo (Llama, "
        f"Mistral), accept its licence on the hub and set HF_TOKEN. "
        f"Cause: {type(error).__name__}: {error}"
    )


def _load_tokenizer(source: str, spec: ModelSpec) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved with the model, or None when there is none.

    A tokenizer_config.json naming a generic class (a plain tokenizer.json) is loaded as exactly that:
    AutoTokenizer would otherwise pick the class registered for the model type (e.g. Qwen2Tokenizer for any Qwen2
    config) and silently mis-tokenize a custom word-level tokenizer, or return an empty one when there is no
    tokenizer at all.
    """
    kwargs = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    local_dir = Path(source) if Path(source).is_dir() else None
    if local_dir is not None and not any((local_dir / name).is_file() for name in _TOKENIZER_FILES):
        log.warning("no tokenizer files in %s; continuing without a tokenizer", local_dir)
        return None
    try:
        tokenizer_config = get_tokenizer_config(source, revision=spec.revision)
        if tokenizer_config.get("tokenizer_class") in _GENERIC_TOKENIZER_CLASSES:
            return PreTrainedTokenizerFast.from_pretrained(source, revision=spec.revision)
        if not tokenizer_config and local_dir is None:
            log.warning("no tokenizer_config.json for %s; continuing without a tokenizer", source)
            return None
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError, EntryNotFoundError) as e:
        log.warning("no usable tokenizer for %s (%s: %s); continuing without one", source, type(e).__name__, e)
        return None


def _resolve_dtype(spec: ModelSpec, config: PretrainedConfig) -> torch.dtype:
    """The dtype to build a random model in: the spec's, or for "auto" the config's (float32 if it names none)."""
    if spec.dtype != "auto":
        return DTYPES[spec.dtype]
    config_dtype = getattr(config, "dtype", None)
    if isinstance(config_dtype, str):
        config_dtype = getattr(torch, config_dtype)
    return config_dtype or torch.float32


def _dispatch(model: PreTrainedModel, device_map: str) -> PreTrainedModel:
    """Spread a model built in memory over the available devices, like from_pretrained(device_map=...) does."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    no_split = model._no_split_modules or []
    if device_map == "sequential":
        placement = infer_auto_device_map(model, no_split_module_classes=no_split)
    else:
        max_memory = get_balanced_memory(
            model, no_split_module_classes=no_split, low_zero=device_map == "balanced_low_0"
        )
        placement = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=no_split)
    return dispatch_model(model, device_map=placement)


def _overridden_config(spec: ModelSpec, source: str) -> PretrainedConfig:
    """The checkpoint's config with `spec.config_overrides` applied (an attribute it lacks is an error)."""
    config = AutoConfig.from_pretrained(source, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    for key, value in spec.config_overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"model.config_overrides: {type(config).__name__} has no attribute {key!r}")
        setattr(config, key, value)
    return config


def _load_pretrained(spec: ModelSpec, source: str) -> PreTrainedModel:
    overrides = {"config": _overridden_config(spec, source)} if spec.config_overrides else {}
    return AutoModelForCausalLM.from_pretrained(
        source,
        **overrides,
        dtype=DTYPES[spec.dtype],
        attn_implementation=spec.attn_implementation,
        device_map=spec.device_map or spec.torch_device,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
    )


def _build_random(spec: ModelSpec, source: str) -> PreTrainedModel:
    """Architecture from the config, weights from the model's own initialiser under torch.manual_seed(spec.seed).

    Built on CPU, so the weights of a seed are the same on every machine, then moved; the caller's RNG is untouched.
    """
    config = _overridden_config(spec, source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = AutoModelForCausalLM.from_config(
            config,
            dtype=_resolve_dtype(spec, config),
            attn_implementation=spec.attn_implementation,
            trust_remote_code=spec.trust_remote_code,
        )
    if spec.device_map is not None:
        return _dispatch(model, spec.device_map)
    return model.to(spec.torch_device)


def load_model(spec: dict[str, Any] | ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load the model described by `spec` (a `model:` mapping or a ModelSpec).

    Returns:
        (model, tokenizer): the model in eval mode with every parameter frozen (requires_grad False), what its weights
        are on `model.config.sdtp_weights` (`weights_of`), on
        spec.device or dispatched by spec.device_map; the tokenizer saved with it, or None when there is none
        (latency runs need only token ids).

    Raises:
        ModelLoadError: the local path does not exist or holds no model, or the hub id could not be fetched.
        ValueError: the spec is invalid (unknown key, bad value).
    """
    spec, source, local = _resolve_source(spec)
    load = _build_random if spec.weights == "random" else _load_pretrained
    try:
        model = load(spec, source)
    except (OSError, EntryNotFoundError) as e:
        if local:
            raise ModelLoadError(
                f"could not load model from local directory {source!r} (set model.id to a directory written by "
                f"save_pretrained, or use weights: random if it holds only config.json): {type(e).__name__}: {e}"
            ) from e
        raise _download_error(spec, e) from e

    tokenizer = _load_tokenizer(source, spec)
    model.config.sdtp_weights = _weights_note(spec, source, local)
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def _weights_note(spec: ModelSpec, source: str, local: bool) -> str:
    """What the loaded weights are: "random (seed N)", the checkpoint's `SOURCE_NOTE` (e.g. "Q4_1 values dequantized
    to float32"), or "pretrained"."""
    if spec.weights == "random":
        return f"random (seed {spec.seed})"
    note = Path(source) / SOURCE_NOTE
    if local and note.is_file():
        return str(json.loads(note.read_text()).get("weights", "pretrained"))
    return "pretrained"


def weights_of(model: PreTrainedModel) -> str:
    """What a model's weights are, as `load_model` recorded it ("pretrained" for a model loaded otherwise)."""
    return str(getattr(model.config, "sdtp_weights", "pretrained"))


def load_tokenizer(spec: dict[str, Any] | ModelSpec) -> PreTrainedTokenizerBase | None:
    """Only the tokenizer of the model `spec` names (no weights loaded), or None when it has none.

    Raises:
        ModelLoadError: a hub id whose config cannot be had (offline, not cached, gated): the same error, naming the
            same keys, as `load_model` gives — transformers' tokenizer lookup would turn it into "no tokenizer".
    """
    spec, source, local = _resolve_source(spec)
    if not local:
        try:
            AutoConfig.from_pretrained(source, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
        except (OSError, EntryNotFoundError) as e:
            raise _download_error(spec, e) from e
    return _load_tokenizer(source, spec)


def _resolve_source(spec: dict[str, Any] | ModelSpec) -> tuple[ModelSpec, str, bool]:
    """(validated spec, where to load from, whether that is a local directory — checked to exist)."""
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec.from_dict(spec)
    local = _looks_local(spec.id)
    source = str(Path(spec.id).expanduser()) if local else spec.id
    if local:
        _check_local_dir(Path(source))
    return spec, source, local
