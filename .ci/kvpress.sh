#!/usr/bin/env bash
# The [kvpress] extra (NVIDIA kvpress's KV-cache presses: sdtp.kv_compression), run by .ci/run after the main suite.
# kvpress 0.5.2 pins pandas<3, so it gets a fresh virtualenv of its own (mktemp -d), never the suite's: CPU torch
# first, then the project with its test and kvpress extras; `pip check`; torch and transformers must be the versions
# of the interpreter that ran the main suite (the extra must not downgrade them); then tests/kvpress, which include a
# small DAG with press methods (the smoke config with kvpress:snapkv, kvpress:streaming_llm and random+snapkv).
# Budget: 4 minutes on 2 cores. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

main_python="$(command -v python || command -v python3)"
versions='import torch, transformers; print(torch.__version__.split("+")[0], transformers.__version__)'
main_versions="$("$main_python" -c "$versions")"

venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
echo "== [kvpress] extra into a fresh virtualenv ($venv)"
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet -e ".[test,kvpress]"
"$venv/bin/python" -m pip check
"$venv/bin/python" -c 'from importlib.metadata import version; print("kvpress", version("kvpress"))'
kvpress_versions="$("$venv/bin/python" -c "$versions")"
echo "torch, transformers: main suite $main_versions; with kvpress $kvpress_versions"
if [ "$main_versions" != "$kvpress_versions" ]; then
    echo "the [kvpress] extra changed torch/transformers ($main_versions -> $kvpress_versions): bound it in pyproject.toml" >&2
    exit 1
fi
echo "   ($((SECONDS - start)) s)"

echo "== tests/kvpress (the DAG test runs snakemake from this virtualenv)"
status=0
"$venv/bin/python" -m pytest -q -rs tests/kvpress || status=$?
echo ".ci/kvpress.sh: $((SECONDS - start)) s, exit $status"
exit "$status"
