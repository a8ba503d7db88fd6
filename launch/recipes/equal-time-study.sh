#!/usr/bin/env bash
# The CIFAR-10 recipe's choices at equal time: each variant changes one setting of the recipe
# (launch/recipes/cifar10.sh), trains for the same --time-budget on this machine, then the kNN
# monitor's curve (fc and y, from step 0) and a linear probe on conv features are compared.
#
#   BUDGET=10m bash launch/recipes/equal-time-study.sh                  # all variants, ~15 min each
#   BUDGET=12m MI_UNITS=1024 VARIANTS="crop-flip recipe" bash launch/recipes/equal-time-study.sh
#
# Variants (VARIANTS picks some, in order):
#   recipe      the recipe: infoNCE, batch 64, $MI_UNITS-unit heads, SimCLR-like augmentation (crops of
#               20-100% of the image, flip, colour jitter 0.4, grey scale 0.2)
#   crop-flip   the DIM authors' augmentation instead (pad-4 crops and flips)
#   crop-0.08   SimCLR's smallest crop (8% of the image) instead of 20%
#   units-1024  1024-unit MI heads (512 when MI_UNITS=1024)
#   jsd         the Jensen-Shannon estimator instead of infoNCE
#   prior       prior matching added (--gamma 0.1, the paper's weight)
#   batch-128   batch 128 (twice the negatives per step, half the steps), same learning rate
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"
BUDGET="${BUDGET:-10m}"
RANKS="${RANKS:-2}"
MI_UNITS="${MI_UNITS:-512}"
OUT="${OUT:-runs/equal-time-study}"
VARIANTS="${VARIANTS:-recipe crop-flip crop-0.08 units-1024 jsd prior batch-128}"
bin="${DIM_DIST:-.build/release/dim-dist}"
[[ -x $bin ]] || bash launch/setup.sh
[[ -f data/cifar10/manifest.json ]] || $bin data import --format cifar10 --source ../shared/datasets/cifar10-jpeg --out data/cifar10
source launch/recipes/choose-precision.sh
strong="--resized-crop-min-scale 0.2 --flip --color-jitter 0.4 --grayscale 0.2"
other_units=$(( MI_UNITS == 1024 ? 512 : 1024 ))
for name in $VARIANTS; do
  units=$MI_UNITS estimator=nce batch=64 augment=$strong extra=""
  case $name in
    recipe) ;;
    crop-flip) augment="--crop-padding 4 --flip" ;;
    crop-0.08) augment="${strong/0.2 --flip/0.08 --flip}" ;;
    units-1024) units=$other_units ;;
    jsd) estimator=jsd ;;
    prior) extra="--gamma 0.1" ;;
    batch-128) batch=128 ;;
    *) echo "equal-time-study.sh: unknown variant '$name' (see the list at the top of this script)" >&2; exit 2 ;;
  esac
  echo "== $name: --estimator $estimator --batch-size $batch --mi-units $units $augment $extra"
  # shellcheck disable=SC2086
  launch/local.sh -np "$RANKS" train --data data/cifar10 --estimator "$estimator" --batch-size "$batch" \
    --mi-units "$units" --lr 2e-4 --lr-schedule cosine --warmup-steps 300 --time-budget "$BUDGET" \
    --precision "$PRECISION" --knn-every 2000 --log-every 500 --out "$OUT/$name" $augment $extra
done
for name in $VARIANTS; do
  echo "== $name: steps $(grep -o '"step":[0-9]*' "$OUT/$name/metrics.jsonl" | tail -1 | cut -d: -f2);" \
    "kNN curve (step, feature, test accuracy)"
  grep '"probe":"knn"' "$OUT/$name/metrics.jsonl" | sed -E 's/.*"feature":"([a-z]+)".*"step":([0-9]+),"test_accuracy":([0-9.]+).*/\2 \1 \3/'
  launch/local.sh -np "$RANKS" eval --checkpoint "$OUT/$name" --data data/cifar10 --features conv --probe linear
done
