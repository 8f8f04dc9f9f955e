"""`python -m sdtp prepare-train`: the samples saliency (stage 1) and pruner training (stage 2) run on.

Each sample is `prompt response <eos>` tokenised with the model's tokenizer, the prompt encoded the way the evaluation
encodes prompts for that model (`prompt_ids`: e.g. its chat template; plain tokenization, `<bos>` included, by
default); labels are -100 on the prompt, so
the LM loss (and thus the saliency) measures how well the model produces the response from the prompt. The first
`samples` are the training split, the next `heldout_samples` the held-out split used to evaluate the pruner.
Samples longer than `max_tokens` are skipped (and counted in the log), never cut.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd

log = logging.getLogger(__name__)


def load_examples(section: dict, seed: int, count: int) -> list[dict]:
    """`count` (prompt, response) examples from the configured source, in a fixed order."""
    if section["source"] == "dolly":
        from sdtp.data.dolly import load_dolly

        return load_dolly(section.get("path"), limit=count)
    if section["source"] == "docs":
        from sdtp.data.docs_retrieval import generate_docs_examples

        return generate_docs_examples(count, tuple(section["context_words"]), seed)
    from sdtp.data.synthetic import generate_training_examples

    return generate_training_examples(count, tuple(section["context_words"]), seed)


def encode_example(
    tokenizer, prompt: str, response: str, prompt_ids: Callable[[str], list[int]] | None = None
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one example; labels are -100 on the prompt tokens. `prompt_ids` encodes the prompt
    (default: the tokenizer with its default special tokens)."""
    prompt_ids = prompt_ids(prompt) if prompt_ids is not None else tokenizer(prompt)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        response_ids = response_ids + [tokenizer.eos_token_id]
    return prompt_ids + response_ids, [-100] * len(prompt_ids) + response_ids


def build_samples(
    tokenizer, section: dict, seed: int, prompt_ids: Callable[[str], list[int]] | None = None
) -> pd.DataFrame:
    """Columns: split ("train" | "heldout"), sample, _id, tokens, input_ids (list[int]), labels (list[int]).
    `prompt_ids`: how a prompt is encoded (see `encode_example`)."""
    wanted = {"train": section["samples"], "heldout": section["heldout_samples"]}
    total = sum(wanted.values())
    # Over-draw so that skipping over-long samples still fills both splits (synthetic data is cheap; Dolly is 15k).
    examples = load_examples(section, seed, total * 2)
    rows, skipped = [], 0
    for example in examples:
        split = "train" if sum(r["split"] == "train" for r in rows) < wanted["train"] else "heldout"
        if len(rows) >= total:
            break
        input_ids, labels = encode_example(tokenizer, example["prompt"], example["response"], prompt_ids)
        if len(input_ids) > section["max_tokens"]:
            skipped += 1
            continue
        rows.append(
            dict(
                split=split,
                sample=len(rows),
                _id=example["_id"],
                tokens=len(input_ids),
                input_ids=input_ids,
                labels=labels,
            )
        )
    if len(rows) < total:
        raise ValueError(
            f"only {len(rows)} of {total} training samples fit in train_data.max_tokens={section['max_tokens']} "
            f"({skipped} longer ones skipped): raise train_data.max_tokens or lower train_data.samples"
        )
    log.info("%d samples (%d skipped as longer than %d tokens)", len(rows), skipped, section["max_tokens"])
    return pd.DataFrame(rows)
