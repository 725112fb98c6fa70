#!/usr/bin/env bash
# What watching costs. Two benchmarks, not tests: run them on a quiet machine.
#
#   bash scripts/bench-attach.sh [target/release/dino] [seconds]
# A demo run trains headless while `dino attach` watches it in tmux (160x48); prints the viewer's
# and the trainer's CPU (% of one core, from /proc/PID/stat over the same window), their resident
# memory, the trainer's iterations per second, and the trainer line the attached dashboard shows.
#
#   bash scripts/bench-attach.sh --long [target/release/dino] [iterations]
# A month-long run without a month (issue 36): a real demo run (trained here for 2 epochs) is
# extended to `iterations` lines of `metrics.jsonl` (default 1,000,000) by repeating its lines
# with new iterations, epochs and times and a slowly falling, noisy loss, and its `events.jsonl`
# made to plan that many; then `dino attach` opens it in tmux (160x48). Prints the time to the
# first frame that shows the run, the time until the whole history is shown (the header's
# `it N/`), the time each zoom step (`+`, four times, then `-` back) takes to draw, and the
# viewer's peak resident memory (VmHWM) over all of it.
set -euo pipefail
LONG=0
if [[ ${1:-} == --long ]]; then
    LONG=1
    shift
fi
DINO=$(realpath "${1:-target/release/dino}")
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
# The person's run index is neither read nor written.
export XDG_DATA_HOME=$work/xdg
"$DINO" make-demo-data data >/dev/null

now() { date +%s.%N; }
since() { echo "scale=2; ($(now) - $1) / 1" | bc; }
pane() { tmux capture-pane -t "$session" -p 2>/dev/null; }
# Waits (at most 60 s, polling every 20 ms) until the pane shows the regular expression $1.
wait_for() {
    local deadline=$(($(date +%s) + 60))
    until pane | grep -qE -- "$1"; do
        (($(date +%s) < deadline)) || { echo "timed out waiting for /$1/ on the pane:" >&2; pane >&2; return 1; }
        sleep 0.02
    done
}

# Writes run-long/: the template run `run` with its metrics repeated to $1 iterations.
extend_run() {
    python3 - "$1" <<'PY'
import json, math, shutil, sys
n = int(sys.argv[1])
shutil.copytree("run", "run-long", ignore=shutil.ignore_patterns("checkpoints", "control.sock", "*.lock", "metrics.jsonl", "events.jsonl"))
template = [json.loads(l) for l in open("run/metrics.jsonl") if l.strip()]
events = [json.loads(l) for l in open("run/events.jsonl") if l.strip()]
niter = next(e["niter_per_ep"] for e in events if e.get("type") == "start")
epochs = -(-n // niter)
t0 = template[0]["time"]
with open("run-long/metrics.jsonl", "w") as out:
    for i in range(n):
        m = dict(template[i % len(template)])
        m["iter"], m["epoch"], m["time"] = i, i // niter, t0 + 0.5 * i
        m["loss"] = m["loss"] * (0.6 + 0.4 * math.exp(-i / (n / 5))) + 0.05 * math.sin(i / 97.0)
        out.write(json.dumps(m, separators=(",", ":")) + "\n")
with open("run-long/events.jsonl", "w") as out:
    for e in events:
        if e.get("type") == "start":
            e["epochs"] = epochs
        if e.get("type") == "stop":
            e["iter"] = n
        if e.get("type") in ("checkpoint", "eval"):
            continue
        out.write(json.dumps(e, separators=(",", ":")) + "\n")
PY
}

if ((LONG)); then
    ITERS=${2:-1000000}
    "$DINO" train --config demo --data_path data --output_dir run --epochs 2 --headless >train.log 2>&1
    extend_run "$ITERS"
    echo "run-long: $ITERS iterations, metrics.jsonl $(( $(stat -c %s run-long/metrics.jsonl) / 1024 / 1024 )) MiB"
    t0=$(now)
    tmux new-session -d -s "$session" -x 160 -y 48 "$DINO attach run-long"
    wait_for 'epoch [0-9]+/[0-9]+'
    first=$(since "$t0")
    viewer=$(pgrep -f "^$DINO attach run-long" | head -1)
    wait_for "it $ITERS/"
    loaded=$(since "$t0")
    echo "first frame            $first s"
    echo "whole history shown    $loaded s (the header's it $ITERS/)"
    for key in + + + + - - - -; do
        t=$(now)
        before=$(pane | grep -o 'whole run\|last [0-9]* it' | head -1)
        tmux send-keys -t "$session" -- "$key"
        until after=$(pane | grep -o 'whole run\|last [0-9]* it' | head -1) && [[ $after != "$before" ]]; do sleep 0.01; done
        echo "zoom $key to ${after}: $(since "$t") s"
    done
    sleep 2
    echo "viewer peak RSS        $(( $(awk '/^VmHWM/ {print $2}' "/proc/$viewer/status") / 1024 )) MiB (VmHWM), now $(( $(awk '/^VmRSS/ {print $2}' "/proc/$viewer/status") / 1024 )) MiB"
    exit 0
fi

SECONDS_MEASURED=${2:-30}
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
