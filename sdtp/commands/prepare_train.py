"""`python -m sdtp prepare-train`: tokenise the saliency/pruner training samples (synthetic or Dolly-15k) to Parquet."""

from __future__ import annotations

import argparse
import logging

from sdtp.commands.outputs import write_parquet
from sdtp.commands.settings import add_settings_arguments, model_spec, wrapping_name
from sdtp.data.train_samples import build_samples
from sdtp.longbench.prompts import wrapped_prompt_ids
from sdtp.models import load_tokenizer

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument("--out", required=True)


def main(args: argparse.Namespace) -> int:
    settings = args.settings
    spec = model_spec(settings, args.model_dir)
    tokenizer = load_tokenizer(spec)
    if tokenizer is None:
        raise ValueError(f"model {spec['id']!r} has no tokenizer: training samples cannot be tokenised")
    # The pruner learns on prompts encoded as the evaluation encodes them for this model (longbench.chat_template).
    chat_template = (settings.get("longbench") or {}).get("chat_template", "official")
    name = wrapping_name(settings)
    samples = build_samples(
        tokenizer,
        settings["train_data"],
        settings["seed"],
        lambda prompt: wrapped_prompt_ids(prompt, tokenizer, chat_template, name),
    )
    samples["chat_template"] = chat_template
    log.info("training prompts encoded with chat_template=%s, as the evaluation encodes them", chat_template)
    write_parquet(samples, args.out)
    log.info("wrote %s", args.out)
    return 0
