//! The test side of the hostile-peer suite: a spawned `peer --listen` target with small bounds,
//! an attacker that writes bytes by hand from 127.0.0.2 (using our own security crates when
//! it must get past a handshake), and a well-behaved peer on 127.0.0.1 that keeps dialing the
//! target while it is attacked.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p_core::multistream::{self, dialer_select, Version};
use libp2p_core::{
    IntoConnection, Negotiated, Role, SecurityUpgrade, Transport, TransportExt, UpgradeInfo,
};
use libp2p_host::{Host, Keypair, Multiaddr, PeerId, Protocol};
use libp2p_mplex::Mplex;
use libp2p_noise::Noise;
use libp2p_plaintext::Plaintext;
use libp2p_secio::Secio;
use libp2p_tls::Tls;
use libp2p_tools::node;
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_yamux::Yamux;
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncReadCompatExt;

const PEER: &str = env!("CARGO_BIN_EXE_peer");

/// The bound the target is given for each handshake, negotiation, frame and stalled write.
pub const BOUND: Duration = Duration::from_secs(1);
/// What a loaded CI machine may add to [`BOUND`] before a case counts as not cut off.
pub const SLACK: Duration = Duration::from_secs(4);
/// The target's inbound connections in their upgrade at once per source IP.
pub const PENDING_PER_IP: usize = 8;
/// The target's inbound connections per source IP per second.
pub const RATE_PER_IP: u32 = 40;
/// The most the target's resident set may ever reach (`VmHWM`) in any case.
pub const MAX_RSS_KIB: u64 = 32 * 1024;

/// The security protocols the target can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sec {
    /// `/plaintext/2.0.0`
    Plaintext,
    /// `/secio/1.0.0`
    Secio,
    /// `/noise`
    Noise,
    /// `/tls/1.0.0`
    Tls,
}

impl Sec {
    /// The `--security` value.
    pub fn flag(self) -> &'static str {
        match self {
            Sec::Plaintext => "plaintext",
            Sec::Secio => "secio",
            Sec::Noise => "noise",
            Sec::Tls => "tls",
        }
    }

    /// The protocol name negotiated with multistream-select.
    pub fn protocol(self) -> &'static str {
        let key = Keypair::generate_ed25519();
        match self {
            Sec::Plaintext => UpgradeInfo::protocol_names(&Plaintext::new(key))
                .next()
                .expect("an upgrade names its protocol"),
            Sec::Secio => UpgradeInfo::protocol_names(&Secio::new(key))
                .next()
                .expect("an upgrade names its protocol"),
            Sec::Noise => UpgradeInfo::protocol_names(&Noise::new(key))
                .next()
                .expect("an upgrade names its protocol"),
            Sec::Tls => UpgradeInfo::protocol_names(&Tls::new(key))
                .next()
                .expect("an upgrade names its protocol"),
        }
    }
}

/// The muxers the target can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mux {
    /// `/mplex/6.7.0`
    Mplex,
    /// `/yamux/1.0.0`
    Yamux,
}

impl Mux {
    /// The `--muxer` value.
    pub fn flag(self) -> &'static str {
        match self {
            Mux::Mplex => "mplex",
            Mux::Yamux => "yamux",
        }
    }

    /// The protocol name negotiated with multistream-select.
    pub fn protocol(self) -> &'static str {
        match self {
            Mux::Mplex => libp2p_mplex::PROTOCOL,
            Mux::Yamux => libp2p_yamux::PROTOCOL,
        }
    }
}

