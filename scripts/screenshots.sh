#!/usr/bin/env bash
# Makes the README's two pictures from a real run: docs/figures/dashboard.png (the TUI's
# dashboard while `cifar-quick` trains on ../shared/data/cifar-vehicles, after its first k-NN)
# and docs/figures/outliers.png (the Outliers tab of the same run once it has scored its images).
# The terminal is a 160x48 tmux pane; its screen, colours included (capture-pane -e), becomes HTML
# through aha and a PNG through headless Chromium, as a person would see it.
#
#   bash scripts/screenshots.sh            (DINO=path/to/dino, DATA=folder, EPOCHS=N to change)
# Needs tmux, aha and chromium (apt-get install tmux aha chromium fonts-dejavu-core).
set -euo pipefail
cd "$(dirname "$0")/.."
DINO="${DINO:-target/release/dino}"
DATA="${DATA:-../shared/data/cifar-vehicles}"
EPOCHS="${EPOCHS:-3}"
OUT=docs/figures
for tool in tmux aha chromium; do
  command -v "$tool" >/dev/null || { echo "[screenshots] error: $tool is not installed (apt-get install tmux aha chromium)" >&2; exit 1; }
done
[ -x "$DINO" ] || { echo "[screenshots] error: $DINO is not built (make release)" >&2; exit 1; }
[ -d "$DATA/train" ] || { echo "[screenshots] error: $DATA has no train/ folder" >&2; exit 1; }
WORK=$(mktemp -d)
SOCK="dino-shots-$$"
cleanup() { tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

screen() { tmux -L "$SOCK" capture-pane -p -t shots; }
# Waits (up to $2 seconds) until the screen matches the extended regex $1 (any case).
wait_for() {
  local deadline=$((SECONDS + $2))
  until screen | grep -Eiq "$1"; do
    if [ $SECONDS -ge $deadline ]; then
      echo "[screenshots] error: the screen never showed /$1/ within $2 s; it shows:" >&2
      screen >&2
      exit 1
    fi
    sleep 1
  done
}
# The pane's screen with its colours, as a PNG of the same proportions.
shoot() {
  local name=$1
  tmux -L "$SOCK" capture-pane -e -p -t shots >"$WORK/$name.ans"
  aha --black --title "dino-tui" <"$WORK/$name.ans" >"$WORK/$name.html"
  # A terminal draws every character in one cell; a browser gives a glyph from a fallback font
  # (braille of the charts, say) its own width and shifts the rest of the line. Each non-ASCII
  # character gets a box one cell wide; line height 1 keeps box drawing and half-blocks seamless.
  python3 - "$WORK/$name.html" <<'PY'
import re, sys
path = sys.argv[1]
html = open(path, encoding="utf-8").read()
head, sep, body = html.partition("<pre>")
body = re.sub(r"([^\x00-\x7f])", r'<span class="c">\1</span>', body)
style = ("<style>body{margin:8px;background:#000}"
         "pre{font-family:'DejaVu Sans Mono',monospace;font-size:14px;line-height:17px}"
         ".c{display:inline-block;width:1ch;height:17px;overflow:hidden;vertical-align:top;text-align:center}</style>")
open(path, "w", encoding="utf-8").write(head.replace("</head>", style + "</head>") + sep + body)
PY
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --window-size=1380,840 --screenshot="$OUT/$name.png" "file://$WORK/$name.html" >/dev/null 2>&1
  echo "[screenshots] $OUT/$name.png"
}

tmux -L "$SOCK" new-session -d -x 160 -y 48 -s shots \
  "$DINO train --config cifar-quick --data_path $DATA --epochs $EPOCHS --output_dir $WORK/run; sleep 600"
# The dashboard in the second epoch, after the first epoch's k-NN.
wait_for "epoch 1/.* it 1[0-9][0-9]/" 900
shoot dashboard
# The run to its end, then the Outliers tab: `o` scores every image of train/ with the final teacher.
wait_for "finished" 1800
tmux -L "$SOCK" send-keys -t shots o
wait_for "mislabel|stranger" 900
sleep 3
shoot outliers
