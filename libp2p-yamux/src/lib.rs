//! `/yamux/1.0.0` for the modular libp2p: adapts the [`yamux`] crate to the core
//! [`MuxerUpgrade`] and [`StreamMuxer`] traits.
//!
//! The upgrade ([`Yamux`]) turns a socket into a cheap, cloneable handle ([`YamuxMuxer`]) and a
//! driver future ([`YamuxDriver`]). The driver owns the [`yamux::Connection`] and polls it; the
//! handles talk to the driver through channels:
//!
//! - `open` sends a request with a one-shot reply to the driver, which opens the stream when
//!   the yamux connection allows it (yamux holds back new streams while 256 of ours wait for
//!   the remote's acknowledgement);
//! - inbound streams go into a bounded queue that `accept` reads;
//! - `close` raises a flag and wakes the driver, which closes the connection gracefully.
//!
//! The driver ends when the connection ends: then pending and later `open` and `accept` calls
//! fail with [`MuxerError::Closed`] and [`StreamMuxer::is_closed`] is true. When every handle
//! is dropped, the driver closes the connection.
//!
//! Limits: at most [`Config::max_streams`] streams (both directions together) are alive at
//! once. An `open` beyond the limit fails with [`MuxerError::TooManyStreams`]; an inbound
//! stream beyond the limit, or one that finds the accept queue full, is reset.
//!
//! A remote that breaks the protocol (data past a stream's window, a window overflow, a bad
//! stream id) loses the connection: the yamux crate answers with GoAway(protocol error) but
//! would keep the session going; the adapter ends it once that GoAway went into the socket,
//! and the driver fails with [`MuxerError::Protocol`].
//!
//! Logging: the yamux crate logs through `log`, one line per bad frame at ERROR under the
//! target `yamux::connection` (and one per unexpected pong under `yamux::connection::rtt`,
//! which is no violation and does not end the connection). Ending the connection cuts the
//! first kind to one ERROR line per connection, which no level filter can hide: a program's
//! default filter should carry `yamux=off`, since this adapter reports the same failure
//! itself, at debug, once per connection.
//!
//! ```
//! use futures::{AsyncReadExt, AsyncWriteExt};
//! use libp2p_core::{MuxerUpgrade, Role, StreamMuxer};
//! use libp2p_yamux::Yamux;
//! use tokio_util::compat::TokioAsyncReadCompatExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let yamux = Yamux::default();
//! let (dialer, driver) = yamux.upgrade(a.compat(), Role::Dialer, "/yamux/1.0.0").await?;
//! tokio::spawn(driver);
//! let (listener, driver) = yamux.upgrade(b.compat(), Role::Listener, "/yamux/1.0.0").await?;
//! tokio::spawn(driver);
//!
//! let mut out = dialer.open().await?;
//! out.write_all(b"hello").await?;
//! out.close().await?; // closes our write side only
//! let mut inbound = listener.accept().await?;
//! let mut got = Vec::new();
//! inbound.read_to_end(&mut got).await?;
//! assert_eq!(got, b"hello");
//! dialer.close().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::task::AtomicWaker;
use futures::{AsyncRead, AsyncWrite};
use libp2p_core::{MuxerError, MuxerUpgrade, Role, Socket, StreamMuxer};
use tokio::sync::{mpsc, oneshot, watch};

/// The protocol name of yamux.
pub const PROTOCOL_NAME: &str = "/yamux/1.0.0";

/// The initial (and minimum) receive window of a yamux stream: 256 KiB.
const STREAM_WINDOW: usize = yamux::DEFAULT_CREDIT as usize;

