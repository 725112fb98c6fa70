#!/usr/bin/env bash
# Measures how well each outlier score finds planted bad data on cifar-vehicles (issue 17): 40
# train images moved to the wrong vehicle class and 40 animal images from ../shared/data/strangers
# spread over the class folders (1,040 images). Prints the recall table (top 40 / top 100 per
# score kind) for raw pixels, random weights and, with DINO_OUTLIER_WEIGHTS or EPOCHS > 0, a
# cifar-quick teacher trained first.
# Usage: bash scripts/outlier-recall.sh [EPOCHS] [DEVICE] [extra dino train flags...]
#        EPOCHS=0: raw pixels and random weights only (a few minutes on 2 cores)
#        DINO_OUTLIER_WEIGHTS=runs/NAME bash scripts/outlier-recall.sh     # an existing run
# On a GPU, for example: bash scripts/outlier-recall.sh 200 cuda --resnet_stem cifar --num_workers 12
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-10}"
DEVICE="${2:-auto}"
shift $(( $# < 2 ? $# : 2 ))
DATA="${DATA:-../shared/data/cifar-vehicles}"
eval "$(bash scripts/setup-libtorch.sh --env)"
cargo build --release --bin dino
if [ -z "${DINO_OUTLIER_WEIGHTS:-}" ] && [ "$EPOCHS" -gt 0 ]; then
  run="runs/outlier-recall-$(date +%Y%m%d-%H%M%S)"
  ./target/release/dino train --config cifar-quick --data_path "$DATA" --output_dir "$run" \
    --epochs "$EPOCHS" --device "$DEVICE" --headless --print_freq 50 --eval_knn_every "$(( EPOCHS > 10 ? EPOCHS / 10 : 1 ))" "$@"
  export DINO_OUTLIER_WEIGHTS="$run"
fi
if [ -n "${DINO_OUTLIER_WEIGHTS:-}" ]; then
  ./target/release/dino eval knn --pretrained_weights "$DINO_OUTLIER_WEIGHTS" --data_path "$DATA" --nb_knn 10 20 100
fi
cargo test --release --test outliers -- --ignored --nocapture planted_misfiled_and_stranger
