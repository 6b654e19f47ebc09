//! The socket as the yamux connection sees it: flush coalescing, the write deadline, and the
//! watch on the frames that pass (our own error GoAway ends the connection; a remote's window
//! update that would overflow a window is refused before yamux sees it).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p_core::Socket;

use crate::error::YamuxError;
use crate::frame::{FrameTracker, Header, TYPE_GO_AWAY, TYPE_WINDOW_UPDATE};

/// The socket as the yamux connection sees it: while the driver allows it, flushes are put off
/// until the connection has written every frame it has ready.
///
/// The yamux crate flushes the socket after every frame it writes. Over a secure channel each
/// flush seals a message and sends it, so a bulk transfer went out as one 16 KiB message (and
/// one `sendto`) per frame. While [`FlushControl::defer`] is set (the driver sets it around
/// its main poll of the connection), a flush after a write returns `Pending` without a wake-up
/// and raises [`FlushControl::deferred`]; the connection goes on writing the frames its streams
/// have queued (the secure channel packs them into full messages). When that poll ends, the
/// driver sees the flag and polls the connection once more without deferral, so the flush
/// happens for real in the same task poll: nothing stays unflushed, and no extra wake-up
/// (which could hand the driver to another worker thread) is needed.
///
/// It also ends the connection when the remote broke the protocol. The yamux crate answers a
/// violation (data past a stream's window, a window overflow, a bad stream id) by writing a
/// GoAway with an error code, but keeps the session alive, reading and discarding whatever the
/// remote sends next (and logging each bad frame). [`Coalesce`] follows the frames written
/// ([`FrameTracker`]); once a GoAway with a non-zero code has gone into the socket, the next
/// read flushes the socket (once, without waiting: a remote that does not read would not read
/// the GoAway either) and fails, which ends the yamux connection and so the driver.
///
/// On the way in it checks every frame header the remote sends before the yamux crate has all
/// of it: a SYN window update whose credit would overflow the new stream's window (yamux
/// would add it to 256 KiB unchecked) fails the read with [`YamuxError::CreditOverflow`],
/// and every read after it fails the same way, which ends the connection.
#[derive(Debug)]
pub(crate) struct Coalesce<C> {
    socket: C,
    /// Bytes were written since the last flush.
    written: bool,
    control: Arc<FlushControl>,
    /// Where the written bytes stand in yamux's frame sequence.
    written_frames: FrameTracker,
    /// Where the bytes read stand in the remote's frame sequence.
    read_frames: FrameTracker,
    /// Deadline on writes that make no progress ([`Config::write_timeout`]).
    stall: WriteStall,
}

/// Ends a write that the socket has refused for longer than a timeout: the clock starts when
/// the socket first answers `Pending` and stops at the next byte it takes.
struct WriteStall {
    timeout: std::time::Duration,
    /// When the socket started refusing; `None` while writes go through.
    since: Option<tokio::time::Instant>,
    /// Wakes the task at the deadline; allocated at the first stall.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl fmt::Debug for WriteStall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteStall")
            .field("timeout", &self.timeout)
            .field("since", &self.since)
            .finish()
    }
}

impl WriteStall {
    fn new(timeout: std::time::Duration) -> Self {
        WriteStall {
            timeout,
            since: None,
            timer: None,
        }
    }

    /// The socket took bytes (or flushed): the clock stops.
    fn progress(&mut self) {
        self.since = None;
    }

    /// The socket answered `Pending`: starts the clock, or fails once it has run out (and
    /// otherwise makes sure the task is woken when it does).
    fn stalled(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let now = tokio::time::Instant::now();
        let since = *self.since.get_or_insert(now);
        let Some(deadline) = since.checked_add(self.timeout) else {
            return Ok(());
        };
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the remote took no bytes for {:?} (write timeout): it does not read",
                    self.timeout
                ),
            ));
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        // Registers the waker; a timer already due means the next poll fails.
        if timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Ok(())
    }
}

/// The credit an inbound SYN window update may grant at most: yamux adds it to the initial
/// 256 KiB window in a `u32`.
const MAX_SYN_CREDIT: u32 = u32::MAX - yamux::DEFAULT_CREDIT;

/// Checks one header the remote sent, before the yamux crate sees all of it.
fn check_inbound(header: &Header) -> Result<(), YamuxError> {
    if header.ty == TYPE_WINDOW_UPDATE && header.is_syn() && header.length > MAX_SYN_CREDIT {
        return Err(YamuxError::CreditOverflow {
            stream: header.stream_id,
            credit: header.length,
        });
    }
    Ok(())
}

/// Takes bytes that went into the socket; returns the error code of a GoAway with a non-zero
/// code that they completed, if any.
fn error_go_away(written: &mut FrameTracker, bytes: &[u8]) -> Option<u32> {
    let mut found = None;
    written.feed(bytes, |header| {
        if header.ty == TYPE_GO_AWAY && header.length != 0 {
            found = found.or(Some(header.length));
        }
    });
    found
}

