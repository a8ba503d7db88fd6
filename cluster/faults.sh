#!/usr/bin/env bash
# Fault suite on the emulated cluster (2 hosts x 2 ranks over TCP), every job under the
# supervisor (launch/elastic.sh) with a 15 s step deadline:
#  a. SIGSTOP of a rank on the second host: the watchdog ends the job within the deadline with a
#     line naming the silent rank; the supervisor resumes; the result equals an uninterrupted run.
#  b. the second host's link taken down mid-step: the same (the link comes back once the job has
#     ended, as after a transient partition; that host's stale processes are cleaned up like a
#     node's epilogue would).
#  c. twenty kill -9 at random moments (a random rank, rank 0 while it writes a checkpoint among
#     them): after every fault `latest` names a complete, verified checkpoint; the finished run
#     equals the uninterrupted one.
#  e. a rank on the second host killed in its first 100 ms, six times (start-up: MPI_Init, reading
#     the data, resuming): every attempt ends and the supervisor resumes. About one such kill in
#     twenty wedges that host's Open MPI daemon and mpirun never exits after reporting the abort;
#     the supervisor kills it --kill-after seconds later (launch/elastic.sh).
#  f. SIGSTOP of a rank on the second host during start-up (MPI_Init, reading the data, the
#     heartbeat's set-up): the start-up watchdog ends the job within the deadline; resumed and equal.
#  d. the second host's link down for good: the supervisor (--hosts, --min-hosts 1) finds it
#     unreachable, drops it and finishes on the first host's 2 ranks with the same global batch;
#     the result equals a run resumed at 2 ranks from the same checkpoint.
# Prints: faults injected, jobs recovered, checkpoints corrupted (must be 0), steps lost per fault.
# A supervised job still running after $DEADLINE seconds (default 900) is a hang: the suite shows
# what is still running and fails, rather than leaving CI to its own timeout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin="$root/.build/release/dim-dist"
[[ -x "$bin" ]] || (cd "$root" && swift build -c release)
work=$(mktemp -d /tmp/dim-dist-faults.XXXXXX)
cleanup() { "$here/down.sh" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
"$here/up.sh" --hosts 2 --slots 2 >/dev/null
"$bin" data synth --out "$work/data" --train 640 --test 64 --classes 4 --size 28 --shards 2 >/dev/null
model=(--conv-channels 16,32 --fc-units 64 --global-dim 16 --mi-units 64 --batch-size 16 --lr 1e-3 --estimator nce)
steps=${STEPS:-300}
train=(train --data "$work/data" "${model[@]}" --steps "$steps" --checkpoint-every 10 --log-every 1 --step-timeout 15s)
faults=0 recovered=0 corrupted=0 lost=()

echo "== uninterrupted run ($steps steps)"
"$here/run.sh" -np 4 "${train[@]}" --out "$work/straight" > "$work/straight.log" 2>&1
tail -1 "$work/straight.log"

supervise() {  # $1 name [more train options]: runs the job under the supervisor in the background; sets $sup
  local name="$1"; shift
  "$root/launch/elastic.sh" --max-restarts 30 --kill-after 20 --log "$work/$name.elastic" -- \
    "$here/run.sh" -np 4 "${train[@]}" "$@" --out "$work/$name" > "$work/$name.log" 2>&1 &
  sup=$! sup_name=$name sup_started=$(date +%s)
}
# Fails, showing what still runs, once the supervised job has run $DEADLINE seconds.
check_deadline() {
  (( $(date +%s) - sup_started <= ${DEADLINE:-900} )) && return 0
  echo "faults: FAILED, $sup_name still running after ${DEADLINE:-900} s (a hang); its supervisor's log, its output and the processes:"
  tail -5 "$work/$sup_name.elastic" | cut -c1-300; tail -15 "$work/$sup_name.log" | cut -c1-300
  ps -eo pid,ppid,stat,etime,wchan:24,args --forest | grep -E "elastic|mpirun|orted|dim-dist" | grep -v grep | cut -c1-200
  pkill -KILL -P "$sup" 2>/dev/null; kill -KILL "$sup" 2>/dev/null
  exit 1
}
latest_step() { local f; f=$(cat "$work/$1/checkpoints/latest" 2>/dev/null) || { echo 0; return; }; f=${f#ckpt-}; echo $((10#${f%.h5})); }
wait_for_step() { for _ in $(seq 1 1200); do (( $(latest_step "$1") >= $2 )) && return 0; sleep 0.05; done; return 1; }
ranks_on() {  # live dim-dist processes in host $1's namespace (not zombies a wedged daemon keeps)
  for p in $(ip netns pids "$1" 2>/dev/null); do
    if [[ "$(cat /proc/$p/comm 2>/dev/null)" == dim-dist && "$(awk '{print $3}' /proc/$p/stat 2>/dev/null)" != Z ]]; then
      echo "$p"
    fi
  done
  return 0
}
rank0() {
  for p in $(ranks_on dimh0); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=0; then echo "$p"; fi
  done
  return 0
}
part() { [[ ",${PARTS:-a,b,c,e,f,d}," == *",$1,"* ]]; }
restarts() { local n; n=$(grep -c restarting "$work/$1.elastic" 2>/dev/null) || true; echo "${n:-0}"; }
# Waits (at most 60 s) until $1's supervisor has logged $2 restarts, or has ended.
await_restarts() {
  for _ in $(seq 1 600); do
    if (( $(restarts "$1") >= $2 )) || ! kill -0 "$sup" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
}
verify_latest() {
  [[ -f "$work/$1/checkpoints/latest" ]] || return 0   # killed before the first checkpoint: nothing to check
  if ! "$bin" checkpoint inspect "$work/$1/checkpoints" --verify > "$work/verify.log" 2>&1; then
    corrupted=$((corrupted + 1)); echo "  CORRUPTED: $(tail -1 "$work/verify.log")"
  fi
}
finish() {  # $1 name [$2 reference run]: waits for the supervisor, checks the result against the uninterrupted run
  local status=0 reference="${2:-straight}"
  while kill -0 "$sup" 2>/dev/null; do check_deadline; sleep 1; done
  wait "$sup" || status=$?
  (( status == 0 )) || { echo "faults: FAILED, $1 did not finish (status $status)"; cat "$work/$1.elastic"; exit 1; }
  "$bin" checkpoint diff "$work/$reference" "$work/$1" --tolerance 0 > "$work/diff.log" \
    || { echo "faults: FAILED, $1 differs from the uninterrupted run"; cat "$work/diff.log"; exit 1; }
  python3 - "$work/$1/metrics.jsonl" <<'EOF'
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1]) if '"loss"' in l]
assert steps == sorted(set(steps)), f"metrics.jsonl repeats or misorders steps: {steps}"
EOF
}
# Waits for the watchdog's line in $1's log; sets $detected (seconds since $2).
await_watchdog() {
  for _ in $(seq 1 600); do grep -q "dim-dist: watchdog" "$work/$1.log" && break; sleep 0.1; done
  detected=$(( $(date +%s) - $2 ))
  grep -m1 "dim-dist: watchdog" "$work/$1.log" | cut -c1-240
}
# Waits for $1's supervised job to finish and checks it; counts the recovery and the lost steps.
conclude() {
  finish "$1"; recovered=$((recovered + 1)); verify_latest "$1"
  echo "  detected after ${detected}s (deadline 15 s); resumed and equal to the uninterrupted run; steps lost: $(count_lost "$1")"
  lost+=($(count_lost "$1"))
}
# Steps lost by each restart: the last step a failed attempt logged minus the step it resumed from.
count_lost() {
  python3 - "$work/$1.log" <<'EOF'
import re, sys
last, out = None, []
for line in open(sys.argv[1]):
    m = re.search(r"step (\d+)/", line)
    if m: last = int(m.group(1))
    m = re.search(r"resumed from .*: step (\d+)", line)
    if m and last is not None:
        out.append(max(0, last - int(m.group(1)))); last = None
print(" ".join(map(str, out)))
EOF
}

