"""Tests of sdtp.models: load a tiny Qwen2 saved to disk, pretrained and random, and the errors users hit."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from sdtp.models import ModelLoadError, ModelSpec, load_model, load_tokenizer

WORDS = ["[UNK]", "[PAD]", "<s>", "</s>", "the", "key", "is", "blue"]


def _tiny_config() -> Qwen2Config:
    return Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
        vocab_size=len(WORDS),
        max_position_embeddings=64,
    )


def _word_level_tokenizer() -> PreTrainedTokenizerFast:
    model = WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]")
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    )


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> tuple[Path, Qwen2ForCausalLM]:
    """A tiny Qwen2 with a word-level tokenizer, saved with save_pretrained; returns (directory, model)."""
    directory = tmp_path_factory.mktemp("tiny-qwen2")
    torch.manual_seed(1234)
    model = Qwen2ForCausalLM(_tiny_config())
    model.save_pretrained(directory)
    _word_level_tokenizer().save_pretrained(directory)
    return directory, model


@pytest.fixture(scope="module")
def config_only_dir(saved_model, tmp_path_factory) -> Path:
    """A directory with only the config.json of the tiny model: no weights, no tokenizer."""
    directory = tmp_path_factory.mktemp("config-only")
    _tiny_config().save_pretrained(directory)
    return directory


def _state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().float() for name, tensor in model.state_dict().items()}


def _same_weights(a, b) -> bool:
    state_a, state_b = _state(a), _state(b)
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_pretrained_loads_saved_weights_and_tokenizer(saved_model):
    directory, saved = saved_model
    model, tokenizer = load_model({"id": str(directory), "device": "cpu"})

    assert _same_weights(model, saved)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert model.dtype == torch.float32
    assert model.config._attn_implementation == "sdpa"
    # the word-level tokenizer, not the Qwen2Tokenizer that AutoTokenizer would pick for a qwen2 config
    assert tokenizer("the key is blue zebra")["input_ids"] == [4, 5, 6, 7, 0]


def test_random_weights_from_config(saved_model):
    directory, saved = saved_model
    spec = {"id": str(directory), "weights": "random", "device": "cpu", "seed": 0}
    model, tokenizer = load_model(spec)
    again, _ = load_model(spec)
    other_seed, _ = load_model({**spec, "seed": 1})

    assert type(model) is type(saved) and model.config.hidden_size == saved.config.hidden_size
    assert _state(model).keys() == _state(saved).keys()
    assert not _same_weights(model, saved)
    assert _same_weights(model, again)
    assert not _same_weights(model, other_seed)
    assert tokenizer is not None
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_random_weights_leave_global_rng_alone(saved_model):
    directory, _ = saved_model
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_model({"id": str(directory), "weights": "random", "device": "cpu"})
    assert torch.equal(torch.rand(3), expected)


def test_config_overrides_apply_to_random_weights(saved_model):
    directory, _ = saved_model
    model, _ = load_model(
        {"id": str(directory), "weights": "random", "device": "cpu", "config_overrides": {"num_hidden_layers": 1}}
    )
    assert model.config.num_hidden_layers == 1
    assert len(model.model.layers) == 1


def test_random_weights_need_only_config_json(config_only_dir):
    model, tokenizer = load_model({"id": str(config_only_dir), "weights": "random", "device": "cpu"})
    assert model.config.num_hidden_layers == 2
    assert tokenizer is None


@pytest.mark.parametrize("weights", ["pretrained", "random"])
def test_dtype_and_attn_implementation_honoured(saved_model, weights):
    directory, _ = saved_model
    model, _ = load_model(
        {"id": str(directory), "weights": weights, "dtype": "bfloat16", "attn_implementation": "eager", "device": "cpu"}
    )
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "eager"


def test_device_map_dispatch_of_random_weights(saved_model):
    directory, _ = saved_model
    model, _ = load_model({"id": str(directory), "weights": "random", "device_map": "auto", "device": "cpu"})
    assert {p.device.type for p in model.parameters()} <= {"cpu", "cuda"}
    assert model(torch.tensor([[4, 5, 6]])).logits.shape == (1, 3, len(WORDS))


@pytest.mark.parametrize("weights", ["pretrained", "random"])
def test_missing_local_path_names_model_id(tmp_path, weights):
    for path in (str(tmp_path / "no-such-model"), "./no-such-model-here"):
        with pytest.raises(ModelLoadError, match="does not exist.*model.id"):
            load_model({"id": path, "weights": weights, "device": "cpu"})


def test_directory_without_weights_says_so(config_only_dir):
    with pytest.raises(ModelLoadError, match="local directory.*weights: random") as raised:
        load_model({"id": str(config_only_dir), "device": "cpu"})
    assert raised.value.__cause__ is not None


def test_unknown_spec_key_is_named():
    with pytest.raises(ValueError, match="unknown model key.*num_layers.*valid keys: id, weights"):
        ModelSpec.from_dict({"id": "x", "num_layers": 2})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"id": "x", "dtype": "fp8"}, "model.dtype = 'fp8'"),
        ({"id": "x", "weights": "trained"}, "model.weights = 'trained'"),
        ({"id": "x", "device": "gpu"}, "model.device = 'gpu'"),
        ({"id": "x", "config_overrides": {"num_hidden_layers": 1}}, "num_hidden_layers only apply to weights: random"),
        ({"weights": "random"}, "model.id is required"),
    ],
)
def test_invalid_spec_values(spec, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec.from_dict(spec)


@pytest.mark.parametrize("weights", ["pretrained", "random"])
def test_offline_hub_miss_explains_what_to_set(monkeypatch, tmp_path, weights):
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    # huggingface_hub reads these at import time; its functions look them up on the module at call time
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache / "hub"))

    with pytest.raises(ModelLoadError, match="could not be downloaded") as raised:
        load_model({"id": "Qwen/Qwen2-7B-Instruct", "weights": weights, "device": "cpu"})
    message = str(raised.value)
    assert "offline" in message and "model.id" in message and "weights: random" in message and "HF_TOKEN" in message
    assert isinstance(raised.value.__cause__, OSError)
    # The tokenizer alone (prepare-train) gives the same error, not "has no tokenizer".
    with pytest.raises(ModelLoadError, match="could not be downloaded.*HF_TOKEN"):
        load_tokenizer({"id": "Qwen/Qwen2-7B-Instruct", "weights": weights, "device": "cpu"})


def test_sliding_window_override_runs_a_mistral_v01_shape_past_its_window(tmp_path):
    """Mistral-7B-v0.1's config says `sliding_window: 4096`; the engine refuses longer prompts and its error says to
    override it. The override is accepted with pretrained weights and the prompt then runs with full attention."""
    from tiny_models import save_tiny_model

    from sdtp.engine import prefill_with_pruning
    from sdtp.schedule import KeepSchedule
    from sdtp.scorers import get_scorer

    save_tiny_model(tmp_path, "mistral", sliding_window=4096, max_position_embeddings=8192)
    ids = torch.randint(0, 101, (1, 6000), generator=torch.Generator().manual_seed(0))
    schedule = KeepSchedule([1, 3], 1.0)
    windowed, _ = load_model({"id": str(tmp_path), "device": "cpu"})
    with pytest.raises(NotImplementedError, match="set `sliding_window: null` in the model's config_overrides"):
        prefill_with_pruning(windowed, ids, schedule, get_scorer("baseline"))
    model, _ = load_model({"id": str(tmp_path), "device": "cpu", "config_overrides": {"sliding_window": None}})
    assert model.config.sliding_window is None
    assert torch.equal(model.model.embed_tokens.weight, windowed.model.embed_tokens.weight)  # the saved weights
    result = prefill_with_pruning(model, ids, schedule, get_scorer("baseline"))
    with torch.no_grad():
        expected = model(ids, logits_to_keep=1).logits[:, -1].float()
    torch.testing.assert_close(result.logits, expected, atol=1e-4, rtol=1e-4)
