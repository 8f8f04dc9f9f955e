#!/usr/bin/env bash
# The pinned install (README: "Two installs"), run by .ci/run after the main suite, which ran on the plain install (the
# newest releases inside pyproject's ranges). A fresh virtualenv with `-c envs/constraints.txt`, a check that pip
# installed exactly the pinned versions, then the tests whose outcome a package version can change: every module test
# of the library (the engine, decoder, models, verify, saliency, training, latency and roofline call transformers' and
# torch's internals; tables and figures go through pandas, pyarrow and plotly), the doctor's, and the smoke workflow.
# Left out, because they already ran on the plain install and exercise no version-dependent code of their own: the
# argument-parsing command tests, the LongBench metrics and the browser test. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
venv="$tmp/venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
echo "== install into a fresh virtualenv ($venv) with -c envs/constraints.txt"
python -m pip install --quiet "torch==2.13.0" -c envs/constraints.txt
python -m pip install --quiet -e ".[test]" -c envs/constraints.txt
python -m pip check
python - <<'PY'
import sys
from importlib.metadata import version
from pathlib import Path

from sdtp.doctor import read_constraints

pins = read_constraints(Path("envs/constraints.txt"))
wrong = {name: (pin, version(name)) for name, pin in pins.items() if version(name).split("+")[0] != pin}
if wrong:
    sys.exit(f"FAIL: not the pinned versions (pin, installed): {wrong}")
print(f"{len(pins)} packages at their pinned versions, e.g. transformers {version('transformers')}")
PY

echo "== the version-sensitive tests on the pinned set"
python -m pytest -q tests/test_*.py tests/data tests/report tests/commands/test_doctor_command.py \
    tests/commands/test_latency_command.py tests/commands/test_verify_command.py tests/commands/test_saliency_command.py
echo "== .ci/pinned.sh passed in $((SECONDS - start)) s"
