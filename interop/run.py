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
`reqresp` stands for its two cells, reqresp-json and reqresp-cbor (each may be named alone);
they run only when noise and yamux are among the selected securities and muxers.
The foreign peers must be built first: interop/build.sh does it (and .ci/run calls it).
"""

import argparse
import os
import subprocess
import sys
import time

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
    opts = ap.parse_args()
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
        print(f"missing our peer at {OURS[0]}: run cargo build --release -p examples", file=sys.stderr)
        return 1
    cells = []
    seed = 100
    for peer in opts.peers.split(","):
        cmd = FOREIGN[peer]
        if not os.path.exists(cmd[0]):
            print(f"missing foreign peer {peer} at {cmd[0]}: run interop/build.sh", file=sys.stderr)
            return 1
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
