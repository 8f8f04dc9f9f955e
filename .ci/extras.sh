#!/usr/bin/env bash
# The optional extras ([kvpress]: NVIDIA kvpress's presses, sdtp.kv_compression; [lm-eval]: sdtp.lm_eval), run by
# .ci/run after the main suite. kvpress 0.5.2 pins pandas<3, so the extras get one fresh virtualenv of their own
# (mktemp -d), never the suite's: CPU torch, the project with its test extra, then both extras; `pip check`; torch and
# transformers must be unchanged by the extras; then tests/kvpress (with a small DAG of press methods),
# tests/lm_eval_harness, and the lm_eval DAG stage on configs/smoke-lm-eval.yaml in a copy of the project.
# One virtualenv for both extras: one install instead of two. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
venv="$tmp/venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
echo "== install into a fresh virtualenv ($venv): torch, .[test], then .[test,kvpress,lm-eval]"
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
versions='import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")'
before="$(python -c "$versions")"
python -m pip install --quiet -e ".[test,kvpress,lm-eval]"
python -m pip check
after="$(python -c "$versions")"
if [ "$before" != "$after" ]; then
    echo "FAIL: the extras changed $before into $after; bound them in pyproject.toml" >&2
    exit 1
fi
python -c 'from importlib.metadata import version; print("kvpress", version("kvpress"), "lm_eval", version("lm_eval"))'
echo "$after (unchanged by the extras); $((SECONDS - start)) s so far"

echo "== tests/kvpress and tests/lm_eval_harness (the DAG tests run snakemake from this virtualenv)"
python -m pytest -q -rs tests/kvpress tests/lm_eval_harness
echo "   ($((SECONDS - start)) s so far)"

echo "== the lm_eval stage: configs/smoke-lm-eval.yaml, in a copy of the project"
project="$tmp/project"
mkdir "$project"
cp -r Snakefile config.yaml rules schemas configs report envs profiles "$project/"
jobs=()
for job in baseline/r1.0 streaming/r0.5; do
    jobs+=("results-smoke/lm_eval/smoke-qwen2/$job/synthetic_needle_choice.parquet")
done
(cd "$project" && snakemake --cores 2 --quiet rules --configfile configs/smoke-lm-eval.yaml -- "${jobs[@]}")
(cd "$project" && python -m sdtp --log-level WARNING tables --lm-eval "${jobs[@]}" --out-dir "$tmp/tables")
python - "$tmp/tables/lm_eval.parquet" <<'PY'
import sys

import pandas as pd

table = pd.read_parquet(sys.argv[1])
assert set(table.method) == {"baseline", "streaming"} and set(table.metric) == {"acc", "acc_norm"}, table
assert (table.samples == 8).all(), table
columns = ["method", "keep_ratio", "metric", "score", "stderr", "delta_vs_baseline", "mean_compression_ratio"]
print(table[columns].to_string(index=False))
PY
echo "== .ci/extras.sh passed in $((SECONDS - start)) s"
