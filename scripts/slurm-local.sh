#!/usr/bin/env bash
# A one-machine Slurm cluster (controller and compute node on this host) for the Slurm tests.
#
#   scripts/slurm-local.sh start   # writes $ITRA_SLURM_DIR/slurm.conf, starts munged, slurmctld, slurmd
#   scripts/slurm-local.sh stop
#
# Needs Debian's `slurm-wlm` (22.05) and `munge`, and root (slurmd launches jobs as their user).
# Clients find the cluster through SLURM_CONF: after `start`, export what it prints.
set -euo pipefail

dir="${ITRA_SLURM_DIR:-/tmp/itra-slurm}"
conf="$dir/slurm.conf"

stop() {
    local pids=()
    for daemon in slurmd slurmctld munged; do
        if [ -f "$dir/$daemon.pid" ]; then
            pids+=("$(cat "$dir/$daemon.pid")")
            rm -f "$dir/$daemon.pid"
        fi
    done
    [ "${#pids[@]}" -gt 0 ] || return 0
    kill "${pids[@]}" 2>/dev/null || true
    # Bounded wait for them to exit, so that a restart finds its ports free.
    for _ in $(seq 1 50); do
        kill -0 "${pids[@]}" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
}

start() {
    for tool in munged slurmctld slurmd sinfo sbatch; do
        command -v "$tool" >/dev/null || { echo "slurm-local: $tool not found: apt-get install slurm-wlm munge" >&2; exit 1; }
    done
    [ "$(id -u)" -eq 0 ] || { echo "slurm-local: slurmd must run as root" >&2; exit 1; }
    stop
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    host="$(hostname -s)"
    cpus="$(nproc)"
    memory_mib=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
    cat >"$conf" <<EOF
ClusterName=itra-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mib State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # munge: Debian's package made /etc/munge/munge.key; the socket goes under $dir.
    munged --force --socket="$dir/munge/munge.socket.2" --pid-file="$dir/munged.pid" \
        --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed"
    cat >>"$conf" <<EOF
AuthInfo=socket=$dir/munge/munge.socket.2
EOF
    export SLURM_CONF="$conf"
    slurmctld -f "$conf"
    slurmd -f "$conf"
    # Bounded wait for the node to come up idle.
    for _ in $(seq 1 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            echo "slurm-local: up ($host, $cpus CPUs); export SLURM_CONF=$conf"
            return 0
        fi
        sleep 1
    done
    echo "slurm-local: the node did not come up within 60 s:" >&2
    sinfo >&2 || true
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    exit 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
