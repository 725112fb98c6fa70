#!/usr/bin/env bash
# Hostile tries against the control socket and `dino ctl` (issue 37, items 2, 4 and 5), one bash
# function per category, each try bounded by `timeout`, with a PASS/FAIL tally at the end. Meant
# to be joined with scripts/hostile.sh (same style).
#   bash scripts/hostile-control.sh [path/to/dino] [edits]    # default target/debug/dino, 5000 edits
# Exit status: the number of failed tries (0: all passed).
set -uo pipefail
DINO=$(realpath "${1:-target/debug/dino}")
EDITS=${2:-5000}
work=$(mktemp -d)
pass=0
fail=0
trainers=()

cleanup() {
    local pid
    for pid in "${trainers[@]}"; do
        # A stopped trainer (SIGSTOP) must be continued to die of anything but SIGKILL; one too
        # busy to stop within 10 s of SIGTERM (an old build applying edits) gets SIGKILL.
        kill -CONT "$pid" 2>/dev/null
        kill "$pid" 2>/dev/null
        timeout 10 bash -c "while kill -0 $pid 2>/dev/null; do sleep 0.2; done" || kill -KILL "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

result() { # NAME OK DETAILS
    if [[ $2 == 0 ]]; then pass=$((pass + 1)); echo "PASS $1: $3"; else fail=$((fail + 1)); echo "FAIL $1: $3"; fi
}

# Starts a headless demo trainer on $work/$1 and waits (bounded) until it serves and trains.
start_trainer() {
    local run=$work/$1
    "$DINO" train --config demo --data_path "$work/data" --output_dir "$run" --epochs 1000 --headless >"$run.log" 2>&1 &
    trainers+=($!)
    timeout 180 bash -c "until [[ -S '$run/control.sock' ]] && grep -q '\"iter\"' '$run/metrics.jsonl' 2>/dev/null; do sleep 0.2; done"
}

# The first line `dino ctl` printed, shortened.
said() { head -n 1 "$work/ctl.out" | head -c 200; }

ctl() { # RUN ARGS...: dino ctl bounded; prints the exit code
    local run=$work/$1
    shift
    timeout 120 "$DINO" ctl "$run" "$@" >"$work/ctl.out" 2>&1
    echo $?
}

# The longest line a new client gets before the run's state (the snapshot), in bytes.
state_line_bytes() {
    timeout 30 python3 - "$1/control.sock" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rb")
longest = 0
for line in f:
    longest = max(longest, len(line))
    if json.loads(line).get("event") == "state":
        break
print(longest)
EOF
}

# Item 2: thousands of schedule edits in schedule-edits.toml: applied in seconds while training
# goes on, the snapshot a new client gets stays under the 65,536-byte line limit, and `dino ctl`
# still pauses, resumes and stops the run.
edit_flood() {
    start_trainer flood || { result edit_flood 1 "the trainer did not start"; return; }
    local run=$work/flood i
    local kinds=('lr constant 1e-4' 'lr scale 0.5' 'lr peak 1e-3' 'wd final 0.4' 'wd constant 0.04' 'teacher_temp constant 0.05' 'momentum constant 0.996' 'lr final 1e-6')
    for ((i = 0; i < EDITS; i++)); do
        read -r s k v <<<"${kinds[i % 8]}"
        printf '[[edit]]\nschedule = "%s"\nkind = "%s"\nvalue = %s\nfrom_iter = %d\n' "$s" "$k" "$v" $((1000 + (i * 7 % 20) * 50))
    done >"$work/edits.toml"
    local iter0 t0 t1 base
    # The pace without edits, to compare with the pace while they are applied.
    base=$(wc -l <"$run/metrics.jsonl")
    sleep 5
    iter0=$(wc -l <"$run/metrics.jsonl")
    base=$((iter0 - base))
    t0=$(date +%s.%N)
    mv "$work/edits.toml" "$run/schedule-edits.toml"
    timeout 300 bash -c "until (( \$(grep -c '\"type\":\"schedule_edit' '$run/events.jsonl') >= $EDITS )); do sleep 0.1; done"
    local applied=$?
    t1=$(date +%s.%N)
    local secs iters bytes
    secs=$(echo "$t1 - $t0" | bc)
    iters=$(($(wc -l <"$run/metrics.jsonl") - iter0))
    bytes=$(state_line_bytes "$run")
    result edit_flood_apply "$applied" "$EDITS edits answered in ${secs} s (0.75 s of it the file settling), $iters iterations trained meanwhile ($base in the 5 s before)"
    [[ ${bytes:-999999} -lt 65536 ]]
    result edit_flood_state_line $? "a new client's longest snapshot line: ${bytes:-none} bytes (limit 65536)"
    local cmd code
    for cmd in pause resume stop; do
        code=$(ctl flood "$cmd")
        result "edit_flood_ctl_$cmd" "$code" "dino ctl $cmd exit $code: $(said)"
    done
}

# Item 4: a trainer stopped by SIGSTOP holds the lock and does not answer: `status` and `pause`
# exit 4 within their --timeout, naming it.
sigstop() {
    start_trainer stopped || { result sigstop 1 "the trainer did not start"; return; }
    local pid=${trainers[-1]} cmd code t0
    kill -STOP "$pid"
    for cmd in status pause; do
        t0=$SECONDS
        code=$(ctl stopped "$cmd" --timeout 3)
        [[ $code == 4 ]] && grep -q "did not answer" "$work/ctl.out" && ((SECONDS - t0 < 15))
        result "sigstop_$cmd" $? "dino ctl $cmd --timeout 3 exit $code in $((SECONDS - t0)) s: $(said)"
    done
    # Enough connections to fill the socket's backlog (nobody accepts): connecting itself blocks.
    t0=$SECONDS
    code=$(timeout 60 python3 - "$work/stopped/control.sock" "$DINO" "$work/stopped" "$work/ctl.out" <<'EOF'
import socket, subprocess, sys
held = []
while len(held) < 10000:
    s = socket.socket(socket.AF_UNIX)
    s.setblocking(False)
    try:
        s.connect(sys.argv[1])
    except BlockingIOError:
        break
    held.append(s)
with open(sys.argv[4], "w") as out:
    status = subprocess.run([sys.argv[2], "ctl", sys.argv[3], "status", "--timeout", "3"], stdout=out, stderr=out).returncode
    runs = subprocess.run([sys.argv[2], "runs", sys.argv[3] + "/.."], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    # The stopped trainer's run is listed as live (it holds its run and its socket).
    print(status, "live" in runs.stdout.decode() and runs.returncode == 0)
EOF
)
    [[ $code == "4 True" ]] && ((SECONDS - t0 < 40))
    result sigstop_full_backlog $? "dino ctl status --timeout 3, then dino runs, with the backlog full: ${code:-none} in $((SECONDS - t0)) s: $(said)"
    kill -CONT "$pid"
    code=$(ctl stopped stop --no-checkpoint)
    result sigstop_then_stop "$code" "after SIGCONT, dino ctl stop exit $code"
}

# Item 4: absurd durations are refused as usage errors naming the flag, never a panic.
absurd_durations() {
    local v code
    for v in 1e19 1e300 inf nan -1 0; do
        code=$(ctl stopped pause --timeout "$v")
        [[ $code == 2 ]] && grep -q -- "--timeout" "$work/ctl.out"
        result "duration_timeout_$v" $? "dino ctl pause --timeout $v exit $code: $(said)"
    done
}

# Item 5: a stop asked between the two trainers of a hand-over is recorded, and the trainer the
# hand-over starts finds it and does not train. (The race with an interactive trainer is
# tests/control.rs a_stop_during_a_hand_over_wins.)
handover_stop() {
    local run=$work/stopped lines code
    lines=$(wc -l <"$run/metrics.jsonl")
    # Between the two trainers: the hand-over recorded, no socket yet.
    echo '{"type":"handover","iter":1,"time":0}' >>"$run/events.jsonl"
    code=$(ctl stopped stop)
    [[ $code == 0 && -e $run/stop-requested ]]
    result handover_gap_stop_recorded $? "dino ctl stop between the trainers of a hand-over: exit $code, $(said)"
    DINO_HANDOVER=1 timeout 120 "$DINO" train --config demo --data_path "$work/data" --output_dir "$run" --epochs 1000 --headless >"$work/handover.log" 2>&1
    code=$?
    [[ $code == 0 ]] && (($(wc -l <"$run/metrics.jsonl") <= lines)) && [[ ! -e $run/stop-requested ]] && tail -n 1 "$run/events.jsonl" | grep -q '"type":"stop"'
    result handover_stop_honoured $? "hand-over trainer with a stop pending: exit $code, $(tail -n 1 "$work/handover.log" | head -c 160)"
}

timeout 120 "$DINO" make-demo-data "$work/data" >/dev/null || { echo "FAIL: cannot make demo data"; exit 1; }
edit_flood
sigstop
absurd_durations
handover_stop
echo "hostile-control: $pass passed, $fail failed ($DINO)"
exit "$fail"
