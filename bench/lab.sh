#!/usr/bin/env bash
# bench/lab.sh: a lab of LAB_HOSTS (default 20) hosts, each in its own network namespace,
# joined by veth pairs to one bridge (itself in a namespace of its own, so that nothing of the
# lab touches the root namespace), with a one-way delay and a loss rate on every link; our
# `peer` program runs on each. Root only; not part of CI.
#
#   sudo bench/lab.sh                   # 20 hosts, 50 ms, 1 % loss
#   LAB_DELAY_MS=0 LAB_LOSS=0 bench/lab.sh
#
# What it does, in order:
#   1. checks what the kernel offers: `tc ... netem` (absent here, so it is not used), the
#      iptables `statistic` match (loss), the NFQUEUE target (delay, through bench/nfq-delay,
#      a small relay of our own that holds each packet for the delay), tbf (rate, optional);
#   2. builds the lab: namespaces lab<pid>-h0..h<N-1> and lab<pid>-hub, a veth pair per host
#      (eth0 in the host, a bridge port in the hub), 10.77.0.<i+1>/24, no default route;
#      checks that no lab address or interface is in the root namespace and that a host
#      cannot reach beyond the lab;
#   3. measures a clean link first (ping RTT and /perf throughput between h0 and h<N/2>, and
#      raw TCP's throughput there with bench's `rawtcp`, when built, as the baseline);
#   4. turns the impairments on, in every host: packets leaving eth0 are delayed by
#      LAB_DELAY_MS (a link's one-way delay, as `netem delay` on each end would give: the
#      round trip between two hosts is twice it), packets arriving on eth0 are dropped with
#      probability LAB_LOSS, and with LAB_RATE (e.g. 20mbit) eth0 is rate-limited by tbf;
#   5. the chat ring: host i subscribes to a gossipsub topic and connects to host i-1 only;
#      the last host connects to host N-2 and to host 0 (closing the ring) and publishes
#      LAB_MESSAGES messages; every host must print every message (`GOSSIP <author> <data>`),
#      each hop forwarding to the next. Then ping RTT and /perf throughput over the
#      impaired link, as in 3;
#   6. removes everything (on any exit: a trap), and prints `LAB OK` or `LAB FAIL`.
#
# Environment: LAB_HOSTS (20), LAB_DELAY_MS (50), LAB_LOSS (0.01), LAB_RATE (unset),
# LAB_MESSAGES (10), LAB_PERF_BYTES (4194304, each way), LAB_SECURITY (noise),
# LAB_MUXER (yamux), PEER (target/release/peer), RAWTCP (target/release/rawtcp).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${PEER:-$ROOT/target/release/peer}
RAWTCP=${RAWTCP:-$ROOT/target/release/rawtcp}
NFQ=$ROOT/bench/nfq-delay
N=${LAB_HOSTS:-20}
DELAY_MS=${LAB_DELAY_MS:-50}
LOSS=${LAB_LOSS:-0.01}
RATE=${LAB_RATE:-}
MESSAGES=${LAB_MESSAGES:-10}
PERF_BYTES=${LAB_PERF_BYTES:-4194304}
SECURITY=${LAB_SECURITY:-noise}
MUXER=${LAB_MUXER:-yamux}
P=lab$$
HUB=$P-hub
LOGS=$(mktemp -d /tmp/libp2p-lab-XXXXXX)
PIDS=()
FAILED=0

say() { echo "lab: $*"; }
fail() { echo "lab: FAIL $*"; FAILED=1; }

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for i in $(seq 0 $((N - 1))); do ip netns del "$P-h$i" 2>/dev/null || true; done
    ip netns del "$HUB" 2>/dev/null || true
    ip netns del "$P-probe" 2>/dev/null || true
    if ip netns list | grep -q "^$P-"; then echo "lab: namespaces left: $(ip netns list | grep "^$P-")"; fi
    echo "lab: cleaned up (logs in $LOGS)"
    exit $rc
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || { echo "lab: needs root (network namespaces)"; exit 2; }
[ -x "$PEER" ] || { echo "lab: no $PEER; build it: cargo build --release -p libp2p-tools --bin peer"; exit 2; }
command -v iptables >/dev/null || { echo "lab: needs iptables (apt-get install iptables)"; exit 2; }

# (Background programs are started with `ip netns exec` itself, not this function, so that
# `$!` is the program's pid and the cleanup can end it.)
ns() { local n=$1; shift; ip netns exec "$n" "$@"; }
host() { echo "$P-h$1"; }
addr() { echo "10.77.0.$(($1 + 1))"; }

# Waits until FILE has a line starting with PREFIX (at most SECS); prints that line.
wait_line() {
    local file=$1 prefix=$2 secs=$3 end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ]; do
        if [ -f "$file" ]; then
            local line
            line=$(grep -m1 "^$prefix" "$file" || true)
            if [ -n "$line" ]; then echo "$line"; return 0; fi
            if grep -q "^FAIL" "$file"; then grep -m1 "^FAIL" "$file" >&2; return 1; fi
        fi
        sleep 0.1
    done
    echo "no '$prefix' in $file within ${secs}s" >&2
    return 1
}

