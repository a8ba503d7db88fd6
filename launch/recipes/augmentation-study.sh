#!/usr/bin/env bash
# Augmentation strength at equal time on CIFAR-10: the DIM authors' crop+flip against SimCLR-style
# random-resized crops, colour jitter and grey scale, each run fitted to the same --time-budget, then
# the kNN monitor's curve (fc and y, from step 0) and a linear probe on conv features.
#
#   BUDGET=12m bash launch/recipes/augmentation-study.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"
BUDGET="${BUDGET:-12m}"
RANKS="${RANKS:-2}"
OUT="${OUT:-runs/augmentation-study}"
bin="${DIM_DIST:-.build/release/dim-dist}"
[[ -x $bin ]] || bash launch/setup.sh
[[ -f data/cifar10/manifest.json ]] || $bin data import --format cifar10 --source ../shared/datasets/cifar10-jpeg --out data/cifar10
source launch/recipes/choose-precision.sh
declare -A settings=(
  [crop-flip]="--crop-padding 4 --flip"
  [simclr-like]="--resized-crop-min-scale 0.2 --flip --color-jitter 0.4 --grayscale 0.2"
)
for name in crop-flip simclr-like; do
  # shellcheck disable=SC2086
  launch/local.sh -np "$RANKS" train --data data/cifar10 --estimator nce --batch-size 64 --mi-units 1024 \
    --lr 2e-4 --lr-schedule cosine --warmup-steps 300 --time-budget "$BUDGET" --precision "$PRECISION" \
    --knn-every 2000 --log-every 500 --out "$OUT/$name" ${settings[$name]}
done
for name in crop-flip simclr-like; do
  echo "== $name: kNN curve (step, feature, test accuracy)"
  grep '"probe":"knn"' "$OUT/$name/metrics.jsonl" | sed -E 's/.*"feature":"([a-z]+)".*"step":([0-9]+),"test_accuracy":([0-9.]+).*/\2 \1 \3/'
  launch/local.sh -np "$RANKS" eval --checkpoint "$OUT/$name" --data data/cifar10 --features conv --probe linear
done
