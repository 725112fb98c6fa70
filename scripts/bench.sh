#!/usr/bin/env bash
# Throughput of `dino train` (the whole process: loader, step, run directory) on the vit_tiny/4
# micro-benchmark configuration (32 px x2 + 16 px x6 crops, batch 64, out_dim 4096), float32 and
# CPU bf16 autocast (`--use_fp16 true`) in one run, on a copy of the first IMAGES pretext images
# of cifar-vehicles. Prints images/s (median over the iterations after the first, from each
# run's metrics.jsonl), whole-process wall time and peak RSS. A benchmark, not a test.
#
#   bash scripts/bench.sh                  # after `cargo build --release`
#   IMAGES=640 REPEAT=3 bash scripts/bench.sh
#   DINO=path/to/dino DATA=path/to/data bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DINO=${DINO:-target/release/dino}
DATA=${DATA:-../shared/data/cifar-vehicles}
IMAGES=${IMAGES:-384}
REPEAT=${REPEAT:-1}
WORKERS=${WORKERS:-2}
[ -x "$DINO" ] || { echo "bench: $DINO not built (cargo build --release)" >&2; exit 1; }
[ -d "$DATA/pretext" ] || { echo "bench: no $DATA/pretext (set DATA)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data/pretext"
ls "$DATA/pretext" | sort | head -n "$IMAGES" | while read -r f; do cp "$DATA/pretext/$f" "$work/data/pretext/"; done

bf16=$(grep -o -m1 -E 'avx512_bf16|amx_bf16' /proc/cpuinfo || true)
echo "bench: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, bf16 instructions: ${bf16:-none}"
echo "bench: vit_tiny/4, 32/16 px, 2 + 6 crops, batch 64, out_dim 4096, $IMAGES images ($((IMAGES / 64)) iterations), $WORKERS loader workers, $REPEAT run(s) each"

# One run: prints "IMAGES_PER_S WALL_S PEAK_RSS_MB FINAL_LOSS".
one() {
  local fp16=$1 out=$2
  /usr/bin/time -f '%e %M' -o "$out.time" "$DINO" train --arch vit_tiny --patch_size 4 --global_crop_size 32 \
    --local_crop_size 16 --local_crops_number 6 --batch_size_per_gpu 64 --out_dim 4096 --epochs 1 \
    --use_fp16 "$fp16" --data_path "$work/data" --num_workers "$WORKERS" --output_dir "$out" --headless \
    --saveckp_freq 1000 >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  python3 - "$out/metrics.jsonl" "$out.time" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steady = rows[1:] or rows
ips = statistics.median(r["images_per_s"] for r in steady)
wall, rss_kb = open(sys.argv[2]).read().split()[-2:]
print(f"{ips:.2f} {float(wall):.1f} {int(rss_kb) / 1024:.0f} {rows[-1]['loss']:.4f}")
PY
}

declare -A ips
for mode in false true; do
  results=()
  for r in $(seq "$REPEAT"); do
    results+=("$(one "$mode" "$work/run-$mode-$r")")
  done
  name=$([ "$mode" = true ] && echo "bf16" || echo "fp32")
  median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}')
  read -r i w m l <<<"$median"
  ips[$name]=$i
  note=""
  grep -h "use_fp16" "$work/run-$mode-1.log" >/dev/null 2>&1 && note=" ($(grep -h -m1 'use_fp16' "$work/run-$mode-1.log" | sed 's/^dino: warning: //'))"
  printf 'bench: %-4s %7.2f images/s  (%s s/iteration)  wall %6.1f s  peak RSS %5d MB  final loss %s%s\n' \
    "$name" "$i" "$(awk -v i="$i" 'BEGIN {printf "%.2f", 64 / i}')" "$w" "$m" "$l" "$note"
done
awk -v a="${ips[bf16]}" -v b="${ips[fp32]}" 'BEGIN {printf "bench: bf16 / fp32 = %.2fx\n", a / b}'
# The physical limit: FLOPs of the step (scripts/flops.py counts them layer by layer) at the
# measured rates; docs/benchmarks.md compares them with the CPU's nominal peak.
python3 scripts/flops.py vit_tiny4="${ips[fp32]}" | grep '^vit_tiny4' | sed 's/^/bench: fp32 /'
python3 scripts/flops.py vit_tiny4="${ips[bf16]}" | grep '^vit_tiny4' | sed 's/^/bench: bf16 /'
