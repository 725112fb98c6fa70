#!/usr/bin/env bash
# The lint gate of `make test`: rustfmt's format and clippy's lints (Cargo.toml [lints], clippy.toml)
# with warnings as errors. rustfmt and clippy ship with rustup's default profile; on a toolchain
# without them this tries `rustup component add` once and says so loudly if that fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/setup-libtorch.sh --env)"
for c in rustfmt clippy; do
  if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$c" >/dev/null 2>&1 || true
  fi
done
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check
else
  echo "[lint] WARNING: rustfmt is not installed and could not be added; format not checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets ${CARGO_FLAGS:-} -- -D warnings
else
  echo "[lint] WARNING: clippy is not installed and could not be added; lints not checked" >&2
fi
