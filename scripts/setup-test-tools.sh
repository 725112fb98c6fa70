#!/usr/bin/env bash
# Installs what the tests need besides the project itself: tmux (the TUI tests run the real
# binary in a tmux pane), CUDA headers for the NCCL compile check, tensorboard and numpy in the
# PyTorch venv (the interop tests), and Gloo's headers (libgloo-dev: build.rs compiles the c10d shim for
# multi-process training only when they exist; the Gloo code that runs is libtorch's own). Uses
# apt-get when running as root on Debian/Ubuntu; elsewhere it says what is missing and those
# tests skip with a message.
set -uo pipefail

# Two CUDA header wheels libtorch's own dependencies lack (crt/, cccl), for the NCCL compile check
# of the c10d shim (tests/dist.rs); headers only, into the cache beside libtorch. Best effort.
CUDA_HEADERS="${XDG_CACHE_HOME:-$HOME/.cache}/dino-tui/cuda-headers-13.0"
TORCH_PY="${XDG_CACHE_HOME:-$HOME/.cache}/dino-tui/torch-2.11.0/bin/python"
if [ ! -f "$CUDA_HEADERS/nvidia/cu13/include/crt/host_config.h" ] && [ -x "$TORCH_PY" ]; then
  echo "[setup-test-tools] installing CUDA 13.0 crt/cccl headers into $CUDA_HEADERS" >&2
  "$TORCH_PY" -m pip install -q --no-deps --target "$CUDA_HEADERS" "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*" >/dev/null 2>&1 \
    || echo "[setup-test-tools] CUDA headers not installed: the NCCL compile check will skip" >&2
fi

# TensorBoard and NumPy in the same venv: the interop tests read our event files with
# TensorBoard's own reader and our .npy files with numpy. Best effort, like the rest.
if [ -x "$TORCH_PY" ] && ! "$TORCH_PY" -c "import tensorboard, numpy" >/dev/null 2>&1; then
  echo "[setup-test-tools] installing tensorboard and numpy into $(dirname "$(dirname "$TORCH_PY")")" >&2
  "$TORCH_PY" -m pip install -q tensorboard numpy >/dev/null 2>&1 \
    || echo "[setup-test-tools] tensorboard/numpy not installed: those checks of the interop tests will skip" >&2
fi

missing=()
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
[ -f "${GLOO_INCLUDE:-/usr/include}/gloo/algorithm.h" ] || missing+=(libgloo-dev)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[setup-test-tools] installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || true
fi
command -v tmux >/dev/null 2>&1 || echo "[setup-test-tools] tmux not available: the TUI end-to-end tests will skip" >&2
[ -f "${GLOO_INCLUDE:-/usr/include}/gloo/algorithm.h" ] || echo "[setup-test-tools] Gloo headers not available: the multi-process tests will skip" >&2
exit 0
