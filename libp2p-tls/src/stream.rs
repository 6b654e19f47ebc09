//! The secured socket: futures-rustls' stream, under a name of ours.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// A socket secured by `/tls/1.0.0`, dialer or listener side.
///
/// Closing it (`poll_close`) sends TLS `close_notify` and closes the socket's write side;
/// the read side stays open until the remote closes its own.
pub struct TlsStream<C>(pub(crate) futures_rustls::TlsStream<Vectored<C>>);

/// The socket as rustls sees it: a vectored write goes on through every buffer the socket
/// takes at once, instead of stopping after the first (the default for sockets without
/// vectored writes of their own, such as in-memory pipes).
///
/// rustls queues each record as a buffer of its own, and futures-rustls makes one write call
/// to send the alert that explains a failed handshake: with only the first buffer taken, a
/// pending `ChangeCipherSpec` would go out and the alert would be lost, leaving the remote
/// with a bare end of stream instead of the reason.
pub(crate) struct Vectored<C>(pub(crate) C);

impl<C: AsyncRead + Unpin> AsyncRead for Vectored<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Vectored<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut written = 0;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            match Pin::new(&mut self.0).poll_write(cx, buf) {
                Poll::Ready(Ok(n)) => {
                    written += n;
                    if n < buf.len() {
                        break;
                    }
                }
                // Report what went out; the error or the wait comes again on the next call.
                Poll::Ready(Err(_)) | Poll::Pending if written > 0 => break,
                other => return other,
            }
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

impl<C> std::fmt::Debug for TlsStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let role = match &self.0 {
            futures_rustls::TlsStream::Client(_) => "dialer",
            futures_rustls::TlsStream::Server(_) => "listener",
        };
        f.debug_struct("TlsStream").field("role", &role).finish()
    }
}

impl<C> TlsStream<C> {
    /// The socket underneath.
    pub fn get_ref(&self) -> &C {
        match &self.0 {
            futures_rustls::TlsStream::Client(s) => &s.get_ref().0 .0,
            futures_rustls::TlsStream::Server(s) => &s.get_ref().0 .0,
        }
    }

    /// The remote's certificate (DER), as checked in the handshake.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        let certs = match &self.0 {
            futures_rustls::TlsStream::Client(s) => s.get_ref().1.peer_certificates(),
            futures_rustls::TlsStream::Server(s) => s.get_ref().1.peer_certificates(),
        };
        certs.and_then(|c| c.first()).map(|c| c.as_ref())
    }

    /// The ALPN protocol agreed on (`b"libp2p"` with any libp2p peer that offers it).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.0 {
            futures_rustls::TlsStream::Client(s) => s.get_ref().1.alpn_protocol(),
            futures_rustls::TlsStream::Server(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
