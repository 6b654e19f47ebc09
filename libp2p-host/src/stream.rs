//! The stream a host hands to handlers and returns from `new_stream`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use libp2p_core::{Multiaddr, Negotiated, PeerId};

use crate::erased::BoxedStream;

/// A stream on which a protocol has been agreed with a remote peer.
///
/// It implements both `futures::io::{AsyncRead, AsyncWrite}` and
/// `tokio::io::{AsyncRead, AsyncWrite}`, so either ecosystem's helpers work on it. Closing
/// (`close`/`shutdown`) closes our write side only: the remote's bytes can still be read
/// until it closes its own. Dropping the stream without closing it resets it.
pub struct Stream {
    io: Negotiated<BoxedStream>,
    protocol: String,
    remote_peer: PeerId,
    remote_addr: Multiaddr,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("protocol", &self.protocol)
            .field("remote_peer", &self.remote_peer)
            .finish()
    }
}

impl Stream {
    pub(crate) fn new(
        io: Negotiated<BoxedStream>,
        protocol: String,
        remote_peer: PeerId,
        remote_addr: Multiaddr,
    ) -> Self {
        Stream {
            io,
            protocol,
            remote_peer,
            remote_addr,
        }
    }

    pub(crate) fn into_negotiated(self) -> Negotiated<BoxedStream> {
        self.io
    }

    /// The remote's address of the connection this stream runs on.
    pub fn remote_addr(&self) -> Multiaddr {
        self.remote_addr.clone()
    }

    /// The protocol agreed on this stream.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The peer at the other end.
    pub fn remote_peer(&self) -> PeerId {
        self.remote_peer
    }
}

impl futures::AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl futures::AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match futures::AsyncRead::poll_read(Pin::new(&mut self.io), cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
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
