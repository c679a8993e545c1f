#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by tests/cluster/start_slurm.sh.
#
#   bash tests/cluster/stop_slurm.sh [--keep-munge]
#
# Stops slurmd, slurmctld and (unless --keep-munge) munged by the process ids in the pid
# files that start_slurm.sh wrote, and waits until they are gone. Safe to run when
# nothing is running.
set -uo pipefail

keep_munge=0
[[ ${1:-} == --keep-munge ]] && keep_munge=1

# stop_pidfiles PIDFILE...: SIGTERM to all at once (each takes ~2 s to save its state
# and exit), then wait; whatever is still alive after 10 s gets SIGKILL.
stop_pidfiles() {
    local pidfile pid name alive pids=()
    for pidfile in "$@"; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        # Only a live process with the daemon's name: a stale pid file may name a
        # process id that the system has since given to something else.
        name=$(basename "$pidfile" .pid)
        if [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        fi
    done
    for _ in $(seq 1 100); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop_slurm.sh: process $pid ignored SIGTERM for 10 s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    rm -f "$@"
}

# The SLURM daemons first: they use munge to say goodbye to each other.
stop_pidfiles /run/slurmd.pid /run/slurmctld.pid
[[ $keep_munge -eq 1 ]] || stop_pidfiles /run/munge/munged.pid
echo "stop_slurm.sh: SLURM daemons stopped" >&2
