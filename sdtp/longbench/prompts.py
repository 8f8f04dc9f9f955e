"""From a LongBench record to model input ids, as the official v1 `pred.py` does it.

Order (pred.py): fill the task's template with the record -> truncate the *prompt* in the middle to the model's
maximum input length -> wrap it in the chat template (except for the few-shot and code tasks) -> tokenize. The length
limit therefore applies to the prompt before the chat template; the template's own tokens come on top, as in the
official harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdtp.longbench.tasks import TaskSpec


def build_prompt(task: TaskSpec, record: Mapping[str, Any]) -> str:
    """Fill `task.prompt_template` with the record's fields (`template.format(**record)`, as pred.py does)."""
    try:
        return task.prompt_template.format(**record)
    except KeyError as exc:
        raise ValueError(
            f"record for task {task.name!r} lacks the field {exc.args[0]!r} that its prompt template uses"
        ) from None


def truncate_middle(prompt: str, tokenizer, max_input_tokens: int) -> str:
    """Cut the middle out of `prompt` when it is longer than `max_input_tokens` tokens (official pred.py).

    The prompt is tokenized as pred.py does (`tokenizer(prompt, truncation=False)`, special tokens such as BOS
    included); if it has more than `max_input_tokens` ids, the result is the decoded first `max_input_tokens // 2` ids
    followed directly by the decoded last `max_input_tokens // 2` ids, both decoded with `skip_special_tokens=True`.
    A prompt that fits is returned unchanged.
    """
    if max_input_tokens < 2:
        raise ValueError(f"max_input_tokens must be at least 2, got {max_input_tokens}")
    ids = tokenizer(prompt, truncation=False)["input_ids"]
    if len(ids) <= max_input_tokens:
        return prompt
    half = max_input_tokens // 2
    head = tokenizer.decode(ids[:half], skip_special_tokens=True)
    tail = tokenizer.decode(ids[-half:], skip_special_tokens=True)
    return head + tail


def model_input_ids(task: TaskSpec, prompt: str, tokenizer) -> list[int]:
    """Token ids the model is fed for `prompt`.

    With `task.uses_chat_template` and a tokenizer that has a chat template: the prompt as a single user turn through
    `apply_chat_template(..., add_generation_prompt=True)` (the template brings its own special tokens). Otherwise
    plain tokenization with the tokenizer's default special tokens, as pred.py does.
    """
    if task.uses_chat_template and getattr(tokenizer, "chat_template", None):
        # return_dict=True pins the return type (transformers 5 returns a BatchEncoding by default).
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])
    return list(tokenizer(prompt, truncation=False)["input_ids"])


def encode_record(task: TaskSpec, record: Mapping[str, Any], tokenizer, max_input_tokens: int) -> list[int]:
    """Model input ids for one record: `build_prompt` -> `truncate_middle` -> `model_input_ids` (pred.py's order)."""
    prompt = truncate_middle(build_prompt(task, record), tokenizer, max_input_tokens)
    return model_input_ids(task, prompt, tokenizer)
