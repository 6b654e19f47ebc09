//! One yamux stream as the user sees it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};

use crate::muxer::Shared;

/// Counts a stream among the live ones, and unparks it, until it is dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    pub(crate) shared: Arc<Shared>,
    /// Its keys in [`Shared::waiting`] are `2 * id` and `2 * id + 1`.
    pub(crate) id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.shared.live_streams.fetch_sub(1, Ordering::SeqCst);
        let mut waiting = self.shared.waiting.lock().expect("lock");
        waiting.wakers.remove(&(2 * self.id));
        waiting.wakers.remove(&(2 * self.id + 1));
    }
}

/// The error of a read or write on a stream whose connection closed under it.
fn connection_closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the yamux connection is closed",
    )
}

/// One yamux stream.
///
/// Closing it (`poll_close`) closes our write side only; the read side stays open until the
/// remote closes its own. Dropping it without closing resets it for the remote.
#[derive(Debug)]
pub struct YamuxStream {
    pub(crate) inner: yamux::Stream,
    /// Whether the remote knows of this stream: inbound streams, and outbound ones once a
    /// frame went out. The yamux crate announces a new stream (SYN) on its first data frame
    /// but not on a close, so a stream closed before any write would never reach the remote.
    pub(crate) announced: bool,
    pub(crate) _guard: StreamGuard,
}

impl YamuxStream {
    /// The yamux stream id.
    pub fn id(&self) -> u32 {
        self.inner.id().val()
    }
}

impl AsyncRead for YamuxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending if !self._guard.shared.park(2 * self._guard.id, cx) => {
                Poll::Ready(Err(connection_closed()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for YamuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending if !self._guard.shared.park(2 * self._guard.id + 1, cx) => {
                return Poll::Ready(Err(connection_closed()))
            }
            other => ready!(other)?,
        };
        self.announced = true;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.announced {
            // An empty data frame carries the SYN, then the close follows.
            ready!(Pin::new(&mut self.inner).poll_write(cx, &[]))?;
            self.announced = true;
        }
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