if part a; then
echo "== a. SIGSTOP of a rank on dimh1"
supervise stop
wait_for_step stop 30
victim=$(ranks_on dimh1 | sed -n 1p)
kill -STOP "$victim"; t0=$(date +%s); faults=$((faults + 1))
await_watchdog stop "$t0"
grep -q "no heartbeat from rank" "$work/stop.log" || { echo "faults: FAILED, the watchdog did not name the silent rank"; exit 1; }
kill -CONT "$victim" 2>/dev/null; kill -KILL "$victim" 2>/dev/null || true
conclude stop
fi

if part b; then
echo "== b. the link of dimh1 down mid-step"
supervise link
wait_for_step link 30
ip -n dimh1 link set eth0 down; t0=$(date +%s); faults=$((faults + 1))
await_watchdog link "$t0"
# The partition ends once the job is down; the host's leftovers are removed as an epilogue would.
for _ in $(seq 1 300); do grep -q "restarting" "$work/link.elastic" 2>/dev/null && break; sleep 0.1; done
for p in $(ip netns pids dimh1); do kill -KILL "$p" 2>/dev/null || true; done
ip -n dimh1 link set eth0 up
conclude link
fi

if part c; then
echo "== c. twenty kill -9 at random moments"
# A longer run, so that twenty faults fit in it even on an idle machine.
"$here/run.sh" -np 4 "${train[@]}" --steps 4000 --out "$work/straight-long" > "$work/straight-long.log" 2>&1
supervise kills --steps 4000
injected=0 during_write=0
while (( injected < ${KILLS:-20} )) && kill -0 "$sup" 2>/dev/null; do
  check_deadline
  sleep "0.$(( RANDOM % 9 + 1 ))"; sleep $(( RANDOM % 3 ))
  if (( injected % 4 == 3 )); then
    # Rank 0 while it writes a checkpoint (its temporary file exists).
    writing=0
    for _ in $(seq 1 4000); do if ls "$work/kills/checkpoints"/.ckpt-* >/dev/null 2>&1; then writing=1; break; fi; done
    victim=$(rank0)
    during_write=$((during_write + writing))
  else
    victim=$( (ranks_on dimh0; ranks_on dimh1) | shuf -n1)
  fi
  [[ -n "${victim:-}" ]] || continue
  kill -KILL "$victim" 2>/dev/null || continue
  injected=$((injected + 1)); faults=$((faults + 1))
  # Wait for the supervisor to notice, then check the checkpoint it will resume from.
  await_restarts kills "$injected"
  verify_latest kills
