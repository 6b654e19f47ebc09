"""Scenarios of PEER-CLI v2 (/work/shared/PEER-CLI-v2.md) between `peer` programs.

Each scenario takes the command lines of the programs to pair (a list of argv prefixes) and
returns (ok, detail). Used by interop/v2-foreign.py (the foreign peers against each other) and
by interop/run.py's V2_CELLS (our peer against the foreign ones).

Every wait is bounded; every process started is killed before the scenario returns.
"""

import os
import queue
import subprocess
import threading
import time

MIB = 1 << 20
# Per transport: the address a listener is given.
TRANSPORT_ADDR = {
    "tcp": "/ip4/127.0.0.1/tcp/0",
    "quic": "/ip4/127.0.0.1/udp/0/quic-v1",
    "ws": "/ip4/127.0.0.1/tcp/0/ws",
}
# The echo and ping checks of interop/run.py's NAMED_CELLS.
TRANSPORT_TESTS = {
    "ping": ["--ping"],
    "echo-1MiB": ["--bytes", str(MIB)],
    "20x64KiB": ["--streams", "20", "--bytes", str(64 * 1024)],
}
START_TIMEOUT = 60.0
# py-libp2p 0.8.1's QUIC now and then returns an echo a few hundred bytes short at the end of a
# stream, whichever side py is on (see v2-foreign.py's KNOWN): such a failure is reported, but
# as this known limit rather than as a failure of the other side.
PY_QUIC_TAIL_LOSS = "py-libp2p 0.8.1 QUIC now and then loses the last bytes of a stream"
RUST_QUIC_PING = ("rust-libp2p 0.57's QUIC listener answers pings about 6 s late or not within "
                  "the dialer's 10 s, whoever dials (rust-peer dialing rust-peer too); echo and "
                  "streams on the same connection are fast")
# Before a gossip scenario starts its publisher, the other nodes get this long to build their
# meshes (a relay forwards only to its mesh peers, and rust-libp2p's first heartbeat comes 5 s
# after start; py-libp2p's here every 1 s): the publisher's --publish-wait covers only its own mesh.
MESH_SETTLE = 7.0


