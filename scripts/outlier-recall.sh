#!/usr/bin/env bash
# Measures how well label disagreement finds misfiled images on cifar-vehicles (issue 7): trains
# the cifar-quick preset (or reuses a run), then runs the long test that files 12 pretext images
# under the wrong class and prints their recall in the top 12 and top 50 of 1012 train images.
# Usage: bash scripts/outlier-recall.sh [EPOCHS] [DEVICE] [extra dino train flags...]
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
if [ -z "${DINO_OUTLIER_WEIGHTS:-}" ]; then
  run="runs/outlier-recall-$(date +%Y%m%d-%H%M%S)"
  ./target/release/dino train --config cifar-quick --data_path "$DATA" --output_dir "$run" \
    --epochs "$EPOCHS" --device "$DEVICE" --headless --print_freq 50 --eval_knn_every "$(( EPOCHS > 10 ? EPOCHS / 10 : 1 ))" "$@"
  export DINO_OUTLIER_WEIGHTS="$run"
fi
./target/release/dino eval knn --pretrained_weights "$DINO_OUTLIER_WEIGHTS" --data_path "$DATA" --nb_knn 10 20 100
cargo test --release --test outliers -- --ignored --nocapture misfiled_cifar_vehicles
