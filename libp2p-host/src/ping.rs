//! `/ipfs/ping/1.0.0`: the dialer sends 32 random bytes, the listener echoes them.
//!
//! Repeated pings reuse one stream: peers limit concurrent inbound ping streams (py-libp2p
//! allows two), so a new stream per ping would soon be refused.

use std::io;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::MAX_INBOUND_PINGS_PER_PEER;

/// The protocol name.
pub const PROTOCOL: &str = "/ipfs/ping/1.0.0";
/// Bytes in one ping.
pub const PING_SIZE: usize = 32;

/// Errors of a ping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// The stream failed or the remote closed it.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The remote answered with other bytes than we sent.
    #[error("the remote answered a ping with different bytes")]
    Mismatch,
}

impl libp2p_core::Classify for PingError {
    fn fault(&self) -> libp2p_core::Fault {
        match self {
            PingError::Io(e) => libp2p_core::Fault::of_io(e),
            PingError::Mismatch => libp2p_core::Fault::Remote,
        }
    }
}

/// Answers pings on `stream` until the remote closes it; returns how many were answered.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<u64> {
    let mut buf = [0u8; PING_SIZE];
    let mut count = 0;
    loop {
        match stream.read_exact(&mut buf).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        stream.write_all(&buf).await?;
        stream.flush().await?;
        count += 1;
    }
    stream.close().await?;
    Ok(count)
}

/// The dialer's side of a ping stream; each [`Pinger::ping`] is one round trip.
#[derive(Debug)]
pub struct Pinger<S> {
    stream: S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pinger<S> {
    /// Wraps a stream on which `/ipfs/ping/1.0.0` has been agreed.
    pub fn new(stream: S) -> Self {
        Pinger { stream }
    }

    /// Sends one ping and waits for its echo; returns the round-trip time.
    pub async fn ping(&mut self) -> Result<Duration, PingError> {
        let payload: [u8; PING_SIZE] = rand::random();
        let start = Instant::now();
        self.stream.write_all(&payload).await?;
        self.stream.flush().await?;
        let mut back = [0u8; PING_SIZE];
        self.stream.read_exact(&mut back).await?;
        let rtt = start.elapsed();
        if back != payload {
            return Err(PingError::Mismatch);
        }
        Ok(rtt)
    }

    /// Closes the stream (the listener sees EOF and stops serving it).
    pub async fn close(mut self) -> io::Result<()> {
        self.stream.close().await
    }
}

/// The ping service: answers inbound pings (at most [`MAX_INBOUND_PINGS_PER_PEER`] streams per peer
/// at once, as py-libp2p allows two) on a task per stream, and, when `interval` is not zero,
/// checks that every connected peer is alive: each `interval` it pings each peer (one stream
/// per peer, kept for the next round), and a peer whose ping fails or takes longer than
/// `timeout` is disconnected. Without this, a peer that vanishes without a FIN or RST (a
/// machine that lost power, a NAT that dropped its mapping, a frozen process) would hold its
/// connection, and every read waiting on it, until TCP gives up hours later.
pub(crate) struct PingService {
    /// Time between liveness rounds; zero turns them off.
    pub(crate) interval: Duration,
    /// Bound on one liveness ping, opening its stream included.
    pub(crate) timeout: Duration,
}

/// Where a connected peer's liveness check stands.
enum Slot {
    /// Its stream, idle between rounds.
    Idle(Box<Pinger<libp2p_core::FuturesStream>>),
    /// A ping is in flight (it ends within the timeout).
    InFlight,
    /// It does not speak ping: it is not checked (a peer is not dropped for lacking an
    /// optional protocol).
    Unsupported,
}

/// The liveness slots, one per connected peer.
type Pingers =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<libp2p_core::PeerId, Slot>>>;

impl libp2p_core::Service for PingService {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn protocols(&self) -> Vec<String> {
        vec![PROTOCOL.to_string()]
    }

