//! A QUIC connection as a [`StreamMuxer`]: QUIC's own bidirectional streams, with our close
//! and reset semantics.
//!
//! quinn drives the connection on the endpoint's task, so there is no driver of our own: the
//! handle is the connection, and every clone of it (and every open stream) keeps it alive.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p_core::{MuxerError, StreamMuxer};

/// The error code of our stream resets and stops (libp2p gives QUIC stream codes no meaning).
const RESET_CODE: u32 = 0;
/// The error code of a graceful connection close.
const CLOSE_CODE: u32 = 0;

/// A QUIC connection's streams. Cheap to clone. When the last clone and the last stream are
/// dropped, quinn closes the connection.
///
/// Closing the connection (by [`StreamMuxer::close`] or by dropping it) is QUIC's immediate
/// close: bytes of finished streams the remote has not acknowledged yet are abandoned, so a
/// side that wants its last reply delivered keeps the connection until the remote is done
/// with it (the remote closing its side of the stream, say).
#[derive(Debug, Clone)]
pub struct QuicMuxer {
    conn: quinn::Connection,
    open_timeout: std::time::Duration,
}

impl QuicMuxer {
    pub(crate) fn new(conn: quinn::Connection, open_timeout: std::time::Duration) -> Self {
        QuicMuxer { conn, open_timeout }
    }

    /// The quinn connection (for its statistics, round-trip time and addresses).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}

fn muxer_error(e: quinn::ConnectionError) -> MuxerError {
    use quinn::ConnectionError as E;
    match e {
        E::ApplicationClosed(_) | E::LocallyClosed | E::ConnectionClosed(_) | E::Reset => {
            MuxerError::Closed
        }
        E::TimedOut => MuxerError::Io(io::Error::new(io::ErrorKind::TimedOut, e)),
        other => MuxerError::Io(io::Error::new(io::ErrorKind::ConnectionAborted, other)),
    }
}

impl StreamMuxer for QuicMuxer {
    type Stream = QuicStream;

    fn open(&self) -> impl Future<Output = Result<Self::Stream, MuxerError>> + Send + 'static {
        let conn = self.conn.clone();
        let limit = self.open_timeout;
        async move {
            let (send, recv) = tokio::time::timeout(limit, conn.open_bi())
                .await
                .map_err(|_| {
                    MuxerError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the remote granted no stream in time",
                    ))
                })?
                .map_err(muxer_error)?;
            Ok(QuicStream::new(send, recv))
        }
    }

    fn accept(&self) -> impl Future<Output = Result<Self::Stream, MuxerError>> + Send + 'static {
        let conn = self.conn.clone();
        async move {
            let (send, recv) = conn.accept_bi().await.map_err(muxer_error)?;
            Ok(QuicStream::new(send, recv))
        }
    }

    fn close(&self) -> impl Future<Output = Result<(), MuxerError>> + Send + 'static {
        self.conn.close(CLOSE_CODE.into(), b"");
        futures::future::ready(Ok(()))
    }

    fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }
}

/// One QUIC stream, both directions.
///
/// Closing it (`poll_close`) finishes our direction only: the remote's bytes can still be
/// read until it finishes its own. Dropping it without closing resets our direction
/// (`RESET_STREAM`) instead of quinn's graceful finish, so the remote sees an error rather
/// than a clean EOF; an unread receive direction is stopped (`STOP_SENDING`) either way.
#[derive(Debug)]
pub struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Our direction was finished (or failed): nothing to reset on drop.
    write_closed: bool,
}

impl QuicStream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        QuicStream {
            send,
            recv,
            write_closed: false,
        }
    }

    /// Resets both directions now: the remote's reads fail, and it is asked to stop sending.
    pub fn reset(&mut self) {
        self.write_closed = true;
        let _ = self.send.reset(RESET_CODE.into());
        let _ = self.recv.stop(RESET_CODE.into());
    }
}

impl Drop for QuicStream {
    fn drop(&mut self) {
        if !self.write_closed {
            let _ = self.send.reset(RESET_CODE.into());
        }
        // An unread receive direction is stopped by quinn's own drop.
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf);
        if let Poll::Ready(Err(_)) = result {
            // A stopped or broken stream: there is nothing left to reset.
            self.write_closed = true;
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_closed {
            return Poll::Ready(Ok(()));
        }
        let result = AsyncWrite::poll_close(Pin::new(&mut self.send), cx);
        if result.is_ready() {
            self.write_closed = true;
        }
        result
    }
}
