#!/usr/bin/env bash
# CUDA check for when a GPU machine is at hand: builds, runs the parity tests on the CPU, then
# trains a few hundred iterations on CUDA (mixed precision) on the synthetic demo data and prints
# images/s and peak GPU memory, evaluates the run with k-NN on CUDA, and finally runs the step
# micro-benchmark on CUDA, and one epoch through the NCCL path of the c10d shim with one rank.
# Usage: bash scripts/gpu-check.sh [ITERATIONS]   (LIBTORCH may point at a CUDA libtorch)
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS="${1:-300}"
eval "$(bash scripts/setup-libtorch.sh --env)"
cargo build --release --bin dino --example bench_step
cargo test --release --test parity
work=$(mktemp -d)
./target/release/dino make-demo-data "$work/data" --per_class 400 --size 48
# 2000 pretext images at batch 64: 31 iterations per epoch.
epochs=$(( (ITERS + 30) / 31 ))
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
( while sleep 1; do nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits; done ) > "$work/gpu.csv" 2>/dev/null &
sampler=$!
./target/release/dino train --config demo --data_path "$work/data" --output_dir "$work/run" \
  --device cuda --use_fp16 true --epochs "$epochs" --batch_size_per_gpu 64 --num_workers 8 --headless --print_freq 50
kill $sampler 2>/dev/null || true
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
m = [json.loads(l) for l in open(f"{work}/run/metrics.jsonl")]
steady = m[len(m) // 5:]
ips = sum(x["images_per_s"] for x in steady) / max(1, len(steady))
wait = sum(x["data_time"] for x in steady) / max(1e-9, sum(x["iter_time"] for x in steady))
mem = [int(l.split(",")[0]) for l in open(f"{work}/gpu.csv") if l.strip()]
print(f"CUDA training: {len(m)} iterations, {ips:.1f} images/s (steady state), data wait {100*wait:.1f}%, "
      f"peak GPU memory {max(mem) if mem else 'n/a'} MiB, final loss {m[-1]['loss']:.4f}")
PY
# One k-NN evaluation of the run's teacher on the GPU (the synthetic set has train/ and val/).
./target/release/dino eval knn --pretrained_weights "$work/run" --data_path "$work/data" --device cuda --nb_knn 10 20
BENCH_CUDA=1 ./target/release/examples/bench_step 20 64
# The NCCL path of the c10d shim with one rank (compiled in when the NCCL/CUDA headers were there).
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29561 DINO_DIST_TIMEOUT=120 \
  ./target/release/dino train --config demo --data_path "$work/data" --output_dir "$work/nccl" \
  --device cuda --epochs 1 --batch_size_per_gpu 64 --num_workers 8 --headless --print_freq 10 \
  && echo "NCCL one-rank run: OK" || echo "NCCL one-rank run: FAILED
