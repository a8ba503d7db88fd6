#!/usr/bin/env bash
# Scaling study on the emulated cluster: for 1, 2 and 4 hosts (one rank each) and a few link
# speeds, measures the collectives of a DIM step over message sizes and a full training step
# (time in compute and in collectives), then fits a latency-bandwidth model and predicts
# weak-scaling efficiency for 8..1024 nodes (cluster/scaling_model.py).
#
#   cluster/scaling.sh [--rates "unlimited 1gbit 300mbit"] [--out cluster/results]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$(cd "$here/.." && pwd)/.build/release/dim-dist"
rates="unlimited 1gbit 300mbit" out="$here/results"
while (( $# )); do
  case "$1" in --rates) rates="$2"; shift 2;; --out) out="$2"; shift 2;; *) echo "unknown option $1" >&2; exit 2;; esac
done
[[ -x "$bin" ]] || (cd "$here/.." && swift build -c release)
mkdir -p "$out"
trap '"$here/down.sh" >/dev/null 2>&1 || true' EXIT
measurements="$out/measurements.jsonl"
: > "$measurements"
# One core of this machine, no network: the per-core rates the prediction scales up to a node
# (images/s of a step at batch 64, the estimators' ns per score, where the step's time goes), with
# the BLAS kernels dim-dist picks itself (a machine-wide OPENBLAS_CORETYPE preset is set aside:
# a faster core makes communication relatively dearer, so this is the harder case).
# Two MI-head widths: the paper's 2048 units and the CIFAR recipe's 1024 (half the gradient bytes,
# but 2.4x less compute to hide them behind).
for units in 2048 1024; do
  echo "== one core, $units-unit MI heads"
  env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS=1 "$bin" bench --batch-size 64 --mi-units "$units" --steps 3 --warmup 1 \
    --json 2>/dev/null | sed 's/"kind":"bench"/"kind":"core"/' | tee -a "$measurements"
done
for rate in $rates; do
  for hosts in 1 2 4; do
    if [[ $rate == unlimited ]]; then "$here/up.sh" --hosts "$hosts" --slots 1 >/dev/null
    else "$here/up.sh" --hosts "$hosts" --slots 1 --rate "$rate" >/dev/null; fi
    echo "== $hosts host(s), link $rate"
    # Collectives: gradient-sized allreduce (56 MB), G-sized gathers.
    "$here/run.sh" -np "$hosts" bench --collectives --json --repeats 6 \
      --sizes 4096,65536,1048576,8388608,58720256 2>/dev/null \
      | sed "s/}\$/,\"rate\":\"$rate\",\"hosts\":$hosts,\"kind\":\"collective\"}/" | tee -a "$measurements"
    # One full-model training step, 16 images per rank (weak scaling): time per step, time in
    # collectives, and how much of the gradient allreduce stayed exposed after the overlap.
    "$here/run.sh" -np "$hosts" bench --batch-size $((16 * hosts)) --steps 2 --warmup 1 --rounds 1 --json 2>/dev/null \
      | sed "s/^{/{\"rate\":\"$rate\",\"hosts\":$hosts,\"batch_per_rank\":16,/; s/\"kind\":\"bench\"/\"kind\":\"step\"/" \
      | tee -a "$measurements"
    "$here/down.sh" >/dev/null
  done
done
python3 "$here/scaling_model.py" "$measurements" | tee "$out/prediction.md"
