#!/usr/bin/env python3
"""py-peer: the py-libp2p (libp2p==0.8.1) peer our libp2p implementation is tested against.

It follows the fixed command-line contract in ../PEER-CLI.md exactly:

    peer.py --listen /ip4/127.0.0.1/tcp/0 [--security S] [--muxer M] [--key K] [--seed N] [--timeout SECS]
    peer.py --dial /ip4/127.0.0.1/tcp/PORT/p2p/ID [--bytes N] [--streams K]
    peer.py --dial ADDR/p2p/ID --ping
    peer.py --dial ADDR/p2p/ID --perf-upload N --perf-download M

PEER-CLI v2 (/work/shared/PEER-CLI-v2.md; see the "PEER-CLI v2" section below for the choices):

    peer.py --listen /ip4/127.0.0.1/udp/0/quic-v1 --listen /ip4/127.0.0.1/tcp/0/ws ...
    peer.py --listen ADDR --kad | --bootstrap ADDR/p2p/ID --provide KEY
    peer.py --bootstrap ADDR/p2p/ID --find-providers KEY | --find-peer ID
    peer.py --listen ADDR --gossip TOPIC [--bootstrap ADDR/p2p/ID] [--publish MSG --count N]
    peer.py --listen ADDR --mdns

Every part of v2 is implemented with py-libp2p 0.8.1's own modules; none prints
`FAIL unsupported` for lack of it (request-response and ECDSA keys stay unsupported, as in v1).

Stdout carries only the contract's lines (LISTEN, OK, PING OK, PERF, FAIL and v2's); everything else goes
to stderr (py-libp2p's own logging too: set LIBP2P_DEBUG=DEBUG for it, PY_PEER_VERBOSE=1 for ours).
Exit status: 0 on success, 1 on failure (and on timeout), 2 for an unsupported option or bad usage.
"""

from __future__ import annotations

import argparse
from contextlib import asynccontextmanager
import logging
import os
import queue
import secrets
import sys
import threading
import time

# Contract output ---------------------------------------------------------------------------------

_out_lock = threading.Lock()


def finish(line: str, code: int) -> None:
    """Print one contract line to stdout, flush, and leave at once.

    os._exit: nothing (trio's shutdown, py-libp2p's background tasks, the watchdog thread) may
    delay or add to the output once the result is known.
    """
    with _out_lock:
        try:
            sys.stdout.write(line.replace("\n", " ").replace("\r", " ") + "\n")
            sys.stdout.flush()
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(code)


def emit(line: str) -> None:
    """Print a contract line that does not end the process (LISTEN)."""
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Unsupported(Exception):
    """An option or combination the peer does not implement: `FAIL unsupported: ...`, exit 2."""


class Usage(Exception):
    """A bad command line: `FAIL usage: ...`, exit 2."""


log = logging.getLogger("py-peer")


def verbose() -> bool:
    return os.environ.get("PY_PEER_VERBOSE", "") not in ("", "0")


