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
pub enum PingError {
    /// The stream failed or the remote closed it.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The remote answered with other bytes than we sent.
    #[error("the remote answered a ping with different bytes")]
    Mismatch,
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
