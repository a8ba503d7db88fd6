#!/usr/bin/env bash
# The Slurm template (launch/slurm.sbatch) under a real Slurm: Debian's slurm-wlm and munge,
# installed when missing, one node on localhost (slurmctld + slurmd, select/cons_tres), and the
# template submitted with only its sizes and training options changed. Root only (daemons).
#
#   bash cluster/slurm-test.sh            # (launch/test.sh runs it as root)
#
# 1. Progress streams: step lines are in the job's output file while the job runs.
# 2. A user's scancel ends the job: CANCELLED, a checkpoint on the way out, not requeued.
# 3. Preemption: `scancel --signal=USR1 --batch` (what --signal=B:USR1@120 delivers) -> checkpoint,
#    exit 75, requeue; the requeued job resumes and its final checkpoint equals, bit for bit, an
#    uninterrupted run of the same steps under srun.
# Everything lives in a temporary directory; the daemons are stopped at the end.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $(id -u) == 0 ]] || { echo "slurm-test: needs root (it starts slurmctld, slurmd and munged)" >&2; exit 1; }
bin_dir=${DIM_DIST_DIR:-$here/.build/debug}
[[ -x $bin_dir/dim-dist ]] || { echo "slurm-test: no $bin_dir/dim-dist (swift build first)" >&2; exit 1; }
export PATH="$bin_dir:$PATH"
unset OPENBLAS_NUM_THREADS  # the template sets it from --cpus-per-task

missing=()
for p in slurmctld slurmd slurm-client munge; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  echo "== slurm-test: installing ${missing[*]}"
  apt-get update -q > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > /dev/null
fi

