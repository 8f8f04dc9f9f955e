"""From a RULER record to the text and token ids a model is fed, and how prompt lengths are counted.

A record holds RULER's two pieces: `input` (the task template filled in, without the answer prefix) and
`answer_prefix`. RULER's `prepare.py` builds `model_template.format(task_template=...) + answer_prefix`, so the model
prompt is the input wrapped in the chat template, then the answer prefix (inside the assistant turn). Chat template
modes (config `ruler.chat_template`):

- `none`:  the raw prompt, RULER's `base` template (`{task_template}`); tokenized with the tokenizer's default special
           tokens (BOS where the tokenizer adds one), as a HF model is fed;
- `model`: the tokenizer's own chat template, the input as a single user turn with the generation prompt; its text
           already carries the special tokens, so none are added on top.

Lengths are counted on exactly these ids, so "fits the target" holds for what the model receives (RULER counts
`tokenizer.tokenize(text)`, which leaves out a BOS the model is then fed: at most one token less strict).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CHAT_TEMPLATE_MODES = ("model", "none")


def check_chat_template_mode(chat_template: str) -> None:
    """Raise a ValueError unless `chat_template` is one of `CHAT_TEMPLATE_MODES`."""
    if chat_template not in CHAT_TEMPLATE_MODES:
        raise ValueError(f"ruler.chat_template = {chat_template!r} must be one of {', '.join(CHAT_TEMPLATE_MODES)}")


def wrap_prompt(prompt: str, tokenizer, chat_template: str) -> str:
    """`prompt` as a single user turn of the tokenizer's chat template (`model`), or unchanged (`none`)."""
    check_chat_template_mode(chat_template)
    if chat_template == "none":
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "ruler.chat_template = 'model' but the tokenizer has no chat template; use 'none' (RULER's base template)"
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def model_prompt(input_text: str, answer_prefix: str, tokenizer, chat_template: str) -> str:
    """The text a model continues: the wrapped input, then the answer prefix."""
    return wrap_prompt(input_text, tokenizer, chat_template) + answer_prefix


def model_input_ids(input_text: str, answer_prefix: str, tokenizer, chat_template: str) -> list[int]:
    """Token ids of `model_prompt` (special tokens added only in mode `none`, see the module docstring)."""
    text = model_prompt(input_text, answer_prefix, tokenizer, chat_template)
    return list(tokenizer(text, add_special_tokens=chat_template == "none")["input_ids"])


def record_input_ids(record: Mapping[str, Any], tokenizer) -> list[int]:
    """Token ids a model is fed for a generated record (its `chat_template` is recorded in it)."""
    return model_input_ids(record["input"], record["answer_prefix"], tokenizer, record["chat_template"])


def text_token_count(text: str, tokenizer) -> int:
    """Tokens of a bare piece of text, no special tokens (RULER's `len(tokenizer.tokenize(text))`)."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])
