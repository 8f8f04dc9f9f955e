"""Word-level tokenizer of the synthetic world (closed vocabulary), as a `transformers` fast tokenizer.

One token per lower-cased word and one per punctuation character; the vocabulary is every token of
`synthetic.vocabulary_texts()` plus the special tokens. Encoding prepends `<s>` (a stable first token, an attention
sink); decoding joins tokens with single spaces, so a generated answer decodes to the same string as the reference
("crimson falcon 42"). There is no chat template: the demo prompts are plain LongBench-style text.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from sdtp.data.synthetic import vocabulary_texts

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3


def _normalizer() -> normalizers.Normalizer:
    return normalizers.Lowercase()


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # Whitespace splits into \w+ runs and punctuation runs; Punctuation then isolates each punctuation character.
    return pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation(behavior="isolated")])


def world_vocabulary() -> list[str]:
    """Special tokens, then every token of the synthetic world in first-seen order (deterministic)."""
    normalizer, pre_tokenizer = _normalizer(), _pre_tokenizer()
    vocab = list(SPECIAL_TOKENS)
    seen = set(vocab)
    for text in vocabulary_texts():
        for token, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            if token not in seen:
                seen.add(token)
                vocab.append(token)
    return vocab


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The demo world's word-level tokenizer with `<pad>`, `<s>` (bos, prepended), `</s>` (eos) and `<unk>` set."""
    vocab = {token: i for i, token in enumerate(world_vocabulary())}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = _normalizer()
    tokenizer.pre_tokenizer = _pre_tokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        padding_side="left",  # batched generation appends after the prompt
        model_max_length=1_000_000,
    )