done
(( injected >= ${KILLS:-20} )) || { echo "faults: FAILED, the run ended after $injected of ${KILLS:-20} kills"; exit 1; }
finish kills straight-long
recovered=$((recovered + $(restarts kills)))
lost+=($(count_lost kills))
echo "  $injected kills ($during_write of them rank 0 while a checkpoint file was being written); resumed every time;" \
     "the finished run equals the uninterrupted one"
fi

if part e; then
echo "== e. a rank on dimh1 killed during start-up, ${STARTUP_KILLS:-6} times"
supervise startup
injected=0
while (( injected < ${STARTUP_KILLS:-6} )) && kill -0 "$sup" 2>/dev/null; do
  check_deadline
  victim=$(ranks_on dimh1 | shuf -n1)
  [[ -n "$victim" ]] || { sleep 0.01; continue; }
  sleep "0.0$(( RANDOM % 10 ))"
  kill -KILL "$victim" 2>/dev/null || continue
  injected=$((injected + 1)); faults=$((faults + 1))
  await_restarts startup "$injected"
done
(( injected >= ${STARTUP_KILLS:-6} )) || { echo "faults: FAILED, the run ended after $injected of ${STARTUP_KILLS:-6} kills"; exit 1; }
finish startup
recovered=$((recovered + $(restarts startup)))
wedged=$(grep -c "launcher is still running" "$work/startup.elastic" || true)
echo "  $injected kills during start-up; resumed every time ($wedged of them after mpirun reported the abort but" \
     "did not exit: killed by the supervisor); the finished run equals the uninterrupted one"
