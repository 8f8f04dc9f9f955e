#!/usr/bin/env bash
# The lm-evaluation-harness part of CI (issue 16), in its own fresh virtualenv: CPU torch, then the project with the
# test and lm-eval extras; the extra must not change torch or transformers; then the harness tests (tests/lm_eval_harness)
# and the lm_eval DAG stage on the smoke config (configs/smoke-lm-eval.yaml) in a copy of the project.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
tmp="$(mktemp -d)"
venv="$tmp/venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
echo "== install into a fresh virtualenv ($venv): torch, .[test], then .[test,lm-eval]"
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"
versions='import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")'
before="$(python -c "$versions")"
python -m pip install --quiet -e ".[test,lm-eval]"
python -m pip check
after="$(python -c "$versions")"
if [ "$before" != "$after" ]; then
    echo "FAIL: the lm-eval extra changed $before into $after; bound lm_eval in pyproject.toml" >&2
    exit 1
fi
echo "$after, lm_eval $(python -c 'import lm_eval; print(lm_eval.__version__)') (unchanged by the extra)"

echo "   ($((SECONDS - start)) s so far)"
echo "== lm_eval tests"
python -m pytest -q tests/lm_eval_harness

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
echo "== .ci/lm_eval.sh passed in $((SECONDS - start)) s"