/// The configuration of the yamux muxer.
///
/// The defaults:
///
/// | setting | default |
/// |---|---|
/// | [`max_streams`](Config::max_streams) | 1,024 |
/// | [`max_connection_receive_window`](Config::max_connection_receive_window) | `Some(1 GiB)` |
/// | [`read_after_close`](Config::read_after_close) | `true` |
/// | [`split_send_size`](Config::split_send_size) | 16 KiB |
/// | [`accept_queue`](Config::accept_queue) | 1,024 |
/// | [`write_timeout`](Config::write_timeout) | 60 s |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The maximum number of streams alive at once on a connection, inbound and outbound
    /// together. A stream counts from the moment it is opened or received until it is
    /// dropped (also while it waits in the accept queue). Opening a stream beyond the limit
    /// fails with [`MuxerError::TooManyStreams`]; inbound streams beyond it are reset.
    ///
    /// Default 1,024 (the yamux crate's own default is 512; libp2p applications commonly run
    /// several hundred concurrent streams on one connection). Values below 1 are treated as 1.
    pub max_streams: usize,
    /// The upper bound of the sum of all streams' receive windows on the connection, in
    /// bytes, or `None` for no bound. Each stream starts with a 256 KiB window, which yamux
    /// grows with the connection's bandwidth-delay product while this bound allows.
    ///
    /// It is raised, when needed, to 256 KiB times the number of streams the yamux
    /// connection may hold (at least [`max_streams`](Config::max_streams)), so that every
    /// stream can have the default window. Default `Some(1 GiB)`.
    pub max_connection_receive_window: Option<usize>,
    /// Whether streams may still read data that was buffered before the connection closed.
    /// Default `true`.
    pub read_after_close: bool,
    /// The largest payload of one data frame we send, in bytes: larger writes are split, so
    /// that one stream's bulk data does not hold up the others for long. Default 16 KiB;
    /// values below 1 are treated as 1.
    pub split_send_size: usize,
    /// How many inbound streams may wait for [`StreamMuxer::accept`]; an inbound stream that
    /// finds the queue full is reset. Queued streams count against
    /// [`max_streams`](Config::max_streams), so a queue longer than that limit has no effect.
    ///
    /// Default 1,024, the same as `max_streams`: a yamux peer holds back new streams only
    /// while 256 of them are both unacknowledged and still open for writing, so a peer that
    /// opens many short streams (write, close) can have far more than 256 waiting for us,
    /// and such streams should not be reset while we are within the stream limit. Values
    /// below 1 are treated as 1.
    pub accept_queue: usize,
    /// How long a write to the socket may make no progress at all (the socket refusing every
    /// byte because the remote does not read) before the connection ends with an error of
    /// kind `TimedOut`. Without it a remote that never reads holds the connection, and all
    /// that is queued for it, forever: a ping flood whose pongs it never reads, say. The
    /// clock runs only while we have bytes the socket will not take. `Duration::MAX` turns
    /// it off. Needs a tokio runtime with the time driver.
    ///
    /// Default 60 s: the kernel's send buffer takes megabytes, so no byte accepted for a
    /// minute means a remote that stopped reading (or vanished), never just a slow link.
    pub write_timeout: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_streams: 1024,
            max_connection_receive_window: Some(1 << 30),
            read_after_close: true,
            split_send_size: 16 * 1024,
            accept_queue: 1024,
            write_timeout: std::time::Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Sets [`max_streams`](Config::max_streams).
    pub fn with_max_streams(mut self, n: usize) -> Self {
        self.max_streams = n;
        self
    }

    /// Sets [`max_connection_receive_window`](Config::max_connection_receive_window).
    pub fn with_max_connection_receive_window(mut self, n: Option<usize>) -> Self {
        self.max_connection_receive_window = n;
        self
    }

    /// Sets [`read_after_close`](Config::read_after_close).
    pub fn with_read_after_close(mut self, b: bool) -> Self {
        self.read_after_close = b;
        self
    }

    /// Sets [`split_send_size`](Config::split_send_size).
    pub fn with_split_send_size(mut self, n: usize) -> Self {
        self.split_send_size = n;
        self
    }

    /// Sets [`accept_queue`](Config::accept_queue).
    pub fn with_accept_queue(mut self, n: usize) -> Self {
        self.accept_queue = n;
        self
    }

    /// Sets [`write_timeout`](Config::write_timeout).
    pub fn with_write_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    fn stream_limit(&self) -> usize {
        self.max_streams.max(1)
    }

    /// The yamux crate's configuration for this one.
    ///
    /// The yamux crate terminates the whole connection when a stream would exceed its own
    /// stream limit, so we enforce [`Config::max_streams`] ourselves and give yamux a higher
    /// limit: streams we already dropped stay in yamux's count until the driver processes the
    /// drop, and the remote may open streams beyond our limit (which we reset).
    fn to_yamux(&self) -> yamux::Config {
        let ours = self.stream_limit();
        let wanted = ours.saturating_mul(2).saturating_add(256);
        let (yamux_streams, window) = match self.max_connection_receive_window {
            None => (wanted.min(usize::MAX / STREAM_WINDOW), None),
            Some(window) => {
                let fit = (window / STREAM_WINDOW).min(wanted);
                let streams = fit.max(ours).min(usize::MAX / STREAM_WINDOW);
                (streams, Some(window.max(streams * STREAM_WINDOW)))
            }
        };
        let mut cfg = yamux::Config::default();
        // yamux asserts `window >= streams * 256 KiB` in both setters: lift the window bound
        // first, then set the streams, then the final window (which satisfies the assertion).
        cfg.set_max_connection_receive_window(None);
        cfg.set_max_num_streams(yamux_streams);
        cfg.set_max_connection_receive_window(window);
        cfg.set_read_after_close(self.read_after_close);
        cfg.set_split_send_size(self.split_send_size.max(1));
        cfg
    }
}

