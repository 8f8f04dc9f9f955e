"""Offline fixtures for the RULER tests: a small essay haystack written here and a byte-level BPE tokenizer trained on
it (a real tokenizer of the kind RULER counts lengths with), with a ChatML chat template."""

from __future__ import annotations

import pytest
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

from sdtp.ruler.tasks import FAMILIES
from sdtp.ruler.text import common_words_vocabulary

ESSAY_PARAGRAPHS = [
    "July 2010. What hard problems have in common is that they look easy from far away. Most people never get close "
    "enough to see them. The ones who do are often surprised! Why would anyone start a company? Because it is the "
    "fastest way to learn what users want.",
    "When I was in college I wanted to write software for Mr. Smith, the founder of a small shop on St. Mark's Place. "
    'He said "Come back next year." I did. The shop had closed, e.g. because rent went up, and the U.S. economy was '
    "slow.",
    "The best way to get startup ideas is not to try to think of them. Instead, notice problems in your own life. "
    "Users will tell you what to build (if you listen). Live in the future, then build what's missing.",
    "Essays are a way of finding out what you think. You start with a question and follow it wherever it leads. "
    "Sometimes the answer surprises you; sometimes there is none. That is fine too.",
]
ESSAY_TEXT = "\n\n".join(ESSAY_PARAGRAPHS) + "\n"
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def essay_text() -> str:
    return ESSAY_TEXT


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    corpus = ESSAY_PARAGRAPHS + [f.template + f.answer_prefix for f in FAMILIES.values()]
    corpus += ["VAR ABCDE = 12345", "1. word 2. another 3. third", " ".join(common_words_vocabulary())]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=2000, min_frequency=1, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                                                    "<|im_end|>"])  # fmt: skip
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=1 << 20
    )
    tok.chat_template = CHATML
    return tok
