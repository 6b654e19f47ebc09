#!/usr/bin/env bash
# Builds what the interop matrix runs: our `peer` (release), the rust-libp2p peer (its own
# Cargo project, from crates.io) and the py-libp2p peer (a venv from PyPI).
# Any failure is fatal: a missing foreign peer is a failed check, never a skipped one.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== building our peer"
cargo build --release -p examples --bin peer
echo "== building the rust-libp2p peer"
cargo build --release --locked --manifest-path interop/rust-peer/Cargo.toml \
  --target-dir interop/rust-peer/target --bin rust-peer
echo "== setting up the py-libp2p peer"
bash interop/py-peer/setup.sh