/// The yamux muxer upgrade (`/yamux/1.0.0`).
#[derive(Debug, Clone, Default)]
pub struct Yamux {
    config: Config,
}

impl Yamux {
    /// A yamux upgrade with the given configuration.
    pub fn new(config: Config) -> Self {
        Yamux { config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets up yamux on `socket` right away (the upgrade itself exchanges no bytes).
    pub fn muxer<C: Socket>(&self, socket: C, role: Role) -> (YamuxMuxer, YamuxDriver<C>) {
        let mode = match role {
            Role::Dialer => yamux::Mode::Client,
            // Role::Listener (`Role` is non-exhaustive).
            _ => yamux::Mode::Server,
        };
        let flush = Arc::new(FlushControl::default());
        let connection = yamux::Connection::new(
            Coalesce::new(socket, flush.clone(), self.config.write_timeout),
            self.config.to_yamux(),
            mode,
        );
        let max_streams = self.config.stream_limit();
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            close_requested: AtomicBool::new(false),
            driver_waker: AtomicWaker::new(),
            live_streams: Arc::new(AtomicUsize::new(0)),
            max_streams,
            failure: std::sync::Mutex::new(None),
        });
        let (open_tx, open_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound_rx) = mpsc::channel(self.config.accept_queue.max(1));
        let (closed_tx, closed_rx) = watch::channel(false);
        let muxer = YamuxMuxer {
            inner: Arc::new(Handle {
                open_tx,
                inbound_rx: Arc::new(tokio::sync::Mutex::new(inbound_rx)),
                closed_rx,
                shared: shared.clone(),
            }),
        };
        let driver = YamuxDriver {
            connection,
            open_rx,
            handles_gone: false,
            pending_opens: VecDeque::new(),
            inbound_tx: Some(inbound_tx),
            closed_tx,
            shared,
            phase: Phase::Running,
            flush,
        };
        (muxer, driver)
    }
}

impl<C: Socket> MuxerUpgrade<C> for Yamux {
    type Muxer = YamuxMuxer;
    type Driver = YamuxDriver<C>;

    fn protocol_names(&self) -> Vec<&'static str> {
        vec![PROTOCOL_NAME]
    }

    fn upgrade(
        &self,
        socket: C,
        role: Role,
        _protocol: &str,
    ) -> impl Future<Output = Result<(Self::Muxer, Self::Driver), MuxerError>> + Send + 'static
    {
        futures::future::ready(Ok(self.muxer(socket, role)))
    }
}

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
/// ([`WriteTracker`]); once a GoAway with a non-zero code has gone into the socket, the next
/// read flushes the socket (once, without waiting: a remote that does not read would not read
/// the GoAway either) and fails, which ends the yamux connection and so the driver.
#[derive(Debug)]
struct Coalesce<C> {
    socket: C,
    /// Bytes were written since the last flush.
    written: bool,
    control: Arc<FlushControl>,
    /// Where the written bytes stand in yamux's frame sequence.
    tracker: WriteTracker,
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

/// Size of a yamux frame header: version, type, flags (2 bytes), stream id (4), length (4).
const HEADER_LEN: usize = 12;
/// The frame type of a data frame (whose length field counts the body that follows).
const TYPE_DATA: u8 = 0;
/// The frame type of a GoAway (whose length field is the error code; no body).
const TYPE_GO_AWAY: u8 = 3;

/// Follows the byte sequence the yamux connection writes, frame by frame, to find the GoAway
/// frames it sends. Only data frames have a body; every other frame is a bare header.
#[derive(Debug, Default)]
struct WriteTracker {
    /// The header being written.
    header: [u8; HEADER_LEN],
    /// How many bytes of `header` were written.
    have: usize,
    /// Body bytes of the current data frame still to be written.
    body_left: u64,
}

impl WriteTracker {
    /// Takes bytes that went into the socket; returns the error code of a GoAway with a
    /// non-zero code that they completed, if any.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<u32> {
        let mut found = None;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER_LEN {
                self.have = 0;
                let len = u32::from_be_bytes([
                    self.header[8],
                    self.header[9],
                    self.header[10],
                    self.header[11],
                ]);
                match self.header[1] {
                    TYPE_DATA => self.body_left = u64::from(len),
                    TYPE_GO_AWAY if len != 0 => found = found.or(Some(len)),
                    _ => {}
                }
            }
        }
        found
    }
}

