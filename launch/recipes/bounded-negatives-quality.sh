#!/usr/bin/env bash
# What bounded negatives cost in quality: the same training (CIFAR-10, global batch BATCH = 64 by
# default, equal steps, same seed) with all rows scored and with K = N/4 and N/16 sampled rows (KS),
# for infoNCE and JSD; then a linear probe on the conv features of each (settings chosen on a
# validation split). Prints a Markdown table.
#
#   bash launch/recipes/bounded-negatives-quality.sh            # ~100 min on 2 idle cores (Zen 5, bf16)
#   STEPS=2000 ESTIMATORS=nce OUT=runs/bounded bash launch/recipes/bounded-negatives-quality.sh
#   # the same question at a global batch of 1024 (625 steps = the same 12.8 epochs; ~75 min):
#   BATCH=1024 KS="all 256" STEPS=625 LR=8e-4 WARMUP=50 OUT=runs/bounded-1024 bash launch/recipes/bounded-negatives-quality.sh
#
# The training is the CIFAR recipe's (launch/recipes/cifar10.sh: infoNCE or JSD, batch 64, lr 2e-4
# with a 500-step warm-up and half a cosine to 0, crop + flip, bf16 where faster), shortened to
# STEPS (10,000 = 12.8 epochs) so that each run ends its schedule, with 512-unit MI heads (1.6x the
# recipe's 1024-unit step rate; the comparison is between row sets): the rows of the table differ
# only in the row set.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"
OUT="${OUT:-runs/bounded-negatives}"
STEPS="${STEPS:-10000}"
MI_UNITS="${MI_UNITS:-512}"
PRECISION="${PRECISION:-}"          # empty: bf16 where this CPU runs it faster (choose-precision.sh)
RANKS="${RANKS:-2}"
PROBE_EPOCHS="${PROBE_EPOCHS:-20}"   # the probe's epoch budget (its settings are chosen on validation)
ESTIMATORS="${ESTIMATORS:-nce jsd}"
BATCH="${BATCH:-64}"                # global batch N
KS="${KS:-all $((BATCH / 4)) $((BATCH / 16))}"   # row sets: all N, N/4, N/16
LR="${LR:-2e-4}"                     # larger batches take fewer steps: scale LR (e.g. by sqrt of the batch ratio)
WARMUP="${WARMUP:-500}"
SEED="${SEED:-0}"                    # weights, data order, augmentation and the row samples: rerun with another to see the noise
bin="${DIM_DIST:-.build/release/dim-dist}"
[[ -x $bin ]] || bash launch/setup.sh
if [[ ! -f data/cifar10/manifest.json ]]; then
  $bin data import --format cifar10 --source ../shared/datasets/cifar10-jpeg --out data/cifar10
fi
source launch/recipes/choose-precision.sh
echo "bounded-negatives quality: batch $BATCH, row sets $KS, seed $SEED, $STEPS steps, lr $LR, $MI_UNITS-unit heads, precision $PRECISION, $RANKS ranks, output $OUT"
mkdir -p "$OUT"
table="$OUT/table.md"
echo "| estimator | rows scored per step | linear probe on conv (test) | validation | final loss |" > "$table"
echo "|---|---|---|---|---|" >> "$table"
for est in $ESTIMATORS; do
  for K in $KS; do
    run="$OUT/$est-$K"
    bounded=(); [[ $K != all ]] && bounded=(--scored-rows "$K")
    launch/local.sh -np "$RANKS" train --data data/cifar10 --estimator "$est" --batch-size "$BATCH" --mi-units "$MI_UNITS" \
      --lr "$LR" --lr-schedule cosine --warmup-steps "$WARMUP" --precision "$PRECISION" \
      --crop-padding 4 --flip --seed "$SEED" --steps "$STEPS" --log-every 100 --out "$run" "${bounded[@]}" > "$run.log" 2>&1
    launch/local.sh -np "$RANKS" eval --checkpoint "$run" --data data/cifar10 --features conv --probe linear --probe-epochs "$PROBE_EPOCHS" --json \
      > "$run.probe.txt" 2>&1
    line=$(grep -E "probe on conv" "$run.probe.txt" | head -1)
    test=$(echo "$line" | sed -E 's/.*test ([0-9.]+)%.*/\1/')
    val=$(echo "$line" | sed -E 's/.*validation ([0-9.]+)%.*/\1/')
    loss=$(tail -1 "$run/metrics.jsonl" | sed -E 's/.*"loss":([-0-9.e]+).*/\1/')
    echo "| $est | ${K/all/all $BATCH} | $test% | $val% | $(printf %.4f "$loss") |" | tee -a "$table"
  done
done
cat "$table"
