//! `/ipfs/ping/1.0.0`: the dialer sends 32 random bytes, the listener echoes them.
//!
//! Repeated pings reuse one stream: peers limit concurrent inbound ping streams (py-libp2p
//! allows two), so a new stream per ping would soon be refused.

use std::io;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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

/// The ping service: answers inbound pings (at most [`MAX_INBOUND_PER_PEER`] streams per peer
/// at once, as py-libp2p allows two) on a task per stream.
pub(crate) struct PingService;

/// Inbound ping streams served at once per peer; more are reset. One is the rule (pings reuse
/// a stream); a few allow for a peer's reconnects.
pub const MAX_INBOUND_PER_PEER: usize = 4;

impl libp2p_core::Service for PingService {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn protocols(&self) -> Vec<String> {
        vec![PROTOCOL.to_string()]
    }

    fn run(
        self: Box<Self>,
        mut ctx: libp2p_core::ServiceContext,
    ) -> futures::future::BoxFuture<'static, ()> {
        use futures::StreamExt;
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex};
        Box::pin(async move {
            let active: Arc<Mutex<HashMap<libp2p_core::PeerId, usize>>> = Arc::default();
            while let Some(stream) = ctx.inbound.next().await {
                let peer = stream.remote_peer();
                {
                    let mut active = active.lock().expect("ping table");
                    let count = active.entry(peer).or_default();
                    if *count >= MAX_INBOUND_PER_PEER {
                        tracing::debug!(%peer, "too many inbound ping streams; reset");
                        continue;
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
        })
    }
}
