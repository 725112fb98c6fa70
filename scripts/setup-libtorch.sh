#!/usr/bin/env bash
# Installs the libtorch that `tch` 0.24 expects (PyTorch 2.11.0) into a per-user cache outside the
# repository, so every clone and every CI run on the same machine reuses it. Idempotent: a second
# run only checks the stamp file. A user with their own libtorch (a CUDA build, say) sets LIBTORCH
# and this script does nothing.
#
# Prints the environment the build needs (as `export` lines) on stdout when called with --env.
set -euo pipefail

TORCH_VERSION=2.11.0
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/dino-tui"
VENV="${DINO_TORCH_VENV:-$CACHE_ROOT/torch-$TORCH_VERSION}"
STAMP="$VENV/.dino-tui-ready"

log() { echo "[setup-libtorch] $*" >&2; }

if [ -n "${LIBTORCH:-}" ]; then
  log "LIBTORCH is set ($LIBTORCH): using it, nothing to install"
else
  if [ ! -f "$STAMP" ]; then
    PYTHON="${PYTHON:-$(command -v python3 || true)}"
    if [ -z "$PYTHON" ]; then
      log "error: python3 not found; install Python 3.9+ or set LIBTORCH to an unpacked libtorch"
      exit 1
    fi
    log "installing torch==$TORCH_VERSION into $VENV (once per machine; about 5 GB, a few minutes)"
    mkdir -p "$CACHE_ROOT"
    # A half-finished earlier attempt is replaced whole: pip into a broken venv is not reliable.
    rm -rf "$VENV.partial"
    "$PYTHON" -m venv "$VENV.partial"
    "$VENV.partial/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
      "torch==$TORCH_VERSION"
    rm -rf "$VENV"
    mv "$VENV.partial" "$VENV"
    # The venv's own scripts hold the .partial path; the interpreter itself does not care.
    touch "$STAMP"
    log "done"
  fi
  SITE=$("$VENV/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null || true)
  if [ -z "$SITE" ] || [ ! -d "$SITE/lib" ]; then
    log "error: $VENV holds no usable torch; remove it and run again"
    exit 1
  fi
  # NCCL (multi-GPU training) is compiled wherever this torch has CUDA. The nccl and cu13 header
  # wheels come with torch; the CUDA runtime's crt/ and cccl/ headers do not: two header-only
  # wheels, into the cache beside the venv (build.rs reads them there). Headers, no GPU needed.
  CUDA_HEADERS="$CACHE_ROOT/cuda-headers-13.0"
  if [ -f "$SITE/lib/libtorch_cuda.so" ] && [ ! -f "$CUDA_HEADERS/nvidia/cu13/include/crt/host_config.h" ]; then
    log "installing the CUDA 13.0 crt/cccl headers NCCL's build needs into $CUDA_HEADERS"
    rm -rf "$CUDA_HEADERS.partial"
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps \
      --target "$CUDA_HEADERS.partial" "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*" >&2; then
      log "error: could not install the CUDA headers NCCL needs (above); to build without NCCL:"
      log "       cargo build --no-default-features --features dist"
      exit 1
    fi
    rm -rf "$CUDA_HEADERS"
    mv "$CUDA_HEADERS.partial" "$CUDA_HEADERS"
  fi
fi

if [ "${1:-}" = "--env" ]; then
  if [ -n "${LIBTORCH:-}" ]; then
    echo "export LIBTORCH='$LIBTORCH'"
  else
    echo "export LIBTORCH='$SITE'"
  fi
fi
