#!/usr/bin/env bash
# Our mDNS driver against python-zeroconf shaped like py-libp2p 0.8.1's mDNS, in two network
# namespaces joined by a veth pair (created here, removed on exit; run as root). Each side must
# see the other's two addresses (IPv4 and IPv6). Needs a python with `zeroconf` installed:
#   PYTHON=/path/to/venv/bin/python libp2p-mdns/interop/zeroconf.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
PY_PEER=12D3KooWHTQ2U3v1pgtEZMgziV7wDSw2bTwmvQZnYpTjhCV7frQx   # any valid peer id
T=zc$$; A=mdns-a-$T; B=mdns-b-$T; OUT=$(mktemp -d)
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip link add "mda$T" netns "$A" type veth peer name "mdb$T" netns "$B"
for x in "$A mda$T 10.77.0.1/24 fd00:77::1/64" "$B mdb$T 10.77.0.2/24 fd00:77::2/64"; do
  set -- $x
  ip -n "$1" link set lo up; ip -n "$1" addr add "$3" dev "$2"
  ip -n "$1" addr add "$4" dev "$2" nodad; ip -n "$1" link set "$2" up
done
# The ignored test `netns_node` is our node (see tests/netns.rs); cargo prints its binary.
EXE=$(cargo test -p libp2p-mdns --test netns --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
# Our node stops (and says goodbye) when its stdin closes, after 4 s; zeroconf runs for 6 s.
sleep 4 | MDNS_NETNS_PORT=4001 timeout 15 ip netns exec "$A" "$EXE" --ignored --exact \
  netns_node --nocapture >"$OUT/ours" 2>&1 &
sleep 0.5
timeout 15 ip netns exec "$B" "$PYTHON" libp2p-mdns/interop/zeroconf_peer.py \
  "$PY_PEER" 10.77.0.2 fd00:77::2 4003 6 >"$OUT/zc" 2>&1 || true
wait || true
cat "$OUT/ours" "$OUT/zc"
fail=0
for want in "MDNS-FOUND $PY_PEER /ip4/10.77.0.2/tcp/4003" "MDNS-FOUND $PY_PEER /ip6/fd00:77::2/tcp/4003"; do
  grep -qF "$want" "$OUT/ours" || { echo "FAIL: ours did not see: $want"; fail=1; }
done
for want in '/ip4/10.77.0.1/tcp/4001/p2p/' '/ip6/fd00:77::1/tcp/4001/p2p/'; do
  grep '^ZC-FOUND' "$OUT/zc" | grep -qF "$want" || { echo "FAIL: zeroconf did not see: $want"; fail=1; }
done
# Our goodbye (TTL 0) must make zeroconf remove us.
ours_name=$(grep '^ZC-FOUND' "$OUT/zc" | head -1 | cut -d' ' -f2)
grep -qF "ZC-REMOVED $ours_name" "$OUT/zc" || { echo "FAIL: zeroconf did not see our goodbye"; fail=1; }
[ $fail = 0 ] && echo "OK: ours and zeroconf see each other"
exit $fail