# ---- 1. what the kernel offers -----------------------------------------------------------
ip netns add "$P-probe"
ns "$P-probe" ip link set lo up
if ns "$P-probe" tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then
    say "kernel: netem available (not needed; the lab uses its own delay relay all the same)"
else
    say "kernel: netem unavailable (tc: unknown qdisc), so delay comes from bench/nfq-delay"
fi
ns "$P-probe" iptables -A INPUT -m statistic --mode random --probability 0.5 -j DROP \
    || { echo "lab: iptables statistic match unavailable"; exit 2; }
say "kernel: iptables statistic match: yes (loss)"
ns "$P-probe" iptables -A OUTPUT -o lo -j NFQUEUE --queue-num 0 --queue-bypass \
    || { echo "lab: iptables NFQUEUE target unavailable"; exit 2; }
say "kernel: iptables NFQUEUE target: yes (delay)"
if ns "$P-probe" tc qdisc add dev lo root tbf rate 10mbit burst 32kbit latency 100ms 2>/dev/null; then
    say "kernel: tbf: yes (rate, with LAB_RATE)"
else
    say "kernel: tbf: no"
    [ -z "$RATE" ] || { echo "lab: LAB_RATE needs tbf"; exit 2; }
fi
ip netns del "$P-probe"

# ---- 2. the lab --------------------------------------------------------------------------
root_links_before=$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\n' ' ')
ip netns add "$HUB"
ns "$HUB" ip link set lo up
ns "$HUB" ip link add br0 type bridge
ns "$HUB" ip link set br0 up
for i in $(seq 0 $((N - 1))); do
    h=$(host "$i")
    ip netns add "$h"
    ip link add eth0 netns "$h" type veth peer name "p$i" netns "$HUB"
    ns "$HUB" ip link set "p$i" master br0 up
    ns "$h" ip link set lo up
    ns "$h" ip addr add "$(addr "$i")/24" dev eth0
    ns "$h" ip link set eth0 up
done
say "built $N hosts ($(addr 0) .. $(addr $((N - 1)))) on one bridge"

# Nothing of the lab in the root namespace, and nothing beyond the lab reachable from it.
root_links_after=$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\n' ' ')
if [ "$root_links_before" != "$root_links_after" ]; then fail "the root namespace's interfaces changed"; fi
if ip -o addr show | grep -q "10\.77\.0\."; then fail "a lab address is in the root namespace"; fi
routes=$(ns "$(host 0)" ip route show | tr '\n' ';')
say "routes of a host: $routes"
case "$routes" in *default*) fail "a host has a default route";; esac
if ns "$(host 0)" python3 -c 'import socket; socket.create_connection(("1.1.1.1", 53), timeout=2)' 2>/dev/null; then
    fail "a host reached 1.1.1.1"
else
    say "a host cannot reach beyond the lab (1.1.1.1: unreachable)"
fi
# Hosts reach each other.
for i in $(seq 1 $((N - 1))); do
    ns "$(host 0)" python3 - "$(addr "$i")" <<'EOF' || fail "host 0 cannot reach $(addr "$i")"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(2)
try:
    s.connect((sys.argv[1], 9))
except ConnectionRefusedError:
    pass  # reached: nobody listens on 9
EOF
done
say "every host reaches every other's address"

# ---- measurements over one link ------------------------------------------------------------
link_figures() {  # $1: label; measured from host 0 to host N/2
    local label=$1 far=$((N / 2)) a line log=$LOGS/perf-listener.$1.log
    log=${log// /_}
    ip netns exec "$(host "$far")" "$PEER" --listen "/ip4/$(addr "$far")/tcp/4100" --security "$SECURITY" \
        --muxer "$MUXER" --timeout 3600 >"$log" 2>"$log.err" &
    PIDS+=($!)
    a=$(wait_line "$log" "LISTEN " 20 | awk '{print $2}')
    line=$(ns "$(host 0)" "$PEER" --dial "$a" --security "$SECURITY" --muxer "$MUXER" --ping --timeout 60 \
        2>"$LOGS/ping.$label.err" | tail -1)
    case "$line" in PING\ OK*) say "$label: ping RTT $(echo "$line" | awk '{print $3}') ms (5 pings, h0 -> h$far)";;
        *) fail "$label ping: $line";; esac
    local t0=$SECONDS
    line=$(ns "$(host 0)" "$PEER" --dial "$a" --security "$SECURITY" --muxer "$MUXER" \
        --perf-upload "$PERF_BYTES" --perf-download "$PERF_BYTES" --timeout 600 \
        2>"$LOGS/perf.$label.err" | tail -1)
    case "$line" in PERF*) say "$label: throughput $(echo "$line" | awk '{print "upload " $3 " MiB/s, download " $5 " MiB/s"}') ($PERF_BYTES bytes each way, $SECURITY+$MUXER, $((SECONDS - t0)) s)";;
        *) fail "$label perf: $line";; esac
    kill "${PIDS[-1]}" 2>/dev/null || true
    # Raw TCP (bench's `rawtcp`, the same perf semantics) over the same link, as the baseline.
    if [ -x "$RAWTCP" ]; then
        log=$LOGS/rawtcp-listener.${label// /_}.log
        ip netns exec "$(host "$far")" "$RAWTCP" --listen "$(addr "$far"):4200" >"$log" 2>"$log.err" &
        PIDS+=($!)
        a=$(wait_line "$log" "LISTEN " 20 | awk '{print $2}')
        t0=$SECONDS
        line=$(ns "$(host 0)" "$RAWTCP" --dial "$a" --upload "$PERF_BYTES" --download "$PERF_BYTES" \
            --timeout 600 2>"$LOGS/rawtcp.${label// /_}.err" | tail -1)
        case "$line" in PERF*) say "$label: raw TCP throughput $(echo "$line" | awk '{print "upload " $3 " MiB/s, download " $5 " MiB/s"}') ($((SECONDS - t0)) s)";;
            *) fail "$label raw TCP perf: $line";; esac
        kill "${PIDS[-1]}" 2>/dev/null || true
    fi
}