/// The words for a GoAway error code (yamux spec: 1 protocol error, 2 internal error).
fn go_away_reason(code: u32) -> &'static str {
    match code {
        1 => "protocol error",
        2 => "internal error",
        _ => "unknown error code",
    }
}

/// The driver's side of [`Coalesce`]. Only the driver's task touches it (the connection, and
/// so the socket, is polled only there); atomics because the connection owns the socket.
#[derive(Debug, Default)]
struct FlushControl {
    /// Flushes after writes may be put off.
    defer: AtomicBool,
    /// A flush was put off: the driver must poll the connection again without deferral.
    deferred: AtomicBool,
    /// The error code of the GoAway the yamux connection wrote, when it was not 0 (normal
    /// termination): the remote broke the protocol, and the connection must end.
    go_away: AtomicU32,
}

impl<C> Coalesce<C> {
    fn new(socket: C, control: Arc<FlushControl>, write_timeout: std::time::Duration) -> Self {
        Coalesce {
            socket,
            written: false,
            control,
            tracker: WriteTracker::default(),
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
        Pin::new(&mut self.socket).poll_read(cx, buf)
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
        if let Some(code) = self.tracker.feed(&buf[..n]) {
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

/// State shared by the handles, the driver and the streams.
#[derive(Debug)]
struct Shared {
    /// The connection is closed or closing: no new streams.
    closed: AtomicBool,
    /// A handle asked to close the connection.
    close_requested: AtomicBool,
    /// Wakes the driver (for close requests).
    driver_waker: AtomicWaker,
    /// Streams alive (handed out, or waiting in the accept queue).
    live_streams: Arc<AtomicUsize>,
    /// The limit on `live_streams`.
    max_streams: usize,
    /// Why the driver failed, when it did: `accept` gives it to the host, which reports it
    /// as the connection's close cause.
    failure: std::sync::Mutex<Option<MuxerError>>,
}

type OpenReply = oneshot::Sender<Result<YamuxStream, MuxerError>>;

struct Handle {
    open_tx: mpsc::UnboundedSender<OpenReply>,
    inbound_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<YamuxStream>>>,
    closed_rx: watch::Receiver<bool>,
    shared: Arc<Shared>,
}

/// A yamux connection: a cheap, cloneable handle that opens and accepts streams.
///
/// The connection runs in its [`YamuxDriver`]. When every clone of the handle is dropped, the
/// driver closes the connection.
#[derive(Clone)]
pub struct YamuxMuxer {
    inner: Arc<Handle>,
}

impl fmt::Debug for YamuxMuxer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YamuxMuxer")
            .field("closed", &self.is_closed())
            .field(
                "live_streams",
                &self.inner.shared.live_streams.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl YamuxMuxer {
    /// The number of streams alive on this connection (both directions, including inbound
    /// streams not accepted yet).
    pub fn live_streams(&self) -> usize {
        self.inner.shared.live_streams.load(Ordering::Relaxed)
    }
}

impl StreamMuxer for YamuxMuxer {
    type Stream = YamuxStream;

    fn open(&self) -> impl Future<Output = Result<YamuxStream, MuxerError>> + Send + 'static {
        let open_tx = self.inner.open_tx.clone();
        let closed = self.is_closed();
        async move {
            if closed {
                return Err(MuxerError::Closed);
            }
            let (reply_tx, reply_rx) = oneshot::channel();
            open_tx.send(reply_tx).map_err(|_| MuxerError::Closed)?;
            drop(open_tx);
            reply_rx.await.unwrap_or(Err(MuxerError::Closed))
        }
    }

    fn accept(&self) -> impl Future<Output = Result<YamuxStream, MuxerError>> + Send + 'static {
        let inbound = self.inner.inbound_rx.clone();
        let shared = self.inner.shared.clone();
        async move {
            let mut rx = inbound.lock().await;
            rx.recv().await.ok_or_else(|| {
                shared
                    .failure
                    .lock()
                    .expect("lock")
                    .as_ref()
                    .map_or(MuxerError::Closed, error_copy)
            })
        }
    }

    fn close(&self) -> impl Future<Output = Result<(), MuxerError>> + Send + 'static {
        let shared = self.inner.shared.clone();
        let mut closed_rx = self.inner.closed_rx.clone();
        async move {
            shared.close_requested.store(true, Ordering::SeqCst);
            shared.driver_waker.wake();
            // An error means the driver is gone, which closed the connection too.
            let _ = closed_rx.wait_for(|closed| *closed).await;
            Ok(())
        }
    }

    fn is_closed(&self) -> bool {
        self.inner.shared.closed.load(Ordering::SeqCst) || self.inner.open_tx.is_closed()
    }
}

/// Decrements the live stream count when a stream is dropped.
#[derive(Debug)]
struct StreamGuard(Arc<AtomicUsize>);

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
    inner: yamux::Stream,
    /// Whether the remote knows of this stream: inbound streams, and outbound ones once a
    /// frame went out. The yamux crate announces a new stream (SYN) on its first data frame
    /// but not on a close, so a stream closed before any write would never reach the remote.
    announced: bool,
    _guard: StreamGuard,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
    connection: yamux::Connection<Coalesce<C>>,
    open_rx: mpsc::UnboundedReceiver<OpenReply>,
    handles_gone: bool,
    pending_opens: VecDeque<OpenReply>,
    inbound_tx: Option<mpsc::Sender<YamuxStream>>,
    closed_tx: watch::Sender<bool>,
    shared: Arc<Shared>,
    phase: Phase,
    flush: Arc<FlushControl>,
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
        yamux::ConnectionError::Decode(e) => MuxerError::Protocol(e.to_string()),
        yamux::ConnectionError::InvalidWindowUpdate => {
            MuxerError::Protocol("invalid window update".into())
        }
        yamux::ConnectionError::TooManyStreams => MuxerError::TooManyStreams { limit },
        other => MuxerError::Other(Box::new(other)),
    }
}