/// The words for a GoAway error code (yamux spec: 1 protocol error, 2 internal error).
pub(crate) fn go_away_reason(code: u32) -> &'static str {
    match code {
        1 => "protocol error",
        2 => "internal error",
        _ => "unknown error code",
    }
}

/// The driver's side of [`Coalesce`]. Only the driver's task touches it (the connection, and
/// so the socket, is polled only there); atomics because the connection owns the socket.
#[derive(Debug, Default)]
pub(crate) struct FlushControl {
    /// Flushes after writes may be put off.
    pub(crate) defer: AtomicBool,
    /// A flush was put off: the driver must poll the connection again without deferral.
    pub(crate) deferred: AtomicBool,
    /// The error code of the GoAway the yamux connection wrote, when it was not 0 (normal
    /// termination): the remote broke the protocol, and the connection must end.
    pub(crate) go_away: AtomicU32,
    /// Why the socket refused the remote's bytes, when it did: every later read fails with
    /// it, and the driver ends with it.
    refused: Mutex<Option<YamuxError>>,
}

impl FlushControl {
    /// Why the remote's bytes were refused, if they were.
    pub(crate) fn refused(&self) -> Option<YamuxError> {
        self.refused.lock().expect("lock").clone()
    }

    fn refuse(&self, error: YamuxError) {
        self.refused.lock().expect("lock").get_or_insert(error);
    }
}

impl<C> Coalesce<C> {
    pub(crate) fn new(
        socket: C,
        control: Arc<FlushControl>,
        write_timeout: std::time::Duration,
    ) -> Self {
        Coalesce {
            socket,
            written: false,
            control,
            written_frames: FrameTracker::default(),
            read_frames: FrameTracker::default(),
            stall: WriteStall::new(write_timeout),
        }
    }
}

impl<C: Socket> AsyncRead for Coalesce<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let code = self.control.go_away.load(Ordering::Relaxed);
        if code != 0 {
            // Best effort: the GoAway is a courtesy, and waiting for it could take forever.
            let _ = Pin::new(&mut self.socket).poll_flush(cx);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "remote broke the yamux protocol, connection ended after GoAway({})",
                    go_away_reason(code)
                ),
            )));
        }
        if let Some(refused) = self.control.refused() {
            return Poll::Ready(Err(refused.to_io()));
        }
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.socket).poll_read(cx, buf))?;
        // yamux decodes a header only once all 12 bytes are in: refusing the read that
        // completes a bad one keeps it from yamux, even when its first bytes went up before.
        let mut refused = None;
        this.read_frames.feed(&buf[..n], |header| {
            if refused.is_none() {
                refused = check_inbound(header).err();
            }
        });
        if let Some(error) = refused {
            tracing::debug!("yamux: {error}; ending the connection");
            let io = error.to_io();
            this.control.refuse(error);
            return Poll::Ready(Err(io));
        }
        Poll::Ready(Ok(n))
    }
}

