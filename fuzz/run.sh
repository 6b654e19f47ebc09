#!/usr/bin/env bash
# Fuzzes one target, or all of them one after another, for SECONDS each:
#   fuzz/run.sh TARGET|all SECONDS
# Installs cargo-fuzz when missing; needs the nightly toolchain (`cargo +nightly fuzz`).
# New inputs go to fuzz/work/TARGET (not committed); the committed seeds in
# fuzz/corpus/TARGET are read only. A crash leaves its input in fuzz/artifacts/TARGET: copy
# it into fuzz/corpus/TARGET (so that the stable replay test keeps it fixed) and fix the bug.
# Runs at the lowest CPU priority: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -ne 2 ]; then
  echo "usage: $0 TARGET|all SECONDS" >&2
  exit 2
fi
target="$1"
seconds="$2"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
if [ "$target" = all ]; then
  targets=$(ls fuzz_targets | sed 's/\.rs$//')
else
  targets="$target"
fi
for t in $targets; do
  mkdir -p "work/$t"
  echo "== $t for ${seconds}s"
  nice -n 19 cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
