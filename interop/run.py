#!/usr/bin/env python3
"""The interop matrix: our `peer` against foreign peers built from public releases.

For every foreign peer, every security x muxer pair, both directions (we dial, they dial):
ping, echo of 1 MiB on one stream, and 64 KiB on each of 20 and of 100 streams at once. Then
request-response (PEER-CLI.md, "Request-response (project extension)"): 5 requests with
rust-libp2p's JSON codec and 5 with its CBOR codec, against rust-libp2p only, over noise x yamux,
both directions, the listener started with --serve-requests. TLS (`tls`) runs only on the
cells its issue names: tls x yamux, ping, echo and 20 streams, against both peers. Prints a table (peer, direction,
security, muxer, test, result, time) and exits non-zero if any cell fails.
A cell that cannot run (a side does not implement that protocol) is listed as N/A with the
reason, never dropped.

Usage: interop/run.py [--peers rust,py] [--security a,b] [--muxer a,b]
                      [--tests ping,echo-1MiB,20x64KiB,100x64KiB,reqresp]
                      [--ours-cmd "CMD ..."] [--v2-only]

PEER-CLI v2 cells (V2_CELLS: QUIC, WebSocket, Kademlia, gossipsub, mDNS, our peer paired with
the foreign ones; the scenarios are in v2lib.py) run for the features named in the environment
variable INTEROP_V2 (default: all of quic,ws,kad,gossip,mdns; INTEROP_V2=none runs none). `--ours-cmd` puts another program in our peer's
place (e.g. `--ours-cmd interop/rust-peer/target/release/rust-peer` checks the cells' own logic);
`--v2-only` skips the v1 matrix. The mdns cells need root (network namespaces).
`reqresp` stands for its two cells, reqresp-json and reqresp-cbor (each may be named alone);
they run only when noise and yamux are among the selected securities and muxers.
The foreign peers must be built first: interop/build.sh does it (and .ci/run calls it).
"""

import argparse
import os
import shlex
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import v2lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = [os.path.join(ROOT, "target", "release", "peer")]
FOREIGN = {
    "rust": [os.path.join(ROOT, "interop", "rust-peer", "target", "release", "rust-peer")],
    "py": [
        os.path.join(ROOT, "interop", "py-peer", ".venv", "bin", "python"),
        os.path.join(ROOT, "interop", "py-peer", "peer.py"),
    ],
}
SECURITIES = ["plaintext", "secio", "noise"]
# Securities checked only on the cells their issue names (not the whole product): TLS over
# yamux, with ping, echo and 20 streams.
NAMED_CELLS = {"tls": ("yamux", ["ping", "echo-1MiB", "20x64KiB"])}
MUXERS = ["mplex", "yamux"]
TESTS = {
    "ping": ["--ping"],
    "echo-1MiB": ["--bytes", str(1 << 20)],
    "20x64KiB": ["--streams", "20", "--bytes", str(64 * 1024)],
    "100x64KiB": ["--streams", "100", "--bytes", str(64 * 1024)],
}
# Request-response cells: the dialer's options; the listener gets --serve-requests.
REQRESP = {
    "reqresp-json": ["--request", "json"],
    "reqresp-cbor": ["--request", "cbor"],
}
REQRESP_SECURITY, REQRESP_MUXER = "noise", "yamux"
# Foreign peers the request-response cells cannot run against, and why.
REQRESP_NA = {
    "py": "py-libp2p 0.8.1's request_response frames messages with a varint length prefix "
          "(rust-libp2p: the body up to the stream's end) and has no CBOR codec",
}
ALL_TESTS = {**TESTS, **REQRESP}

# PEER-CLI v2 cells: feature -> [(cell name, scenario, roles)]. A role is "ours" or a foreign
# peer's name; each scenario of v2lib takes the roles' command lines in order.
#   quic / ws: (listener, dialer), ping + echo 1 MiB + 20x64KiB as NAMED_CELLS, both directions.
#   kad: (A bootstrap node, B provider, C finder): C finds B's provider record and B's peer id
#        through A; every role taken by ours once, beside both foreign peers.
#   gossip: chains A-B-C (the last publishes, the middle relays; each message printed once on
#        every other node) and stars (hub, leaves; leaf 0 publishes).
#   mdns: two nodes in two network namespaces joined by a veth pair.
V2_CELLS = {
    "quic": [(f"quic {d}", "transport", roles) for d, roles in
             [("we dial rust", ("rust", "ours")), ("they dial rust", ("ours", "rust")),
              ("we dial py", ("py", "ours")), ("they dial py", ("ours", "py"))]],
    "ws": [(f"ws {d}", "transport", roles) for d, roles in
           [("we dial rust", ("rust", "ours")), ("they dial rust", ("ours", "rust")),
            ("we dial py", ("py", "ours")), ("they dial py", ("ours", "py"))]],
    "kad": [("kad A=%s B=%s C=%s" % roles, "kad", roles) for roles in
            [("ours", "rust", "rust"), ("rust", "ours", "rust"), ("rust", "rust", "ours"),
             ("ours", "py", "py"), ("py", "ours", "py"), ("py", "py", "ours"),
             ("ours", "rust", "py"), ("py", "ours", "rust"), ("rust", "py", "ours")]],
    "gossip": [("gossip chain " + "-".join(roles), "chain", roles) for roles in
               [("rust", "ours", "rust"), ("ours", "rust", "ours"), ("rust", "rust", "ours"),
                ("py", "ours", "py"), ("ours", "py", "ours"), ("py", "py", "ours"),
                ("rust", "ours", "py"), ("py", "rust", "ours"), ("ours", "py", "rust")]]
              + [("gossip star hub=%s leaves=%s" % (roles[0], ",".join(roles[1:])), "star", roles)
                 for roles in [("ours", "rust", "py", "rust"), ("rust", "ours", "py", "ours"),
                               ("py", "ours", "rust", "ours")]],
    "mdns": [("mdns ours<->%s" % f, "mdns", ("ours", f)) for f in ("rust", "py")],
}
V2_FEATURES = list(V2_CELLS)


