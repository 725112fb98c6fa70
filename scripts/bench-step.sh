#!/usr/bin/env bash
# The training step, side by side in one run: examples/bench_step.rs (dino-tui's DinoState::step)
# and scripts/peer-step.py (the reference's step in PyTorch eager, on the same libtorch), each in
# float32 and CPU bfloat16 autocast, on the vit_tiny/4 micro-benchmark configuration (32 px x2 +
# 16 px x6, batch 64, out_dim 4096), or with CONFIG=cifar-quick on the CPU preset's step (ResNet-18,
# batch norm in the head, 32 px x2 + 16 px x4, out_dim 256). Runs are interleaved (ours, peer, ours, peer, ...) so a
# change in the machine's speed hits both; prints each run and the medians. A benchmark, not a test.
#
#   bash scripts/bench-step.sh              # after `cargo build --release --example bench_step`
#   REPEAT=3 ITERS=3 bash scripts/bench-step.sh
#   CONFIG=cifar-quick ITERS=16 bash scripts/bench-step.sh
#   MODES=fp32 bash scripts/bench-step.sh   # a CPU without bf16 instructions: both would emulate it
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-3}
ITERS=${ITERS:-3}
CONFIG=${CONFIG:-vit_tiny4}
MODES=${MODES:-fp32 bf16}
BENCH=${BENCH:-target/release/examples/bench_step}
# The python of the venv scripts/setup-libtorch.sh installs PyTorch into.
PYTHON=${PYTHON:-${DINO_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dino-tui/torch-2.11.0}/bin/python}
[ -x "$BENCH" ] || { echo "bench-step: $BENCH not built (cargo build --release --example bench_step)" >&2; exit 1; }
[ -n "$PYTHON" ] && [ -x "$PYTHON" ] || { echo "bench-step: no python with torch (set PYTHON)" >&2; exit 1; }
echo "bench-step: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $CONFIG, $REPEAT runs of $ITERS timed iterations each"
declare -A runs
for r in $(seq "$REPEAT"); do
  for mode in $MODES; do
    ours=$("$BENCH" "$ITERS" 64 "$mode" "$CONFIG" | tail -1)
    peer=$("$PYTHON" scripts/peer-step.py "$mode" "$ITERS" 64 "$CONFIG")
    echo "  run $r $mode: dino-tui $ours"
    echo "  run $r $mode: $peer"
    runs[ours-$mode]+="$(echo "$ours" | awk '{print $1}') "
    runs[peer-$mode]+="$(echo "$peer" | awk '{print $4}') "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
for mode in $MODES; do
  o=$(echo "${runs[ours-$mode]}" | median)
  p=$(echo "${runs[peer-$mode]}" | median)
  awk -v m="$mode" -v o="$o" -v p="$p" 'BEGIN {printf "bench-step: %s median s/iteration: dino-tui %.3f (%.1f images/s), peer %.3f (%.1f images/s): %.2fx\n", m, o, 64 / o, p, 64 / p, p / o}'
done
[[ " $MODES " == *" bf16 "* && " $MODES " == *" fp32 "* ]] || exit 0
o=$(echo "${runs[ours-bf16]}" | median)
p=$(echo "${runs[peer-fp32]}" | median)
awk -v o="$o" -v p="$p" 'BEGIN {printf "bench-step: dino-tui bf16 against the peer in float32 (the reference has no CPU mixed precision): %.2fx\n", p / o}'