class Node:
    """One `peer` process; its stdout lines are collected by a thread as they come."""

    def __init__(self, cmd, args, netns=None, name=""):
        argv = list(cmd) + list(args)
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        self.name = name or os.path.basename(cmd[-1])
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.lines = []
        self._q = queue.Queue()
        self._err = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.strip():
                self.lines.append(line)
                self._q.put(line)
        self._q.put(None)

    def _read_err(self):
        for line in self.proc.stderr:
            self._err.append(line.rstrip("\n"))
            del self._err[:-40]

    def stderr_tail(self, n=3):
        return " / ".join(self._err[-n:])

    def wait_for(self, prefix, timeout):
        """The first line starting with prefix (or a FAIL line: returned too), None on timeout
        or exit."""
        deadline = time.time() + timeout
        for line in self.lines:
            if line.startswith(prefix):
                return line
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self._q.put(None)
                return None
            if line.startswith(prefix) or line.startswith("FAIL"):
                return line

    def listen_addrs(self, n, timeout=START_TIMEOUT):
        """The first n LISTEN addresses, in order."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = [l.split(" ", 1)[1] for l in self.lines if l.startswith("LISTEN ")]
            if len(got) >= n:
                return got[:n]
            if any(l.startswith("FAIL") for l in self.lines) or self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader thread take the last lines
                break
            time.sleep(0.05)
        return None

    def failure(self):
        fails = [l for l in self.lines if l.startswith("FAIL")]
        if fails:
            return fails[0]
        return "no line; stderr: " + self.stderr_tail()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def kill_all(nodes):
    for n in nodes:
        n.kill()


def unsupported(line):
    return bool(line) and line.startswith("FAIL unsupported")


# Transports --------------------------------------------------------------------------------------


def transport_cell(listener, dialer, transport, tests, security="noise", muxer="yamux", timeout=60):
    """A listener on `transport`; for each test a fresh dialer. Returns [(test, ok, detail)]."""
    node = Node(listener, ["--listen", TRANSPORT_ADDR[transport], "--security", security,
                           "--muxer", muxer, "--timeout", "300"])
    try:
        addrs = node.listen_addrs(1)
        if not addrs:
            why = node.failure()
            return [(t, "N/A" if unsupported(why) else False, "listener: " + why) for t in tests]
        out = []
        for test in tests:
            args = list(dialer) + ["--dial", addrs[0], "--security", security, "--muxer", muxer,
                                   "--timeout", str(timeout)] + TRANSPORT_TESTS[test]
            try:
                r = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 15)
                lines = [l for l in r.stdout.splitlines() if l.strip()]
                last = lines[-1] if lines else ""
                if r.returncode == 0 and last.startswith(("OK ", "PING OK")):
                    out.append((test, True, last))
                elif unsupported(last):
                    out.append((test, "N/A", "dialer: " + last))
                else:
                    tail = r.stderr.strip().splitlines()[-2:]
                    out.append((test, False, (last or "no output") + " | " + " / ".join(tail)))
            except subprocess.TimeoutExpired:
                out.append((test, False, "dialer did not exit"))
        return out
    finally:
        node.kill()


def multi_listen(cmd):
    """--listen given three times (TCP, QUIC, WebSocket): three LISTEN lines in that order."""
    wanted = [("tcp", "/tcp/"), ("quic", "/quic-v1/"), ("ws", "/ws/")]
    node = Node(cmd, sum((["--listen", TRANSPORT_ADDR[t]] for t, _ in wanted), []) + ["--timeout", "60"])
    try:
        addrs = node.listen_addrs(3)
        if not addrs:
            return False, node.failure()
        for (t, mark), addr in zip(wanted, addrs):
            if mark not in addr + "/" or (t == "tcp" and ("/ws" in addr or "/quic" in addr)):
                return False, f"LISTEN lines out of order: {addrs}"
            if "/0.0.0.0/" in addr or "/tcp/0/" in addr or "/udp/0/" in addr:
                return False, f"unresolved address {addr}"
        return True, " ".join(addrs)
    finally:
        node.kill()


# Kademlia ----------------------------------------------------------------------------------------


def kad_network(a, b, c, key="v2-key", transport="tcp", timeout=60):
    """A: `--kad` listener (the bootstrap node). B: listener bootstrapped from A providing KEY.
    C: dial mode bootstrapped from A, finds KEY's providers (must be exactly B); then another
    dial-mode C finds B's peer id. The only path between B and C runs through A."""
    addr = TRANSPORT_ADDR[transport]
    nodes = []
    try:
        na = Node(a, ["--listen", addr, "--kad", "--timeout", str(timeout * 3)], name="A")
        nodes.append(na)
        aa = na.listen_addrs(1)
        if not aa:
            return False, "A: " + na.failure()
        nb = Node(b, ["--listen", addr, "--bootstrap", aa[0], "--provide", key,
                      "--timeout", str(timeout * 3)], name="B")
        nodes.append(nb)
        bb = nb.listen_addrs(1)
        if not bb:
            return False, "B: " + nb.failure()
        b_id = bb[0].rsplit("/", 1)[1]
        line = nb.wait_for("BOOTSTRAP OK", timeout)
        if not line or not line.startswith("BOOTSTRAP OK"):
            return False, f"B bootstrap: {line or nb.failure()}"
        line = nb.wait_for("PROVIDE OK", timeout)
        if line != "PROVIDE OK":
            return False, f"B provide: {line or nb.failure()}"
        details = []
        for what, args, expect in (
            ("find-providers", ["--find-providers", key], f"PROVIDERS {b_id}"),
            ("find-peer", ["--find-peer", b_id], f"PEER {b_id}"),
        ):
            r = subprocess.run(list(c) + ["--bootstrap", aa[0], "--timeout", str(timeout)] + args,
                               capture_output=True, text=True, timeout=timeout + 15)
            lines = [l for l in r.stdout.splitlines() if l.strip()]
            if not lines or not lines[0].startswith("BOOTSTRAP OK"):
                return False, f"C {what}: first line {lines[:1]} (want BOOTSTRAP OK) | {r.stderr.strip()[-200:]}"
            if r.returncode != 0 or lines[-1] != expect:
                return False, f"C {what}: {lines[-1:]} rc={r.returncode} (want {expect!r}) | {r.stderr.strip()[-200:]}"
            details.append(lines[-1].split(" ")[0])
        return True, " ".join(details)
    except subprocess.TimeoutExpired:
        return False, "C did not exit"
    finally:
        kill_all(nodes)