/// A spawned `peer --listen` with the suite's bounds, logging the host's debug lines.
pub struct Target {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its peer id.
    pub peer: PeerId,
    /// Its stderr, lines without colour codes.
    log: Arc<Mutex<Vec<String>>>,
    /// Its stack.
    pub sec: Sec,
    /// Its muxer.
    pub mux: Mux,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Target {
    /// Starts a target with the suite's bounds.
    pub fn spawn(sec: Sec, mux: Mux) -> Target {
        let secs = format!("{}", BOUND.as_secs_f64());
        let mut child = Command::new(PEER)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--security", sec.flag(), "--muxer", mux.flag()])
            .args(["--timeout", "300"])
            .env("PEER_HANDSHAKE_TIMEOUT", &secs)
            .env("PEER_NEGOTIATION_TIMEOUT", &secs)
            .env("PEER_WRITE_TIMEOUT", &secs)
            .env("PEER_FRAME_TIMEOUT", &secs)
            .env("PEER_MAX_PENDING_PER_IP", PENDING_PER_IP.to_string())
            .env(
                "PEER_MAX_INCOMING_PER_IP_PER_SECOND",
                RATE_PER_IP.to_string(),
            )
            .env("RUST_LOG", "warn,yamux=off,libp2p_host=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start the target peer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read LISTEN");
        let ma: Multiaddr = line
            .strip_prefix("LISTEN ")
            .unwrap_or_else(|| panic!("expected LISTEN, got {line:?}"))
            .trim()
            .parse()
            .expect("LISTEN address");
        let (mut port, mut peer) = (0, None);
        for p in ma.iter() {
            match p {
                Protocol::Tcp(p) => port = p,
                Protocol::P2p(id) => peer = Some(id),
                _ => {}
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                // Bounded: a flood of lines is itself a finding; keep the first ones.
                if log.len() < 100_000 {
                    log.push(strip_ansi(&line));
                }
            }
        });
        Target {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            peer: peer.expect("peer id in LISTEN"),
            log,
            sec,
            mux,
        }
    }

    /// The listen address as a multiaddr without the peer id (every dial a new connection).
    pub fn multiaddr(&self) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{}", self.addr.port())
            .parse()
            .expect("multiaddr")
    }

    /// The target's peak resident set (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status of the target");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log lines about the connection from the attacker's `port`.
    pub fn lines_about(&self, port: u16) -> Vec<String> {
        let needle = format!("/ip4/127.0.0.2/tcp/{port}");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&needle))
            .cloned()
            .collect()
    }

    /// Log lines holding `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }

    /// Waits (up to `within`) for the target to log why it ended the connection from `port`;
    /// returns that line.
    pub async fn ending_of(&self, port: u16, within: Duration) -> Option<String> {
        let until = Instant::now() + within;
        loop {
            if let Some(line) = self.lines_about(port).into_iter().find(|l| {
                l.contains("upgrade failed") || l.contains("disconnected") || l.contains("refused")
            }) {
                return Some(line);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A raw TCP connection to the target from 127.0.0.2 with a small receive buffer (so that a
/// peer that does not read soon stops the target's writes).
pub async fn attacker(target: &Target) -> io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4 * 1024)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0)))?;
    socket.connect(target.addr).await
}

/// Something to read and write bytes on.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A boxed byte stream.
pub type BoxIo = Box<dyn Io>;

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Agrees `protocol` as the dialer.
pub async fn propose<S: Io + 'static>(io: S, protocol: &str) -> io::Result<BoxIo> {
    let (_, negotiated) =
        dialer_select(io, [protocol], Version::V1, &multistream::Config::default())
            .await
            .map_err(other)?;
    Ok(Box::new(negotiated))
}