work=$(mktemp -d /tmp/dim-dist-slurm.XXXXXX)
chmod 755 "$work"
node=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
pids=()
cleanup() {
  scancel --quiet --full --signal=KILL -u root 2> /dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  pkill -f "slurmstepd: \[" 2> /dev/null || true
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT

# munge: the authentication daemon Slurm's daemons and clients share (its own key, its own socket).
mkdir -p "$work/munge" && chown munge:munge "$work/munge" && chmod 700 "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1 count=1024 2> /dev/null
chown munge:munge "$work/munge/munge.key" && chmod 400 "$work/munge/munge.key"
socket="$work/munge/munge.socket"
runuser -u munge -- /usr/sbin/munged --key-file="$work/munge/munge.key" --socket="$socket" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/seed" --force
pids+=("$(cat "$work/munge/munged.pid")")

mkdir -p "$work/state" "$work/spool" "$work/log"
export SLURM_CONF="$work/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=dimtest
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
KillWait=60
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldPort=6917
SlurmdPort=6918
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i -f "$SLURM_CONF" > "$work/log/slurmctld.out" 2>&1 & pids+=($!)
slurmd -D -f "$SLURM_CONF" > "$work/log/slurmd.out" 2>&1 & pids+=($!)
for _ in $(seq 60); do sinfo -h -o %T 2> /dev/null | grep -q idle && break; sleep 1; done
sinfo -h -o %T | grep -q idle || { echo "slurm-test: the node never came up"; tail -20 "$work"/log/*; exit 1; }
echo "== slurm-test: one-node Slurm up ($(sinfo -V), node $node, $cpus CPUs)"

cd "$work"
dim-dist data synth --out data --train 512 --test 64 --size 28 --channels 1 --classes 4 --seed 5 > /dev/null
sizes=(--nodes=1 --ntasks-per-node=2 --cpus-per-task=1)
model=(--data "$work/data" --batch-size 16 --conv-channels 8,16 --fc-units 32 --global-dim 8 --mi-units 16
       --estimator jsd --gamma 0.1 --seed 3 --log-every 1)
state() { scontrol show job "$1" 2> /dev/null | grep -o "JobState=[A-Z_]*" | cut -d= -f2; }
restarts() { scontrol show job "$1" 2> /dev/null | grep -o "Restarts=[0-9]*" | cut -d= -f2; }
wait_for() {  # wait_for JOB STATE... (up to 5 minutes)
  local job=$1; shift
  for _ in $(seq 300); do
    local s; s=$(state "$job")
    for want in "$@"; do [[ $s == "$want" ]] && return 0; done
    sleep 1
  done
  echo "slurm-test: job $job is $(state "$job"), wanted $*"; diagnose "$job"; return 1
}
diagnose() {  # what a failed check needs to be understood: the job, its output, the daemons' logs
  scontrol show job "$1" 2> /dev/null | sed 's/^/   job: /'
  for f in "$work"/*.out; do echo "   --- $f (last 20 lines)"; tail -20 "$f"; done
  for f in "$work"/log/slurmctld.log "$work"/log/slurmd.log; do
    echo "   --- $f (last 40 lines)"; tail -40 "$f" 2> /dev/null
  done
}
steps_in() { grep -c "^epoch .* step " "$1" 2> /dev/null || true; }

echo "== 1+2. progress streams into the output file; a user's scancel ends the job, not requeued"
job=$(sbatch --parsable "${sizes[@]}" --job-name=cancel --output="$work/cancel.out" "$here/launch/slurm.sbatch" \
  "${model[@]}" --steps 100000)
wait_for "$job" RUNNING
for _ in $(seq 120); do (( $(steps_in cancel.out) >= 3 )) && break; sleep 0.5; done
seen=$(steps_in cancel.out)
(( seen >= 3 )) || { echo "slurm-test: no step lines in the output file while the job runs"; diagnose "$job"; exit 1; }
(( seen < 200 )) || { echo "slurm-test: $seen step lines at once"; exit 1; }
echo "   $seen step lines in the output file while the job ran"
scancel "$job"
wait_for "$job" CANCELLED
sleep 5  # a requeue would show by now
[[ $(state "$job") == CANCELLED && $(restarts "$job") == 0 ]] || {
  echo "slurm-test: after scancel the job is $(state "$job") with $(restarts "$job") restarts"; diagnose "$job"; exit 1; }
grep -q "received: stopping after step" cancel.out || { echo "slurm-test: no checkpoint on the way out"; diagnose "$job"; exit 1; }
echo "   CANCELLED, restarts 0; $(grep -c '^checkpoint:' cancel.out) checkpoint(s) written on the way out"

echo "== 3. preemption: USR1 -> checkpoint, exit 75, requeue, resume; equal to an uninterrupted run"
total=60
job=$(sbatch --parsable "${sizes[@]}" --job-name=preempt --output="$work/preempt.out" "$here/launch/slurm.sbatch" \
  "${model[@]}" --steps $total)
wait_for "$job" RUNNING
for _ in $(seq 240); do (( $(steps_in preempt.out) >= 5 )) && break; sleep 0.25; done
scancel --signal=USR1 --batch "$job"
for _ in $(seq 300); do (( $(restarts "$job") >= 1 )) && break; sleep 1; done
(( $(restarts "$job") >= 1 )) || { echo "slurm-test: the job was not requeued"; diagnose "$job"; exit 1; }
stopped=$(grep -o "stopping after step [0-9]*" preempt.out | head -1)
echo "   requeued after '$stopped' (state $(state "$job"))"
# Slurm holds a requeued job about two minutes (until the old incarnation's credential expires); the
# test starts it at once, but only once the old incarnation is gone: its slurmstepd exits after its
# batch completion reached slurmctld, and the node is idle again. Slurm's source (an older version)
# tells the two incarnations' completions apart only by node, so on one node a completion still in
# flight when the new incarnation starts may be taken for the new one's (the likely cause of one CI
# run's FAILED job, whose second run printed nothing).
gone() { ! pgrep -f "slurmstepd: \[$job\." > /dev/null && [[ $(sinfo -h -o %T) == idle ]]; }
for _ in $(seq 120); do gone && break; sleep 0.5; done
gone || { echo "slurm-test: the first incarnation never ended"; diagnose "$job"; exit 1; }
scontrol update JobId="$job" StartTime=now 2> /dev/null || true
wait_for "$job" COMPLETED
grep -q "resumed from" preempt.out || { echo "slurm-test: the requeued job did not resume"; diagnose "$job"; exit 1; }
echo "   the requeued job resumed ($(grep -o 'resumed from [^:]*: step [0-9]*' preempt.out | tail -1)) and completed"
srun --mpi=pmix "${sizes[@]}" env OPENBLAS_NUM_THREADS=1 dim-dist train "${model[@]}" --steps $total \
  --out "$work/straight" > straight.log 2>&1 || { cat straight.log; exit 1; }
dim-dist checkpoint diff "$work/straight" "$work/runs/preempt" --tolerance 0
echo "slurm-test: passed"
