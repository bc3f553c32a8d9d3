#!/usr/bin/env bash
# Runs every zraft test on a fresh machine: installs what the tests need (clippy/rustfmt,
# kazoo 2.11 in .venv, Debian's zookeeper and zookeeper-bin packages for the real server,
# zkCli.sh and the C client, chromium for the report pages), then formatting, clippy,
# cargo test for the whole workspace, the simulation build (cargo sim-test, --cfg madsim),
# and the real-client integration tests.
#   ZRAFT_GARBAGE_FRAMES, ZRAFT_RAFT_SCHEDULES, ZRAFT_CRASH_POINTS, PROPTEST_CASES: see README
#   ZRAFT_SKIP_INTEGRATION=1 skips the real-client tests
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo >/dev/null; then
  echo "cargo is required (install Rust with rustup)" >&2; exit 1
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The same server code under madsim's simulated network, clock and disk: scenario samples,
# determinism, broken variants. Clippy for the simulated build too.
cargo clippy -p zraft-sim --all-targets --config "build.rustflags=['--cfg','madsim']" --target-dir target/sim -- -D warnings
cargo sim-test

if [ "${ZRAFT_SKIP_INTEGRATION:-0}" != 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q kazoo==2.11.0
  fi
  # zookeeper: the real server and zkCli.sh; zookeeper-bin: the C client (cli_mt).
  # openssl makes the certificates of the TLS tests; chromium renders the report pages.
  if [ ! -x /usr/share/zookeeper/bin/zkCli.sh ] || [ ! -x /usr/lib/zookeeper/bin/cli_mt ] || ! command -v openssl >/dev/null || ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper zookeeper-bin openssl chromium >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper zookeeper-bin openssl chromium >/dev/null
    fi
  fi
  # A failing run's report page and a sweep page, rendered in headless Chromium.
  tests/pages.sh
  cargo build --bin zraft
  .venv/bin/python tests/integration/real_clients.py target/debug/zraft
fi