# Command line ------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # never print argparse's usage text to stdout
        raise Usage(message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog="peer.py", add_help=False)
    p.add_argument("--security", default="noise")
    p.add_argument("--muxer", default="yamux")
    p.add_argument("--key", default="ed25519")
    p.add_argument("--seed", type=int)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--listen", action="append", default=[])
    p.add_argument("--dial")
    p.add_argument("--bootstrap", action="append", default=[])
    p.add_argument("--kad", action="store_true")
    p.add_argument("--provide")
    p.add_argument("--find-providers")
    p.add_argument("--find-peer")
    p.add_argument("--gossip")
    p.add_argument("--publish")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--publish-wait", type=float, default=10.0)
    p.add_argument("--mdns", action="store_true")
    p.add_argument("--bytes", type=int, default=1024)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--ping", action="store_true")
    p.add_argument("--perf-upload", type=int)
    p.add_argument("--perf-download", type=int)
    p.add_argument("-h", "--help", action="store_true")
    args, rest = p.parse_known_args(argv)
    if args.help:
        sys.stderr.write(__doc__ or "")
        os._exit(2)
    if rest:
        raise Unsupported("option " + rest[0])
    if args.security not in ("secio", "noise", "plaintext", "tls"):
        raise Unsupported(args.security)
    if args.muxer not in ("mplex", "yamux"):
        raise Unsupported(args.muxer)
    if args.key not in ("ed25519", "rsa", "secp256k1", "ecdsa"):
        raise Unsupported(f"key {args.key}")
    if args.seed is not None and not (0 <= args.seed < 1 << 64):
        raise Usage("--seed must be a u64")
    args.v2 = bool(args.bootstrap or args.kad or args.provide is not None
                   or args.find_providers is not None or args.find_peer is not None
                   or args.gossip is not None or args.publish is not None or args.mdns)
    args.dial_list = [args.dial] if args.dial is not None else []
    if args.v2:
        finds = [o for o in (args.provide, args.find_providers, args.find_peer) if o is not None]
        if len(finds) > 1:
            raise Usage("--provide, --find-providers and --find-peer exclude each other")
        if args.provide is not None and not args.listen:
            raise Usage("--provide needs --listen (a provider must be reachable)")
        if (args.find_providers is not None or args.find_peer is not None) and args.listen:
            raise Usage("--find-providers and --find-peer are dial-mode options")
        if args.publish is not None and args.gossip is None:
            raise Usage("--publish needs --gossip")
        if args.count < 1:
            raise Usage("--count must be at least 1")
        if not (args.listen or args.dial_list or args.bootstrap or args.mdns):
            raise Usage("nothing to listen on and nobody to connect to")
    elif bool(args.listen) == (args.dial is not None):
        raise Usage("exactly one of --listen or --dial is required")
    perf = args.perf_upload is not None or args.perf_download is not None
    if args.ping and perf:
        raise Usage("--ping and --perf-* exclude each other")
    if args.bytes < 0 or (args.perf_upload or 0) < 0 or (args.perf_download or 0) < 0:
        raise Usage("byte counts must not be negative")
    if args.streams < 1:
        raise Usage("--streams must be at least 1")
    args.perf = perf
    return args


# Keys --------------------------------------------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
RSA_KEY_PATH = os.path.join(HERE, "..", "..", "libp2p-core", "testdata", "rsa-2048.pk8")


def seed_bytes(n: int) -> bytes:
    """N as a little-endian u64 in the first 8 bytes of 32, the rest zero (as rust-peer)."""
    return n.to_bytes(8, "little") + bytes(24)


def make_key(kind: str, seed: int | None):
    from libp2p.crypto.keys import KeyPair

    if kind == "ed25519":
        from libp2p.crypto.ed25519 import create_new_key_pair

        # PyNaCl's SigningKey(seed) is the RFC 8032 secret key, as rust's ed25519_from_bytes.
        return create_new_key_pair(seed_bytes(seed) if seed is not None else None)
    if kind == "secp256k1":
        from libp2p.crypto.secp256k1 import create_new_key_pair

        return create_new_key_pair(seed_bytes(max(seed, 1)) if seed is not None else None)
    if kind == "ecdsa":
        # libp2p.crypto.ecc in 0.8.1 is the ECC_P256 type, not libp2p's ECDSA key type, and
        # neither signs (sign() raises NotImplementedError): no handshake can use it.
        raise Unsupported("key ecdsa (py-libp2p 0.8.1 cannot sign with ECDSA keys)")
    if kind == "rsa":
        from libp2p.crypto.rsa import RSAPrivateKey

        # As rust-peer: the one key file serves, with or without --seed.
        try:
            with open(RSA_KEY_PATH, "rb") as f:
                der = f.read()
            private = RSAPrivateKey.from_bytes(der)
            public = private.get_public_key()
            public.to_bytes()
            return KeyPair(private, public)
        except Exception as e:  # noqa: BLE001 - any failure to load means "cannot do rsa"
            log.warning("cannot load RSA key %s: %s", RSA_KEY_PATH, e)
            raise Unsupported("rsa") from e
    raise Unsupported(f"key {kind}")


# Host --------------------------------------------------------------------------------------------

ECHO = "/echo/1.0.0"
PERF = "/perf/1.0.0"
PING = "/ipfs/ping/1.0.0"
PING_LEN = 32
CHUNK = 64 * 1024


