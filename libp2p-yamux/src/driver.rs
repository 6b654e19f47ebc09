//! The driver: the task that owns the yamux connection and polls it.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use libp2p_core::{MuxerError, Socket};
use tokio::sync::{mpsc, watch};

use crate::error::YamuxError;
use crate::muxer::{OpenReply, Shared};
use crate::socket::{go_away_reason, Coalesce, FlushControl};
use crate::stream::{StreamGuard, Wakers, YamuxStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    Closing,
    Done,
}

/// Drives a yamux connection: reads the socket, routes frames to streams, writes their
/// frames, opens the streams the handles ask for and queues inbound ones for `accept`.
///
/// Spawn it; it ends when the connection closes: `Ok(())` when it closed cleanly (by us, by
/// the remote, or because the socket ended), an error when the socket failed or the remote
/// broke the protocol.
#[must_use = "the connection makes no progress unless the driver is polled"]
pub struct YamuxDriver<C> {
    pub(crate) connection: yamux::Connection<Coalesce<C>>,
    pub(crate) open_rx: mpsc::UnboundedReceiver<OpenReply>,
    pub(crate) handles_gone: bool,
    pub(crate) pending_opens: VecDeque<OpenReply>,
    /// Inbound streams for `accept`, boxed: the queue allocates its first block of 32 slots
    /// when the connection starts, and 32 pointers are a tenth of 32 streams (this was the
    /// largest allocation of an idle connection).
    pub(crate) inbound_tx: Option<mpsc::Sender<Box<YamuxStream>>>,
    pub(crate) closed_tx: watch::Sender<bool>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) phase: Phase,
    pub(crate) flush: Arc<FlushControl>,
}

impl<C> fmt::Debug for YamuxDriver<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YamuxDriver")
            .field("phase", &self.phase)
            .field("pending_opens", &self.pending_opens.len())
            .finish()
    }
}

fn map_error(e: yamux::ConnectionError, limit: usize) -> MuxerError {
    match e {
        yamux::ConnectionError::Closed => MuxerError::Closed,
        yamux::ConnectionError::Io(e) => MuxerError::Io(e),
        // The socket failed under the frame reader: an i/o error like any other (a reset
        // socket is the remote's doing, not a protocol violation).
        yamux::ConnectionError::Decode(yamux::FrameDecodeError::Io(e)) => MuxerError::Io(e),
        yamux::ConnectionError::Decode(e) => MuxerError::Protocol(e.to_string()),
        yamux::ConnectionError::InvalidWindowUpdate => {
            MuxerError::Protocol("invalid window update".into())
        }
        yamux::ConnectionError::TooManyStreams => MuxerError::TooManyStreams { limit },
        other => MuxerError::Other(Box::new(other)),
    }
}

/// A copy of a muxer error for each of several waiters.
pub(crate) fn error_copy(e: &MuxerError) -> MuxerError {
    match e {
        MuxerError::Closed => MuxerError::Closed,
        MuxerError::Io(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<YamuxError>())
        {
            Some(ours) => MuxerError::Io(ours.to_io()),
            None => MuxerError::Io(io::Error::new(e.kind(), e.to_string())),
        },
        MuxerError::TooManyStreams { limit } => MuxerError::TooManyStreams { limit: *limit },
        MuxerError::Protocol(s) => MuxerError::Protocol(s.clone()),
        other => MuxerError::Other(other.to_string().into()),
    }
}

impl<C: Socket> YamuxDriver<C> {
    fn new_stream(&self, inner: yamux::Stream, announced: bool) -> YamuxStream {
        self.shared.live_streams.fetch_add(1, Ordering::SeqCst);
        let id = {
            let mut waiting = self.shared.waiting.lock().expect("lock");
            waiting.next_id += 1;
            waiting.next_id
        };
        YamuxStream {
            inner,
            announced,
            _guard: StreamGuard {
                shared: self.shared.clone(),
                id,
            },
            wakers: Wakers::new(),
        }
    }

    /// The error a failed connection ends with: a protocol violation when the yamux connection
    /// had answered the remote with an error GoAway (the socket error that followed is ours).
    fn connection_error(&self, e: yamux::ConnectionError) -> MuxerError {
        if let Some(refused) = self.flush.refused() {
            // The socket refused the remote's bytes (yamux reports it as a decode error).
            return MuxerError::Io(refused.to_io());
        }
        match self.flush.go_away.load(Ordering::Relaxed) {
            0 => map_error(e, self.shared.max_streams),
            code => MuxerError::Protocol(format!(
                "yamux answered it with GoAway({})",
                go_away_reason(code)
            )),
        }
    }

    fn at_limit(&self) -> bool {
        self.shared.live_streams.load(Ordering::SeqCst) >= self.shared.max_streams
    }

    /// Takes the open requests the handles sent; notes when every handle is gone.
    fn collect_open_requests(&mut self, cx: &mut Context<'_>) {
        while !self.handles_gone {
            match self.open_rx.poll_recv(cx) {
                Poll::Ready(Some(reply)) => self.pending_opens.push_back(reply),
                Poll::Ready(None) => self.handles_gone = true,
                Poll::Pending => break,
            }
        }
    }

