#!/usr/bin/env bash
# The runs the health verdict's thresholds rest on (docs/evaluation.md, "The health verdict"):
# the demo preset, runs made to collapse and to diverge, and cifar-quick on real images. Each is
# trained headless, one after another; `dino runs` then prints every run's verdict.
# Usage: scripts/health-runs.sh [OUT_DIR]   (needs `make release`; about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/setup-libtorch.sh --env)"
OUT=${1:-/tmp/dino-health-runs}
DINO=./target/release/dino
DATA="$OUT/demo-data"
mkdir -p "$OUT"
"$DINO" make-demo-data "$DATA" --per_class 60 >/dev/null
run() {
  local name=$1; shift
  /usr/bin/time -f "$name: %e s" "$DINO" train --headless "$@" --output_dir "$OUT/runs/$name" >"$OUT/$name.log" 2>&1
  grep "health:" "$OUT/$name.log" | tail -1
}
run demo --config demo --data_path "$DATA" --eval_knn_every 1
run collapse-temp --config demo --data_path "$DATA" --eval_knn_every 1 --teacher_temp 0.2 --warmup_teacher_temp 0.2
run collapse-mom0 --config demo --data_path "$DATA" --eval_knn_every 1 --momentum_teacher 0
run diverge --config demo --data_path "$DATA" --eval_knn_every 1 --lr 0.1
run cifar --config cifar-quick --data_path ../shared/data/cifar-vehicles --epochs 3
"$DINO" runs "$OUT/runs"