fi

if part f; then
echo "== f. SIGSTOP of a rank on dimh1 during start-up"
supervise startstop
victim=""
for _ in $(seq 1 3000); do victim=$(ranks_on dimh1 | sed -n 1p); [[ -n "$victim" ]] && break; sleep 0.01; done
[[ -n "$victim" ]] || { echo "faults: FAILED, no rank appeared on dimh1"; exit 1; }
sleep "0.$(( RANDOM % 5 ))"
kill -STOP "$victim"; t0=$(date +%s); faults=$((faults + 1))
(( $(latest_step startstop) == 0 )) || { echo "faults: FAILED, the job was past start-up when stopped"; exit 1; }
await_watchdog startstop "$t0"
kill -CONT "$victim" 2>/dev/null; kill -KILL "$victim" 2>/dev/null || true
conclude startstop
fi

if part d; then
echo "== d. the link of dimh1 down for good: continue on the hosts that are left"
h0=$(sed -n 1p "$here/.state/hosts" | cut -d' ' -f1); h1=$(sed -n 2p "$here/.state/hosts" | cut -d' ' -f1)
"$root/launch/elastic.sh" --max-restarts 5 --kill-after 20 --log "$work/hostloss.elastic" \
  --hosts "$h0,$h1" --slots 2 --min-hosts 1 --check-host "ip netns exec dimh0 ping -c 1 -W 1 {host}" -- \
  "$here/run.sh" -np {np} --host {hosts} "${train[@]}" --keep 1000 --out "$work/hostloss" > "$work/hostloss.log" 2>&1 &
sup=$!
wait_for_step hostloss 30
ip -n dimh1 link set eth0 down; t0=$(date +%s); faults=$((faults + 1))
await_watchdog hostloss "$t0"
# The host stays down; its stranded ranks are removed as a node's epilogue would.
for _ in $(seq 1 300); do grep -q "restarting" "$work/hostloss.elastic" 2>/dev/null && break; sleep 0.1; done
for p in $(ip netns pids dimh1); do kill -KILL "$p" 2>/dev/null || true; done
wait "$sup" || { echo "faults: FAILED, the job did not finish on the host that is left"; cat "$work/hostloss.elastic"; exit 1; }
grep -q "dropping it" "$work/hostloss.elastic" || { echo "faults: FAILED, no host dropped"; cat "$work/hostloss.elastic"; exit 1; }
grep "dropping it\|continuing on" "$work/hostloss.elastic" | cut -d' ' -f3- | sed 's/^/  /'
resumed=$(grep -o "resumed from [^:]*" "$work/hostloss.log" | tail -1 | cut -d' ' -f3)
"$here/run.sh" -np 2 --host "$h0:2" "${train[@]}" --keep 1000 --resume "$resumed" --out "$work/hostloss-ref" \
  > "$work/hostloss-ref.log" 2>&1 || { cat "$work/hostloss-ref.log"; exit 1; }
ip -n dimh1 link set eth0 up
sup_status=0
"$bin" checkpoint diff "$work/hostloss-ref" "$work/hostloss" --tolerance 0 > "$work/diff.log" || sup_status=1
(( sup_status == 0 )) || { echo "faults: FAILED, the run on the host that is left differs from a 2-rank resume"; cat "$work/diff.log"; exit 1; }
recovered=$((recovered + 1))
echo "  detected after ${detected}s; finished on $h0 (2 ranks) from ${resumed##*/}, equal to a 2-rank resume of it"
fi

total=0; for l in "${lost[@]}"; do total=$((total + l)); done
worst=0; for l in "${lost[@]}"; do if (( l > worst )); then worst=$l; fi; done
echo "faults: injected $faults, jobs recovered $recovered, checkpoints corrupted $corrupted, " \
     "steps lost per fault: mean $(( ${#lost[@]} ? total / ${#lost[@]} : 0 )) max $worst (checkpoint every 10 steps)"
(( corrupted == 0 )) || { echo "faults: FAILED, corrupted checkpoints"; exit 1; }
echo "faults: passed"
