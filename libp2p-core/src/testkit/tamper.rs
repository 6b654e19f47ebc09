//! A tampering TCP proxy for security upgrades: a dialer and a listener run the upgrade
//! through a proxy that forwards the dialer's traffic frame by frame and flips, drops,
//! replays or cuts what it is told to; the listener's traffic goes back untouched.
//!
//! Frames are counted from 0 in the order the dialer sends them, handshake messages
//! included; each is a big-endian length of `length_prefix` bytes followed by that many
//! bytes (4 for SECIO, 2 for noise).

use std::io;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_identity::{Keypair, PeerId};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use crate::{Role, SecurityUpgrade, UpgradeInfo};

/// Frames longer than this end the forwarding (only a 4-byte prefix can announce one).
const MAX_FRAME: usize = 1 << 24;

/// The listener's handshake deadline, standing in for the upgrade pipeline's (the upgrades
/// keep no timer of their own): a tampered handshake that stalls ends in
/// [`Outcome::TimedOut`] after this long.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(2);

/// What the proxy does to the dialer's traffic.
#[derive(Debug, Clone, Copy)]
pub enum Tamper {
    /// Flips the low bit of the first body byte of frame `i`.
    FlipFirst(usize),
    /// Flips the low bit of the last byte of frame `i` (typically its tag or signature).
    FlipLast(usize),
    /// Flips `bit` (0 = least significant) of frame `i`'s length prefix.
    FlipLength(usize, u32),
    /// Does not forward frame `i`.
    Drop(usize),
    /// Forwards frame `i` twice.
    Replay(usize),
    /// Forwards only the first `n` bytes, then closes.
    Truncate(usize),
}

/// How the listener's side ended.
#[derive(Debug)]
pub enum Outcome<E> {
    /// The listener's handshake failed.
    Handshake(E),
    /// The listener's handshake did not finish within [`HANDSHAKE_DEADLINE`].
    TimedOut,
    /// The handshake succeeded, then reading the secured stream failed.
    Read(io::Error),
    /// The handshake succeeded and the stream ended cleanly with these bytes.
    Data(Vec<u8>),
}

/// Forwards dialer-to-listener traffic frame by frame, tampering as told.
async fn forward_frames(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    length_prefix: usize,
    tamper: Tamper,
) {
    let mut sent = 0usize;
    let mut index = 0usize;
    'frames: loop {
        let mut frame = vec![0u8; length_prefix];
        if from.read_exact(&mut frame).await.is_err() {
            break;
        }
        let len = frame
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len > MAX_FRAME {
            break;
        }
        frame.resize(length_prefix + len, 0);
        if from.read_exact(&mut frame[length_prefix..]).await.is_err() {
            break;
        }
        let mut out = vec![frame.clone()];
        match tamper {
            Tamper::FlipFirst(i) if i == index => out[0][length_prefix] ^= 1,
            Tamper::FlipLast(i) if i == index => *out[0].last_mut().unwrap() ^= 1,
            Tamper::FlipLength(i, bit) if i == index => {
                let flipped = (len as u64 ^ (1 << bit)).to_be_bytes();
                out[0][..length_prefix].copy_from_slice(&flipped[8 - length_prefix..]);
            }
            Tamper::Drop(i) if i == index => out.clear(),
            Tamper::Replay(i) if i == index => out.push(frame),
            _ => {}
        }
        for chunk in out {
            if let Tamper::Truncate(n) = tamper {
                let room = n.saturating_sub(sent);
                if room < chunk.len() {
                    let _ = to.write_all(&chunk[..room]).await;
                    break 'frames;
                }
            }
            if to.write_all(&chunk).await.is_err() {
                break 'frames;
            }
            sent += chunk.len();
        }
        index += 1;
    }
    let _ = to.shutdown().await;
}