    fn on_inbound(&mut self, stream: yamux::Stream) {
        if self.at_limit() {
            tracing::debug!(
                "yamux: inbound stream {} beyond the limit of {} streams, resetting it",
                stream.id(),
                self.shared.max_streams
            );
            return; // dropping it resets it
        }
        let stream = self.new_stream(stream, true);
        let Some(tx) = &self.inbound_tx else {
            return;
        };
        match tx.try_send(Box::new(stream)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(s)) => {
                tracing::debug!(
                    "yamux: accept queue full, resetting inbound stream {}",
                    s.id()
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("yamux: nobody accepts inbound streams any more");
            }
        }
    }

    /// Opens the streams asked for, while yamux lets us. `Err` when the connection failed.
    fn serve_opens(&mut self, cx: &mut Context<'_>) -> Result<(), MuxerError> {
        while let Some(front) = self.pending_opens.front() {
            if front.is_closed() {
                // The caller gave up.
                self.pending_opens.pop_front();
                continue;
            }
            if self.at_limit() {
                if let Some(reply) = self.pending_opens.pop_front() {
                    let _ = reply.send(Err(MuxerError::TooManyStreams {
                        limit: self.shared.max_streams,
                    }));
                }
                continue;
            }
            match self.connection.poll_new_outbound(cx) {
                Poll::Ready(Ok(stream)) => {
                    let stream = self.new_stream(stream, false);
                    if let Some(reply) = self.pending_opens.pop_front() {
                        // If the caller is gone, the stream is dropped (reset) right here.
                        let _ = reply.send(Ok(stream));
                    }
                }
                Poll::Ready(Err(e)) => return Err(self.connection_error(e)),
                Poll::Pending => break,
            }
        }
        Ok(())
    }

    /// Ends the driver: fails everything waiting, marks the connection closed.
    fn finish(&mut self, result: Result<(), MuxerError>) -> Poll<Result<(), MuxerError>> {
        self.phase = Phase::Done;
        self.shared.close_streams();
        let shown = match &result {
            Ok(()) | Err(MuxerError::Closed) => MuxerError::Closed,
            Err(e) => error_copy(e),
        };
        if !matches!(shown, MuxerError::Closed) {
            *self.shared.failure.lock().expect("lock") = Some(error_copy(&shown));
        }
        for reply in self.pending_opens.drain(..) {
            let _ = reply.send(Err(error_copy(&shown)));
        }
        self.open_rx.close();
        while let Ok(reply) = self.open_rx.try_recv() {
            let _ = reply.send(Err(error_copy(&shown)));
        }
        self.inbound_tx = None;
        self.closed_tx.send_replace(true);
        match result {
            Err(MuxerError::Closed) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }

    fn start_closing(&mut self) {
        self.phase = Phase::Closing;
        self.shared.close_streams();
        for reply in self.pending_opens.drain(..) {
            let _ = reply.send(Err(MuxerError::Closed));
        }
        self.inbound_tx = None;
    }

    fn poll_running(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MuxerError>> {
        self.collect_open_requests(cx);
        if self.handles_gone || self.shared.close_requested.load(Ordering::SeqCst) {
            self.start_closing();
            return self.poll_closing(cx);
        }
        // Set after a poll that put off a flush: the next poll flushes for real.
        let mut flush_now = false;
        loop {
            // yamux makes progress (reads frames, writes the streams' frames) only in here.
            self.flush.defer.store(!flush_now, Ordering::Relaxed);
            let polled = self.connection.poll_next_inbound(cx);
            self.flush.defer.store(false, Ordering::Relaxed);
            flush_now = self.flush.deferred.swap(false, Ordering::Relaxed);
            match polled {
                Poll::Ready(Some(Ok(stream))) => {
                    self.on_inbound(stream);
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    let error = self.connection_error(e);
                    tracing::debug!("yamux: connection failed: {error}");
                    return self.finish(Err(error));
                }
                Poll::Ready(None) => {
                    tracing::debug!("yamux: connection closed");
                    return self.finish(Ok(()));
                }
                Poll::Pending if flush_now => continue,
                Poll::Pending => {}
            }
            let before = self.pending_opens.len();
            if let Err(e) = self.serve_opens(cx) {
                tracing::debug!("yamux: opening a stream failed the connection: {e}");
                return self.finish(Err(e));
            }
            // Streams we opened may have frames to send (the SYN goes out with the first
            // frame, though, so this rarely matters); poll the connection again only if we
            // opened any, else everything has registered for a wake-up.
            if self.pending_opens.len() == before {
                return Poll::Pending;
            }
        }
    }

    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MuxerError>> {
        // Late open requests fail right away.
        while let Poll::Ready(Some(reply)) = self.open_rx.poll_recv(cx) {
            let _ = reply.send(Err(MuxerError::Closed));
        }
        match self.connection.poll_close(cx) {
            Poll::Ready(Ok(())) => self.finish(Ok(())),
            Poll::Ready(Err(e)) => {
                tracing::debug!("yamux: closing the connection failed: {e}");
                self.finish(Err(self.connection_error(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C: Socket> Future for YamuxDriver<C> {
    type Output = Result<(), MuxerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.shared.driver_waker.register(cx.waker());
        match this.phase {
            Phase::Running => this.poll_running(cx),
            Phase::Closing => this.poll_closing(cx),
            Phase::Done => Poll::Ready(Ok(())),
        }
    }
}

impl<C> Drop for YamuxDriver<C> {
    fn drop(&mut self) {
        // Dropping the connection (driver aborted) ends it: tell the handles and the streams.
        self.shared.close_streams();
        self.closed_tx.send_replace(true);
    }
}