/// The attacker's connection secured with the target's security protocol (by our own crates).
pub async fn secured(target: &Target, tcp: TcpStream) -> io::Result<BoxIo> {
    let sec = target.sec;
    let (_, negotiated) = dialer_select(
        tcp.compat(),
        [sec.protocol()],
        Version::V1,
        &multistream::Config::default(),
    )
    .await
    .map_err(other)?;
    let key = Keypair::generate_ed25519();
    let name = sec.protocol();
    let expected = Some(target.peer);
    Ok(match sec {
        Sec::Plaintext => Box::new(
            Plaintext::new(key)
                .secure(negotiated, Role::Dialer, expected, name)
                .await
                .map_err(other)?
                .1,
        ),
        Sec::Secio => Box::new(
            Secio::new(key)
                .secure(negotiated, Role::Dialer, expected, name)
                .await
                .map_err(other)?
                .1,
        ),
        Sec::Noise => Box::new(
            Noise::new(key)
                .secure(negotiated, Role::Dialer, expected, name)
                .await
                .map_err(other)?
                .1,
        ),
        Sec::Tls => Box::new(
            Tls::new(key)
                .secure(negotiated, Role::Dialer, expected, name)
                .await
                .map_err(other)?
                .1,
        ),
    })
}

/// Secured and with the target's muxer agreed: raw muxer frames go in next.
pub async fn muxed(target: &Target, tcp: TcpStream) -> io::Result<BoxIo> {
    let secured = secured(target, tcp).await?;
    propose(secured, target.mux.protocol()).await
}

/// How the target ended a connection, seen from the attacker.
#[derive(Debug)]
pub struct Ended {
    /// From the start of the attack.
    pub after: Duration,
    /// EOF, or the error the socket gave.
    pub how: String,
}

/// Reads (and drops) whatever comes until the connection ends; fails if it is still open
/// `limit` after `start`.
pub async fn until_closed<R: AsyncRead + Unpin>(
    mut io: R,
    start: Instant,
    limit: Duration,
) -> Result<Ended, String> {
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = start + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.read(&mut buf)).await {
            Err(_) => return Err(format!("connection still open after {limit:?}")),
            Ok(Ok(0)) => {
                return Ok(Ended {
                    after: start.elapsed(),
                    how: "EOF".into(),
                })
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                return Ok(Ended {
                    after: start.elapsed(),
                    how: format!("{:?}", e.kind()),
                })
            }
        }
    }
}

/// Like [`until_closed`] for a peer that never reads: keeps writing (16 KiB at a time) and
/// stops at the first failed write (the target's reset or close); fails if the connection is
/// still open `limit` after `start`.
pub async fn until_write_fails<W: AsyncWrite + Unpin>(
    mut io: W,
    start: Instant,
    limit: Duration,
) -> Result<Ended, String> {
    let deadline = start + limit;
    let chunk = vec![0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.write_all(&chunk)).await {
            Err(_) => return Err(format!("connection still open after {limit:?}")),
            Ok(Ok(())) => tokio::time::sleep(Duration::from_millis(5)).await,
            Ok(Err(e)) => {
                return Ok(Ended {
                    after: start.elapsed(),
                    how: format!("{:?}", e.kind()),
                })
            }
        }
    }
}

/// A well-behaved peer on 127.0.0.1 with the target's stack.
pub async fn good_host(sec: Sec, mux: Mux) -> Host {
    let key = Keypair::generate_ed25519();
    match sec {
        Sec::Plaintext => with_security(Plaintext::new(key.clone()), key, mux).await,
        Sec::Secio => with_security(Secio::new(key.clone()), key, mux).await,
        Sec::Noise => with_security(Noise::new(key.clone()), key, mux).await,
        Sec::Tls => with_security(Tls::new(key.clone()), key, mux).await,
    }
}

async fn with_security<S>(security: S, key: Keypair, mux: Mux) -> Host
where
    S: SecurityUpgrade<Negotiated<TcpSocket>>,
{
    let secured = TcpTransport::new().upgrade().authenticate(security);
    match mux {
        Mux::Mplex => build(secured.multiplex(Mplex::default()), key).await,
        Mux::Yamux => build(secured.multiplex(Yamux::default()), key).await,
    }
}

async fn build<T>(transport: T, key: Keypair) -> Host
where
    T: Transport,
    T::Output: IntoConnection,
{
    let mut config = libp2p_host::Config::default();
    config.handshake_timeout = Duration::from_secs(10);
    Host::builder(key)
        .config(config)
        .build_with_transport(transport)
        .await
        .expect("build the well-behaved host")
}

