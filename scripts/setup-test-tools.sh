#!/usr/bin/env bash
# Installs what the end-to-end tests drive besides the project itself: tmux (the TUI tests run
# the real binary in a tmux pane). Uses apt-get when running as root on Debian/Ubuntu; elsewhere
# it says what is missing and those tests skip with a message.
set -uo pipefail
if command -v tmux >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup-test-tools] installing tmux" >&2
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null 2>&1 || true
fi
command -v tmux >/dev/null 2>&1 || echo "[setup-test-tools] tmux not available: the TUI end-to-end tests will skip" >&2
exit 0
