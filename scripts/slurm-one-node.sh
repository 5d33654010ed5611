#!/usr/bin/env bash
# A one-node Slurm cluster on loopback, for trying job arrays and submitit on one machine (a laptop,
# CI): installs Debian's Slurm and MUNGE when missing, starts munged, slurmctld and slurmd with every
# state, spool, log, pid and key file in a temporary folder, runs COMMAND with SLURM_CONF pointing at
# it, then stops the daemons by their PIDs and removes the folder.
#
#   sudo scripts/slurm-one-node.sh [COMMAND [ARG...]]      (default COMMAND: an interactive shell)
#
# e.g. `sudo scripts/slurm-one-node.sh .venv/bin/python -m pytest -m slurm` (what CI runs). Needs root
# (apt-get, and slurmd starts jobs as their user); COMMAND runs as root too. Outside the temporary
# folder it writes nothing but the apt install. On a machine where apt starts services (systemd),
# installing the packages also enables Debian's own munge and slurm services; this script neither
# uses nor stops them.
#
# Environment: SLURM_ONE_NODE_CPUS (CPUs the node offers, default: this machine's; more than it has
# runs that many one-CPU tasks at once on fewer cores), SLURM_ONE_NODE_KEEP=1 (keep the folder and
# its logs; printed at the end). The node is `localhost`, its partition `debug`, with as many
# stand-in GPUs (`--gres=gpu:N`, empty files: nothing is computed on them) as CPUs.
set -euo pipefail

if [[ $(id -u) != 0 ]]; then
    echo "error: $0 needs root (apt-get install, and slurmd starting jobs); run it with sudo" >&2
    exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    echo "installing slurmctld slurmd slurm-client munge (Debian packages)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

DIR="$(mktemp -d -t slurm-one-node.XXXXXX)"
chmod 755 "$DIR"  # job processes read slurm.conf and reach the munge socket through it
mkdir -p "$DIR"/{munge,state,spool,log,run,dev}
PIDS=()

stop() {
    local status=$?
    set +e
    # Jobs still running are cancelled first, so no job step outlives its slurmd.
    if [[ ${#PIDS[@]} -ge 2 ]]; then
        squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null
        for _ in $(seq 20); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 0.5; done
    fi
    local pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do  # slurmd, slurmctld, then munged
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ $status != 0 ]]; then
        for log in "$DIR"/log/*.log; do echo "--- last lines of $log"; tail -n 15 "$log"; done >&2
    fi
    if [[ ${SLURM_ONE_NODE_KEEP:-0} == 1 || $status != 0 ]]; then
        echo "one-node Slurm stopped; its folder (logs in log/) is kept: $DIR" >&2
    else
        rm -rf "$DIR"
    fi
    exit "$status"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two free TCP ports on loopback, for slurmctld and slurmd.
read -r CTLD_PORT SLURMD_PORT < <(python3 -c 'import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
CPUS=${SLURM_ONE_NODE_CPUS:-$(nproc)}
MEMORY_MB=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 9 / 10 / 1024))
for ((i = 0; i < CPUS; i++)); do : >"$DIR/dev/gpu$i"; done

mungekey --create --keyfile="$DIR/munge/munge.key" --bits=1024
chmod 600 "$DIR/munge/munge.key"
munged --foreground --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" >>"$DIR/log/munged.log" 2>&1 &
PIDS+=($!)

cat >"$DIR/slurm.conf" <<EOF
ClusterName=onenode
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
GresTypes=gpu
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
TmpFS=$DIR/spool
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=10
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB Gres=gpu:$CPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
echo "Name=gpu File=$DIR/dev/gpu[0-$((CPUS - 1))]" >"$DIR/gres.conf"
export SLURM_CONF="$DIR/slurm.conf"

for _ in $(seq 50); do [[ -S $DIR/munge/munge.socket ]] && break; sleep 0.1; done
slurmctld -D -f "$SLURM_CONF" >>"$DIR/log/slurmctld.log" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N localhost >>"$DIR/log/slurmd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do
    [[ $(sinfo -h -n localhost -o %t 2>/dev/null) == idle ]] && break
    sleep 0.25
done
if [[ $(sinfo -h -n localhost -o %t 2>/dev/null) != idle ]]; then
    echo "error: the one-node Slurm did not come up in 30 s (node state: $(sinfo -h -o %t 2>&1))" >&2
    exit 1
fi
echo "one-node Slurm up at ${SECONDS} s: SLURM_CONF=$SLURM_CONF, partition debug, $CPUS CPUs, $CPUS stand-in GPUs"

if [[ $# == 0 ]]; then
    "${SHELL:-bash}" -i || true
else
    "$@"
fi