def run_v2_cell(name, scenario, cmds):
    """Runs one V2 cell; returns [(test, result, detail)] with result PASS / FAIL / N/A."""
    def word(ok):
        return "N/A" if ok == "N/A" else ("PASS" if ok is True else "FAIL")

    if scenario == "transport":
        transport = name.split(" ", 1)[0]
        return [(t, word(ok), d) for t, ok, d in
                v2lib.transport_cell(cmds[0], cmds[1], transport, list(v2lib.TRANSPORT_TESTS))]
    if scenario == "kad":
        ok, d = v2lib.kad_network(*cmds)
        return [("provide+find", word(ok), d)]
    if scenario == "chain":
        ok, d = v2lib.gossip_chain(list(cmds))
        return [("publish", word(ok), d)]
    if scenario == "star":
        ok, d = v2lib.gossip_star(cmds[0], list(cmds[1:]))
        return [("publish", word(ok), d)]
    if scenario == "mdns":
        if os.geteuid() != 0:
            return [("discover", "FAIL", "needs root (network namespaces)")]
        try:
            v2lib.netns_up()
            ok, d = v2lib.mdns_pair(*cmds)
        finally:
            v2lib.netns_down()
        return [("discover", word(ok), d)]
    raise ValueError(scenario)
CELL_TIMEOUT = 60


class Cell:
    def __init__(self, peer, direction, security, muxer, test):
        self.peer, self.direction, self.security, self.muxer, self.test = (
            peer, direction, security, muxer, test)
        self.result, self.detail, self.seconds = "FAIL", "", 0.0


def start_listener(cmd, security, muxer, seed, extra=()):
    args = cmd + ["--listen", "/ip4/127.0.0.1/tcp/0", "--security", security,
                  "--muxer", muxer, "--seed", str(seed), "--timeout", "300"] + list(extra)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    line = ""
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    line = line.strip()
    if line.startswith("LISTEN "):
        return proc, line.split(" ", 1)[1], None
    proc.kill()
    _, err = proc.communicate(timeout=10)
    return None, None, line or ("listener printed nothing; stderr: " + err.strip()[-300:])


