#!/usr/bin/env python3
"""PEER-CLI v2 between the two foreign peers (interop/rust-peer, interop/py-peer): rust<->py,
rust<->rust and py<->py, over real sockets on loopback (mDNS in two network namespaces joined by
a veth pair, created here and deleted after; needs root).

Prints one line per check (`PASS`, `FAIL`, `N/A` for what a library lacks: it printed
`FAIL unsupported`, `KNOWN` for a failure listed in KNOWN below as a bug or limitation of a
library, with its reason) and exits non-zero if any check fails (a deterministic KNOWN check
that passes is reported as `FIXED` and fails the run, so the list is kept true).

Usage: interop/v2-foreign.py [--only transport,listen,kad,gossip,mdns] [--impls rust,py]
The foreign peers must be built first (interop/build.sh).
"""

import argparse
import itertools
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import v2lib  # noqa: E402

IMPLS = {
    "rust": [os.path.join(HERE, "rust-peer", "target", "release", "rust-peer")],
    "py": [os.path.join(HERE, "py-peer", ".venv", "bin", "python"), os.path.join(HERE, "py-peer", "peer.py")],
}
PARTS = ["transport", "listen", "kad", "gossip", "mdns"]

# Checks that fail because of a limitation of the foreign library itself (not of the peer
# program): check name prefix -> (reason, deterministic). A failure prints KNOWN and does not
# fail the run; a deterministic one that passes prints FIXED and fails the run (so the list is
# kept true), an intermittent one that passes is a PASS.
KNOWN = {
    # rust-libp2p 0.57's mDNS answers with a PTR to a bare one-label peer name
    # (libp2p-mdns 0.49 dns.rs generate_peer_name: `<random>.`); py-libp2p's zeroconf browser
    # asks for that service's info and refuses the name ("must end with '.local.'"), so py
    # never discovers rust. The other way works: rust discovers py and both print
    # `MDNS CONNECTED`; py prints no `MDNS <rust id>`.
    "mdns rust<->py": ("py-libp2p (zeroconf) cannot resolve rust-libp2p's mDNS peer name "
                       "(a bare label, not <name>._p2p._udp.local); rust finds py, py never finds rust",
                       True),
    # Intermittent (seen in about one run in three): an echo over py-libp2p 0.8.1's QUIC,
    # whichever side py is on, one stream or 20, comes back a few hundred bytes short at the
    # end of a stream (never wrong bytes). Not pinned down inside py-libp2p's QUIC stream; not
    # its 2 MiB receive-buffer drop (the streams are far below it). py's QUIC stream also ends
    # a stream closed both ways with QUICStreamClosedError, which peer.py takes as the end
    # after draining its buffer (read_some).
    "quic rust->py echo-1MiB": ("py-libp2p 0.8.1 QUIC now and then loses the last bytes of a stream", False),
    "quic rust->py 20x64KiB": ("py-libp2p 0.8.1 QUIC now and then loses the last bytes of a stream", False),
    "quic py->rust echo-1MiB": ("py-libp2p 0.8.1 QUIC now and then loses the last bytes of a stream", False),
    "quic py->rust 20x64KiB": ("py-libp2p 0.8.1 QUIC now and then loses the last bytes of a stream", False),
    "quic py->py echo-1MiB": ("py-libp2p 0.8.1 QUIC now and then loses the last bytes of a stream", False),
    "quic py->py 20x64KiB": ("py-libp2p 0.8.1 QUIC now and then loses the last bytes of a stream", False),
}


class Report:
    def __init__(self):
        self.failed = self.passed = 0

    def check(self, name, ok, detail, seconds):
        known = next((v for k, v in KNOWN.items() if name.startswith(k)), None)
        if ok == "N/A":
            word = "N/A"
        elif known is not None and ok is not True:
            word = "KNOWN"
            detail = detail[:120] + " | " + known[0]
        elif known is not None and known[1]:
            word = "FIXED"
            detail = detail + " | listed as known: " + known[0]
            self.failed += 1
        elif ok is True:
            word = "PASS"
            self.passed += 1
        else:
            word = "FAIL"
            self.failed += 1
        print(f"{word:5} {name:40} {seconds:6.1f}s {detail}", flush=True)


def timed(fn, *args, **kw):
    start = time.time()
    result = fn(*args, **kw)
    return result, time.time() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(PARTS))
    ap.add_argument("--impls", default="rust,py")
    opts = ap.parse_args()
    parts = opts.only.split(",")
    impls = opts.impls.split(",")
    for name in impls:
        if not os.path.exists(IMPLS[name][0]):
            print(f"missing {name} peer at {IMPLS[name][0]}: run interop/build.sh", file=sys.stderr)
            return 1
    pairs = list(itertools.product(impls, repeat=2))
    r = Report()

    if "listen" in parts:
        for impl in impls:
            (ok, detail), secs = timed(v2lib.multi_listen, IMPLS[impl])
            r.check(f"listen x3 {impl}", ok, detail, secs)

    if "transport" in parts:
        for transport in ("quic", "ws"):
            for listener, dialer in pairs:
                start = time.time()
                results = v2lib.transport_cell(IMPLS[listener], IMPLS[dialer], transport,
                                               list(v2lib.TRANSPORT_TESTS))
                secs = (time.time() - start) / max(len(results), 1)
                for test, ok, detail in results:
                    r.check(f"{transport} {dialer}->{listener} {test}", ok, detail, secs)
        # TLS over TCP, beside noise (v1 cells cover noise).
        for listener, dialer in pairs:
            start = time.time()
            results = v2lib.transport_cell(IMPLS[listener], IMPLS[dialer], "tcp", ["ping", "20x64KiB"],
                                           security="tls")
            secs = (time.time() - start) / max(len(results), 1)
            for test, ok, detail in results:
                r.check(f"tls {dialer}->{listener} {test}", ok, detail, secs)

    if "kad" in parts:
        # Every assignment of the two implementations to bootstrap node A, provider B, finder C.
        for a, b, c in itertools.product(impls, repeat=3):
            (ok, detail), secs = timed(v2lib.kad_network, IMPLS[a], IMPLS[b], IMPLS[c])
            r.check(f"kad A={a} B={b} C={c}", ok, detail, secs)

    if "gossip" in parts:
        for chain in itertools.product(impls, repeat=3):
            (ok, detail), secs = timed(v2lib.gossip_chain, [IMPLS[x] for x in chain])
            r.check("gossip chain " + "-".join(chain), ok, detail, secs)
        for hub in impls:
            leaves = (impls * 2)[:3]
            (ok, detail), secs = timed(v2lib.gossip_star, IMPLS[hub], [IMPLS[x] for x in leaves])
            r.check(f"gossip star hub={hub} leaves={','.join(leaves)}", ok, detail, secs)

    if "mdns" in parts:
        if os.geteuid() != 0:
            r.check("mdns", False, "needs root (network namespaces)", 0.0)
        else:
            try:
                v2lib.netns_up()
                for a, b in itertools.combinations_with_replacement(impls, 2):
                    (ok, detail), secs = timed(v2lib.mdns_pair, IMPLS[a], IMPLS[b])
                    r.check(f"mdns {a}<->{b}", ok, detail, secs)
            finally:
                v2lib.netns_down()

    print(f"v2-foreign: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed or not r.passed else 0


if __name__ == "__main__":
    sys.exit(main())
