"""A tiny model directory with a real byte-level BPE tokenizer (ChatML template) trained on RULER's templates, its noise
sentence and a few essay paragraphs, for the RULER pipeline tests (the workflow's DAG and the commands)."""

from __future__ import annotations

from tiny_models import make_tiny_model
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

from sdtp.ruler.niah import NOISE_SENTENCE
from sdtp.ruler.tasks import FAMILIES
from sdtp.ruler.text import common_words_vocabulary

ESSAY_PARAGRAPHS = [
    "What hard problems have in common is that they look easy from far away. Most people never get close enough to "
    "see them. Why would anyone start a company? Because it is the fastest way to learn what users want.",
    "The best way to get startup ideas is not to try to think of them. Instead, notice problems in your own life. "
    "Users will tell you what to build, if you listen. Live in the future, then build what is missing.",
    "Essays are a way of finding out what you think. You start with a question and follow it wherever it leads. "
    "Sometimes the answer surprises you; sometimes there is none. That is fine too.",
]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_bpe_model(directory) -> None:
    corpus = ESSAY_PARAGRAPHS + [f.template + f.answer_prefix for f in FAMILIES.values()]
    corpus += [NOISE_SENTENCE] * 5 + ["VAR ABCDE = 12345", " ".join(common_words_vocabulary()[:500])]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=1000, min_frequency=1, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                                                     "<|im_end|>"])  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=4096
    )
    tokenizer.chat_template = CHATML
    model = make_tiny_model(
        "qwen2", "sdpa", num_hidden_layers=4, vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, max_position_embeddings=4096,
    )  # fmt: skip
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
