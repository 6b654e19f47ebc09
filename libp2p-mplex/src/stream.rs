//! One mplex stream as the user sees it: `AsyncRead + AsyncWrite` over the core, under the
//! driver's lock. Streams never touch the socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

use crate::driver::Shared;
use crate::frame::StreamKey;

/// One mplex stream. Closing it (`poll_close`) closes only our write side. Dropping it
/// without closing it resets it; dropping it after closing it just stops reading (whatever the
/// remote still sends is discarded), so a reply sent and closed is never cut short.
pub struct MplexStream {
    shared: Arc<Shared>,
    key: StreamKey,
}

impl std::fmt::Debug for MplexStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MplexStream")
            .field("id", &self.key.id)
            .field("ours", &self.key.ours)
            .finish()
    }
}

impl MplexStream {
    pub(crate) fn new(shared: Arc<Shared>, key: StreamKey) -> Self {
        MplexStream { shared, key }
    }

    /// Whether our bytes so far have reached the socket.
    fn poll_written(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        let result = inner.conn.poll_written(self.key);
        if result.is_pending() {
            inner.wait_flush(cx.waker());
        }
        inner.wake();
        result
    }
}

impl AsyncRead for MplexStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.shared.lock();
        let result = inner.conn.read(self.key, buf);
        if result.is_pending() {
            inner.wait_read(self.key, cx.waker());
        }
        inner.wake();
        result
    }
}

impl AsyncWrite for MplexStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.shared.lock();
        let result = inner.conn.write(self.key, buf);
        if result.is_pending() {
            inner.wait_write(cx.waker());
        }
        inner.wake();
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_written(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut inner = self.shared.lock();
            let closed = inner.conn.close_write(self.key);
            inner.wake();
            if let Err(e) = closed {
                return Poll::Ready(Err(e));
            }
        }
        self.poll_written(cx)
    }
}

impl Drop for MplexStream {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.conn.drop_stream(self.key);
        inner.forget(self.key);
        inner.wake();
    }
}