def make_host(args: argparse.Namespace, key_pair, detect=None, mdns: bool = False):
    import libp2p
    from libp2p.custom_types import TProtocol

    if args.security == "secio":
        import libp2p.security.secio.transport as secio

        sec = {TProtocol(secio.ID): secio.Transport(key_pair)}
    elif args.security == "noise":
        from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
        from libp2p.security.noise.transport import PROTOCOL_ID, Transport

        # Noise needs its own static (X25519) key beside the identity key.
        noise_key = create_new_x25519_key_pair().private_key
        sec = {TProtocol(PROTOCOL_ID): Transport(key_pair, noise_privkey=noise_key)}
    elif args.security == "tls":
        from libp2p.security.tls.transport import PROTOCOL_ID as TLS_PROTOCOL_ID
        from libp2p.security.tls.transport import TLSTransport

        # A self-signed certificate of its own, carrying the identity in the libp2p extension.
        sec = {TProtocol(TLS_PROTOCOL_ID): TLSTransport(key_pair)}
    else:
        from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

        sec = {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)}

    if args.muxer == "mplex":
        from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex

        mux = {TProtocol(MPLEX_PROTOCOL_ID): Mplex}
    else:
        from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID, Yamux

        mux = {TProtocol(PROTOCOL_ID): Yamux}

    # Only the one security and the one muxer are offered (sec_opt / muxer_opt replace the
    # defaults). identify and ping handlers are the host's defaults.
    # `detect`: the addresses the host listens on or dials; new_host picks its transports
    # (TCP, WebSocket, QUIC) from them.
    return libp2p.new_host(key_pair=key_pair, sec_opt=sec, muxer_opt=mux,
                           listen_addrs=detect or None, enable_mDNS=mdns)


# Protocol helpers --------------------------------------------------------------------------------

