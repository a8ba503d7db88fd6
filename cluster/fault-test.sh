#!/usr/bin/env bash
# Fault test on the emulated cluster (2 hosts x 2 ranks over TCP):
#  1. an uninterrupted run of 200 steps (checkpoint every 10);
#  2. the same run, with one rank's process on the second host killed (SIGKILL) once a checkpoint
#     at step 20 or later exists (the run is then far from done):
#     the job must end promptly (no hang) with a message naming the lost rank;
#  3. --resume auto continues from the last checkpoint to step 200;
#  4. the final parameters must equal the uninterrupted run's (bit-identical: same ranks, same data).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$(cd "$here/.." && pwd)/.build/release/dim-dist"
[[ -x "$bin" ]] || (cd "$here/.." && swift build -c release)
work=$(mktemp -d /tmp/dim-dist-fault.XXXXXX)
cleanup() { "$here/down.sh" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
if [[ "${KEEP:-}" == 1 ]]; then trap '"$here/down.sh" >/dev/null 2>&1 || true; echo "kept $work"' EXIT; fi
"$here/up.sh" --hosts 2 --slots 2
"$bin" data synth --out "$work/data" --train 640 --test 64 --classes 4 --size 28 --shards 2 >/dev/null
model=(--conv-channels 16,32 --fc-units 64 --global-dim 16 --mi-units 64 --batch-size 16 --lr 1e-3 --estimator nce)
train=(train --data "$work/data" "${model[@]}" --steps 200 --checkpoint-every 10 --log-every 10)

echo "== 1. uninterrupted run"
"$here/run.sh" -np 4 "${train[@]}" --out "$work/straight" > "$work/straight.log" 2>&1
tail -1 "$work/straight.log"

echo "== 2. the same run; kill a rank on host dimh1 once step 20 is checkpointed"
"$here/run.sh" -np 4 "${train[@]}" --out "$work/faulty" > "$work/faulty.log" 2>&1 &
job=$!
latest_step() { local f; f=$(cat "$work/faulty/checkpoints/latest" 2>/dev/null) || { echo 0; return; }; f=${f#ckpt-}; echo $((10#${f%.h5})); }
for _ in $(seq 1 1200); do
  (( $(latest_step) >= 20 )) && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.05
done
victim=""
for p in $(ip netns pids dimh1); do
  if [[ "$(cat /proc/$p/comm 2>/dev/null)" == dim-dist ]]; then victim=$p; break; fi
done
[[ -n "$victim" ]] || { echo "fault test: no dim-dist process found on dimh1" >&2; exit 1; }
kill -9 "$victim"
start=$(date +%s)
status=0
timeout 120 tail --pid="$job" -f /dev/null || { echo "fault test: FAILED, the job hung after a rank died" >&2; exit 1; }
wait "$job" || status=$?
elapsed=$(( $(date +%s) - start ))
echo "killed PID $victim on dimh1; mpirun exited with status $status after ${elapsed}s"
grep -iE "rank [0-9]+" "$work/faulty.log" | head -5 || true
(( status != 0 )) || { echo "fault test: FAILED, mpirun reported success after a rank was killed" >&2; exit 1; }
grep -qiE "rank [0-9]+" "$work/faulty.log" || { echo "fault test: FAILED, no message names the lost rank" >&2; exit 1; }
echo "latest checkpoint after the crash: $(cat "$work/faulty/checkpoints/latest")"

echo "== 3. resume"
"$here/run.sh" -np 4 "${train[@]}" --out "$work/faulty" --resume auto > "$work/resume.log" 2>&1
grep -E "resumed from" "$work/resume.log"
tail -1 "$work/resume.log"

echo "== 4. compare with the uninterrupted run"
"$bin" checkpoint diff "$work/straight" "$work/faulty" --tolerance 0
echo "fault test: passed (job ended in ${elapsed}s naming the lost rank; resume reproduced the uninterrupted run exactly)"