/// A copy of a muxer error for each of several waiters.
fn error_copy(e: &MuxerError) -> MuxerError {
    match e {
        MuxerError::Closed => MuxerError::Closed,
        MuxerError::Io(e) => MuxerError::Io(io::Error::new(e.kind(), e.to_string())),
        MuxerError::TooManyStreams { limit } => MuxerError::TooManyStreams { limit: *limit },
        MuxerError::Protocol(s) => MuxerError::Protocol(s.clone()),
        other => MuxerError::Other(other.to_string().into()),
    }
}

impl<C: Socket> YamuxDriver<C> {
    fn new_stream(&self, inner: yamux::Stream, announced: bool) -> YamuxStream {
        self.shared.live_streams.fetch_add(1, Ordering::SeqCst);
        YamuxStream {
            inner,
            announced,
            _guard: StreamGuard(self.shared.live_streams.clone()),
        }
    }

    /// The error a failed connection ends with: a protocol violation when the yamux connection
    /// had answered the remote with an error GoAway (the socket error that followed is ours).
    fn connection_error(&self, e: yamux::ConnectionError) -> MuxerError {
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
        match tx.try_send(stream) {
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
        self.shared.closed.store(true, Ordering::SeqCst);
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
        self.shared.closed.store(true, Ordering::SeqCst);
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
        // Dropping the connection (driver aborted) ends it: tell the handles.
        self.shared.closed.store(true, Ordering::SeqCst);
        self.closed_tx.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let header = |ty: u8, flags: u16, id: u32, len: u32| {
            let mut h = vec![0u8, ty];
            h.extend_from_slice(&flags.to_be_bytes());
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&len.to_be_bytes());
            h
        };
        // A data frame whose body holds what looks like a GoAway header, a window update, a
        // normal GoAway, then a GoAway(protocol error).
        let mut bytes = header(TYPE_DATA, 1, 1, 12);
        bytes.extend(header(TYPE_GO_AWAY, 0, 0, 1));
        bytes.extend(header(1, 0, 1, 1000));
        bytes.extend(header(TYPE_GO_AWAY, 0, 0, 0));
        let error_at = bytes.len();
        bytes.extend(header(TYPE_GO_AWAY, 0, 0, 1));
        for step in [1, 5, 7, 12, 13, bytes.len()] {
            let mut tracker = WriteTracker::default();
            let mut found = Vec::new();
            for (i, chunk) in bytes.chunks(step).enumerate() {
                if let Some(code) = tracker.feed(chunk) {
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

    #[test]
    fn yamux_config_never_panics() {
        for streams in [0, 1, 100, 1024, 5000, usize::MAX / 2, usize::MAX] {
            for window in [
                None,
                Some(0),
                Some(1 << 20),
                Some(1 << 30),
                Some(usize::MAX),
            ] {
                let c = Config::default()
                    .with_max_streams(streams)
                    .with_max_connection_receive_window(window)
                    .with_split_send_size(0)
                    .with_accept_queue(0);
                let _ = c.to_yamux();
            }
        }
    }

    #[test]
    fn protocol_name() {
        let names = <Yamux as MuxerUpgrade<futures::io::Cursor<Vec<u8>>>>::protocol_names(
            &Yamux::default(),
        );
        assert_eq!(names, vec!["/yamux/1.0.0"]);
    }
}