_BASE = bytes(i % 251 for i in range(251)) * (CHUNK // 251 + 2)
_XOR_TABLES = [bytes(i ^ c for i in range(256)) for c in range(256)]


def pattern(idx: int, start: int, n: int) -> bytes:
    """Bytes start..start+n of echo stream idx: the same as rust-peer's
    ((pos % 251) ^ (idx * 37) ^ (pos >> 16)) as u8."""
    out = bytearray()
    pos, end = start, start + n
    while pos < end:
        block_end = min(end, (pos // 65536 + 1) * 65536)
        length = block_end - pos
        xor = ((idx * 37) ^ (pos >> 16)) & 0xFF
        off = pos % 251
        seg = _BASE[off:off + length]
        while len(seg) < length:  # only when length exceeds the cached span
            seg += _BASE[: length - len(seg)]
        out += seg.translate(_XOR_TABLES[xor])
        pos = block_end
    return bytes(out)


async def read_some(stream, n: int) -> bytes:
    """Up to n bytes, b"" at EOF."""
    from libp2p.network.stream.exceptions import StreamEOF

    try:
        return await stream.read(n)
    except StreamEOF:
        return b""
    except Exception as e:  # noqa: BLE001
        # py-libp2p 0.8.1's QUIC stream signals the end of a stream closed in both directions
        # (our write side closed, the remote's FIN received, its buffer drained) as
        # QUICStreamClosedError (wrapped in StreamReset) rather than EOF; a real reset is
        # QUICStreamResetError. Byte counts are checked by the callers either way.
        if "QUICStreamClosedError" not in (type(e).__name__, type(e.__cause__ or e.__context__).__name__):
            raise
        # Its read checks the receive buffer, then (under another lock) the state: data that
        # lands in between is still buffered when the error comes. Drain it from the QUIC
        # stream itself (the net stream now calls itself reset) before calling it the end.
        muxed = getattr(stream, "muxed_stream", None)
        if muxed is None:
            return b""
        try:
            return await muxed.read(n)
        except Exception:  # noqa: BLE001 - closed with an empty buffer: the end
            return b""


async def read_exactly(stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await read_some(stream, n - len(buf))
        if not data:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


# Server side -------------------------------------------------------------------------------------


async def serve_echo(stream) -> None:
    """/echo/1.0.0: write back whatever arrives, at once, until the remote closes its write
    side; then close ours."""
    peer = stream.muxed_conn.peer_id
    total = 0
    try:
        while True:
            data = await read_some(stream, CHUNK)
            if not data:
                break
            await stream.write(data)
            total += len(data)
        await stream.close_write()
        if verbose():
            log.info("echo from %s: %d bytes", peer, total)
    except Exception as e:  # noqa: BLE001
        log.warning("echo from %s failed after %d bytes: %r", peer, total, e)
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001
            pass


async def serve_perf(stream) -> None:
    """/perf/1.0.0: 8-byte big-endian M, drain to EOF, send M bytes, close."""
    peer = stream.muxed_conn.peer_id
    try:
        download = int.from_bytes(await read_exactly(stream, 8), "big")
        uploaded = 0
        while True:
            data = await read_some(stream, CHUNK)
            if not data:
                break
            uploaded += len(data)
        zeros = bytes(CHUNK)
        left = download
        while left > 0:
            n = min(left, CHUNK)
            await stream.write(zeros[:n])
            left -= n
        await stream.close_write()
        if verbose():
            log.info("perf from %s: received %d, sent %d bytes", peer, uploaded, download)
    except Exception as e:  # noqa: BLE001
        log.warning("perf from %s failed: %r", peer, e)
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001
            pass


# Client side -------------------------------------------------------------------------------------


def check_echo(idx: int, got: int, data: bytes, n: int) -> None:
    if got + len(data) > n:
        raise ValueError(f"echoed more than the {n} bytes sent")
    expect = pattern(idx, got, len(data))
    if data != expect:
        i = next(i for i in range(len(data)) if data[i] != expect[i])
        raise ValueError(
            f"echo differs at byte {got + i}: got {data[i]:#04x}, sent {expect[i]:#04x}")


class DuplexLock:
    """Stands in for an MplexStream's ReadWriteLock (see echo_one): readers never wait for the
    writer nor the writer for readers; writers still exclude each other."""

    def __init__(self) -> None:
        import trio

        self._write = trio.Lock()

    @asynccontextmanager
    async def read_lock(self):
        yield

    @asynccontextmanager
    async def write_lock(self):
        async with self._write:
            yield


async def echo_one(host, peer, idx: int, n: int, full_duplex_mplex: bool) -> None:
    import trio

    stream = await host.new_stream(peer, [ECHO])
    try:
        if full_duplex_mplex and hasattr(stream.muxed_stream, "rw_lock"):
            # py-libp2p's mplex streams are effectively half-duplex: MplexStream.read holds the
            # stream's ReadWriteLock, which excludes writers, while it waits for data, so a
            # writer and a reader running at once on one stream deadlock (the write waits for
            # data that only comes after it).
            #
            # The usual way round it, writing a chunk and reading the same amount back before
            # the next (lockstep), stalls against an echo server that holds small echoes back:
            # rust-libp2p's mplex flushes its write buffer only once 128 KiB are pending (or
            # on flush/close), and an echo loop that never calls flush (interop/rust-peer)
            # sends nothing back until then or EOF. Lockstep with larger chunks or a read
            # timeout instead deadlocks py against py with 20 streams: py-libp2p's mplex
            # buffers only one incoming frame per stream, stops reading the whole connection
            # while a stream's reader does not take it, and resets that stream after 5 s.
            #
            # So the dialer gives its own echo streams a lock that lets one reader and one
            # writer run at once (the lock guards no state shared between the two: reads
            # touch only the stream's receive buffer and channel, writes only send frames),
            # and then reads the echo all the time while it writes, as with yamux.
            stream.muxed_stream.rw_lock = DuplexLock()

        # Write everything (in chunks) while reading the echo at the same time.
        async def write() -> None:
            sent = 0
            while sent < n:
                length = min(CHUNK, n - sent)
                await stream.write(pattern(idx, sent, length))
                sent += length
            await stream.close_write()

        state = {"got": 0}

        async def read() -> None:
            while True:
                data = await read_some(stream, CHUNK)
                if not data:
                    break
                check_echo(idx, state["got"], data, n)
                state["got"] += len(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            nursery.start_soon(read)
        got = state["got"]
        if got != n:
            raise EOFError(f"echo ended after {got} of {n} bytes")
    except BaseException:
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001
            pass
        raise
    try:
        await stream.close()
    except Exception:  # noqa: BLE001
        pass


async def run_echo(host, peer, n: int, streams: int, mplex: bool) -> float:
    import trio

    errors: list[str] = []
    start = time.perf_counter()

    async def one(idx: int) -> None:
        try:
            await echo_one(host, peer, idx, n, mplex)
        except Exception as e:  # noqa: BLE001
            errors.append(f"echo stream {idx}: {describe(e)}")

    async with trio.open_nursery() as nursery:
        for idx in range(streams):
            nursery.start_soon(one, idx)
    elapsed = time.perf_counter() - start
    if errors:
        raise PeerError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    return elapsed


async def run_ping(host, peer) -> float:
    stream = await host.new_stream(peer, [PING])
    rtts = []
    for _ in range(5):
        payload = secrets.token_bytes(PING_LEN)
        start = time.perf_counter()
        await stream.write(payload)
        pong = await read_exactly(stream, PING_LEN)
        rtts.append(time.perf_counter() - start)
        if pong != payload:
            raise ValueError("ping: pong differs from ping")
    try:
        await stream.close()
    except Exception:  # noqa: BLE001
        pass
    return sum(rtts) / len(rtts) * 1000.0


async def run_perf(host, peer, upload: int, download: int) -> tuple[float, float]:
    stream = await host.new_stream(peer, [PERF])
    start = time.perf_counter()
    await stream.write(download.to_bytes(8, "big"))
    zeros = bytes(CHUNK)
    left = upload
    while left > 0:
        n = min(left, CHUNK)
        await stream.write(zeros[:n])
        left -= n
    await stream.close_write()
    upload_time = time.perf_counter() - start
    start = time.perf_counter()
    got = 0
    while True:
        data = await read_some(stream, CHUNK)
        if not data:
            break
        got += len(data)
    download_time = time.perf_counter() - start
    if got != download:
        raise EOFError(f"perf: received {got} of {download} bytes")

    def rate(b: int, t: float) -> float:
        return 0.0 if b == 0 else b / (1024 * 1024) / max(t, 1e-9)

    return rate(upload, upload_time), rate(download, download_time)


class PeerError(Exception):
    """A failure this program words itself: printed as `FAIL <message>`."""


def describe(e: BaseException) -> str:
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    text = str(e).strip().splitlines()
    text = text[0] if text else ""
    if isinstance(e, PeerError):
        return text
    name = type(e).__name__
    cause = e.__cause__ or e.__context__
    if not text and cause is not None and cause is not e:
        return f"{name}: {describe(cause)}"
    return f"{name}: {text}" if text else name


def root_cause(e: BaseException) -> str:
    """': <innermost error>' along the cause chain (py-libp2p wraps dial errors in MultiError),
    or '' when there is none beyond e."""
    seen = {id(e)}
    inner = None
    cur: BaseException | None = e
    while cur is not None:
        nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[0], (list, tuple)) and cur.args[0]:
            first = cur.args[0][0]
            nxt = first if isinstance(first, BaseException) else None
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        inner = cur = nxt
    if inner is None or type(inner).__name__ == "MultiError":
        return ""
    return f": {describe(inner)}"


# PEER-CLI v2 (/work/shared/PEER-CLI-v2.md) -------------------------------------------------------
#
# py-libp2p 0.8.1 has every v2 part: QUIC (aioquic), WebSocket (trio-websocket), Kademlia
# (libp2p.kad_dht), gossipsub (libp2p.pubsub) and mDNS (libp2p.discovery.mdns, on zeroconf).
# Choices made here (each library default unless said):
# - transports: new_host picks them from the addresses it is given; we give it the --listen
#   addresses and every address we will dial, so a dialer has the transport of its target.
# - Kademlia: KadDHT in server mode; the DHT key of KEY is the sha2-256 multihash of its UTF-8
#   bytes, given to the provider store as bytes (the multihash a CIDv1 raw carries).
#   --bootstrap: connect, add to the routing table, then a lookup of our own id.
# - gossipsub: /meshsub/1.1.0 and /meshsub/1.0.0, strict signing, py-libp2p's default message
#   id (from + seqno bytes, the spec's default), D = 6 / 4 / 12, heartbeat 1 s (py-libp2p's
#   default of 120 s would leave a mesh unformed for two minutes).
# - mDNS: host's enable_mDNS (zeroconf's DNS-SD service with libp2p's TXT dnsaddr records).
# Limits of py-libp2p 0.8.1 seen in interop/v2-foreign.py (its KNOWN list):
# - its mDNS (zeroconf) cannot resolve rust-libp2p's mDNS answers (a PTR to a bare one-label
#   peer name, not <name>._p2p._udp.local: "must end with '.local.'"), so it never discovers a
#   rust-libp2p node; rust-libp2p discovers py-libp2p and the connection is made.
# - its QUIC now and then loses the last few hundred bytes of an echo stream (one stream or
#   20, either side; cause not pinned down), and ends a stream closed both ways with QUICStreamClosedError, not EOF
#   (read_some takes that as the end after draining the buffer).

SERVING = {"on": False}  # a v2 role that is still serving at --timeout exits 0, no FAIL line

KAD_PROTOCOL = "/ipfs/kad/1.0.0"
PUBLISH_GAP = 0.05


def dht_key(key: str) -> bytes:
    """0x12 0x20 || sha256(KEY): the sha2-256 multihash of KEY's UTF-8 bytes."""
    import hashlib

    return b"\x12\x20" + hashlib.sha256(key.encode("utf-8")).digest()


def strip_p2p(addr: str) -> str:
    i = addr.find("/p2p/")
    return addr if i < 0 else addr[:i]


def listen_lines(host, wanted) -> list[str]:
    """One LISTEN line per --listen address, in the order given: the first bound address whose
    protocol stack (and IP, and port when not 0) matches each one."""
    bound = [concrete(a) for a in host.get_transport_addrs()]
    used: set[str] = set()
    lines = []
    for want in wanted:
        wp = [(p.name, v) for p, v in zip(want.protocols(), str(want).split("/")[2::2])]
        match = None
        for b in bound:
            if str(b) in used:
                continue
            bp = [(p.name, v) for p, v in zip(b.protocols(), str(b).split("/")[2::2])]
            if [n for n, _ in bp] != [n for n, _ in wp]:
                continue
            ok = True
            for (n, v), (_, bv) in zip(wp, bp):
                if n in ("ip4", "ip6") and v not in ("0.0.0.0", "::") and v != bv:
                    ok = False
                if n in ("tcp", "udp") and v != "0" and v != bv:
                    ok = False
            if ok:
                match = b
                break
        if match is None:
            raise PeerError(f"listen on {want}: no listener")
        used.add(str(match))
        lines.append(f"LISTEN {match}/p2p/{host.get_id()}")
    return lines


async def run_v2(args: argparse.Namespace, key_pair) -> str | None:
    import multiaddr
    import trio
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import info_from_p2p_addr

    try:
        listen_addrs = [multiaddr.Multiaddr(a) for a in args.listen]
        connect = [info_from_p2p_addr(multiaddr.Multiaddr(a)) for a in args.dial_list + args.bootstrap]
    except Exception as e:  # noqa: BLE001
        raise Usage(f"bad address: {e}") from e
    kad = args.kad or args.provide is not None or args.find_providers is not None or args.find_peer is not None
    dial_mode = not listen_addrs
    SERVING["on"] = not dial_mode or args.gossip is not None or args.mdns
    detect = listen_addrs + [multiaddr.Multiaddr(strip_p2p(a)) for a in args.dial_list + args.bootstrap]
    if args.mdns:
        watch_mdns()
    host = make_host(args, key_pair, detect=detect, mdns=args.mdns)
    host.set_stream_handler(TProtocol(ECHO), serve_echo)
    host.set_stream_handler(TProtocol(PERF), serve_perf)
    final: list[str] = []

    async with host.run(listen_addrs=listen_addrs):
        for line in listen_lines(host, listen_addrs):
            emit(line)
        async with trio.open_nursery() as nursery:
            dht = None
            if kad:
                from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
                from libp2p.tools.anyio_service import background_trio_service

                dht = KadDHT(host, DHTMode.SERVER)
                dht_ready = trio.Event()

                async def run_dht() -> None:
                    async with background_trio_service(dht):
                        dht_ready.set()
                        await trio.sleep_forever()

                nursery.start_soon(run_dht)
                await dht_ready.wait()
            pubsub = router = sub = None
            if args.gossip is not None:
                from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
                from libp2p.pubsub.pubsub import Pubsub
                from libp2p.tools.anyio_service import background_trio_service

                router = GossipSub(protocols=[PROTOCOL_ID_V11, PROTOCOL_ID], degree=6, degree_low=4,
                                   degree_high=12, heartbeat_interval=1)
                pubsub = Pubsub(host, router, strict_signing=True)
                ready = trio.Event()

                async def run_pubsub() -> None:
                    async with background_trio_service(pubsub):
                        async with background_trio_service(router):
                            ready.set()
                            await trio.sleep_forever()

                nursery.start_soon(run_pubsub)
                await ready.wait()
                await pubsub.wait_until_ready()
                sub = await pubsub.subscribe(args.gossip)

                async def print_gossip() -> None:
                    me = host.get_id().to_bytes()
                    while True:
                        msg = await sub.get()
                        if msg.from_id == me:  # our own publication: not a received message
                            continue
                        try:
                            author = str(ID(msg.from_id))
                        except Exception:  # noqa: BLE001
                            author = "-"
                        emit(f"GOSSIP {author} {msg.data.decode('utf-8', 'replace')}")

                nursery.start_soon(print_gossip)
            if args.mdns:
                nursery.start_soon(run_mdns, host)

            # Connect to every --dial / --bootstrap peer.
            for info in connect:
                try:
                    await host.connect(info)
                except Exception as e:  # noqa: BLE001
                    raise PeerError(f"connect {info.peer_id}: {describe(e)}{root_cause(e)}") from e
            if args.bootstrap:
                if dht is not None:
                    for info in connect:
                        await dht.add_peer(info.peer_id, skip_server_mode_check=True)
                    try:
                        await dht.peer_routing.find_closest_peers_network(host.get_id().to_bytes())
                    except Exception as e:  # noqa: BLE001
                        log.warning("bootstrap lookup: %s", describe(e))
                    emit(f"BOOTSTRAP OK {dht.get_routing_table_size()}")
                else:
                    emit(f"BOOTSTRAP OK {len(host.get_connected_peers())}")

            if dht is not None and args.provide is not None:
                if not await dht.provider_store.provide(dht_key(args.provide)):
                    raise PeerError("provide: no peer took the provider record")
                emit("PROVIDE OK")
            elif dht is not None and args.find_providers is not None:
                found = await dht.provider_store.find_providers(dht_key(args.find_providers))
                ids = sorted({str(p.peer_id) for p in found})
                if not ids:
                    raise PeerError("no provider found")
                final.append("PROVIDERS " + ",".join(ids))
            elif dht is not None and args.find_peer is not None:
                try:
                    target = ID.from_base58(args.find_peer)
                except Exception as e:  # noqa: BLE001
                    raise Usage(f"--find-peer {args.find_peer}: {e}") from e
                info = await dht.find_peer(target)
                if info is None or not info.addrs:
                    raise PeerError(f"peer {target} not found")
                final.append(f"PEER {target}")

            if args.publish is not None:
                topic = args.gossip
                with trio.move_on_after(args.publish_wait):
                    while not router.mesh.get(topic):
                        await trio.sleep(0.05)
                for i in range(1, args.count + 1):
                    if i > 1:
                        await trio.sleep(PUBLISH_GAP)
                    await pubsub.publish(topic, f"{args.publish}-{i}".encode())
                emit(f"PUBLISHED {args.count}")

            if final and not SERVING["on"]:
                nursery.cancel_scope.cancel()
                return final[0]
            for line in final:
                emit(line)
            if not SERVING["on"]:
                # Dial mode with nothing more to report (e.g. --bootstrap alone).
                nursery.cancel_scope.cancel()
                return ""
            await trio.sleep_forever()
    return None


# Peers mDNS found, put by zeroconf's thread (the handler is registered before the host starts:
# discoveries come as soon as it does). Bounded: the oldest-first queue holds 1024 at most.
MDNS_FOUND: "queue.Queue" = queue.Queue(maxsize=1024)


def watch_mdns() -> None:
    from libp2p.discovery.events.peerDiscovery import peerDiscovery

    def found(info) -> None:  # called from zeroconf's thread
        try:
            MDNS_FOUND.put_nowait(info)
        except queue.Full:
            pass

    peerDiscovery.register_peer_discovered_handler(found)


async def run_mdns(host) -> None:
    """Print `MDNS <id>` once per peer mDNS finds, dial it, and `MDNS CONNECTED <id>` once a
    connection to it exists (whichever side dialed)."""
    import trio

    me = host.get_id()
    seen: set[str] = set()
    connected: set[str] = set()

    async def watch(info) -> None:
        pid = str(info.peer_id)
        try:
            await host.connect(info)
        except Exception as e:  # noqa: BLE001 - the remote may dial us instead
            log.warning("mdns dial %s: %s", pid, describe(e))
        while pid not in connected:
            if info.peer_id in host.get_connected_peers():
                connected.add(pid)
                emit(f"MDNS CONNECTED {pid}")
                return
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        while True:
            try:
                info = MDNS_FOUND.get_nowait()
            except queue.Empty:
                await trio.sleep(0.05)
                continue
            pid = str(info.peer_id)
            if info.peer_id == me or pid in seen:
                continue
            seen.add(pid)
            emit(f"MDNS {pid}")
            nursery.start_soon(watch, info)


# Modes -------------------------------------------------------------------------------------------


def concrete(addr):
    """The bound address with a concrete IP (0.0.0.0 -> 127.0.0.1, :: -> ::1)."""
    import multiaddr

    s = str(addr)
    if s.startswith("/ip4/0.0.0.0/"):
        s = "/ip4/127.0.0.1/" + s[len("/ip4/0.0.0.0/"):]
    elif s.startswith("/ip6/::/"):
        s = "/ip6/::1/" + s[len("/ip6/::/"):]
    return multiaddr.Multiaddr(s)


async def listen(args: argparse.Namespace, key_pair) -> None:
    import multiaddr
    import trio
    from libp2p.custom_types import TProtocol

    try:
        addrs = [multiaddr.Multiaddr(a) for a in args.listen]
    except Exception as e:  # noqa: BLE001
        raise Usage(f"--listen {args.listen}: {e}") from e
    host = make_host(args, key_pair, detect=addrs)
    host.set_stream_handler(TProtocol(ECHO), serve_echo)
    host.set_stream_handler(TProtocol(PERF), serve_perf)
    async with host.run(listen_addrs=addrs):
        for line in listen_lines(host, addrs):
            emit(line)
        await trio.sleep_forever()


async def dial(args: argparse.Namespace, key_pair) -> str:
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(args.dial))
    except Exception as e:  # noqa: BLE001
        raise Usage(f"--dial {args.dial} (must end in /p2p/<peer id>): {e}") from e
    host = make_host(args, key_pair, detect=[multiaddr.Multiaddr(strip_p2p(args.dial))])
    peer = info.peer_id
    async with host.run(listen_addrs=[]):
        try:
            await host.connect(info)
        except Exception as e:  # noqa: BLE001
            raise PeerError(f"dial {args.dial}: {describe(e)}{root_cause(e)}") from e
        if args.ping:
            avg = await run_ping(host, peer)
            return f"PING OK {avg:.3f}"
        if args.perf:
            up, down = await run_perf(host, peer, args.perf_upload or 0, args.perf_download or 0)
            return f"PERF upload {up:.2f} download {down:.2f}"
        elapsed = await run_echo(host, peer, args.bytes, args.streams, args.muxer == "mplex")
        return f"OK {peer} {args.bytes * args.streams} {elapsed:.6f}"


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if verbose() else logging.WARNING,
                        format="py-peer: %(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(sys.argv[1:])
    except Unsupported as e:
        finish(f"FAIL unsupported: {e}", 2)
    except Usage as e:
        finish(f"FAIL usage: {e}", 2)

    # The process ends by the deadline whatever happens: a watchdog thread backs up trio's own
    # cancellation (which a task stuck outside a checkpoint would not see).
    def watchdog() -> None:
        if SERVING["on"]:
            sys.stdout.flush()
            os._exit(0)
        finish("FAIL timeout", 1)

    timer = threading.Timer(args.timeout + 2.0, watchdog)
    timer.daemon = True
    timer.start()

    try:
        key_pair = make_key(args.key, args.seed)
    except Unsupported as e:
        finish(f"FAIL unsupported: {e}", 2)
    except Exception as e:  # noqa: BLE001
        finish(f"FAIL key: {describe(e)}", 1)

    import trio

    async def run() -> str | None:
        with trio.move_on_after(args.timeout):
            if args.v2:
                return await run_v2(args, key_pair)
            if args.listen:
                await listen(args, key_pair)
            else:
                return await dial(args, key_pair)
        return None

    try:
        line = trio.run(run)
    except Unsupported as e:
        finish(f"FAIL unsupported: {e}", 2)
    except Usage as e:
        finish(f"FAIL usage: {e}", 2)
    except BaseException as e:  # noqa: BLE001 - including trio's ExceptionGroups
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        if isinstance(e, KeyboardInterrupt):
            finish("FAIL interrupted", 1)
        if verbose():
            import traceback

            traceback.print_exception(e, file=sys.stderr)
        finish(f"FAIL {describe(e)}", 1)
    if line is None:
        if SERVING["on"]:
            os._exit(0)
        finish("FAIL timeout", 1)
    if line == "":
        os._exit(0)
    finish(line, 0)


if __name__ == "__main__":
    main()
