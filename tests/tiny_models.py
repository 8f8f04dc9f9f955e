"""Tiny causal LMs built from configs inside the tests (no hub), deterministic, and the small inputs and fixture
files built for them that tests in several files (and folders) share."""

from __future__ import annotations

import json
import zipfile

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

TINY = dict(
    vocab_size=101,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=5,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)

FAMILIES = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": None}),
}


def make_tiny_model(family: str = "qwen2", attn: str = "eager", dtype=torch.float32, seed: int = 0, **overrides):
    """A tiny random causal LM of `family` with weights scaled up so that attention is far from uniform."""
    config_cls, model_cls, extra = FAMILIES[family]
    config = config_cls(**{**TINY, **extra, **overrides})
    config._attn_implementation = attn
    torch.manual_seed(seed)
    model = model_cls(config)
    with torch.no_grad():
        # Default init (std 0.02) gives near-uniform attention; larger weights make pruning choices matter.
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.15)
    return model.to(dtype).eval().requires_grad_(False)


def make_eos_model(eos_token_id: int = 0, **overrides):
    """A tiny SDPA Qwen2 that greedily emits EOS (`eos_token_id`, in its config and generation config) at every
    position: its LM head gets a bias putting EOS far ahead of every other token. Random tiny models never emit EOS,
    so only a model like this shows whether a decode that must produce exactly N tokens really ignores EOS."""
    model = make_tiny_model("qwen2", "sdpa", eos_token_id=eos_token_id, **overrides)
    head = model.lm_head
    biased_head = torch.nn.Linear(head.in_features, head.out_features, bias=True, dtype=head.weight.dtype)
    with torch.no_grad():
        biased_head.weight.copy_(head.weight)
        biased_head.bias.zero_()
        biased_head.bias[eos_token_id] = 1e4  # its other logits are a few units: EOS wins from any hidden state
    model.lm_head = biased_head.eval().requires_grad_(False)
    model.generation_config.eos_token_id = eos_token_id
    return model


# The `model:` settings section a command receives for a tiny model saved into a local directory (`--model-dir`).
TINY_MODEL_SETTINGS = {
    "name": "tiny",
    "source": "demo",
    "dtype": "float32",
    "attn_implementation": "sdpa",
    "device": "cpu",
}


def save_tiny_model(directory, family: str = "qwen2", **overrides):
    """Save a tiny SDPA model with `save_pretrained` into `directory` (for commands run with `--model-dir`)."""
    model = make_tiny_model(family, "sdpa", **overrides)
    model.save_pretrained(directory)
    return model


def run_cli(*argv) -> None:
    """Run `python -m sdtp ARGV` in-process; it must succeed."""
    from sdtp.commands.cli import main as cli_main

    assert cli_main([*map(str, argv)]) == 0


# --- token ids for a tiny model: random prompts, prompt + answer, pruner training samples ----------------------------


def random_ids(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 101, (1, n), generator=torch.Generator().manual_seed(seed))


def prompt_and_answer(vocab: int, prompt: int, answer: int, seed: int):
    ids = torch.randint(4, vocab, (1, prompt + answer), generator=torch.Generator().manual_seed(seed))
    labels = ids.clone()
    labels[:, :prompt] = -100
    return ids, labels


def make_samples(model, layers, count=4, prompt=40, response=8, seed=0):
    """Synthetic samples: random prompt, response = a copy of the prompt's start (so the prompt matters)."""
    from sdtp.pruner_training import PrunerSample
    from sdtp.saliency import token_saliency

    samples = []
    for i in range(count):
        prompt_ids = random_ids(prompt, seed + i)
        ids = torch.cat([prompt_ids, prompt_ids[:, 4 : 4 + response]], dim=1)
        labels = ids.clone()
        labels[:, :prompt] = -100
        saliency = token_saliency(model, ids, layers, labels=labels)
        samples.append(PrunerSample(i, ids, labels, saliency))
    return samples


# --- a Dolly-15k file -------------------------------------------------------------------------------------------------


def write_dolly_fixture(path):
    records = [
        {"instruction": "Name a colour.", "context": "", "response": "Red.", "category": "open_qa"},
        {"instruction": "Summarise.", "context": "A long text.", "response": "Short.", "category": "summarization"},
        {"instruction": "Count.", "context": "", "response": "Three.", "category": "open_qa"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# --- a LongBench v1 world: records of two tasks, their data.zip, a word-level tokenizer and a tiny model over it ------

V1_TASKS = ("hotpotqa", "triviaqa")  # hotpotqa gets the chat template, triviaqa (few-shot) does not
EOS, PAD, BOS, UNK, USER, ASSISTANT = "</s>", "<pad>", "<s>", "<unk>", "<|user|>", "<|assistant|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|user|>{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def fixture_record(task: str, i: int) -> dict:
    """Record i of a fixture task: record 0 is long (the prompt gets truncated), the others short. Lengths 3000 + 2000 i
    put the first two records in LongBench-E buckets 0-4k and 4-8k."""
    num_words = 150 if i == 0 else 40
    context = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(num_words))
    return {
        "input": f"which word follows {WORDS[i]} ?",
        "context": context,
        "answers": [WORDS[i + 1]],
        "length": 3000 + 2000 * i,
        "dataset": task,
        "language": "en",
        "all_classes": None,
        "_id": f"{task}-{i}",
    }


def make_fixture_zip(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/", "")
        for task in V1_TASKS:
            zf.writestr(f"data/{task}.jsonl", "".join(json.dumps(fixture_record(task, i)) + "\n" for i in range(3)))
    return path


def make_fixture_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the fixture's words and the two tasks' templates; `<s>` prepended; EOS is id 0 and a
    simple chat template wraps a user turn in <|user|> … <|assistant|>."""
    from sdtp.longbench.tasks import get_task

    normalizer = normalizers.Lowercase()
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    vocab = [EOS, PAD, BOS, UNK, USER, ASSISTANT]
    texts = [get_task(t).prompt_template for t in V1_TASKS] + [" ".join(WORDS), "which word follows ?"]
    for text in texts:
        for token, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            if token not in vocab:
                vocab.append(token)
    ids = {token: i for i, token in enumerate(vocab)}
    backend = Tokenizer(models.WordLevel(vocab=ids, unk_token=UNK))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, ids[BOS])])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT],
        model_max_length=1_000_000,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_fixture_model(tokenizer):
    """A tiny SDPA Qwen2 over `tokenizer`'s vocabulary and special tokens."""
    return make_tiny_model(
        "qwen2",
        attn="sdpa",
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


# --- a Qwen2-7B-shaped config (no weights): for memory and FLOPs estimates of the paper's model -----------------------


def qwen2_7b_config(**overrides):
    """Qwen2-7B's shape (28 layers, d=3584, 28 heads, 4 KV heads, vocab 152,064) as a config, without weights."""
    from transformers import Qwen2Config

    shape = dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
    )  # fmt: skip
    return Qwen2Config(**{**shape, **overrides})
