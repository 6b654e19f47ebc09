#!/usr/bin/env python3
"""Checks py-peer against itself and, when it is built, against interop/rust-peer.

For each pairing (listener, dialer), security and muxer: start the listener, read its LISTEN
line, run the dialer for ping, echo of 1 MiB, 20 streams x 64 KiB (and perf), print one line per
cell and a closing 'N passed, N failed, N skipped' line. Exit status 1 if any cell failed.

Usage: interop/py-peer/.venv/bin/python interop/py-peer/selftest.py
           [--pairs py-py,py-rust,rust-py] [--security a,b] [--muxer a,b] [--tests ping,echo,...]
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = {
    "py": [sys.executable, os.path.join(HERE, "peer.py")],
    "rust": [os.path.join(HERE, "..", "rust-peer", "target", "release", "rust-peer")],
}
TESTS = {
    "ping": ["--ping"],
    "echo-1MiB": ["--bytes", str(1 << 20)],
    "20x64KiB": ["--streams", "20", "--bytes", str(64 * 1024)],
    "perf": ["--perf-upload", str(1 << 20), "--perf-download", str(1 << 20)],
}
CELL_TIMEOUT = 60


def start_listener(cmd, security, muxer):
    proc = subprocess.Popen(cmd + ["--listen", "/ip4/127.0.0.1/tcp/0", "--security", security,
                                   "--muxer", muxer, "--seed", "7", "--timeout", "600"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line.startswith("LISTEN "):
        return proc, line.split(" ", 1)[1], ""
    proc.kill()
    _, err = proc.communicate(timeout=10)
    return None, None, line or ("no LISTEN line; stderr: " + err.strip()[-300:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", default="py-py,py-rust,rust-py",
                    help="listener-dialer pairs")
    ap.add_argument("--security", default="secio,noise,plaintext")
    ap.add_argument("--muxer", default="mplex,yamux")
    ap.add_argument("--tests", default="ping,echo-1MiB,20x64KiB,perf")
    opts = ap.parse_args()
    results = {"PASS": 0, "FAIL": 0, "N/A": 0}
    for pair in opts.pairs.split(","):
        lname, dname = pair.split("-")
        if not all(os.path.exists(PEERS[n][0]) for n in (lname, dname)):
            print(f"{pair}: rust-peer not built, skipped", flush=True)
            continue
        for security in opts.security.split(","):
            for muxer in opts.muxer.split(","):
                proc, addr, why = start_listener(PEERS[lname], security, muxer)
                for test in opts.tests.split(","):
                    start = time.time()
                    if proc is None:
                        result = "N/A" if why.startswith("FAIL unsupported") else "FAIL"
                        detail = "listener: " + why
                    else:
                        args = PEERS[dname] + ["--dial", addr, "--security", security, "--muxer",
                                               muxer, "--timeout", str(CELL_TIMEOUT)] + TESTS[test]
                        try:
                            out = subprocess.run(args, capture_output=True, text=True,
                                                 timeout=CELL_TIMEOUT + 15)
                            lines = out.stdout.splitlines()
                            last = lines[-1] if lines else ""
                            if out.returncode == 0 and len(lines) == 1 and last.split()[0] in (
                                    "OK", "PING", "PERF"):
                                result, detail = "PASS", last
                            elif last.startswith("FAIL unsupported"):
                                result, detail = "N/A", "dialer: " + last
                            else:
                                result = "FAIL"
                                detail = f"rc={out.returncode} {last or 'no output'} | " + \
                                    out.stderr.strip()[-300:].replace("\n", " / ")
                        except subprocess.TimeoutExpired:
                            result, detail = "FAIL", "dialer did not exit"
                    results[result] += 1
                    print(f"{lname:4}<-{dname:4} {security:9} {muxer:6} {test:9} {result:4} "
                          f"{time.time() - start:6.2f}s {detail}", flush=True)
                if proc is not None:
                    proc.kill()
                    proc.wait()
    print(f"{results['PASS']} passed, {results['FAIL']} failed, {results['N/A']} skipped")
    return 1 if results["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
