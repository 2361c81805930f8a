#!/usr/bin/env bash
# A real single-node Slurm check of `sparsegrad sweep` (not in CI; needs root and Debian).
#
# Installs Debian's slurm-wlm and munge, starts munged, slurmctld and slurmd on this machine with
# a minimal slurm.conf, writes a small sweep (training + post-training, 2 seeds), submits it with
# the generated submit.sh (two job arrays, the second depending on the first), waits, runs
# `sparsegrad report`, runs the same sweep locally with `sweep --run 2`, and compares the two
# results.csv files on every column but wall time: runs are deterministic, so they must match.
# The daemons it started are stopped at the end (by their pids).
#
#   bash tools/slurm_check.sh            # work directory /tmp/sparsegrad-slurm-check
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-/tmp/sparsegrad-slurm-check}
bin=$PWD/target/release/sparsegrad
[[ $(id -u) == 0 ]] || { echo "needs root (installs packages, starts daemons)" >&2; exit 2; }
[[ -x $bin ]] || cargo build --release --quiet

echo "== packages"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get install -y slurm-wlm munge >/dev/null
fi
slurmctld -V

echo "== munge"
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
pids=()
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    sleep 1
    pids+=("$(cat /run/munge/munged.pid)")
fi
munge -n | unmunge | grep -q 'STATUS: *Success'

echo "== slurm.conf"
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=sparsegrad-check
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=check Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
cat /etc/slurm/slurm.conf

echo "== daemons"
if ! scontrol ping 2>/dev/null | grep -q UP; then
    slurmctld
    sleep 2
    pids+=("$(cat /run/slurmctld.pid)")
fi
if ! sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
    slurmd
    sleep 3
    pids+=("$(cat /run/slurmd.pid)")
fi
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop EXIT
scontrol update nodename="$host" state=resume 2>/dev/null || true
sinfo

echo "== sweep"
rm -rf "$work" && mkdir -p "$work"
cat > "$work/sweep.toml" <<'TOML'
models = ["lenet300"]
seeds = [0, 1]
sparsities = [0.8, 0.95]

[train_flags]
epochs = 2

[posttrain_flags]
iters = 32
calib = 256

[[train]]
method = "dense"

[[train]]
method = "str"

[[train]]
method = "gmp"

[[posttrain]]
method = "magnitude-uniform"
TOML
"$bin" sweep "$work/sweep.toml" --out "$work/slurm" --slurm-mem 500M --slurm-time 00:10:00 --slurm-max-parallel 2
submitted=$(bash "$work/slurm/submit.sh" 2)
echo "$submitted"
ids=$(echo "$submitted" | awk '{print $NF}' | tr '\n' ',' | sed 's/,$//')
while [[ -n $(squeue -h -j "$ids" 2>/dev/null) ]]; do
    squeue -h -j "$ids" -o '%i %T' | tr '\n' ' '; echo
    sleep 5
done
sacct -j "$ids" 2>/dev/null || true
ls "$work/slurm/logs" | head -20
echo "== report (Slurm)"
"$bin" report "$work/slurm" > /dev/null
sed -n '/## lenet300/,/### Every/p' "$work/slurm/results.md"

echo "== the same sweep here (sweep --run 2)"
"$bin" sweep "$work/sweep.toml" --out "$work/local" --run 2 --threads 2 --quiet | tail -1
"$bin" report "$work/local" > /dev/null

echo "== compare results.csv (every column but wall time)"
strip() { cut -d, -f1-16 "$1"; }
if diff <(strip "$work/slurm/results.csv") <(strip "$work/local/results.csv"); then
    echo "IDENTICAL: $(($(wc -l < "$work/slurm/results.csv") - 1)) settings, Slurm == local"
    grep -c '' "$work/slurm/jobs.txt" "$work/slurm/jobs.after.txt"
    grep -A3 'Incomplete' "$work/slurm/results.md"
else
    echo "DIFFERENT" >&2
    exit 1
fi