/// What the well-behaved peer saw while the attack ran.
#[derive(Debug, Default)]
pub struct Checks {
    /// Echo round trips that worked.
    pub ok: usize,
    /// Those that did not, with why.
    pub failed: Vec<String>,
}

/// Dials the target anew and echoes 1 KiB, every 200 ms until `stop` is set, then once more.
pub async fn keep_checking(
    host: Host,
    addr: Multiaddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Checks {
    let mut checks = Checks::default();
    let mut n = 0u64;
    loop {
        let stopping = *stop.borrow();
        n += 1;
        let round = async {
            let peer = host
                .dial(addr.clone())
                .await
                .map_err(|e| format!("dial: {e}"))?;
            let result = node::echo(&host, peer, 1024, n).await;
            host.disconnect(peer).await;
            result
        };
        match tokio::time::timeout(Duration::from_secs(10), round).await {
            Ok(Ok(())) => checks.ok += 1,
            Ok(Err(e)) => checks.failed.push(e),
            Err(_) => checks.failed.push("echo round took over 10 s".into()),
        }
        if stopping {
            return checks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes an unsigned varint.
pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One multistream-select message.
pub fn ms_message(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    varint(text.len() as u64 + 1, &mut out);
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
    out
}

/// mplex flags.
pub mod mplex {
    /// NewStream.
    pub const NEW_STREAM: u64 = 0;
    /// Message from the stream's initiator.
    pub const MESSAGE_INITIATOR: u64 = 2;
    /// Close from the initiator.
    pub const CLOSE_INITIATOR: u64 = 4;
    /// Reset from the initiator.
    pub const RESET_INITIATOR: u64 = 6;
    /// Reset from the receiver (what the target sends for a stream we opened).
    pub const RESET_RECEIVER: u64 = 5;
    /// Close from the receiver.
    pub const CLOSE_RECEIVER: u64 = 3;
    /// Message from the receiver.
    pub const MESSAGE_RECEIVER: u64 = 1;

    /// One mplex frame.
    pub fn frame(id: u64, flag: u64, body: &[u8], out: &mut Vec<u8>) {
        super::varint((id << 3) | flag, out);
        super::varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }
}

/// Reads one uvarint, byte by byte.
pub async fn read_varint<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        value |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "varint too long",
    ))
}

/// Reads one mplex frame: (id, flag, body), bodies up to 1 MiB.
pub async fn read_mplex_frame<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<(u64, u64, Vec<u8>)> {
    let header = read_varint(io).await?;
    let len = read_varint(io).await?;
    if len > 1 << 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut body = vec![0u8; len as usize];
    io.read_exact(&mut body).await?;
    Ok((header >> 3, header & 7, body))
}

/// yamux frame types and flags.
pub mod yamux {
    /// Data.
    pub const DATA: u8 = 0;
    /// Window update.
    pub const WINDOW_UPDATE: u8 = 1;
    /// Ping.
    pub const PING: u8 = 2;
    /// SYN flag.
    pub const SYN: u16 = 1;
    /// RST flag.
    pub const RST: u16 = 8;

    /// One yamux header (a data frame's body goes right behind it).
    pub fn header(kind: u8, flags: u16, id: u32, len: u32, out: &mut Vec<u8>) {
        out.push(0);
        out.push(kind);
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Reads one yamux frame: (type, flags, stream id), a data frame's body (up to 1 MiB) dropped.
pub async fn read_yamux_frame<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<(u8, u16, u32)> {
    let mut h = [0u8; 12];
    io.read_exact(&mut h).await?;
    let flags = u16::from_be_bytes([h[2], h[3]]);
    let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    if h[1] == yamux::DATA {
        if len > 1 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
        }
        let mut body = vec![0u8; len as usize];
        io.read_exact(&mut body).await?;
    }
    Ok((h[1], flags, id))
}
