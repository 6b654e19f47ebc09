//! One yamux stream as the user sees it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
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

/// The task reading a stream and the task writing it, each woken by what wakes either.
///
/// The yamux crate's stream keeps one waker for its frame queue to the connection, and both
/// directions wait on that queue: a write for room for its data, a read for room for the
/// window update it owes the remote. When the two halves of a stream live in two tasks (a
/// split stream, an echo client), whichever polled last owns that waker, and the other is never
/// woken: a writer parked on a full queue stalled for good once its reader had polled. So the
/// yamux stream only ever sees this waker, and it wakes both tasks (a spurious wake-up at
/// worst, when one task holds both halves).
#[derive(Debug, Default)]
pub(crate) struct HalfWakers {
    read: AtomicWaker,
    write: AtomicWaker,
}

impl Wake for HalfWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.read.wake();
        self.write.wake();
    }
}

/// The halves' wakers of one stream and the waker made of them, built once per stream.
#[derive(Debug)]
pub(crate) struct Wakers {
    halves: Arc<HalfWakers>,
    both: Waker,
}

impl Wakers {
    pub(crate) fn new() -> Self {
        let halves = Arc::new(HalfWakers::default());
        Wakers {
            both: Waker::from(halves.clone()),
            halves,
        }
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
    pub(crate) wakers: Wakers,
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
        let this = &mut *self;
        this.wakers.halves.read.register(cx.waker());
        let mut both = Context::from_waker(&this.wakers.both);
        match Pin::new(&mut this.inner).poll_read(&mut both, buf) {
            Poll::Pending if !this._guard.shared.park(2 * this._guard.id, cx) => {
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
        let this = &mut *self;
        this.wakers.halves.write.register(cx.waker());
        let mut both = Context::from_waker(&this.wakers.both);
        let n = match Pin::new(&mut this.inner).poll_write(&mut both, buf) {
            Poll::Pending if !this._guard.shared.park(2 * this._guard.id + 1, cx) => {
                return Poll::Ready(Err(connection_closed()))
            }
            other => ready!(other)?,
        };
        this.announced = true;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.wakers.halves.write.register(cx.waker());
        let mut both = Context::from_waker(&this.wakers.both);
        Pin::new(&mut this.inner).poll_flush(&mut both)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.wakers.halves.write.register(cx.waker());
        let mut both = Context::from_waker(&this.wakers.both);
        if !this.announced {
            // An empty data frame carries the SYN, then the close follows.
            ready!(Pin::new(&mut this.inner).poll_write(&mut both, &[]))?;
            this.announced = true;
        }
        Pin::new(&mut this.inner).poll_close(&mut both)
    }
}
