"""LongBench v1 metrics against hand-computed values and the official harness's rules."""

import math

import pytest

from sdtp.longbench import metrics as M
from sdtp.longbench.tasks import METRIC_NAMES, TaskSpec, register_task

TREC_CLASSES = ["Description", "something", "Description of something", "Location", "Person", "City"]


def lcs_length(a: str, b: str) -> int:
    """Longest common subsequence by dynamic programming (reference for the InDel ratio)."""
    row = [0] * (len(b) + 1)
    for ch_a in a:
        prev_diag = 0
        for j, ch_b in enumerate(b, start=1):
            prev_diag, row[j] = row[j], prev_diag + 1 if ch_a == ch_b else max(row[j], row[j - 1])
    return row[-1]


def fuzzywuzzy_ratio_definition(a: str, b: str) -> int:
    """fuzzywuzzy.fuzz.ratio with python-Levenshtein: equal -> 100, one empty -> 0, else intr(100 * InDel ratio)."""
    if a == b:
        return 100
    if not a or not b:
        return 0
    total = len(a) + len(b)
    indel_distance = total - 2 * lcs_length(a, b)
    return round(100 * ((total - indel_distance) / total))


def test_metric_table_matches_task_metric_names():
    assert set(M.METRICS) == set(METRIC_NAMES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat, sat!", "cat sat"),
        ("an apple a day", "apple day"),
        ("The theatre anthem", "theatre anthem"),  # articles only as whole words
        ("  U.S.A.  is\n big ", "usa is big"),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert M.normalize_answer(text) == expected


def test_qa_f1_exact_after_normalization():
    assert M.qa_f1_score("The Eiffel Tower.", "eiffel tower") == 1.0


def test_qa_f1_partial_overlap():
    # prediction tokens [cat, sat, on, mat], reference [cat, sat]: P = 1/2, R = 1, F1 = 2/3
    assert M.qa_f1_score("A cat sat on the mat", "The cat sat") == pytest.approx(2 / 3)


def test_qa_f1_counts_tokens_as_a_multiset():
    # common = {cat: 1, dog: 1}: P = R = 2/3
    assert M.qa_f1_score("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)


def test_qa_f1_empty_or_disjoint_prediction_scores_zero():
    assert M.qa_f1_score("", "Paris") == 0.0
    assert M.qa_f1_score("the", "Paris") == 0.0  # only an article: nothing left after normalization
    assert M.qa_f1_score("London", "Paris") == 0.0


def test_rouge_l_f_of_the_rouge_package():
    # The package's summary-level ROUGE-L counts distinct words: R = 3/5, P = 3/3, F = 0.75 (less its epsilon).
    assert M.rouge_score("the cat sat", "the cat sat on the mat") == pytest.approx(0.75, abs=1e-7)
    assert M.rouge_score("the cat sat", "the cat sat") == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize(("prediction", "reference"), [("", "a summary"), ("...", "a summary"), ("a summary", "")])
def test_rouge_errors_give_zero(prediction, reference):
    assert M.rouge_score(prediction, reference) == 0.0


def test_classification_single_and_multiple_matches():
    assert M.classification_score("Person", "Person", all_classes=TREC_CLASSES) == 1.0
    assert M.classification_score("Person or City", "City", all_classes=TREC_CLASSES) == 0.5
    assert M.classification_score("Location", "Person", all_classes=TREC_CLASSES) == 0.0
    assert M.classification_score("no idea", "Person", all_classes=TREC_CLASSES) == 0.0


def test_classification_drops_matches_inside_the_ground_truth_with_the_official_skip():
    # Matches: [Description, something, Description of something]. "Description" is a substring of the ground truth and
    # is dropped; the official loop then skips "something" (it removes from the list it iterates), which stays.
    prediction = "Description of something"
    assert M.classification_score(prediction, "Description of something", all_classes=TREC_CLASSES) == 0.5


def test_classification_needs_all_classes():
    with pytest.raises(ValueError, match="all_classes"):
        M.classification_score("Person", "Person")


def test_retrieval_score():
    assert M.retrieval_score("Paragraph 3", "Paragraph 3") == 1.0
    assert M.retrieval_score("Paragraph 3 or Paragraph 13", "Paragraph 3") == 0.5
    assert M.retrieval_score("I do not know", "Paragraph 3") == 0.0
    assert M.retrieval_zh_score("段落3", "段落3") == 1.0
    with pytest.raises(ValueError, match="Paragraph"):
        M.retrieval_score("Paragraph 3", "the third one")


def test_count_score():
    assert M.count_score("There are 5 unique paragraphs.", "5") == 1.0
    assert M.count_score("5, or maybe 6", "5") == 0.5
    assert M.count_score("many", "5") == 0.0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("", ""),
        ("", "x = 1"),
        ("x = 1", "x = 1"),
        ("return self.value", "return self.values"),
        ("ababab", "aaaaab"),  # 67 with python-Levenshtein, 33 with the difflib fallback
        ("abcdefgh", "axxxxxxx"),  # 12.5 -> 12 (round half to even, as fuzzywuzzy's intr)
        ("abcdefgh", "abcxxxxx"),  # 37.5 -> 38
        ("for i in range(10):", "for j in range(len(xs)):"),
        ("    def forward(self, x):", "def forward(self, hidden_states):"),
    ],
)
def test_fuzz_ratio_equals_fuzzywuzzy_definition(a, b):
    assert M.fuzz_ratio(a, b) == fuzzywuzzy_ratio_definition(a, b)
    assert M.fuzz_ratio(b, a) == fuzzywuzzy_ratio_definition(b, a)