impl<C: Socket> AsyncWrite for Coalesce<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = match Pin::new(&mut self.socket).poll_write(cx, buf) {
            Poll::Pending => {
                self.stall.stalled(cx)?;
                return Poll::Pending;
            }
            Poll::Ready(result) => result?,
        };
        self.stall.progress();
        self.written |= n > 0;
        if let Some(code) = error_go_away(&mut self.written_frames, &buf[..n]) {
            let _ = self.control.go_away.compare_exchange(
                0,
                code,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let written = std::mem::take(&mut self.written);
        if written && self.control.defer.load(Ordering::Relaxed) {
            self.control.deferred.store(true, Ordering::Relaxed);
            return Poll::Pending;
        }
        match Pin::new(&mut self.socket).poll_flush(cx) {
            Poll::Pending => {
                self.stall.stalled(cx)?;
                Poll::Pending
            }
            Poll::Ready(result) => {
                self.stall.progress();
                Poll::Ready(result)
            }
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.written = false;
        match Pin::new(&mut self.socket).poll_close(cx) {
            Poll::Pending => {
                self.stall.stalled(cx)?;
                Poll::Pending
            }
            Poll::Ready(result) => {
                self.stall.progress();
                Poll::Ready(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{HEADER_LEN, TYPE_DATA};

    #[test]
    fn flushes_wait_for_the_frames_that_follow() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let control = Arc::new(FlushControl::default());
        let mut c = Coalesce::new(
            futures::io::Cursor::new(Vec::new()),
            control.clone(),
            std::time::Duration::MAX,
        );
        let mut c = Pin::new(&mut c);
        let write = |c: &mut Pin<&mut Coalesce<_>>, cx: &mut Context<'_>, data: &[u8]| {
            assert!(
                matches!(c.as_mut().poll_write(cx, data), Poll::Ready(Ok(n)) if n == data.len())
            );
        };
        // Deferral off: flushes go through.
        write(&mut c, &mut cx, b"one");
        assert!(matches!(
            c.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        // Deferral on: a flush after a write is put off and says so; one with nothing
        // written since goes through.
        control.defer.store(true, Ordering::Relaxed);
        assert!(matches!(
            c.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        write(&mut c, &mut cx, b"two");
        assert!(c.as_mut().poll_flush(&mut cx).is_pending());
        assert!(control.deferred.load(Ordering::Relaxed));
        write(&mut c, &mut cx, b"three");
        assert!(c.as_mut().poll_flush(&mut cx).is_pending());
        // The driver's second pass: deferral off, the flush goes through.
        control.defer.store(false, Ordering::Relaxed);
        assert!(matches!(
            c.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(c.socket.get_ref(), b"onetwothree");
    }

    #[test]
    fn the_tracker_finds_error_go_aways_across_partial_writes() {
        let header = crate::frame::encode;
        // A data frame whose body holds what looks like a GoAway header, a window update, a
        // normal GoAway, then a GoAway(protocol error).
        let mut bytes = header(TYPE_DATA, 1, 1, 12);
        bytes.extend(header(TYPE_GO_AWAY, 0, 0, 1));
        bytes.extend(header(1, 0, 1, 1000));
        bytes.extend(header(TYPE_GO_AWAY, 0, 0, 0));
        let error_at = bytes.len();
        bytes.extend(header(TYPE_GO_AWAY, 0, 0, 1));
        for step in [1, 5, 7, 12, 13, bytes.len()] {
            let mut tracker = FrameTracker::default();
            let mut found = Vec::new();
            for (i, chunk) in bytes.chunks(step).enumerate() {
                if let Some(code) = error_go_away(&mut tracker, chunk) {
                    found.push((code, (i + 1) * step));
                }
            }
            assert_eq!(found.len(), 1, "step {step}: {found:?}");
            assert_eq!(found[0].0, 1);
            assert!(
                found[0].1 >= error_at + HEADER_LEN,
                "step {step}: {found:?}"
            );
        }
    }

    /// The input the fuzzer found (fuzz/corpus/yamux/yamux-syn-credit-overflow): a SYN window
    /// update granting 0xffffffff bytes, behind the fuzz script's first byte (its read chunk
    /// size). The read that completes its header fails, and so does every read after it.
    #[test]
    fn a_syn_whose_credit_overflows_the_window_is_refused() {
        let input = include_bytes!("../../fuzz/corpus/yamux/yamux-syn-credit-overflow");
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let control = Arc::new(FlushControl::default());
        let mut c = Coalesce::new(
            futures::io::Cursor::new(input[1..].to_vec()),
            control.clone(),
            std::time::Duration::MAX,
        );
        let mut c = Pin::new(&mut c);
        let mut buf = [0u8; 7];
        let mut handed_up = Vec::new();
        let error = loop {
            match c.as_mut().poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(0)) => panic!("the whole input went up to yamux"),
                Poll::Ready(Ok(n)) => handed_up.extend_from_slice(&buf[..n]),
                Poll::Ready(Err(e)) => break e,
                Poll::Pending => panic!("a cursor never blocks"),
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let ours = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<YamuxError>())
            .expect("typed error");
        assert!(matches!(
            ours,
            YamuxError::CreditOverflow {
                credit: u32::MAX,
                ..
            }
        ));
        assert_eq!(
            libp2p_core::Classify::fault(ours),
            libp2p_core::Fault::Remote
        );
        // yamux never had the whole bad header (the first in the input).
        assert!(handed_up.len() < HEADER_LEN, "{}", handed_up.len());
        assert_eq!(control.refused().as_ref(), Some(ours));
        assert!(matches!(
            c.as_mut().poll_read(&mut cx, &mut buf),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::InvalidData
        ));
    }

    #[test]
    fn only_syn_window_updates_past_the_limit_are_refused() {
        let h = |ty, flags, len| Header {
            ty,
            flags,
            stream_id: 1,
            length: len,
        };
        assert!(check_inbound(&h(TYPE_WINDOW_UPDATE, 1, MAX_SYN_CREDIT)).is_ok());
        assert!(check_inbound(&h(TYPE_WINDOW_UPDATE, 1, MAX_SYN_CREDIT + 1)).is_err());
        assert!(check_inbound(&h(TYPE_WINDOW_UPDATE, 3, u32::MAX)).is_err());
        // Without SYN yamux checks the addition itself; data frames carry a length.
        assert!(check_inbound(&h(TYPE_WINDOW_UPDATE, 0, u32::MAX)).is_ok());
        assert!(check_inbound(&h(TYPE_DATA, 1, u32::MAX)).is_ok());
    }
}