# ---- 3. a clean link ---------------------------------------------------------------------
link_figures "clean link"

# ---- 4. impairments ----------------------------------------------------------------------
for i in $(seq 0 $((N - 1))); do
    h=$(host "$i")
    if [ "$LOSS" != 0 ]; then
        ns "$h" iptables -A INPUT -i eth0 -m statistic --mode random --probability "$LOSS" -j DROP
    fi
    if [ "$DELAY_MS" != 0 ]; then
        ns "$h" iptables -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0 --queue-bypass
        ip netns exec "$h" "$NFQ" --delay-ms "$DELAY_MS" >"$LOGS/nfq.$i.log" 2>&1 &
        PIDS+=($!)
        wait_line "$LOGS/nfq.$i.log" "NFQ READY" 10 >/dev/null
    fi
    if [ -n "$RATE" ]; then
        ns "$h" tc qdisc add dev eth0 root tbf rate "$RATE" burst 32kbit latency 400ms
    fi
done
say "impairments on: ${DELAY_MS} ms one-way delay per link end, loss $LOSS per packet received${RATE:+, rate $RATE}"

# ---- 5. the chat ring --------------------------------------------------------------------
topic=lab-chat
first=""
prev=""
t0=$SECONDS
for i in $(seq 0 $((N - 1))); do
    h=$(host "$i")
    log=$LOGS/ring.$i.log
    args=(--listen "/ip4/$(addr "$i")/tcp/4001" --security "$SECURITY" --muxer "$MUXER" --gossip "$topic" --timeout 900)
    [ -n "$prev" ] && args+=(--bootstrap "$prev")
    if [ "$i" = $((N - 1)) ]; then
        args+=(--bootstrap "$first" --publish chat --count "$MESSAGES" --publish-wait 60)
    fi
    ip netns exec "$h" "$PEER" "${args[@]}" >"$log" 2>"$log.err" &
    PIDS+=($!)
    me=$(wait_line "$log" "LISTEN " 30 | awk '{print $2}')
    [ -n "$prev" ] && wait_line "$log" "BOOTSTRAP OK" 60 >/dev/null
    [ -z "$first" ] && first=$me
    prev=$me
    last_id=${me##*/}
done
say "ring of $N up in $((SECONDS - t0)) s; host $((N - 1)) publishes $MESSAGES messages"
wait_line "$LOGS/ring.$((N - 1)).log" "PUBLISHED" 90 >/dev/null || fail "no PUBLISHED"
t0=$SECONDS
missing=""
while :; do
    missing=""
    for i in $(seq 0 $((N - 2))); do
        got=$(grep -c "^GOSSIP $last_id chat-" "$LOGS/ring.$i.log" || true)
        [ "$got" -ge "$MESSAGES" ] || missing="$missing h$i($got)"
    done
    [ -z "$missing" ] && break
    [ $((SECONDS - t0)) -ge 120 ] && break
    sleep 0.2
done
if [ -z "$missing" ]; then
    say "chat ring: every one of $((N - 1)) hosts got all $MESSAGES messages within $((SECONDS - t0)) s of PUBLISHED"
else
    fail "chat ring: missing messages at$missing"
fi
for i in $(seq 0 $((N - 1))); do
    dup=$( (grep "^GOSSIP $last_id chat-" "$LOGS/ring.$i.log" || true) | sort | uniq -d | wc -l)
    [ "$dup" = 0 ] || fail "host $i printed $dup messages twice"
done

link_figures "impaired link"
if [ "$DELAY_MS" != 0 ]; then
    delayed=0
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for i in $(seq 0 $((N - 1))); do
        d=$(awk '/NFQ DONE/ {print $4}' "$LOGS/nfq.$i.log")
        delayed=$((delayed + ${d:-0}))
    done
    say "packets delayed by the relays: $delayed"
fi
if [ "$FAILED" = 0 ]; then echo "LAB OK"; else echo "LAB FAIL"; exit 1; fi