def test_fuzz_ratio_known_values():
    assert M.fuzz_ratio("ababab", "aaaaab") == 67
    assert M.fuzz_ratio("abcdefgh", "axxxxxxx") == 12


def test_code_sim_takes_first_plain_code_line():
    prediction = "\n\n```python\n# the next line\n// js comment\nx = foo(1)\ny = 2"
    assert M.code_sim_score(prediction, "x = foo(1)") == 1.0
    # A whitespace-only line qualifies too, as in the official code.
    assert M.code_sim_score("# comment\n  \nx = foo(1)", "x = foo(1)") == M.fuzz_ratio("  ", "x = foo(1)") / 100
    assert M.code_sim_score("# only a comment", "x = 1") == 0.0
    assert M.code_sim_score("", "x = 1") == 0.0


def test_chinese_metrics():
    assert M.qa_f1_zh_score("北京。", "北京") == 1.0
    assert M.qa_f1_zh_score("", "北京") == 0.0
    assert M.rouge_zh_score("我来到北京清华大学", "我来到北京清华大学") == pytest.approx(1.0, abs=1e-7)
    assert M.classification_score("体育新闻", "体育", all_classes=["体育", "财经"]) == 1.0


def test_sample_score_is_max_over_answers():
    answers = ["London", "Paris", "Paris France"]
    assert M.score_sample("narrativeqa", "Paris", answers) == 1.0
    assert M.score_sample("narrativeqa", "Berlin", answers) == 0.0
    assert M.score_sample("narrativeqa", "Paris", []) == 0.0


@pytest.mark.parametrize("task", ["triviaqa", "samsum"])
def test_first_line_only_tasks_score_the_first_line(task):
    prediction = "\n\nParis\nThe answer is Berlin"
    assert M.score_sample(task, prediction, ["Paris"]) == pytest.approx(1.0, abs=1e-7)
    assert M.score_sample(task, prediction, ["The answer is Berlin"]) < 0.5


def test_first_line_rule_for_classification_tasks():
    assert M.score_sample("trec", "Location\nPerson", ["Person"], all_classes=TREC_CLASSES) == 0.0
    assert M.score_sample("lsht", "\n财经\n体育", ["财经"], all_classes=["体育", "财经"]) == 1.0


def test_other_tasks_score_the_whole_prediction():
    prediction = "\n\nParis\nThe answer is Berlin"
    # narrativeqa keeps every line: tokens [paris, answer, is, berlin] vs [paris]: P = 1/4, R = 1
    assert M.score_sample("narrativeqa", prediction, ["Paris"]) == pytest.approx(0.4)
    assert M.score_sample("hotpotqa", prediction, ["Berlin"]) == pytest.approx(0.4)


def test_score_task_rounds_100_times_the_mean_to_two_decimals():
    assert M.score_task("hotpotqa", ["Paris", "x", "y"], [["Paris"], ["Paris"], ["Paris"]]) == 33.33
    assert M.score_task("hotpotqa", ["Paris", "Paris", "y"], [["Paris"], ["Paris"], ["Paris"]]) == 66.67
    assert M.score_task("trec", ["Person", "City"], [["Person"], ["Person"]], all_classes=TREC_CLASSES) == 50.0


def test_score_task_rejects_bad_inputs():
    with pytest.raises(ValueError, match="no predictions"):
        M.score_task("hotpotqa", [], [])
    with pytest.raises(ValueError, match="answer lists"):
        M.score_task("hotpotqa", ["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="unknown LongBench task"):
        M.score_task("nosuchtask", ["a"], [["a"]])


def test_length_buckets():
    lengths = (0, 3999, 4000, 7999, 8000, 50000)
    assert [M.length_bucket(n) for n in lengths] == ["0-4k", "0-4k", "4-8k", "4-8k", "8k+", "8k+"]


def test_score_task_e_buckets_and_empty_bucket_is_nan():
    predictions = ["Paris", "x", "Paris", "Paris"]
    answers = [["Paris"]] * 4
    scores = M.score_task_e("hotpotqa", predictions, answers, lengths=[100, 3999, 4000, 7999])
    assert list(scores) == ["0-4k", "4-8k", "8k+"]
    assert scores["0-4k"] == 50.0
    assert scores["4-8k"] == 100.0
    assert math.isnan(scores["8k+"])
    with pytest.raises(ValueError, match="lengths"):
        M.score_task_e("hotpotqa", predictions, answers, lengths=[100])


def test_registered_task_is_scored_with_its_metric():
    register_task(
        TaskSpec(
            name="test_metrics_synthetic_qa",
            prompt_template="{context}\nQ: {input}\nA:",
            max_new_tokens=8,
            metric_name="qa_f1_score",
            uses_chat_template=False,
            language="en",
        )
    )
    assert M.score_task("test_metrics_synthetic_qa", ["blue\nred"], [["blue red"]]) == 100.0