# Gossipsub ---------------------------------------------------------------------------------------


def _gossip_check(nodes, publisher, msg, count, timeout):
    """Every node but the publisher prints each of MSG-1..MSG-count exactly once, authored by
    the publisher; the publisher prints PUBLISHED count."""
    pub_id = publisher.listen_id
    line = publisher.wait_for("PUBLISHED", timeout)
    if line != f"PUBLISHED {count}":
        return False, f"{publisher.name}: {line or publisher.failure()}"
    want = {f"GOSSIP {pub_id} {msg}-{i}" for i in range(1, count + 1)}
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(want <= set(n.lines) for n in nodes if n is not publisher):
            break
        time.sleep(0.1)
    time.sleep(1.5)  # duplicates, if any, come within a heartbeat or so
    for n in nodes:
        if n is publisher:
            continue
        got = [l for l in n.lines if l.startswith("GOSSIP ")]
        missing = want - set(got)
        if missing:
            return False, f"{n.name} missed {sorted(missing)[:2]} (got {got[:3]}) {n.failure() if n.proc.poll() is not None else ''}"
        dups = [l for l in set(got) if got.count(l) > 1]
        if dups:
            return False, f"{n.name} printed duplicates: {dups[:2]}"
        extra = set(got) - want
        if extra:
            return False, f"{n.name} printed unexpected lines: {sorted(extra)[:2]}"
    own = [l for l in publisher.lines if l.startswith(f"GOSSIP {pub_id} ")]
    if own:
        return False, f"{publisher.name} printed its own messages: {own[:1]}"
    return True, f"{count} messages reached {len(nodes) - 1} nodes once each"


def _start_gossip(cmd, name, topic, bootstrap, extra, timeout):
    args = ["--listen", TRANSPORT_ADDR["tcp"], "--gossip", topic, "--timeout", str(timeout)]
    for b in bootstrap:
        args += ["--bootstrap", b]
    node = Node(cmd, args + extra, name=name)
    addrs = node.listen_addrs(1)
    node.listen_id = addrs[0].rsplit("/", 1)[1] if addrs else None
    return node, addrs[0] if addrs else None


def gossip_chain(cmds, topic="v2-chain", msg="chain", count=3, timeout=60):
    """A chain A-B-C (each node bootstraps, connect-only, from the one before it); the last
    node publishes (started last, so the chain stands when it looks for a mesh); every other
    node prints each message once (so B relayed them to A)."""
    nodes = []
    try:
        prev = None
        for i, cmd in enumerate(cmds):
            last = i == len(cmds) - 1
            if last:
                time.sleep(MESH_SETTLE)
            extra = ["--publish", msg, "--count", str(count), "--publish-wait", "30"] if last else []
            node, addr = _start_gossip(cmd, "ABCDEFG"[i], topic, [prev] if prev else [], extra, timeout * 2)
            nodes.append(node)
            if not addr:
                return False, f"{node.name}: {node.failure()}"
            if prev:
                line = node.wait_for("BOOTSTRAP OK", timeout)
                if line != "BOOTSTRAP OK 1":
                    return False, f"{node.name}: {line or node.failure()} (want BOOTSTRAP OK 1)"
            prev = addr
        return _gossip_check(nodes, nodes[-1], msg, count, timeout)
    finally:
        kill_all(nodes)


