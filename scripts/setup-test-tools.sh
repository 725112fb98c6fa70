#!/usr/bin/env bash
# Installs what the tests need besides the project and what `make demo` already installs
# (libtorch, the CUDA headers of NCCL's build: scripts/setup-libtorch.sh; Gloo's headers are
# vendored in third_party/gloo): tmux (the TUI tests run the real binary in a tmux pane), and
# tensorboard, numpy and torchvision in the PyTorch venv (the interop tests read our files with
# the real readers). Uses apt-get when running as root on Debian/Ubuntu; elsewhere it says what is missing.
# Those tests skip with a message, except under CI=true, where a missing prerequisite fails them
# (tests/common/mod.rs, `prerequisite`).
set -uo pipefail

TORCH_PY="${XDG_CACHE_HOME:-$HOME/.cache}/dino-tui/torch-2.11.0/bin/python"
if [ -x "$TORCH_PY" ] && ! "$TORCH_PY" -c "import tensorboard, numpy" >/dev/null 2>&1; then
  echo "[setup-test-tools] installing tensorboard and numpy into $(dirname "$(dirname "$TORCH_PY")")" >&2
  "$TORCH_PY" -m pip install -q tensorboard numpy >/dev/null 2>&1 \
    || echo "[setup-test-tools] tensorboard/numpy not installed: the interop tests' Python checks cannot run" >&2
fi
# torchvision of torch 2.11 (0.26), without dependencies (torch is there): the interop test loads
# our exported ResNets into torchvision's own models.
if [ -x "$TORCH_PY" ] && ! "$TORCH_PY" -c "import torchvision" >/dev/null 2>&1; then
  echo "[setup-test-tools] installing torchvision 0.26 into $(dirname "$(dirname "$TORCH_PY")")" >&2
  "$TORCH_PY" -m pip install -q --no-deps "torchvision==0.26.*" >/dev/null 2>&1 \
    || echo "[setup-test-tools] torchvision not installed: the interop test's torchvision check cannot run" >&2
fi

if ! command -v tmux >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup-test-tools] installing tmux" >&2
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null 2>&1 || true
fi
command -v tmux >/dev/null 2>&1 || echo "[setup-test-tools] tmux not available: the TUI end-to-end tests cannot run" >&2
exit 0