/// Runs `dialer` and `listener` over loopback TCP through a proxy that tampers with the
/// dialer's frames (of `length_prefix` bytes of big-endian length, 1 to 8) as `tamper` says.
/// The dialer expects the peer `expected`, then writes and flushes each of `chunks` in turn
/// (so each is one frame if it fits one), closes, and keeps the connection until the
/// listener is done; the listener reads to the end.
///
/// Returns the dialer's handshake result and how the listener ended. The listener's handshake
/// is bounded by [`HANDSHAKE_DEADLINE`] (the pipeline's part here); the dialer's ends when the
/// listener gives up and closes. The whole exchange panics if it takes longer than 15 seconds.
pub async fn through_proxy<S>(
    dialer: S,
    listener: S,
    expected: PeerId,
    protocol: &str,
    length_prefix: usize,
    tamper: Tamper,
    chunks: &[Vec<u8>],
) -> (Result<(), S::Error>, Outcome<S::Error>)
where
    S: SecurityUpgrade<Compat<TcpStream>>,
{
    assert!(
        (1..=8).contains(&length_prefix),
        "length prefix of {length_prefix} bytes"
    );
    if let Tamper::FlipLength(_, bit) = tamper {
        assert!(
            (bit as usize) < 8 * length_prefix,
            "bit {bit} of a {length_prefix}-byte length"
        );
    }
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();

    let proxy_task = tokio::spawn(async move {
        let (inbound, _) = proxy.accept().await.unwrap();
        let outbound = TcpStream::connect(server_addr).await.unwrap();
        let (in_r, mut in_w) = inbound.into_split();
        let (mut out_r, out_w) = outbound.into_split();
        let back = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut out_r, &mut in_w).await;
            let _ = in_w.shutdown().await;
        });
        forward_frames(in_r, out_w, length_prefix, tamper).await;
        let _ = back.await;
    });

    let listen = async move {
        let (socket, _) = server.accept().await.unwrap();
        let handshake = listener.secure(socket.compat(), Role::Listener, None, protocol);
        match crate::with_timeout(HANDSHAKE_DEADLINE, handshake).await {
            None => Outcome::TimedOut,
            Some(Err(e)) => Outcome::Handshake(e),
            Some(Ok((_, mut io))) => {
                let mut got = Vec::new();
                match io.read_to_end(&mut got).await {
                    Ok(_) => Outcome::Data(got),
                    Err(e) => Outcome::Read(e),
                }
            }
        }
    };
    let dial = async move {
        let socket = TcpStream::connect(proxy_addr).await.unwrap();
        let (_, mut io) = dialer
            .secure(socket.compat(), Role::Dialer, Some(expected), protocol)
            .await?;
        for chunk in chunks {
            if io.write_all(chunk).await.is_err() || io.flush().await.is_err() {
                break;
            }
        }
        let _ = io.close().await;
        // Keep the connection until the listener is done with it.
        let mut sink = Vec::new();
        let _ = io.read_to_end(&mut sink).await;
        Ok(())
    };
    let result = tokio::time::timeout(Duration::from_secs(15), futures::future::join(dial, listen))
        .await
        .unwrap_or_else(|_| panic!("{tamper:?}: hung"));
    proxy_task.abort();
    result
}

/// The three 1000-byte chunks [`tampered`] sends.
pub fn chunks() -> Vec<Vec<u8>> {
    vec![
        super::pattern(21, 1000),
        super::pattern(22, 1000),
        super::pattern(23, 1000),
    ]
}

/// [`through_proxy`] between two upgrades `make` builds from fresh Ed25519 keys, under the
/// upgrade's first protocol name, sending [`chunks`].
pub async fn tampered<S, F>(
    make: F,
    length_prefix: usize,
    tamper: Tamper,
) -> (Result<(), S::Error>, Outcome<S::Error>)
where
    F: Fn(Keypair) -> S,
    S: SecurityUpgrade<Compat<TcpStream>>,
{
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let id_b = kb.public().to_peer_id();
    let (a, b) = (make(ka), make(kb));
    let protocol = UpgradeInfo::protocol_names(&a)
        .next()
        .expect("an upgrade names its protocol");
    through_proxy(a, b, id_b, protocol, length_prefix, tamper, &chunks()).await
}

/// Without tampering, the listener receives all of [`chunks`].
pub async fn untampered_delivers_everything<S, F>(make: F, length_prefix: usize)
where
    F: Fn(Keypair) -> S,
    S: SecurityUpgrade<Compat<TcpStream>>,
{
    let (dialer, listener) = tampered(make, length_prefix, Tamper::Truncate(usize::MAX)).await;
    dialer.expect("dialer handshake");
    match listener {
        Outcome::Data(got) => assert_eq!(got, chunks().concat()),
        other => panic!("expected the data, got {other:?}"),
    }
}

/// For each of `tampers` (which touch only frames after the handshake): the dialer's
/// handshake succeeds, the listener's read fails, and `check` approves of the error.
pub async fn reads_fail<S, F>(
    make: F,
    length_prefix: usize,
    tampers: &[Tamper],
    check: impl Fn(Tamper, &io::Error),
) where
    F: Fn(Keypair) -> S,
    S: SecurityUpgrade<Compat<TcpStream>>,
{
    for &tamper in tampers {
        let (dialer, listener) = tampered(&make, length_prefix, tamper).await;
        dialer.expect("dialer handshake");
        match listener {
            Outcome::Read(e) => check(tamper, &e),
            other => panic!("{tamper:?}: expected a read error, got {other:?}"),
        }
    }
}

/// For each of `tampers`: the listener's handshake fails and `check` approves of the error,
/// or, where `may_stall(tamper)`, it waits until [`HANDSHAKE_DEADLINE`].
pub async fn handshakes_fail<S, F>(
    make: F,
    length_prefix: usize,
    tampers: &[Tamper],
    check: impl Fn(Tamper, &S::Error),
    may_stall: impl Fn(Tamper) -> bool,
) where
    F: Fn(Keypair) -> S,
    S: SecurityUpgrade<Compat<TcpStream>>,
{
    for &tamper in tampers {
        let (_dialer, listener) = tampered(&make, length_prefix, tamper).await;
        match listener {
            Outcome::Handshake(e) => check(tamper, &e),
            Outcome::TimedOut if may_stall(tamper) => {}
            other => panic!("{tamper:?}: expected a handshake error, got {other:?}"),
        }
    }
}
