#!/usr/bin/env bash
# What watching costs: a demo run trains headless while `dino attach` watches it in tmux
# (160x48); prints the viewer's and the trainer's CPU (% of one core, from /proc/PID/stat over the
# same window), their resident memory, the trainer's iterations per second, and the trainer line
# the attached dashboard shows. A benchmark, not a test: run it on a quiet machine.
#   bash scripts/bench-attach.sh [target/release/dino] [seconds]
set -euo pipefail
DINO=$(realpath "${1:-target/release/dino}")
SECONDS_MEASURED=${2:-30}
command -v tmux >/dev/null || { echo "needs tmux" >&2; exit 2; }
work=$(mktemp -d)
session="bench-attach-$$"
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    [[ -n "${trainer:-}" ]] && kill "$trainer" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
"$DINO" make-demo-data data >/dev/null
"$DINO" train --config demo --data_path data --output_dir run --epochs 1000 --headless >train.log 2>&1 &
trainer=$!
for _ in $(seq 100); do [[ -S run/control.sock ]] && grep -q '"iter"' run/metrics.jsonl 2>/dev/null && break; sleep 0.2; done
tmux new-session -d -s "$session" -x 160 -y 48 "$DINO attach run"
sleep 5
viewer=$(pgrep -f "^$DINO attach run" | head -1)
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
iter() { tail -n 1 run/metrics.jsonl | sed 's/.*"iter":\([0-9]*\).*/\1/'; }
v0=$(ticks "$viewer"); t0=$(ticks "$trainer"); i0=$(iter)
sleep "$SECONDS_MEASURED"
v1=$(ticks "$viewer"); t1=$(ticks "$trainer"); i1=$(iter)
pct() { echo "scale=2; ($2 - $1) * 100 / ($hz * $SECONDS_MEASURED)" | bc; }
echo "window                 ${SECONDS_MEASURED} s, $(nproc) cores"
echo "trainer iterations/s   $(echo "scale=2; ($i1 - $i0) / $SECONDS_MEASURED" | bc)"
echo "viewer (dino attach)   CPU $(pct "$v0" "$v1") % of a core, RSS $(( $(rss_kib "$viewer") / 1024 )) MiB"
echo "trainer                CPU $(pct "$t0" "$t1") % of a core, RSS $(( $(rss_kib "$trainer") / 1024 )) MiB, $(awk '/^Threads/ {print $2}' /proc/$trainer/status) threads"
echo "attached dashboard:    $(tmux capture-pane -t "$session" -p | grep -o 'trainer [^│]*' | head -1 | sed 's/ *$//')"
