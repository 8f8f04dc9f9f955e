"""Seeded synthetic long-context QA in LongBench's record format: the offline demo's world.

A context is mostly filler sentences with a few *needles* scattered at random sentence boundaries: sentences
"the passkey SLOT is VALUE." for the slots colour, animal and city. The answer is made of needle values. Random
pruning loses needles; a pruner that learned to keep the needle tokens does not.

Tasks (see `SYNTHETIC_TASKS`, `TASK_SLOTS`):
- `synthetic_passkey` — two needles (colour, animal) far apart; the answer is both, "COLOUR ANIMAL" (e.g. "crimson
  falcon"): every needle must survive pruning.
- `synthetic_needle_qa` — three needles (colour, animal, city); the question asks the colour or the animal, the other
  two needles are distractors. The pruner cannot know the question while the context is prefilled (causal
  attention), so it must keep every needle; the model must pick the asked one.

Designed for learnability by a tiny model. What was tried (6-layer d=64 Qwen2, 2 CPU threads, AdamW, batch 32):
a key → value lookup among distractor facts ("the secret code of NAME is COLOUR ANIMAL NUMBER.") stayed at 0% exact
match after 500 steps; a 3-needle passkey (colour, animal, 2-digit number) learned the first two tokens within 400
steps but the third stayed at chance for 700 more at lr 1e-3 (never at lr 3e-3); a 2-needle passkey reaches 100% in
~300 steps at 28-48 words; asking one slot of five learned to ~35% in 1000 steps; of three (colour, animal, digits)
to 68% after 2000 steps — 100% on colour and animal, ~0% on digits; with city instead of digits it stalled the same
way: the model learns to copy the value classes the passkey teaches, and a third class far more slowly than the ten
minutes allow. Hence the tasks
above, a short-context curriculum and the passkey first (`sdtp.demo_model`). Every slot's values come from their own
sub-vocabulary, disjoint from all others and from the filler, so retrieving the answer is content-based attention
("find the colour word") rather than an induction circuit; the marker words (passkey, the slot names) never occur in the
filler; the world's vocabulary is closed (`vocabulary_texts` lists it for the word-level tokenizer).

A record has exactly LongBench's fields: `input` (the question), `context`, `answers` (list[str]), `length` (context
words, `len(context.split())` as LongBench counts English), `dataset` (task name), `language` ("en"), `all_classes`
(None), `_id` (48 hex digits derived from task, split, seed and index). The model input is
`SYNTHETIC_TASKS[task]["prompt_template"].format(**record)` (`build_prompt`). Every record is drawn from its own RNG
seeded by (task, split, seed, index), so record i is the same whatever n is, and the train split never repeats a test
record's draw.
"""

from __future__ import annotations

import hashlib
import random

# --- the closed world -------------------------------------------------------------------------------------------------

FILLER_WORDS: tuple[str, ...] = tuple(
    """
    a about above across after again against all almost along also always among an another around as at away back bad
    be because been before behind being below best better between big both bright but by came can carry change clear
    close cold come could dark day deep did different does done down during each early earth easy end enough even ever
    every far fast few field find first follow for found free from full gave get go good great green ground group grow
    had half hand hard has have he heard help her here high hill him his hold home house how i idea if into it its just
    keep kind knew know land large last late later learn leave left less let life light like line little live long look
    low made make many may mean might mind more morning most move much must my near need never new next night no now
    number often old on once one open or order our out over own page paper part people picture place plant play point
    possible put quick quiet rain real rest right river road rock room round run said same saw say sea second see seem
    set she short should show side since small so some something sometimes song soon sound spring stand start state
    still stone story street strong such sun sure table take talk tell than that them then there these they thing think
    this those thought three through time to together told too took toward tree try turn two under until up upon us use
    very walk wall want warm was watch water way we well went were when which while white who why wide will wind with
    without wood word work world would write year yes yet you young
    """.split()
)

NAMES: tuple[str, ...] = tuple(
    """
    alice bruno carla dmitri elena farid greta hugo irene jonas kira lars mila nadia oscar petra quentin rosa samir
    tomas ursula viktor wanda xavier yusuf zelda anton bianca cyril daria emil fiona gustav helga igor jana konrad
    leona marek nora otto paula rufus selma theo una vera walter yara zeno agnes boris clara
    """.split()
)

