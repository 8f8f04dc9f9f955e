"""Prompt building, middle truncation and the chat-template rule, as the official LongBench v1 pred.py."""

import re

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from sdtp.longbench.prompts import build_prompt, encode_record, model_input_ids, official_chat_prompt, truncate_middle
from sdtp.longbench.tasks import OFFICIAL_TASKS, get_task

WORDS = [f"w{i}" for i in range(40)] + ["user", "assistant", "question", "story"]


CHAT_TEMPLATE = (
    "{% for message in messages %}<s> {{ message['role'] }} {{ message['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}assistant{% endif %}"
)


NO_CHAT_TEMPLATE_TASKS = {"trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"}


def word_tokenizer(chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer that splits on whitespace and prepends <s> (like Llama's BOS)."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {word: i + 3 for i, word in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()  # joins tokens with single spaces
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", model_max_length=10**6
    )
    tokenizer.chat_template = chat_template
    return tokenizer


@pytest.fixture(scope="module")
def plain_tokenizer():
    return word_tokenizer()


@pytest.fixture(scope="module")
def chat_tokenizer():
    return word_tokenizer(CHAT_TEMPLATE)


def fake_record(task: str) -> dict:
    return {
        "input": "INPUT_TEXT",
        "context": "CONTEXT_TEXT",
        "answers": ["x"],
        "length": 3,
        "dataset": task,
        "language": "en",
        "all_classes": None,
        "_id": "id0",
    }


@pytest.mark.parametrize("task", OFFICIAL_TASKS)
def test_templates_are_filled(task):
    spec = get_task(task)
    prompt = build_prompt(spec, fake_record(task))
    assert re.search(r"\{\w+\}", prompt) is None
    assert "CONTEXT_TEXT" in prompt
    if "{input}" in spec.prompt_template:
        assert "INPUT_TEXT" in prompt


def test_build_prompt_names_a_missing_field():
    with pytest.raises(ValueError, match="'input'"):
        build_prompt(get_task("hotpotqa"), {"context": "c"})


def test_truncate_middle_keeps_first_and_last_half_tokens(plain_tokenizer):
    prompt = " ".join(WORDS[:20])  # 20 words + <s> = 21 ids
    # max 10 -> half 5: the first five ids are <s> w0..w3 (<s> is dropped when decoding), the last five w15..w19;
    # the two decoded halves are joined directly, as in pred.py.
    assert truncate_middle(prompt, plain_tokenizer, 10) == "w0 w1 w2 w3" + "w15 w16 w17 w18 w19"
    assert truncate_middle(prompt, plain_tokenizer, 11) == "w0 w1 w2 w3" + "w15 w16 w17 w18 w19"  # half = 11 // 2
    assert truncate_middle(prompt, plain_tokenizer, 20) == " ".join(WORDS[:9]) + " ".join(WORDS[10:20])


def test_truncate_middle_leaves_a_fitting_prompt_alone(plain_tokenizer):
    prompt = " ".join(WORDS[:20])
    assert truncate_middle(prompt, plain_tokenizer, 21) == prompt
    with pytest.raises(ValueError, match="at least 2"):
        truncate_middle(prompt, plain_tokenizer, 1)


@pytest.mark.parametrize("task", OFFICIAL_TASKS)
def test_chat_template_rule(task, plain_tokenizer, chat_tokenizer):
    spec = get_task(task)
    prompt = "question w1 w2"
    plain_ids = [1, *plain_tokenizer.convert_tokens_to_ids(["question", "w1", "w2"])]
    assert model_input_ids(spec, prompt, plain_tokenizer, "model") == plain_ids  # no chat template: always plain
    # official (the default): a model pred.py does not list (Qwen2, Mistral, ...) gets the raw prompt
    assert model_input_ids(spec, prompt, chat_tokenizer) == plain_ids
    assert model_input_ids(spec, prompt, chat_tokenizer, "none") == plain_ids
    ids = model_input_ids(spec, prompt, chat_tokenizer, "model")
    if task in NO_CHAT_TEMPLATE_TASKS:
        assert ids == plain_ids
    else:
        rendered = chat_tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        assert rendered == "<s> user question w1 w2 </s> assistant"
        assert ids == chat_tokenizer(rendered, add_special_tokens=False)["input_ids"]
        assert all(isinstance(i, int) for i in ids)


def test_encode_record_truncates_before_the_chat_template(chat_tokenizer):
    spec = get_task("narrativeqa")
    record = fake_record("narrativeqa") | {"context": " ".join(WORDS[:40]), "input": "w1"}
    ids = encode_record(spec, record, chat_tokenizer, max_input_tokens=8, chat_template="model")
    prompt = truncate_middle(build_prompt(spec, record), chat_tokenizer, 8)
    assert ids == model_input_ids(spec, prompt, chat_tokenizer, "model")
    # The template survives: <s> user ... </s> assistant around at most 8 prompt tokens.
    tokens = chat_tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:2] == ["<s>", "user"] and tokens[-2:] == ["</s>", "assistant"]
    assert len(ids) <= 8 + 4


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [
        ("qwen2-7b-instruct", "Q"),
        ("mistral-7b-instruct-v0.2", "Q"),
        ("llama2-7b-chat-4k", "[INST]Q[/INST]"),
        ("Llama-2-7b-chat-hf", "[INST]Q[/INST]"),
        ("internlm-7b-8k", "<|User|>:Q<eoh>\n<|Bot|>:"),
        (
            "longchat-v1.5-7b-32k",
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the user's questions. USER: Q ASSISTANT:",
        ),
        (
            "xgen-7b-8k",
            "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the human's questions.\n\n ### Human: Q\n###",
        ),
    ],
)
def test_official_wrappers_are_pred_py_build_chat(model_name, expected):
    """LongBench v1 pred.py wraps only the families it lists; every other model is fed the raw prompt."""
    assert official_chat_prompt("Q", model_name) == expected


def test_official_mode_wraps_a_listed_family_and_skips_few_shot_tasks(plain_tokenizer):
    prompt = "question w1 w2"
    wrapped = model_input_ids(get_task("narrativeqa"), prompt, plain_tokenizer, "official", "llama2-7b-chat-4k")
    assert wrapped == plain_tokenizer("[INST]question w1 w2[/INST]", truncation=False)["input_ids"]
    raw = model_input_ids(get_task("trec"), prompt, plain_tokenizer, "official", "llama2-7b-chat-4k")
    assert raw == plain_tokenizer(prompt, truncation=False)["input_ids"]
    with pytest.raises(ValueError, match="chat_template = 'chatml' must be one of official, model, none"):
        model_input_ids(get_task("narrativeqa"), prompt, plain_tokenizer, "chatml")
    with pytest.raises(ValueError, match="chatglm's wrapper needs its tokenizer's build_prompt"):
        model_input_ids(get_task("narrativeqa"), prompt, plain_tokenizer, "official", "chatglm2-6b-32k")
