#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this machine for tests/test_slurm.py.
#
#   sudo bash tests/cluster/start_slurm.sh    # installs, configures, starts, waits
#   bash tests/cluster/stop_slurm.sh          # stops the daemons again
#
# Needs root and a Debian-like system (apt-get). Idempotent: a second run with the
# cluster already up and the same configuration returns in well under a second; a
# changed configuration restarts the daemons. SLURM_START_TIMEOUT (seconds, default 60)
# bounds the wait for the node; on failure the daemons' logs are printed.
# The node is called "localhost", has this machine's cores and memory, one partition
# "test" (the default) and one fake GPU, so `sbatch --gpus=1` schedules and sets
# CUDA_VISIBLE_DEVICES exactly as on a real GPU node.
#
# Facts this script relies on (Debian 12, SLURM 22.05):
# - There is no systemd in CI containers: every daemon is started directly.
# - The configuration must live in /etc/slurm/: the snakemake SLURM executor's job
#   step drops SLURM_CONF from the environment, so a config anywhere else is lost.
# - There is no slurmdbd (accounting database): job state comes from slurmctld, which
#   keeps finished jobs for MinJobAge seconds, so snakemake must poll with squeue
#   (tests/cluster/profile sets slurm-status-command: squeue).
# - Without DefMemPerCPU a job without --mem takes the whole node's memory, and jobs
#   then run one at a time.
set -euo pipefail

SLURM_ETC=/etc/slurm
SLURM_LOG=/var/log/slurm
SLURM_STATE=/var/lib/slurm
FAKE_GPU=/dev/fakegpu0
PARTITION=test
WAIT_SECONDS=${SLURM_START_TIMEOUT:-60}

die() {
    echo "start_slurm.sh: error: $*" >&2
    local log
    for log in /var/log/munge/munged.stdout "$SLURM_LOG"/slurmctld.{log,stdout} \
        "$SLURM_LOG"/slurmd.{log,stdout}; do
        if [[ -f $log ]]; then
            echo "----- last lines of $log -----" >&2
            tail -n 25 "$log" >&2
        fi
    done
    exit 1
}

[[ $(id -u) -eq 0 ]] ||
    die "must run as root (it installs packages and starts daemons); try: sudo bash $0"

# --- 1. packages -------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
    ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null ||
        die "slurmctld/slurmd/munged are missing and there is no apt-get to install them"
    echo "start_slurm.sh: installing slurm-wlm and munge with apt-get" >&2
    apt_log=/tmp/start_slurm.apt.log
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        die "apt-get install slurm-wlm munge failed (log: $apt_log)"
    fi
fi

# --- 2. fake GPU: a character device equal to /dev/null (major 1, minor 3) ----------
# gres.conf needs a device File= for SLURM to bind a GPU to a job and set
# CUDA_VISIBLE_DEVICES. Where mknod is not allowed (some containers) fall back to a
# count-only GPU: --gpus=1 still schedules, CUDA_VISIBLE_DEVICES is then unset.
if [[ ! -c $FAKE_GPU ]]; then
    mknod "$FAKE_GPU" c 1 3 2>/dev/null && chmod 666 "$FAKE_GPU" ||
        echo "start_slurm.sh: warning: cannot mknod $FAKE_GPU; the fake GPU has no device file" >&2
fi
if [[ -c $FAKE_GPU ]]; then
    gres_line="NodeName=localhost Name=gpu File=$FAKE_GPU"
else
    gres_line="NodeName=localhost Name=gpu Count=1"
fi

# --- 3. configuration --------------------------------------------------------------
# The node's hardware as slurmd sees it; declaring more than that makes the node
# "invalid", so read it instead of guessing.
hw=$(slurmd -C | head -n 1)
hw_field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
cpus=$(hw_field CPUs)
sockets=$(hw_field SocketsPerBoard)
cores=$(hw_field CoresPerSocket)
threads=$(hw_field ThreadsPerCore)
memory=$(hw_field RealMemory)
[[ -n $cpus && -n $memory ]] || die "could not read CPUs/RealMemory from 'slurmd -C': $hw"

mkdir -p "$SLURM_ETC" "$SLURM_LOG" "$SLURM_STATE/slurmctld" "$SLURM_STATE/slurmd"
new_conf=$(mktemp -d)
trap 'rm -rf "$new_conf"' EXIT