    fn run(
        self: Box<Self>,
        ctx: libp2p_core::ServiceContext,
    ) -> futures::future::BoxFuture<'static, ()> {
        use futures::StreamExt;
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};
        // The host's events are of no use here: dropped at once, so that the host's ring does
        // not keep every event for a subscriber that never reads.
        let libp2p_core::ServiceContext {
            host, mut inbound, ..
        } = ctx;
        Box::pin(async move {
            let active: Arc<Mutex<HashMap<libp2p_core::PeerId, usize>>> = Arc::default();
            let pingers: Pingers = Arc::default();
            // The first round comes one interval after the start: a new connection is alive.
            let period = if self.interval.is_zero() {
                Duration::from_secs(86_400 * 365)
            } else {
                self.interval
            };
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    stream = inbound.next() => {
                        let Some(stream) = stream else { break };
                        serve_inbound(&active, stream);
                    }
                    _ = ticks.tick(), if !self.interval.is_zero() => {
                        liveness_round(&host, &pingers, self.timeout);
                    }
                }
            }
        })
    }
}

fn serve_inbound(
    active: &std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<libp2p_core::PeerId, usize>>,
    >,
    stream: libp2p_core::Stream,
) {
    let peer = stream.remote_peer();
    {
        let mut active = active.lock().expect("ping table");
        let count = active.entry(peer).or_default();
        if *count >= MAX_INBOUND_PINGS_PER_PEER {
            tracing::debug!(%peer, "too many inbound ping streams; reset");
            return;
        }
        *count += 1;
    }
    let active = active.clone();
    tokio::spawn(async move {
        if let Err(e) = serve(stream.into_futures()).await {
            tracing::debug!(%peer, error = %e, "ping stream failed");
        }
        let mut active = active.lock().expect("ping table");
        if let Some(count) = active.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                active.remove(&peer);
            }
        }
    });
}

/// Pings every connected peer whose previous liveness ping is done, each on a task of its own
/// bounded by `timeout`; forgets the slots of peers no longer connected.
fn liveness_round(
    host: &std::sync::Arc<dyn libp2p_core::HostContext>,
    pingers: &Pingers,
    timeout: Duration,
) {
    let connected: std::collections::HashSet<_> = host.connected_peers().into_iter().collect();
    let mut table = pingers.lock().expect("pingers");
    table.retain(|peer, _| connected.contains(peer));
    for peer in connected {
        let pinger = match table.insert(peer, Slot::InFlight) {
            None => None,
            Some(Slot::Idle(pinger)) => Some(*pinger),
            Some(other) => {
                table.insert(peer, other);
                continue;
            }
        };
        let host = host.clone();
        let pingers = pingers.clone();
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(timeout, liveness_ping(&*host, peer, pinger)).await;
            let slot = match outcome {
                Ok(Ok(pinger)) => Slot::Idle(Box::new(pinger)),
                Ok(Err(Dead::Unsupported)) => {
                    tracing::debug!(%peer, "peer does not speak ping; not checking its liveness");
                    Slot::Unsupported
                }
                Ok(Err(Dead::Failed(error))) => {
                    pingers.lock().expect("pingers").remove(&peer);
                    tracing::debug!(%peer, %error, "liveness ping failed; disconnecting");
                    host.disconnect(peer).await;
                    return;
                }
                Err(_) => {
                    pingers.lock().expect("pingers").remove(&peer);
                    tracing::debug!(%peer, ?timeout, "no answer to a liveness ping; disconnecting");
                    host.disconnect(peer).await;
                    return;
                }
            };
            if let Some(entry) = pingers.lock().expect("pingers").get_mut(&peer) {
                *entry = slot;
            }
        });
    }
}

/// Why a liveness ping did not come back.
enum Dead {
    /// The peer refused the ping protocol.
    Unsupported,
    /// The stream could not be opened, or the ping failed.
    Failed(String),
}

/// One liveness ping of `peer`, on its kept stream or a new one; gives the stream back.
async fn liveness_ping(
    host: &dyn libp2p_core::HostContext,
    peer: libp2p_core::PeerId,
    pinger: Option<Pinger<libp2p_core::FuturesStream>>,
) -> Result<Pinger<libp2p_core::FuturesStream>, Dead> {
    let mut pinger = match pinger {
        Some(pinger) => pinger,
        None => {
            let stream = host
                .new_stream_connected(peer, vec![PROTOCOL.to_string()])
                .await
                .map_err(|e| match e {
                    libp2p_core::NewStreamError::ProtocolsNotSupported { .. } => Dead::Unsupported,
                    e => Dead::Failed(e.to_string()),
                })?;
            Pinger::new(stream.into_futures())
        }
    };
    pinger
        .ping()
        .await
        .map_err(|e| Dead::Failed(e.to_string()))?;
    Ok(pinger)
}
