#!/usr/bin/env bash
# Two dim-dist binaries against each other on this CPU, to judge a change: `dim-dist bench` with
# each, alternating A B B A per round (a busy period hits both alike), at one rank x 1 thread and
# at 2 ranks; prints every measurement (images/s, whole step as % of the same run's sgemm rate)
# and the median images/s of each binary.
#
#   bash launch/bench-ab.sh OLD_BINARY NEW_BINARY
#   ROUNDS=3 MI_UNITS=512 RANKS="1 2" BATCH=64 bash launch/bench-ab.sh /tmp/dim-dist-before .build/release/dim-dist
#
# The kernels are whatever the environment picks (e.g. OPENBLAS_CORETYPE=Haswell for OpenBLAS's
# AVX2 kernels, DIM_KERNELS=avx2 for dim-dist's own), the same for both binaries.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -ne 2 || ! -x $1 || ! -x $2 ]]; then
  echo "usage: launch/bench-ab.sh OLD_BINARY NEW_BINARY (both executable)" >&2
  exit 2
fi
rounds="${ROUNDS:-2}" units="${MI_UNITS:-1024}" batch="${BATCH:-64}" steps="${STEPS:-8}"
lscpu | grep -m1 "Model name" || true
echo "MI heads: $units units, batch $batch, infoNCE, $steps timed steps; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} DIM_KERNELS=${DIM_KERNELS:-auto}"
results=$(mktemp)
measure() {  # $1 label, $2 binary, $3 ranks
  local out
  out=$(DIM_DIST="$2" OPENBLAS_NUM_THREADS=1 "$here/launch/local.sh" -np "$3" bench --batch-size "$batch" \
        --estimator nce --mi-units "$units" --steps "$steps" --warmup 2 --rounds 1 2>&1)
  local rate share
  rate=$(grep -m1 -oE "^  [0-9.]+ images/s" <<<"$out" | grep -oE "[0-9.]+" | head -1)
  share=$(grep -m1 -oE "whole step: [0-9.]+ GFLOP/s in the median step = [0-9.]+%" <<<"$out" | grep -oE "[0-9.]+%$")
  echo "  $1 np=$3: $rate images/s, whole step $share of sgemm"
  echo "$1 $3 $rate" >>"$results"
}
for ranks in ${RANKS:-1 2}; do
  for ((r = 0; r < rounds; r++)); do
    measure A "$1" "$ranks"; measure B "$2" "$ranks"; measure B "$2" "$ranks"; measure A "$1" "$ranks"
  done
done
echo "medians (A = $1, B = $2):"
for ranks in ${RANKS:-1 2}; do
  for side in A B; do
    printf "  %s np=%s: " "$side" "$ranks"
    awk -v s="$side" -v n="$ranks" '$1 == s && $2 == n { print $3 }' "$results" | sort -g \
      | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f images/s\n", m }'
  done
done
rm -f "$results"
