#!/usr/bin/env bash
# The planted copy-detection set of issue 34 (docs/evaluation.md, "Copy detection"): a copy of
# ../shared/data/cifar-vehicles with 40 edited copies of 40 train images (seeded choice; crop of
# 60-85 % of the side, mirror, brightness and contrast, JPEG at quality 30-70) filed under new
# names in the same class folders. The pairs go to OUT/planted-copies.csv (original,copy,edits).
# Usage: bash scripts/make-copy-set.sh OUT [COUNT] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: make-copy-set.sh OUT [COUNT] [SEED]}"
DATA="${DATA:-../shared/data/cifar-vehicles}"
eval "$(bash scripts/setup-libtorch.sh --env)"
cargo build --release --example make_copies
./target/release/examples/make_copies --src "$DATA" --out "$OUT" --count "${2:-40}" --seed "${3:-0}"
