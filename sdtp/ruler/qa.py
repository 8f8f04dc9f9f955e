"""Document QA, RULER's `qa.py`: `qa_1` (SQuAD) and `qa_2` (HotpotQA).

RULER reads the SQuAD v2.0 dev set (`squad.json`) and the HotpotQA dev set in the distractor setting
(`hotpotqa.json`), neither available offline (`tasks.check_tasks_available` says so at parse time):

- SQuAD: documents are the distinct paragraphs, sorted; a question (answerable ones only, in file order) has its own
  paragraph as gold document, the other paragraphs of its article as first distractors, and all of its answer texts
  as references;
- HotpotQA: documents are "title\\nsentences joined", distinct, sorted; a question's gold documents are all ten of
  its paragraphs (RULER's choice), its answer the one reference.

Sample i asks question i. Its `size` documents are the gold ones, then its own distractors, then random others; when
`size` reaches the number of documents, the whole set is repeated instead. They are shuffled (RULER's seeded
shuffle) and written "Document 1:\\n...", separated by blank lines. The document count steps by 10.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from sdtp.ruler.fitting import HaystackBuilder, Sample
from sdtp.ruler.tasks import RulerTask
from sdtp.ruler.text import seeded_shuffle

DOCUMENT = "Document {i}:\n{document}"


@dataclass(frozen=True)
class QaQuestion:
    """One question: text, references, gold document indices, the preferred distractors' indices."""

    query: str
    outputs: list[str]
    gold: list[int]
    more: list[int] = field(default_factory=list)


def read_squad(path: str | Path) -> tuple[list[QaQuestion], list[str]]:
    """(answerable questions in file order, sorted distinct paragraphs) of a SQuAD v2.0 JSON file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    docs = sorted({paragraph["context"] for article in data for paragraph in article["paragraphs"]})
    doc_index = {doc: i for i, doc in enumerate(docs)}
    questions = []
    for article in data:
        article_docs = [doc_index[paragraph["context"]] for paragraph in article["paragraphs"]]
        for paragraph in article["paragraphs"]:
            own = doc_index[paragraph["context"]]
            for qa in paragraph["qas"]:
                if not qa["is_impossible"]:
                    questions.append(QaQuestion(qa["question"], [a["text"] for a in qa["answers"]], [own],
                                                [i for i in article_docs if i != own]))  # fmt: skip
    return questions, docs


def read_hotpotqa(path: str | Path) -> tuple[list[QaQuestion], list[str]]:
    """(questions in file order, sorted distinct documents) of a HotpotQA JSON file (list of records)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))

    def document(title: str, sentences: list[str]) -> str:
        return f"{title}\n{''.join(sentences)}"

    docs = sorted({document(title, sentences) for record in data for title, sentences in record["context"]})
    doc_index = {doc: i for i, doc in enumerate(docs)}
    questions = [
        QaQuestion(record["question"], [record["answer"]], [doc_index[document(t, s)] for t, s in record["context"]])
        for record in data
    ]
    return questions, docs


READERS = {"squad": read_squad, "hotpotqa": read_hotpotqa}


@dataclass
class QaBuilder(HaystackBuilder):
    """Builds `qa_*` samples for one task, target length and seed from RULER's data file at `data_path`."""

    task: RulerTask
    max_seq_length: int
    seed: int
    data_path: Path

    def __post_init__(self) -> None:
        self.questions, self.docs = READERS[self.task.args.dataset](self.data_path)
        if not self.questions:
            raise ValueError(f"RULER task {self.task.name!r}: no answerable question in {self.data_path}")
        self.increment = 10
        self.min_size = 1

    def documents(self, rng: random.Random, question: QaQuestion, size: int) -> list[int]:
        """Indices of the `size` documents around `question` (all its gold ones even when `size` is smaller)."""
        if size >= len(self.docs):
            return (list(range(len(self.docs))) * math.ceil(size / len(self.docs)))[:size]
        wanted = size - len(question.gold)
        if wanted > len(question.more):
            taken = set(question.gold) | set(question.more)
            others = [i for i in range(len(self.docs)) if i not in taken]
            return question.gold + question.more + rng.sample(others, wanted - len(question.more))
        return question.gold + rng.sample(question.more, max(0, wanted))

    def build(self, rng: random.Random, size: int, index: int) -> Sample:
        if index >= len(self.questions):
            raise ValueError(f"RULER task {self.task.name!r}: sample {index} asks question {index}, but "
                             f"{self.data_path} has {len(self.questions)}")  # fmt: skip
        question = self.questions[index]
        chosen = self.documents(rng, question, size)
        seeded_shuffle(chosen, self.seed)
        context = "\n\n".join(DOCUMENT.format(i=i + 1, document=self.docs[d]) for i, d in enumerate(chosen))
        family = self.task.family
        return Sample(
            input=family.template.format(context=context, query=question.query),
            answer_prefix=family.answer_prefix,
            outputs=list(question.outputs),
            metadata={"dataset": self.task.args.dataset, "question_index": index, "num_docs": size,
                      "gold_documents": [i + 1 for i, d in enumerate(chosen) if d in question.gold]},
        )  # fmt: skip
