"""From a LongBench record to model input ids, as the official v1 `pred.py` does it.

Order (pred.py): fill the task's template with the record -> truncate the *prompt* in the middle to the model's
maximum input length -> wrap it as `longbench.chat_template` says (never the few-shot and code tasks) -> tokenize.
The length limit therefore applies to the prompt before the chat template; the template's own tokens come on top, as
in the official harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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


# How a prompt is wrapped before tokenization (config `longbench.chat_template`):
#   official: as LongBench v1's pred.py: only the model families its `build_chat` lists get a wrapper (recognised by
#             the model's name), every other model — Qwen2, Mistral, Llama-3 … — the raw prompt;
#   model:    the tokenizer's own chat template (a single user turn), for every model that has one;
#   none:     always the raw prompt.
# In every mode the few-shot and code tasks (trec, triviaqa, samsum, lsht, lcc, repobench-p) are never wrapped.
CHAT_TEMPLATE_MODES = ("official", "model", "none")

# pred.py's `build_chat` wrappers, by the substring of the model name it matches on, in its order.
_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions."
)
_XGEN_HEADER = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the human's questions.\n\n"
)


def official_chat_prompt(prompt: str, model_name: str, tokenizer=None) -> str | list[int]:
    """The prompt as LongBench v1's pred.py `build_chat` wraps it for `model_name` (a family it lists), or the raw
    prompt for any other model. chatglm3 returns token ids (its tokenizer builds them); chatglm uses its tokenizer's
    `build_prompt`; both need the model's own (remote-code) tokenizer."""
    name = model_name.lower()
    if "chatglm3" in name:
        if not hasattr(tokenizer, "build_chat_input"):
            raise ValueError(f"model {model_name!r}: chatglm3's wrapper needs its tokenizer's build_chat_input")
        return list(tokenizer.build_chat_input(prompt)["input_ids"][0])
    if "chatglm" in name:
        if not hasattr(tokenizer, "build_prompt"):
            raise ValueError(f"model {model_name!r}: chatglm's wrapper needs its tokenizer's build_prompt")
        return tokenizer.build_prompt(prompt)
    if "longchat" in name or "vicuna" in name:
        return f"{_VICUNA_SYSTEM} USER: {prompt} ASSISTANT:"
    if "llama2" in name or "llama-2" in name:
        return f"[INST]{prompt}[/INST]"
    if "xgen" in name:
        return _XGEN_HEADER + f" ### Human: {prompt}\n###"
    if "internlm" in name:
        return f"<|User|>:{prompt}<eoh>\n<|Bot|>:"
    return prompt


def wrapped_prompt_ids(prompt: str, tokenizer, chat_template: str = "official", model_name: str = "") -> list[int]:
    """Token ids of `prompt` wrapped as `chat_template` says (see `CHAT_TEMPLATE_MODES`), whatever the task.

    `model`: a tokenizer with a chat template gets the prompt as a single user turn through
    `apply_chat_template(..., add_generation_prompt=True)` (the template brings its own special tokens). `official`:
    pred.py's wrapper for the families it lists (`official_chat_prompt`, by `model_name`). Otherwise plain
    tokenization with the tokenizer's default special tokens, as pred.py does.
    """
    if chat_template not in CHAT_TEMPLATE_MODES:
        raise ValueError(f"longbench.chat_template = {chat_template!r} must be one of {', '.join(CHAT_TEMPLATE_MODES)}")
    if chat_template == "model" and getattr(tokenizer, "chat_template", None):
        # return_dict=True pins the return type (transformers 5 returns a BatchEncoding by default).
        encoded = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])
    if chat_template == "official":
        wrapped = official_chat_prompt(prompt, model_name, tokenizer)
        if isinstance(wrapped, list):
            return wrapped
        prompt = wrapped
    return list(tokenizer(prompt, truncation=False)["input_ids"])


def model_input_ids(
    task: TaskSpec, prompt: str, tokenizer, chat_template: str = "official", model_name: str = ""
) -> list[int]:
    """Token ids the model is fed for `prompt`: `wrapped_prompt_ids`, except that tasks without a chat template
    (few-shot and code) are never wrapped."""
    return wrapped_prompt_ids(prompt, tokenizer, chat_template if task.uses_chat_template else "none", model_name)


def encode_record(
    task: TaskSpec,
    record: Mapping[str, Any],
    tokenizer,
    max_input_tokens: int,
    chat_template: str = "official",
    model_name: str = "",
) -> list[int]:
    """Model input ids for one record: `build_prompt` -> `truncate_middle` -> `model_input_ids` (pred.py's order)."""
    prompt = truncate_middle(build_prompt(task, record), tokenizer, max_input_tokens)
    return model_input_ids(task, prompt, tokenizer, chat_template, model_name)


@dataclass(frozen=True)
class PromptFormat:
    """How a job turns records into model input ids: the config's `longbench.max_input_tokens` and
    `longbench.chat_template`, and the model's name (the official wrappers are chosen by it)."""

    max_input_tokens: int
    chat_template: str = "official"
    model_name: str = ""

    def __post_init__(self) -> None:
        if self.chat_template not in CHAT_TEMPLATE_MODES:
            raise ValueError(
                f"longbench.chat_template = {self.chat_template!r} must be one of {', '.join(CHAT_TEMPLATE_MODES)}"
            )

    def encode(self, task: TaskSpec, record: Mapping[str, Any], tokenizer) -> list[int]:
        """`encode_record` with this format."""
        return encode_record(task, record, tokenizer, self.max_input_tokens, self.chat_template, self.model_name)
