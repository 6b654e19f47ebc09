//! [`Stream`]: a stream on which a protocol has been agreed with a remote peer, as hosts hand
//! them to applications and services.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use libp2p_identity::PeerId;
use libp2p_multistream::Negotiated;
use multiaddr::Multiaddr;

use crate::connection::ConnectionId;
use crate::upgrade::Socket;

/// A stream of any muxer, type-erased.
pub type BoxedStream = Box<dyn Socket>;

/// A stream on which a protocol has been agreed with a remote peer.
///
/// Its I/O traits are tokio's (`tokio::io::{AsyncRead, AsyncWrite}`): a host runs on tokio, so
/// tokio's `AsyncReadExt`, `BufReader`, `copy`, `split` and tokio-util's codecs work on it as
/// they are. Code written for the `futures` traits takes [`Stream::into_inner`] (the same
/// stream with `futures::io::{AsyncRead, AsyncWrite}`, no extra layer) or tokio-util's
/// `compat()`. One family only, so that importing both `*Ext` traits cannot make a method call
/// ambiguous.
///
/// Closing (`shutdown`) closes our write side only: the remote's bytes can still be read until
/// it closes its own. Dropping the stream without closing it resets it.
///
/// Reads into initialised memory (`read(&mut [u8])`, `BufReader`, `tokio::io::copy`) cost
/// nothing extra. A read into uninitialised room (`read_buf` into a `BytesMut` or a `Vec`'s
/// spare capacity) has that room zeroed first, since the `futures` stream below reads into an
/// initialised slice; at most twice what the previous read returned is offered (and so
/// zeroed), so a large buffer that takes small messages is not zeroed whole on every read
/// (see `docs/io-traits.md`).
pub struct Stream {
    io: Negotiated<BoxedStream>,
    /// Uninitialised room a read zeroes and offers at most (see `read_room`).
    read_hint: usize,
    protocol: String,
    remote_peer: PeerId,
    connection: ConnectionId,
    remote_addr: Multiaddr,
    /// Held for the stream's life (a host's count of open streams, say).
    guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("protocol", &self.protocol)
            .field("remote_peer", &self.remote_peer)
            .field("connection", &self.connection)
            .finish()
    }
}

impl Stream {
    /// A stream on which `protocol` was agreed with `remote_peer` (hosts build them).
    pub fn new(
        io: Negotiated<BoxedStream>,
        protocol: String,
        remote_peer: PeerId,
        connection: ConnectionId,
        remote_addr: Multiaddr,
    ) -> Self {
        Stream {
            io,
            read_hint: MIN_READ_HINT,
            protocol,
            remote_peer,
            connection,
            remote_addr,
            guard: None,
        }
    }

    /// Keeps `guard` alive as long as the stream (a host's count of open streams, say).
    pub fn with_guard(mut self, guard: impl Send + Sync + 'static) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// The same stream with the `futures` I/O traits. (A guard given with
    /// [`Stream::with_guard`] is released.)
    pub fn into_inner(self) -> Negotiated<BoxedStream> {
        self.io
    }

    /// The same stream with the `futures` I/O traits, keeping its guard.
    pub fn into_futures(self) -> FuturesStream {
        FuturesStream(self)
    }

    /// The protocol agreed on this stream.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The peer at the other end.
    pub fn remote_peer(&self) -> PeerId {
        self.remote_peer
    }

    /// The connection this stream runs on.
    pub fn connection_id(&self) -> ConnectionId {
        self.connection
    }

    /// The remote's address of the connection this stream runs on.
    pub fn remote_addr(&self) -> &Multiaddr {
        &self.remote_addr
    }
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let initialised = buf.initialized().len() - buf.filled().len();
        let room = read_room(self.read_hint, initialised, buf.remaining());
        let unfilled = buf.initialize_unfilled_to(room);
        match futures::AsyncRead::poll_read(Pin::new(&mut self.io), cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                self.read_hint = next_read_hint(n);
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The uninitialised room a read zeroes at least (when the caller offers that much): small
/// enough to be cheap, large enough for a message.
const MIN_READ_HINT: usize = 8 * 1024;
/// The uninitialised room one read zeroes at most: past it, reads are large enough that the
/// per-call cost does not matter (a read may always return less than it is offered).
const MAX_READ_HINT: usize = 256 * 1024;

/// The bytes a read offers the stream below: all the room that is initialised already (free),
/// else as much as the hint allows, never more than the caller has.
fn read_room(hint: usize, initialised: usize, remaining: usize) -> usize {
    remaining.min(initialised.max(hint))
}

/// The hint after a read of `n` bytes: twice that, within the bounds.
fn next_read_hint(n: usize) -> usize {
    n.saturating_mul(2).clamp(MIN_READ_HINT, MAX_READ_HINT)
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        futures::AsyncWrite::poll_write(Pin::new(&mut self.io), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures::AsyncWrite::poll_flush(Pin::new(&mut self.io), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures::AsyncWrite::poll_close(Pin::new(&mut self.io), cx)
    }
}

/// A [`Stream`] with the `futures` I/O traits (from [`Stream::into_futures`]).
#[derive(Debug)]
pub struct FuturesStream(Stream);

impl FuturesStream {
    /// The stream itself (tokio's traits again).
    pub fn into_stream(self) -> Stream {
        self.0
    }

    /// The stream's metadata.
    pub fn get_ref(&self) -> &Stream {
        &self.0
    }
}

impl futures::AsyncRead for FuturesStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0.io).poll_read(cx, buf)
    }
}

impl futures::AsyncWrite for FuturesStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialised_room_is_offered_whole_and_uninitialised_room_as_the_hint_allows() {
        // A caller's initialised buffer (ReadBuf::new) is offered whole, however large.
        assert_eq!(read_room(MIN_READ_HINT, 1 << 20, 1 << 20), 1 << 20);
        // Uninitialised room: no more than the hint is zeroed, nor more than the caller has.
        assert_eq!(read_room(MIN_READ_HINT, 0, 1 << 20), MIN_READ_HINT);
        assert_eq!(read_room(MIN_READ_HINT, 0, 100), 100);
        assert_eq!(read_room(64 * 1024, 1000, 1 << 20), 64 * 1024);
    }

    #[test]
    fn the_hint_follows_the_reads_within_its_bounds() {
        assert_eq!(next_read_hint(0), MIN_READ_HINT);
        assert_eq!(next_read_hint(100), MIN_READ_HINT);
        assert_eq!(next_read_hint(64 * 1024), 128 * 1024);
        assert_eq!(next_read_hint(1 << 20), MAX_READ_HINT);
        assert_eq!(next_read_hint(usize::MAX), MAX_READ_HINT);
        // Bulk reads that fill what they are offered reach the maximum in a few steps.
        let mut hint = MIN_READ_HINT;
        for _ in 0..6 {
            hint = next_read_hint(read_room(hint, 0, 1 << 20));
        }
        assert_eq!(hint, MAX_READ_HINT);
    }
}
