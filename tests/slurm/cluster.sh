#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/slurm: `cluster.sh up` (idempotent) or `cluster.sh down`.
# Needs root and apt (Debian/Ubuntu): installs slurmctld, slurmd, slurm-client and munge if missing. The node declares
# 4 CPUs (SlurmdParameters=config_overrides: more than a 2-core machine has, so 4 one-CPU jobs run at once), 16 GB and
# 4 fake GPUs (character devices /dev/fakegpu0-3: slurmd rejects plain files, and then sets no CUDA_VISIBLE_DEVICES).
# No cgroups, no slurmdbd (accounting_storage/none: `sacct` fails, so the executor plugin polls with `squeue`, which
# sees a finished job for MinJobAge seconds: an hour here, so the test can list every job it ran). Everything lives in
# $SDTP_SLURM_DIR (default /tmp/sdtp-slurm); clients find the cluster through /etc/slurm/slurm.conf, a link to
# $SDTP_SLURM_DIR/slurm.conf (refused when another cluster's config is there). `down` stops the daemons by their PIDs
# and removes the links.
set -euo pipefail

dir="${SDTP_SLURM_DIR:-/tmp/sdtp-slurm}"
conf="$dir/slurm.conf"
host="$(hostname -s)"

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {  # stop_pid FILE NAME: SIGTERM the daemon whose PID is in FILE, wait, remove the file
    local file="$1" name="$2"
    if pid_alive "$file"; then
        local pid
        pid="$(cat "$file")"
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$file"
}

down() {
    stop_pid "$dir/slurmd.pid" slurmd
    stop_pid "$dir/slurmctld.pid" slurmctld
    stop_pid "$dir/munged.pid" munged
    for name in slurm.conf gres.conf; do
        [ "$(readlink "/etc/slurm/$name" 2>/dev/null)" = "$dir/$name" ] && rm -f "/etc/slurm/$name"
    done
    return 0
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || { echo "cluster.sh: no apt-get to install SLURM with" >&2; exit 2; }
    echo "installing slurmctld slurmd slurm-client munge (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
    mkdir -p "$dir/spool" "$dir/logs"
    cat >"$conf" <<CONF
# written by tests/slurm/cluster.sh
ClusterName=sdtp-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/logs/slurmctld.log
SlurmdLogFile=$dir/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=3600
GresTypes=gpu
NodeName=$host CPUs=4 RealMemory=16000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    printf 'AutoDetect=off\nName=gpu File=/dev/fakegpu[0-3]\n' >"$dir/gres.conf"
    # The jobstep plugin drops every SLURM_* variable but the job's ids (SLURM_CONF too) before its `srun`, so the
    # clients must find the config at the default path: link it there, unless another cluster's config is there.
    mkdir -p /etc/slurm
    for name in slurm.conf gres.conf; do
        if [ -e "/etc/slurm/$name" ] && [ "$(readlink "/etc/slurm/$name")" != "$dir/$name" ]; then
            echo "cluster.sh: /etc/slurm/$name exists and is not this test cluster's; not touching it" >&2
            exit 2
        fi
        ln -sfn "$dir/$name" "/etc/slurm/$name"
    done
    for n in 0 1 2 3; do
        [ -c "/dev/fakegpu$n" ] || { rm -f "/dev/fakegpu$n"; mknod "/dev/fakegpu$n" c 195 "$n"; }
    done
}

up() {
    [ "$(id -u)" -eq 0 ] || { echo "cluster.sh: needs root (daemons, mknod)" >&2; exit 2; }
    install_packages
    if ! pid_alive "$dir/munged.pid"; then
        install -d -o munge -g munge /run/munge
        [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
        cp /run/munge/munged.pid "$dir/munged.pid" 2>/dev/null || { mkdir -p "$dir"; cp /run/munge/munged.pid "$dir/munged.pid"; }
    fi
    if ! pid_alive "$dir/slurmctld.pid"; then
        write_config
        rm -rf "$dir/state"  # slurmctld refuses a state saved under another ClusterName
        mkdir -p "$dir/state"
        slurmctld -f "$conf"
    fi
    pid_alive "$dir/slurmd.pid" || slurmd -f "$conf"
    for _ in $(seq 100); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            sinfo -o '%P %N %c %m %G %t'
            return
        fi
        sleep 0.2
    done
    echo "cluster.sh: the node did not come up; see $dir/logs" >&2
    sinfo >&2 || true
    tail -n 20 "$dir/logs/slurmctld.log" "$dir/logs/slurmd.log" >&2 || true
    exit 1
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down   (SLURM_CONF=${conf})" >&2; exit 2 ;;
esac
