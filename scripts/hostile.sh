#!/usr/bin/env bash
# The hostile-input attack of issue 37, re-run: each try bounded by `timeout`, one PASS/FAIL line
# per try, and a tally. Usage: scripts/hostile.sh [DINO_BINARY] [CATEGORY...]
#   DINO_BINARY  default target/debug/dino (build it first); give an older binary to see what a
#                fix changed
#   CATEGORY     any of the categories below (default: all), e.g. `fifo escape`
# It works in a temporary folder of its own (the run index and logs too, through XDG_*_HOME) and
# never writes outside it: no try writes to a real device (links to /dev/null stand for them).
#
# To add a category: write `category_NAME() { ...; }` using `setup_run` and `attempt`, and add
# NAME to CATEGORIES.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DINO=$(realpath "${1:-$ROOT/target/debug/dino}")
shift $(($# > 0 ? 1 : 0))
CATEGORIES=(fifo escape smaller limits control)
[ $# -gt 0 ] && CATEGORIES=("$@")
SHARED_DATA=${SHARED_DATA:-$ROOT/../shared/data/cifar-vehicles}

eval "$(bash "$ROOT/scripts/setup-libtorch.sh" --env 2>/dev/null)"
WORK=$(mktemp -d /tmp/dino-hostile.XXXXXX)
cleanup() { chmod -R u+rwx "$WORK" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
export XDG_DATA_HOME=$WORK/xdg-data XDG_STATE_HOME=$WORK/xdg-state
cd "$WORK" || exit 2

PASS=0
FAIL=0
SKIP=0

# verdict PASS|FAIL|SKIP NAME [DETAIL]
verdict() {
  case $1 in
    PASS) PASS=$((PASS + 1)) ;;
    FAIL) FAIL=$((FAIL + 1)) ;;
    SKIP) SKIP=$((SKIP + 1)) ;;
  esac
  printf '%s %s%s\n' "$1" "$2" "${3:+: $3}"
}

# attempt NAME SECONDS CHECK CMD...: runs CMD under `timeout SECONDS` (stdin closed), its output
# in $out and its status in $rc, then PASS when the bash expression CHECK holds. A try still
# running at its bound is killed and FAILs as hung. Output is shown with `cat -v`: a try about
# escape sequences must not drive this terminal either.
attempt() {
  local name=$1 limit=$2 check=$3
  shift 3
  out=$(timeout -k 5 "$limit" "$@" 2>&1 </dev/null)
  rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict FAIL "$name" "hung: killed after ${limit}s"
  elif eval "$check"; then
    verdict PASS "$name"
  else
    verdict FAIL "$name" "exit $rc: $(printf '%s' "$out" | tail -c 400 | tr '\n' ' ' | cat -v)"
  fi
}

says() { grep -qF -- "$1" <<<"$out"; }

# A small data set (40 pretext images, 4 classes x 6 in train/ and val/) and a tiny ViT config.
setup_data() {
  [ -f tiny.toml ] && return
  mkdir -p data/pretext
  find "$SHARED_DATA/pretext" -type f -name '*.jpg' | sort | head -40 | xargs cp -t data/pretext
  for split in train val; do
    for class in "$SHARED_DATA/$split"/*/; do
      mkdir -p "data/$split/$(basename "$class")"
      find "$class" -type f | sort | head -6 | xargs cp -t "data/$split/$(basename "$class")"
    done
  done
  "$DINO" train --print-config --arch vit_tiny --patch_size 4 --embed_dim 24 --depth 1 --num_heads 2 \
    --out_dim 32 --head_hidden_dim 32 --head_bottleneck_dim 16 --global_crop_size 16 --local_crop_size 8 \
    --local_crops_number 2 --batch_size_per_gpu 8 --epochs 1 --warmup_epochs 0 --freeze_last_layer 0 \
    --drop_path_rate 0 --use_fp16 false --num_workers 1 --saveckp_freq 1 --data_path "$WORK/data" \
    --device cpu >tiny.toml
}

# setup_run NAME: runs/NAME trained for one epoch (once); fails the script when it cannot.
setup_run() {
  setup_data
  [ -f "runs/$1/checkpoints/checkpoint-latest.json" ] && return
  timeout 300 "$DINO" train --headless --config tiny.toml --output_dir "runs/$1" >"$1.train.out" 2>&1 </dev/null || {
    echo "setup: training runs/$1 failed; see below" >&2
    cat -v "$1.train.out" >&2
    exit 2
  }
}

category_fifo() {
  setup_run base
  mkfifo fifo.toml fifo.txt fifo.safetensors fifo.pth
  attempt "fifo: --config FIFO" 20 '[ $rc -ne 0 ] && says "a FIFO"' "$DINO" train --print-config --config fifo.toml
  attempt "fifo: --exclude FIFO" 60 '[ $rc -ne 0 ] && says "a FIFO"' \
    "$DINO" train --headless --config tiny.toml --output_dir runs/excl --exclude fifo.txt
  attempt "fifo: --pretrained_weights FIFO.safetensors" 30 '[ $rc -ne 0 ] && says "a FIFO"' \
    "$DINO" eval knn --pretrained_weights fifo.safetensors --data_path data --device cpu
  attempt "fifo: --pretrained_weights FIFO.pth" 30 '[ $rc -ne 0 ] && says "a FIFO"' \
    "$DINO" eval knn --pretrained_weights fifo.pth --data_path data --device cpu
  mkdir -p runs/edits && mkfifo runs/edits/schedule-edits.toml
  attempt "fifo: schedule-edits.toml FIFO, the trainer exits" 180 '[ $rc -eq 0 ]' \
    "$DINO" train --headless --config tiny.toml --output_dir runs/edits
  cp -r runs/base runs/ev && rm runs/ev/events.jsonl && mkfifo runs/ev/events.jsonl
  attempt "fifo: events.jsonl FIFO on resume" 60 '[ $rc -ne 0 ] && says "events.jsonl" && says "a FIFO"' \
    "$DINO" train --headless --config tiny.toml --output_dir runs/ev --epochs 2
  attempt "fifo: dino runs with events.jsonl a FIFO" 30 '[ $rc -eq 0 ]' "$DINO" runs
  for f in metrics.jsonl log.txt config.toml checkpoints/checkpoint-latest.json; do
    rm "runs/ev/$f" && mkfifo "runs/ev/$f"
  done
  attempt "fifo: dino runs with every run file a FIFO" 30 '[ $rc -eq 0 ]' "$DINO" runs
  attempt "fifo: dino runs RUN with every run file a FIFO" 30 'true' "$DINO" runs runs/ev
}

category_escape() {
  setup_run base
  ln -sf /dev/null null.safetensors
  attempt "escape: export --output LINK-TO-DEVICE stays a link" 120 '[ $rc -eq 0 ] && [ -L null.safetensors ]' \
    "$DINO" export runs/base --output null.safetensors
  ln -sf /dev/null rows.csv
  attempt "escape: outliers --csv LINK-TO-DEVICE, no side files" 300 \
    '[ $rc -eq 0 ] && [ -L rows.csv ] && ! [ -e rows-duplicates.csv ] && ! [ -e rows.png ]' \
    "$DINO" outliers --pretrained_weights runs/base --data_path data --csv rows.csv --device cpu
  cp -r runs/base runs/forged
  local sidecar=runs/forged/checkpoints/checkpoint-latest.json tensors
  tensors=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tensors"])' "$sidecar")
  cp "runs/forged/checkpoints/$tensors" x.safetensors
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); m["tensors"]="../../../x.safetensors"; json.dump(m, open(sys.argv[1], "w"))' "$sidecar"
  attempt "escape: sidecar tensors ../../../x.safetensors refused" 60 '[ $rc -ne 0 ] && says "refused"' \
    "$DINO" eval knn --pretrained_weights "$sidecar" --data_path data --device cpu
  attempt "escape: --name ../../escape_run refused" 20 '[ $rc -ne 0 ] && says "--name"' \
    "$DINO" train --print-config --name ../../escape_run
  mkdir -p evil/train/a evil/val/a
  cp data/train/*/* evil/train/a/ 2>/dev/null
  cp data/val/*/* evil/val/a/ 2>/dev/null
  local name=$'\e]2;PWNED\a\e[2Jx.jpg'
  printf 'not an image' >"evil/train/a/$name"
  attempt "escape: embed names an escape-sequence file escaped" 300 \
    '[ $rc -eq 0 ] && ! grep -q $'"'"'\e'"'"' <<<"$out" && says "\\x1b]2;PWNED"' \
    "$DINO" embed --pretrained_weights runs/base --data_path evil --output feats.npy --device cpu
  mkdir -p evil/pretext && cp data/pretext/* evil/pretext/ && rm "$(find evil/pretext -type f | sort | head -1)"
  printf 'not an image' >"evil/pretext/$name"
  attempt "escape: headless train names an escape-sequence file escaped" 300 \
    '[ $rc -eq 0 ] && ! grep -q $'"'"'\e'"'"' <<<"$out" && says "\\x1b]2;PWNED"' \
    "$DINO" train --headless --config tiny.toml --data_path evil --output_dir runs/evil --epochs 2
}

# A grey 32-bit float TIFF (Pillow's mode "F"), 4 x 4, values 0..1, uncompressed.
float_tiff() {
  python3 - "$1" <<'EOF'
import struct, sys
w = h = 4
pixels = struct.pack("<16f", *[i / 15 for i in range(16)])
entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, 32), (259, 3, 1, 1), (262, 3, 1, 1),
           (273, 4, 1, 8), (277, 3, 1, 1), (278, 3, 1, h), (279, 4, 1, len(pixels)), (339, 3, 1, 3)]
ifd = 8 + len(pixels)
out = b"II*\x00" + struct.pack("<I", ifd) + pixels + struct.pack("<H", len(entries))
for tag, kind, count, value in entries:
    out += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
open(sys.argv[1], "wb").write(out + b"\x00\x00\x00\x00")
EOF
}

category_smaller() {
  setup_run base
  mkdir -p ftiff/train/a ftiff/val/a
  cp data/train/*/* ftiff/train/a/ 2>/dev/null
  cp data/val/*/* ftiff/val/a/ 2>/dev/null
  float_tiff ftiff/train/a/float.tif
  attempt "smaller: a grey float TIFF is decoded, not skipped" 300 '[ $rc -eq 0 ] && ! says "float.tif"' \
    "$DINO" embed --pretrained_weights runs/base --data_path ftiff --output ftiff.npy --device cpu
  attempt "smaller: an exported backbone records its crop size" 120 \
    '[ $rc -eq 0 ] && python3 -c "import json,struct,sys; f=open(sys.argv[1],\"rb\"); n=struct.unpack(\"<Q\", f.read(8))[0]; sys.exit(json.loads(f.read(n))[\"__metadata__\"][\"global_crop_size\"] != \"16\")" bare.safetensors' \
    "$DINO" export runs/base --output bare.safetensors
  attempt "smaller: eval knn takes --global_crop_size for a bare file" 300 '[ $rc -eq 0 ] && ! says "unexpected argument"' \
    "$DINO" eval knn --pretrained_weights bare.safetensors --global_crop_size 16 --data_path data --device cpu
  attempt "smaller: --lr -inf reaches the range check" 20 '[ $rc -ne 0 ] && says "--lr" && ! says "unexpected argument"' \
    "$DINO" train --print-config --lr -inf
  attempt "smaller: label-efficiency --temperature nan refused" 20 '[ $rc -ne 0 ] && says "--temperature"' \
    "$DINO" eval label-efficiency --temperature nan --pretrained_weights runs/base --data_path data --device cpu
  attempt "smaller: --map x.bmp refused" 20 '[ $rc -ne 0 ] && says ".bmp" && ! [ -e x.bmp ]' \
    "$DINO" outliers --map x.bmp --pretrained_weights runs/base --data_path data --device cpu
  local long
  long=runs/$(printf 'r%.0s' $(seq 120))
  mkdir -p "$long"
  attempt "smaller: ctl on a socket path over 108 bytes exits 3" 20 '[ $rc -eq 3 ]' "$DINO" ctl "$long" status
  attempt "smaller: eval into a private run leaves private files" 300 \
    '[ $rc -eq 0 ] && [ -z "$(find runs/base/evals runs/base/export -perm /077 2>/dev/null)" ]' \
    bash -c '"$1" eval knn --pretrained_weights runs/base --data_path data --device cpu && "$1" export runs/base' _ "$DINO"
  mkdir -p deep/pretext && cp data/pretext/* deep/pretext/
  (cd deep/pretext && for _ in $(seq 25); do mkdir "$(printf 'd%.0s' $(seq 200))" && cd "$(printf 'd%.0s' $(seq 200))" || exit; done)
  attempt "smaller: a folder past PATH_MAX is named" 300 '[ $rc -eq 0 ] && grep -q PATH_MAX runs/deep/events.jsonl' \
    "$DINO" train --headless --config tiny.toml --data_path deep --output_dir runs/deep
  if [ "$(id -u)" -eq 0 ]; then
    verdict SKIP "smaller: mode 000 folder under pretext/ (root reads it anyway)"
    verdict SKIP "smaller: permission error on a checkpoint (root reads it anyway)"
  else
    mkdir -p locked/pretext/sub && cp data/pretext/* locked/pretext/ && chmod 000 locked/pretext/sub
    attempt "smaller: a mode 000 folder under pretext/ is skipped and named" 300 \
      '[ $rc -eq 0 ] && grep -q "cannot read the folder" runs/locked/events.jsonl' \
      "$DINO" train --headless --config tiny.toml --data_path locked --output_dir runs/locked
    cp -r runs/base runs/perm && chmod 000 runs/perm/checkpoints
    attempt "smaller: a permission error on the checkpoints is named" 60 '[ $rc -ne 0 ] && says "ermission denied"' \
      "$DINO" eval knn --pretrained_weights runs/perm --data_path data --device cpu
  fi
  # Not fixed (docs/development.md): libtorch's own static initialisers run out of address space
  # before main, so no code of ours runs; this try stays here to show it.
  attempt "smaller: dino --version under ulimit -v 400000" 20 '[ $rc -eq 0 ]' \
    bash -c 'ulimit -v 400000; exec "$1" --version' _ "$DINO"
}

# Item 3 and 7: budgets that must hold before the memory or the disk is spent.
category_limits() {
  setup_run base
  # A "billion laughs" pickle: ten lists of ten refs to the one before (10^9 values expanded).
  python3 - <<'PY'
import zipfile
p = bytearray(b"\x80\x02]q\x00")
for level in range(1, 10):
    p += bytes([ord("]"), ord("q"), level, ord("(")]) + bytes([ord("h"), level - 1]) * 10 + b"e0"
p += b"h\x09."
with zipfile.ZipFile("bomb.pth", "w") as z:
    z.writestr("archive/data.pkl", bytes(p))
PY
  attempt "limits: a billion-laughs .pth under ulimit -v 1500000 is refused, named" 120 \
    '[ $rc -eq 1 ] && says "expands to more than" && says bomb.pth' \
    bash -c 'ulimit -v 1500000; exec "$1" export bomb.pth --output bomb-out.safetensors' _ "$DINO"
  attempt "limits: a checkpoint past ulimit -f is a named write error, not SIGXFSZ" 300 \
    '[ $rc -eq 1 ] && says "File too large"' \
    bash -c 'ulimit -f 64; exec "$1" train --headless --config tiny.toml --output_dir runs/fsize' _ "$DINO"
  attempt "limits: --out_dim 1048576 --head_bottleneck_dim 65536 is refused with its estimate" 60 \
    '[ $rc -eq 1 ] && says "this plan needs at least" && [ ! -e runs/huge-head ]' \
    "$DINO" train --headless --config tiny.toml --output_dir runs/huge-head --out_dim 1048576 --head_bottleneck_dim 65536
  attempt "limits: --embed_dim 65536 --num_heads 1024 --depth 256 is refused with its estimate" 60 \
    '[ $rc -eq 1 ] && says "this plan needs at least"' \
    "$DINO" train --headless --config tiny.toml --output_dir runs/huge-vit --embed_dim 65536 --num_heads 1024 --depth 256
  # The attack's plan: 100 images x 10^6 epochs of one-image batches, 10^8 iterations, whose
  # schedules alone (6.4 GB) are more than this limit leaves. (40 images fit: that plan trains.)
  [ -d data100 ] || "$DINO" make-demo-data data100 --per_class 20 >/dev/null
  attempt "limits: a million epochs of one-image batches on 100 images under ulimit -v 3000000 is refused" 60 \
    '[ $rc -eq 1 ] && says "of schedules" && [ ! -e runs/long ]' \
    bash -c 'ulimit -v 3000000; exec "$1" train --headless --config tiny.toml --data_path data100 --output_dir runs/long --epochs 1000000 --batch_size_per_gpu 1' _ "$DINO"
  cp -r runs/base runs/claims
  python3 - <<'PY'
import json
p = "runs/claims/checkpoints/checkpoint-latest.json"
m = json.load(open(p))
m["schedules"][0][1]["epochs"] = 10**12
json.dump(m, open(p, "w"))
PY
  attempt "limits: a sidecar claiming 10^12 epochs is refused, named" 60 \
    '[ $rc -ne 0 ] && [ $rc -lt 128 ] && says "1000000000000 epochs"' \
    "$DINO" export runs/claims/checkpoints/checkpoint-latest.json --output claims.safetensors
}

# Items 2, 4 and 5 (the control socket): scripts/hostile-control.sh, its tally folded in here.
category_control() {
  setup_data
  local line
  while IFS= read -r line; do
    case $line in
      PASS\ *) verdict PASS "control: ${line#PASS }" ;;
      FAIL\ *) verdict FAIL "control: ${line#FAIL }" ;;
    esac
  done < <(timeout -k 5 1200 bash "$ROOT/scripts/hostile-control.sh" "$DINO" 2>&1)
}

for c in "${CATEGORIES[@]}"; do
  "category_$c"
done
echo "tally: $PASS passed, $FAIL failed, $SKIP skipped ($DINO)"
[ "$FAIL" -eq 0 ]
