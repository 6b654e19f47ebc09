#!/usr/bin/env bash
# Many secio handshakes between our `peer` and py-libp2p's, both ways (not part of CI: it
# takes minutes). Every dial uses a fresh identity and fresh ephemeral keys, so rare failures,
# such as the one handshake in 256 whose ECDH secret starts with a zero byte, show up.
# Usage: interop/secio-loop.sh [dials we make, default 300] [dials py makes, default 100]
# Needs interop/build.sh first. py-libp2p's listener stops accepting after about 250
# connections in one process, so ours restarts it every 100 dials.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=(interop/py-peer/.venv/bin/python interop/py-peer/peer.py)
OURS=target/release/peer
ARGS=(--security secio --muxer mplex --bytes 4096 --timeout 20)

start_listener() { # command...; sets LPID and ADDR
  coproc LISTENER { "$@" --listen /ip4/127.0.0.1/tcp/0 --security secio --muxer mplex --timeout 3000; }
  LPID=$LISTENER_PID
  read -r line <&"${LISTENER[0]}"
  ADDR=${line#LISTEN }
}

loop() { # label count dialer...
  local label=$1 count=$2 ok=0 fail=0
  shift 2
  for i in $(seq 1 "$count"); do
    if (( i % 100 == 1 )); then
      [[ -n ${LPID:-} ]] && kill "$LPID" 2>/dev/null && wait "$LPID" 2>/dev/null
      start_listener "${LISTEN_CMD[@]}"
    fi
    out=$("$@" --dial "$ADDR" "${ARGS[@]}")
    if [[ $out == OK* ]]; then ok=$((ok + 1)); else fail=$((fail + 1)); echo "$label $i: $out"; fi
  done
  kill "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null; LPID=
  echo "$label: $ok ok, $fail failed"
  [[ $fail == 0 ]]
}

LISTEN_CMD=("${PY[@]}"); loop "we dial py" "${1:-300}" "$OURS"; a=$?
LISTEN_CMD=("$OURS"); loop "py dials us" "${2:-100}" "${PY[@]}"; b=$?
exit $(( a || b ))
