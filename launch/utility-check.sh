#!/usr/bin/env bash
# `dim-dist eval utility` under mpirun -np 2 against one process, as a user runs it: fine-tuning and
# training from scratch are data-parallel (synchronised BatchNorm, summed gradients), so both must
# reach the same accuracies (to one test image: the weights agree to float rounding, not bits).
#   bash launch/utility-check.sh [dim-dist binary]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$here/.build/debug/dim-dist}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=1
if [[ $(id -u) == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
"$bin" data synth --out "$work/bars" --size 28 --classes 4 --train 400 --test 100 --shards 2 > /dev/null
"$bin" train --data "$work/bars" --steps 20 --batch-size 16 --conv-channels 8,16 --fc-units 32 --global-dim 8 \
  --mi-units 16 --lr 1e-3 --out "$work/run" > "$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }
args=(eval utility --checkpoint "$work/run" --data "$work/bars" --labels 40,all --epochs 3 --warmup-epochs 1
      --batch-size 32 --lr 1e-3)
"$bin" "${args[@]}" --out "$work/np1" > "$work/np1.log" 2>&1 || { cat "$work/np1.log"; exit 1; }
mpirun --oversubscribe -x OPENBLAS_NUM_THREADS -x SWIFT_BACKTRACE=enable=no -np 2 "$bin" "${args[@]}" \
  --out "$work/np2" > "$work/np2.log" 2>&1 || { cat "$work/np2.log"; exit 1; }
python3 - "$work/np1/utility.jsonl" "$work/np2/utility.jsonl" <<'PY'
import json, sys
def load(p):
    return {(r["method"], r["labels"], r["seed"]): r for r in map(json.loads, open(p))}
one, two = load(sys.argv[1]), load(sys.argv[2])
assert one.keys() == two.keys() and len(one) == 6, (sorted(one), sorted(two))
worst = 0.0
for k in sorted(one):
    a, b = one[k]["testAccuracy"], two[k]["testAccuracy"]
    worst = max(worst, abs(a - b))
    print(f"  {k[0]:>13} {k[1]:>4} labels: np=1 {100*a:.1f}%  np=2 {100*b:.1f}%  (chosen: {one[k]['chosen']} / {two[k]['chosen']})")
assert worst <= 0.0101, f"np=2 differs from np=1 by {worst}"
print(f"eval utility: np=2 equals np=1 (worst test accuracy difference {worst:.4f})")
PY
