#!/usr/bin/env bash
# `dino runs` and the run picker on many runs (issue 36, item 4). A real demo run is trained here
# (2 epochs), then copied to RUNS run directories under runs/ (default 1,000) with varied names,
# learning rates, seeds and losses (checkpoints left out); prints the median wall time of
# `dino runs` over 5 runs (and each), then opens the picker (`dino attach` with no run, in tmux
# at 160x48) and prints the time until it shows the runs and the time one key (End, then Home)
# takes to move the selection. A benchmark, not a test: run it on a quiet machine.
#   bash scripts/bench-runs.sh [target/release/dino] [runs]
set -euo pipefail
DINO=$(realpath "${1:-target/release/dino}")
RUNS=${2:-1000}
command -v tmux >/dev/null || { echo "needs tmux" >&2; exit 2; }
work=$(mktemp -d)
session="bench-runs-$$"
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
# The run index of the person running this is left out (and not written to): only the generated
# runs are listed.
export XDG_DATA_HOME=$work/xdg
"$DINO" make-demo-data data >/dev/null
# (The template is indexed elsewhere, so only the copies are listed.)
XDG_DATA_HOME=$work/xdg-template "$DINO" train --config demo --data_path data --output_dir template --epochs 2 --headless >train.log 2>&1
python3 - "$RUNS" <<'PY'
import json, os, random, re, shutil, sys
n = int(sys.argv[1])
rng = random.Random(36)
os.makedirs("runs")
metrics = [json.loads(l) for l in open("template/metrics.jsonl") if l.strip()]
config = open("template/config.toml").read()
kinds = ["demo", "cifar-quick", "vit-tiny", "resnet18", "ablation"]
for i in range(n):
    lr = 10 ** rng.uniform(-4.5, -2.5)
    name = f"{kinds[i % len(kinds)]}-{i:04d}-lr{lr:.1e}"
    d = os.path.join("runs", name)
    shutil.copytree("template", d, ignore=shutil.ignore_patterns("checkpoints", "control.sock", "*.lock"))
    text = re.sub(r"(?m)^lr = .*$", f"lr = {lr}", config)
    text = re.sub(r"(?m)^seed = .*$", f"seed = {i}", text)
    open(os.path.join(d, "config.toml"), "w").write(text)
    scale = rng.uniform(0.8, 1.2)
    with open(os.path.join(d, "metrics.jsonl"), "w") as out:
        for m in metrics:
            m = dict(m, loss=m["loss"] * scale)
            out.write(json.dumps(m, separators=(",", ":")) + "\n")
    t = 1.7e9 + i
    if i in (0, n - 1):
        open("oldest" if i == 0 else "newest", "w").write(name)
    for f in ("events.jsonl", "metrics.jsonl"):
        os.utime(os.path.join(d, f), (t, t))
PY
echo "$RUNS runs of $(wc -l <template/metrics.jsonl) iterations each, $(du -sh runs | cut -f1) on disk; $(nproc) cores"
times=()
for _ in 1 2 3 4 5; do
    s=$(date +%s.%N)
    "$DINO" runs >runs.txt
    times+=("$(echo "$(date +%s.%N) - $s" | bc)")
done
echo "dino runs              median $(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p) s (each: ${times[*]}), $(($(wc -l <runs.txt) - 1)) rows"

pane() { tmux capture-pane -t "$session" -p 2>/dev/null; }
wait_for() {
    local deadline=$(($(date +%s) + 60))
    until pane | grep -qE -- "$1"; do
        (($(date +%s) < deadline)) || { echo "timed out waiting for /$1/:" >&2; pane >&2; return 1; }
        sleep 0.01
    done
}
s=$(date +%s.%N)
tmux new-session -d -s "$session" -x 160 -y 48 "cd $work && XDG_DATA_HOME=$work/xdg $DINO attach"
wait_for "attach to which run\\? \\($RUNS known\\)"
echo "picker shown           $(echo "$(date +%s.%N) - $s" | bc) s"
for key in End Home; do
    s=$(date +%s.%N)
    tmux send-keys -t "$session" "$key"
    if [[ $key == End ]]; then wait_for "▶ $(cut -c1-20 oldest)"; else wait_for "▶ $(cut -c1-20 newest)"; fi
    echo "picker key $key         $(echo "$(date +%s.%N) - $s" | bc) s"
done
tmux send-keys -t "$session" q