def gossip_star(hub, leaves, publisher_leaf=0, topic="v2-star", msg="star", count=3, timeout=60):
    """A hub with leaves (each bootstraps from the hub); one leaf publishes; the hub and every
    other leaf print each message once."""
    nodes = []
    try:
        h, haddr = _start_gossip(hub, "hub", topic, [], [], timeout * 2)
        nodes.append(h)
        if not haddr:
            return False, f"hub: {h.failure()}"
        order = [i for i in range(len(leaves)) if i != publisher_leaf] + [publisher_leaf]
        pub = None
        for i in order:
            if i == publisher_leaf:
                time.sleep(MESH_SETTLE)
            extra = ["--publish", msg, "--count", str(count), "--publish-wait", "30"] if i == publisher_leaf else []
            n, addr = _start_gossip(leaves[i], f"leaf{i}", topic, [haddr], extra, timeout * 2)
            nodes.append(n)
            if not addr:
                return False, f"{n.name}: {n.failure()}"
            line = n.wait_for("BOOTSTRAP OK", timeout)
            if line != "BOOTSTRAP OK 1":
                return False, f"{n.name}: {line or n.failure()} (want BOOTSTRAP OK 1)"
            if i == publisher_leaf:
                pub = n
        return _gossip_check(nodes, pub, msg, count, timeout)
    finally:
        kill_all(nodes)


# mDNS --------------------------------------------------------------------------------------------

NETNS = ("peers-mdns-a", "peers-mdns-b")
VETH = ("peers-va", "peers-vb")
NETNS_ADDR = ("10.77.0.1", "10.77.0.2")


def _ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True, check=check)


def netns_up():
    """Two namespaces joined by a veth pair; multicast routed onto the veth in each (the
    namespaces have no other interface but loopback, so mDNS never leaves them)."""
    netns_down()
    for ns in NETNS:
        _ip("netns", "add", ns)
    _ip("link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1])
    for ns, dev, addr in zip(NETNS, VETH, NETNS_ADDR):
        _ip("link", "set", dev, "netns", ns)
        _ip("-n", ns, "addr", "add", addr + "/24", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)


def netns_down():
    for ns in NETNS:
        _ip("netns", "del", ns, check=False)


def mdns_pair(cmd_a, cmd_b, timeout=60):
    """Two `--mdns` listeners, one per namespace, each on its veth address: each prints
    `MDNS <other id>` and `MDNS CONNECTED <other id>`, each once."""
    nodes = []
    try:
        ids = []
        for ns, addr, cmd, name in zip(NETNS, NETNS_ADDR, (cmd_a, cmd_b), ("A", "B")):
            n = Node(cmd, ["--listen", f"/ip4/{addr}/tcp/0", "--mdns", "--timeout", str(timeout * 2)],
                     netns=ns, name=name)
            nodes.append(n)
            got = n.listen_addrs(1)
            if not got:
                return False, f"{name}: {n.failure()}"
            ids.append(got[0].rsplit("/", 1)[1])
        for n, other in ((nodes[0], ids[1]), (nodes[1], ids[0])):
            for want in (f"MDNS {other}", f"MDNS CONNECTED {other}"):
                line = n.wait_for(want, timeout)
                if line != want:
                    return False, f"{n.name}: {line or n.failure()} (want {want})"
        time.sleep(1.0)
        for n in nodes:
            mdns_lines = [l for l in n.lines if l.startswith("MDNS")]
            if len(mdns_lines) != len(set(mdns_lines)):
                return False, f"{n.name}: repeated lines {mdns_lines}"
        return True, "both discovered and connected"
    finally:
        kill_all(nodes)