CITIES: tuple[str, ...] = tuple(
    """
    amsterdam berlin cairo dublin edinburgh florence geneva hamburg istanbul jakarta kyoto lisbon madrid nairobi oslo
    prague quito riga santiago tokyo utrecht vienna warsaw zagreb athens bergen chicago delhi essen frankfurt glasgow
    helsinki
    """.split()
)

COLORS: tuple[str, ...] = tuple(
    """
    amber azure beige black blue bronze coral crimson cyan emerald golden gray indigo ivory jade lavender lemon lilac
    magenta maroon navy olive orange pink purple red ruby scarlet silver teal violet yellow
    """.split()
)

ANIMALS: tuple[str, ...] = tuple(
    """
    badger beaver bison camel cobra condor coyote crane dolphin eagle falcon ferret gecko gorilla hawk heron hyena
    jaguar koala lemur leopard llama lynx moose otter panda parrot pelican penguin rabbit raven salmon seal shark tiger
    turtle walrus weasel whale wolf yak zebra
    """.split()
)

NUMBERS: tuple[str, ...] = tuple(
    str(i) for i in range(10, 40)
)  # small: a tiny model learns to copy from few values faster

# Marker words: they appear only in needles and questions, never in the filler.
NEEDLE = "the passkey {slot} is {value}."
QUESTION_PASSKEY = "What is the passkey?"
QUESTION_SLOT = "What is the passkey {slot}?"
SLOTS: dict[str, tuple[str, ...]] = {
    "person": NAMES,
    "city": CITIES,
    "colour": COLORS,
    "animal": ANIMALS,
    "digits": NUMBERS,
}

PROMPT_TEMPLATE = (
    "Read the passage and answer the question. Only give me the answer and do not output any other words.\n\n"
    "Passage:\n{context}\n\n"
    "Question: {input}\nAnswer:"
)

SYNTHETIC_TASKS: dict[str, dict] = {
    "synthetic_passkey": {"prompt_template": PROMPT_TEMPLATE, "max_new_tokens": 8, "metric": "qa_f1_score"},
    "synthetic_needle_qa": {"prompt_template": PROMPT_TEMPLATE, "max_new_tokens": 8, "metric": "qa_f1_score"},
}

# The needles' slots per task, in answer order for `synthetic_passkey`; the slots `synthetic_needle_qa` may ask (its
# city needle is a distractor that is never asked).
TASK_SLOTS = {"synthetic_passkey": ("colour", "animal"), "synthetic_needle_qa": ("colour", "animal", "city")}
ASKED_SLOTS = ("colour", "animal")

FILLER_SENTENCE_WORDS = (5, 12)  # inclusive range of words in one filler sentence


def vocabulary_texts() -> list[str]:
    """Texts that together contain every token of the world, in a fixed order (for building the tokenizer's vocab)."""
    texts = [PROMPT_TEMPLATE, NEEDLE, QUESTION_PASSKEY, QUESTION_SLOT, " ".join(SLOTS)]
    for words in (FILLER_WORDS, NAMES, CITIES, COLORS, ANIMALS, NUMBERS):
        texts.append(" ".join(words))
    return texts


# --- generation -------------------------------------------------------------------------------------------------------


def record_id(task: str, split: str, seed: int, index: int) -> str:
    """Stable 48-hex-digit id of record `index` of (task, split, seed), like LongBench's `_id`."""
    return hashlib.sha256(f"{task}|{split}|{seed}|{index}".encode()).hexdigest()[:48]


def _needles(rng: random.Random, task: str) -> tuple[list[str], str, str]:
    """(needle sentences, question, answer) of one record."""
    slots = TASK_SLOTS[task]
    values = {slot: rng.choice(SLOTS[slot]) for slot in slots}
    needles = [NEEDLE.format(slot=slot, value=values[slot]) for slot in slots]
    if task == "synthetic_passkey":
        return needles, QUESTION_PASSKEY, " ".join(values[slot] for slot in slots)
    asked = rng.choice(ASKED_SLOTS)
    return needles, QUESTION_SLOT.format(slot=asked), values[asked]