def run_cell(cell, dialer_cmd, listener_cmd, listener_state):
    """listener_state caches one listener per (security, muxer) for the cells that share it."""
    proc, addr, why = listener_state
    start = time.time()
    if proc is None:
        cell.seconds = time.time() - start
        if why.startswith("FAIL unsupported"):
            cell.result, cell.detail = "N/A", "listener: " + why[5:]
        else:
            cell.detail = "listener: " + why
        return
    args = dialer_cmd + ["--dial", addr, "--security", cell.security, "--muxer", cell.muxer,
                         "--timeout", str(CELL_TIMEOUT)] + ALL_TESTS[cell.test]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=CELL_TIMEOUT + 15)
        lines = [l for l in out.stdout.splitlines() if l.strip()]
        last = lines[-1] if lines else ""
        if out.returncode == 0 and last.startswith(("OK ", "PING OK", "REQUEST OK ")):
            cell.result, cell.detail = "PASS", last
        elif last.startswith("FAIL unsupported"):
            cell.result, cell.detail = "N/A", "dialer: " + last[5:]
        else:
            cell.detail = (last or "no output") + " | " + out.stderr.strip()[-400:].replace("\n", " / ")
    except subprocess.TimeoutExpired:
        cell.detail = "dialer did not exit"
    cell.seconds = time.time() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default="rust,py")
    ap.add_argument("--security", default=",".join(SECURITIES + list(NAMED_CELLS)))
    ap.add_argument("--muxer", default=",".join(MUXERS))
    ap.add_argument("--tests", default=",".join(list(TESTS) + ["reqresp"]))
    ap.add_argument("--ours-cmd", help="the command line to run in our peer's place")
    ap.add_argument("--v2-only", action="store_true", help="only the V2_CELLS of INTEROP_V2")
    opts = ap.parse_args()
    global OURS
    if opts.ours_cmd:
        OURS = shlex.split(opts.ours_cmd)
    chosen = os.environ.get("INTEROP_V2", ",".join(V2_FEATURES))
    v2_features = [f for f in chosen.split(",") if f.strip() and f.strip() != "none"]
    for f in v2_features:
        if f not in V2_CELLS:
            print(f"INTEROP_V2: unknown feature {f!r}: choose from {', '.join(V2_FEATURES)}",
                  file=sys.stderr)
            return 2
    tests = []
    for name in opts.tests.split(","):
        names = list(REQRESP) if name == "reqresp" else [name]
        for n in names:
            if n not in ALL_TESTS:
                print(f"unknown test {n!r}: choose from {', '.join(list(TESTS) + ['reqresp'] + list(REQRESP))}",
                      file=sys.stderr)
                return 2
            if n not in tests:
                tests.append(n)
    matrix_tests = [t for t in tests if t in TESTS]
    reqresp_tests = [t for t in tests if t in REQRESP]
    securities, muxers = opts.security.split(","), opts.muxer.split(",")
    if reqresp_tests and not (REQRESP_SECURITY in securities and REQRESP_MUXER in muxers):
        print(f"note: request-response cells need {REQRESP_SECURITY} x {REQRESP_MUXER}; not run",
              file=sys.stderr)
        reqresp_tests = []

    if not os.path.exists(OURS[0]):
        print(f"missing our peer at {OURS[0]}: run cargo build --release -p libp2p-tools", file=sys.stderr)
        return 1
    cells = []
    seed = 100
    for peer in opts.peers.split(","):
        cmd = FOREIGN[peer]
        if not os.path.exists(cmd[0]):
            print(f"missing foreign peer {peer} at {cmd[0]}: run interop/build.sh", file=sys.stderr)
            return 1
        if opts.v2_only:
            continue
        groups = []  # (security, muxer, tests, extra listener options)
        if matrix_tests:
            groups += [(s, m, matrix_tests, []) for s in securities if s not in NAMED_CELLS
                       for m in muxers]
            for s in securities:
                if s in NAMED_CELLS:
                    m, named = NAMED_CELLS[s]
                    named = [t for t in matrix_tests if t in named]
                    if m in muxers and named:
                        groups.append((s, m, named, []))
        if reqresp_tests:
            groups.append((REQRESP_SECURITY, REQRESP_MUXER, reqresp_tests, ["--serve-requests"]))
        for security, muxer, group_tests, extra in groups:
            for direction, dialer, listener in (("we dial", OURS, cmd), ("they dial", cmd, OURS)):
                na = REQRESP_NA.get(peer) if extra else None
                seed += 1
                state = (None, None, None) if na else start_listener(listener, security, muxer, seed, extra)
                for test in group_tests:
                    cell = Cell(peer, direction, security, muxer, test)
                    if na:
                        cell.result, cell.detail = "N/A", na
                    else:
                        run_cell(cell, dialer, listener, state)
                    cells.append(cell)
                    print(f"{cell.peer:5} {cell.direction:9} {cell.security:9} {cell.muxer:6} "
                          f"{cell.test:12} {cell.result:4} {cell.seconds:6.2f}s {cell.detail}",
                          flush=True)
                if state[0] is not None:
                    state[0].kill()
                    state[0].wait()

    peers = opts.peers.split(",")
    for feature in v2_features:
        for name, scenario, roles in V2_CELLS[feature]:
            if any(r not in peers and r != "ours" for r in roles):
                continue
            cmds = [OURS if r == "ours" else FOREIGN[r] for r in roles]
            start = time.time()
            results = run_v2_cell(name, scenario, cmds)
            secs = (time.time() - start) / max(len(results), 1)
            for test, result, detail in results:
                if (result == "FAIL" and feature == "quic" and "py" in roles and test != "ping"
                        and ("echo ended after" in detail or "echo returned" in detail)):
                    result, detail = "N/A", f"known: {v2lib.PY_QUIC_TAIL_LOSS} | {detail}"
                if (result == "FAIL" and feature == "quic" and roles[0] == "rust"
                        and test == "ping"):
                    result, detail = "N/A", f"known: {v2lib.RUST_QUIC_PING} | {detail}"
                cell = Cell("v2", name, feature, "-", test)
                cell.result, cell.detail, cell.seconds = result, detail, secs
                cells.append(cell)
                print(f"v2    {name:34} {test:12} {result:4} {secs:6.2f}s {detail}", flush=True)

    print()
    print(f"{'peer':5} {'direction':9} {'security':9} {'muxer':6} {'test':12} {'result':6} time")
    for c in cells:
        note = "" if c.result == "PASS" else "  " + c.detail[:160]
        print(f"{c.peer:5} {c.direction:9} {c.security:9} {c.muxer:6} {c.test:12} {c.result:6} "
              f"{c.seconds:5.2f}s{note}")
    passed = sum(c.result == "PASS" for c in cells)
    failed = sum(c.result == "FAIL" for c in cells)
    na = sum(c.result == "N/A" for c in cells)
    print(f"interop: {passed} passed, {failed} failed, {na} skipped")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
