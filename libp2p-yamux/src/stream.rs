//! One yamux stream as the user sees it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// Decrements the live stream count when a stream is dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard(pub(crate) Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for YamuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
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