def _filler_sentences(rng: random.Random, num_words: int) -> list[str]:
    """Filler sentences with exactly `num_words` words in total (the last one may be shorter than the minimum)."""
    lo, hi = FILLER_SENTENCE_WORDS
    sentences = []
    while num_words > 0:
        n = min(rng.randint(lo, hi), num_words)
        sentences.append(" ".join(rng.choice(FILLER_WORDS) for _ in range(n)) + ".")
        num_words -= n
    return sentences


def _context(rng: random.Random, facts: list[str], context_words: int) -> str:
    """Filler with `facts` shuffled and inserted at random sentence boundaries; exactly `context_words` words.

    Facts go to distinct boundaries when the filler has enough sentences (short contexts may put two side by side).
    """
    fact_words = sum(len(f.split()) for f in facts)
    if context_words < fact_words:
        raise ValueError(f"context_words={context_words} is too short for {len(facts)} facts; need >= {fact_words}")
    sentences = _filler_sentences(rng, context_words - fact_words)
    facts = list(facts)
    rng.shuffle(facts)
    # len(sentences) + 1 boundaries (before the first sentence … after the last).
    boundaries = range(len(sentences) + 1)
    if len(boundaries) >= len(facts):
        slots = sorted(rng.sample(boundaries, len(facts)))
    else:
        slots = sorted(rng.choices(boundaries, k=len(facts)))
    for offset, (slot, fact) in enumerate(zip(slots, facts, strict=True)):
        sentences.insert(slot + offset, fact)
    return " ".join(sentences)


def _draw_context_words(rng: random.Random, context_words: int | tuple[int, int]) -> int:
    if isinstance(context_words, int):
        return context_words
    lo, hi = context_words
    return rng.randint(lo, hi)


def make_record(task: str, index: int, context_words: int | tuple[int, int], seed: int, split: str = "test") -> dict:
    """Record `index` of (task, split, seed): a LongBench-format dict; a (lo, hi) `context_words` draws the length."""
    if task not in TASK_SLOTS:
        raise ValueError(f"unknown synthetic task {task!r}; known: {sorted(TASK_SLOTS)}")
    rng = random.Random(f"{task}|{split}|{seed}|{index}")
    num_words = _draw_context_words(rng, context_words)
    needles, question, answer = _needles(rng, task)
    context = _context(rng, needles, num_words)
    return {
        "input": question,
        "context": context,
        "answers": [answer],
        "length": len(context.split()),
        "dataset": task,
        "language": "en",
        "all_classes": None,
        "_id": record_id(task, split, seed, index),
    }


def generate_records(task: str, n: int, context_words: int | tuple[int, int], seed: int) -> list[dict]:
    """`n` evaluation records of `task` (LongBench format), each with `context_words` words of context.
    Deterministic."""
    return [make_record(task, i, context_words, seed, split="test") for i in range(n)]


def build_prompt(record: dict) -> str:
    """The model input of a record: its task's prompt template filled with the record's fields."""
    return SYNTHETIC_TASKS[record["dataset"]]["prompt_template"].format(**record)


def generate_training_examples(
    n: int,
    context_words: int | tuple[int, int],
    seed: int,
    tasks: list[str] | None = None,
    start: int = 0,
) -> list[dict]:
    """Training examples `start` … `start + n - 1` (the Dolly-15k role), cycling through `tasks` (default: all).

    Each example is {"task", "prompt", "response", "_id"}: `prompt` is the filled prompt template exactly as at
    evaluation, `response` the reference answer; the text a model learns is `prompt + " " + response`. The train split
    draws from other RNG streams than `generate_records`, so no example repeats an evaluation record.
    """
    tasks = list(tasks or SYNTHETIC_TASKS)
    examples = []
    for i in range(start, start + n):
        record = make_record(tasks[i % len(tasks)], i, context_words, seed, split="train")
        examples.append(
            {
                "task": record["dataset"],
                "prompt": build_prompt(record),
                "response": record["answers"][0],
                "_id": record["_id"],
            }
        )
    return examples
