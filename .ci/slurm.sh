#!/usr/bin/env bash
# The workflow on a real single-node SLURM cluster (tests/slurm): run by .ci/run after the main suite, inside its
# virtualenv, as root. Brings the cluster up (tests/slurm/cluster.sh: apt packages, munge, slurmctld, slurmd, 4 fake
# GPUs; idempotent), installs the project's [slurm] extra (snakemake-executor-plugin-slurm) into the active virtualenv
# after checking it downgrades nothing, runs tests/slurm with SDTP_SLURM_CLUSTER=1 (the main suite skips it without),
# prints every sbatch submission, and tears the daemons down by PID. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "NOTE: .ci/slurm.sh needs root and apt-get to set up SLURM; skipped" >&2
    exit 0
fi

echo "== [slurm] extra into $(python -c 'import sys; print(sys.prefix)')"
before="$(python -m pip freeze)"
python -m pip install --quiet -e ".[slurm]"
python -m pip check
downgraded="$(python - "$before" <<'PY'
import sys
from importlib.metadata import version
from packaging.version import Version

for line in sys.argv[1].splitlines():
    if "==" in line:
        name, old = line.split("==", 1)
        try:
            if Version(version(name)) < Version(old):
                print(f"{name} {old} -> {version(name)}")
        except Exception:  # noqa: BLE001 - a package removed or with a non-PEP 440 version: not a downgrade
            pass
PY
)"
if [ -n "$downgraded" ]; then
    echo "the [slurm] extra downgraded: $downgraded" >&2
    exit 1
fi
python -c 'from importlib.metadata import version as v; p = "snakemake-executor-plugin-slurm"; print(p, v(p))'

echo "== single-node SLURM cluster"
export SDTP_SLURM_DIR="${SDTP_SLURM_DIR:-/tmp/sdtp-slurm}"
export SDTP_SLURM_ARTIFACTS="$SDTP_SLURM_DIR/runs"
trap 'bash tests/slurm/cluster.sh down' EXIT
bash tests/slurm/cluster.sh up
rm -rf "$SDTP_SLURM_ARTIFACTS"

echo "== tests/slurm"
status=0
SDTP_SLURM_CLUSTER=1 python -m pytest -q -s tests/slurm || status=$?

echo "== sbatch submissions (the executor plugin's calls, without the job script it wraps)"
for log in "$SDTP_SLURM_ARTIFACTS"/*.log; do
    [ -f "$log" ] || continue
    echo "-- $(basename "$log" .log)"
    grep '^sbatch call:' "$log" | sed 's/ --wrap=.*//' || echo "(none)"
done
echo "== squeue --states=all"
squeue --states=all -o '%.6i %.9T %.10M %.20S %b %k' || true
echo ".ci/slurm.sh: $((SECONDS - start)) s, exit $status"
exit "$status"