cat >"$new_conf/slurm.conf" <<EOF
# Written by tests/cluster/start_slurm.sh: a one-node test cluster. Do not edit here.
ClusterName=msp-test
SlurmctldHost=localhost
# Root runs everything: a throwaway test cluster, no user separation needed.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$SLURM_STATE/slurmctld
SlurmdSpoolDir=$SLURM_STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$SLURM_LOG/slurmctld.log
SlurmdLogFile=$SLURM_LOG/slurmd.log
# No cgroups in containers: track and bind processes without them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
# squeue-based status checks need finished jobs to stay visible for a while.
MinJobAge=300
# A node that was down (daemon restart) returns to service by itself.
ReturnToService=2
SlurmdTimeout=60
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
NodeName=localhost CPUs=$cpus SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=$memory Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=60 State=UP
EOF
echo "$gres_line" >"$new_conf/gres.conf"
# An empty cgroup.conf keeps slurmd from probing cgroups it may not have.
echo "# cgroup plugins are not used by this test cluster" >"$new_conf/cgroup.conf"

config_changed=0
for f in slurm.conf gres.conf cgroup.conf; do
    if ! cmp -s "$new_conf/$f" "$SLURM_ETC/$f"; then
        install -m 644 "$new_conf/$f" "$SLURM_ETC/$f"
        config_changed=1
    fi
done

# --- 4. daemons --------------------------------------------------------------------
# pid_alive PIDFILE: the daemon named like the file (slurmd.pid -> slurmd) is running.
# The name guards against a stale pid file whose number now belongs to another process.
pid_alive() {
    [[ -f $1 ]] && [[ $(cat "/proc/$(cat "$1")/comm" 2>/dev/null) == "$(basename "$1" .pid)" ]]
}

# still_running PIDFILE: for pid files checked or written by this run, where the name
# may not match yet (a daemon started a moment ago may not have exec'd yet).
still_running() { kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { sinfo -h -n localhost -o %T 2>/dev/null | head -n 1 || true; }

if [[ $config_changed -eq 0 ]] && pid_alive /run/slurmctld.pid && pid_alive /run/slurmd.pid &&
    [[ $(node_state) == idle* || $(node_state) == mixed* || $(node_state) == allocated* ]]; then
    echo "start_slurm.sh: cluster already up ($(node_state)), nothing to do" >&2
    exit 0
fi

if [[ $config_changed -eq 1 ]] &&
    { pid_alive /run/slurmctld.pid || pid_alive /run/slurmd.pid; }; then
    echo "start_slurm.sh: configuration changed, restarting the SLURM daemons" >&2
    bash "$(dirname "$0")/stop_slurm.sh" --keep-munge
fi

if ! pid_alive /run/munge/munged.pid; then
    install -d -o munge -g munge -m 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key >/dev/null
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    # Foreground (-F) in its own session as user munge, like the SLURM daemons below.
    setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
        </dev/null >>/var/log/munge/munged.stdout 2>&1 &
    echo $! >/run/munge/munged.pid
fi
for _ in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
done
munge -n | unmunge >/dev/null 2>&1 || die "munge does not answer (munge -n | unmunge failed)"

# The SLURM daemons run in the foreground (-D) in their own session, so this script
# knows their process ids at once and sees a daemon that dies during start-up.
start_daemon() {
    local pidfile=$1
    shift
    setsid "$@" -D </dev/null >>"$SLURM_LOG/$(basename "$1").stdout" 2>&1 &
    echo $! >"$pidfile"
}
if ! pid_alive /run/slurmctld.pid; then
    # -c: start from a clean state; old jobs of a previous test run are not wanted.
    start_daemon /run/slurmctld.pid /usr/sbin/slurmctld -c
fi
if ! pid_alive /run/slurmd.pid; then
    start_daemon /run/slurmd.pid /usr/sbin/slurmd -N localhost
fi

# --- 5. wait until the node takes jobs ----------------------------------------------
deadline=$((SECONDS + WAIT_SECONDS))
while :; do
    still_running /run/slurmctld.pid || die "slurmctld exited during start-up"
    still_running /run/slurmd.pid || die "slurmd exited during start-up"
    state=$(node_state)
    case $state in
        idle*) break ;;
        down* | drain* | fail*)
            # e.g. "unexpectedly rebooted" after a restart: put it back in service.
            scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
    esac
    ((SECONDS < deadline)) || die "node 'localhost' not idle after ${WAIT_SECONDS}s" \
        "(state: '${state:-no answer from slurmctld}')"
    sleep 0.5
done
echo "start_slurm.sh: SLURM is up: node localhost idle in partition '$PARTITION'" \
    "($cpus CPUs, $memory MB, 1 fake GPU)" >&2
