#!/usr/bin/env bash
# Runs every zraft test on a fresh machine: installs what the tests need, then cargo test and
# clippy for the whole workspace.
#   ZRAFT_GARBAGE_FRAMES=N   garbage frames fed to the decoders (default 100000)
#   PROPTEST_CASES=N         cases per property test (default 256)
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo >/dev/null; then
  echo "cargo is required (install Rust with rustup)" >&2; exit 1
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
