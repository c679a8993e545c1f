#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by tests/cluster/start_slurm.sh.
#
#   bash tests/cluster/stop_slurm.sh [--keep-munge]
#
# Stops slurmd, slurmctld and (unless --keep-munge) munged by the process ids in their
# pid files, and waits until they are gone. Safe to run when nothing is running.
set -uo pipefail

keep_munge=0
[[ ${1:-} == --keep-munge ]] && keep_munge=1

stop_pidfile() {
    local name=$1 pidfile=$2 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        # Daemons save state on SIGTERM; give them 10 s, then stop them hard.
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop_slurm.sh: $name ($pid) ignored SIGTERM, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

stop_pidfile slurmd /run/slurmd.pid
stop_pidfile slurmctld /run/slurmctld.pid
[[ $keep_munge -eq 1 ]] || stop_pidfile munged /run/munge/munged.pid
echo "stop_slurm.sh: SLURM daemons stopped" >&2
