#!/usr/bin/env bash
# The figures of docs/evaluation.md, "Copy detection" and "Image search" (issue 34): for raw
# pixels, random weights (the cifar-quick preset's ResNet-18) and, when DINO_COPY_WEIGHTS names a
# run or checkpoint, a trained network:
#   - copy-detection recall: how many of the 40 planted (original, copy) pairs of the planted set
#     (scripts/make-copy-set.sh, made here when absent) are among the top 40 rows of
#     `dino duplicates`, and the same per edit;
#   - retrieval precision@10 by class on cifar-vehicles: `dino search` with every val image as a
#     query and train as the database, the share of the 10 nearest of the query's class.
# Flags after the script's name go to `dino duplicates` (the levers: --sizes, --gem_p,
# --whitening_dims, --mirror, --cls).
# Usage: DINO_COPY_WEIGHTS=/tmp/cq-teacher bash scripts/copy-detection.sh [dino duplicates flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/cifar-vehicles}"
PLANTED="${PLANTED:-/tmp/cifar-vehicles-copies}"
OUT="${OUT:-/tmp/copy-detection}"
eval "$(bash scripts/setup-libtorch.sh --env)"
cargo build --release --bin dino --example make_copies
[ -d "$PLANTED" ] || ./target/release/examples/make_copies --src "$DATA" --out "$PLANTED" --count 40 --seed 0
mkdir -p "$OUT"
for weights in pixels random ${DINO_COPY_WEIGHTS:-}; do
  flags=(--pretrained_weights "$weights")
  [ "$weights" = random ] && flags+=(--config cifar-quick)
  name="$(basename "$weights")"
  ./target/release/dino duplicates "${flags[@]}" --data_path "$PLANTED" --top 40 --json "$@" > "$OUT/duplicates-$name.json"
  ./target/release/dino search "${flags[@]}" --data_path "$DATA" --split train --query "$DATA/val" --top 10 --json > "$OUT/search-$name.json"
  echo "== $weights"
  python3 scripts/copy-figures.py recall "$PLANTED/planted-copies.csv" "$OUT/duplicates-$name.json"
  python3 scripts/copy-figures.py precision "$OUT/search-$name.json"
done
