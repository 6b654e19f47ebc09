#!/usr/bin/env bash
# Builds what the interop matrix runs: our `peer` (release), the rust-libp2p peer (its own
# Cargo project, from crates.io) and the py-libp2p peer (a venv from PyPI).
# Any failure is fatal: a missing foreign peer is a failed check, never a skipped one.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== building our peer"
# Built as `cargo test --workspace --release` builds it (the tools' tests spawn it), so the
# features are unified the same way and nothing is compiled twice: after the test build this
# is a no-op. `cargo build -p libp2p-tools` would resolve features without the dev-dependencies and
# rebuild the host and everything under it.
cargo test --workspace --release --no-run
test -x target/release/peer
echo "== building the rust-libp2p peer"
cargo build --release --locked --manifest-path interop/rust-peer/Cargo.toml \
  --target-dir interop/rust-peer/target --bin rust-peer
echo "== setting up the py-libp2p peer"
bash interop/py-peer/setup.sh
