//! `/mplex/6.7.0`: many independent streams over one connection.
//!
//! Every frame is `uvarint(stream id << 3 | flag) ‖ uvarint(length) ‖ data`. The flags are
//! NewStream (0), Message (1 from the stream's receiver, 2 from its initiator), Close (3, 4)
//! and Reset (5, 6). Each side numbers the streams it opens itself, so a stream is named by its
//! id together with who opened it.
//!
//! # Shape
//!
//! [`Mplex`] is the [`MuxerUpgrade`]; it yields a [`MplexMuxer`] handle (cheap to clone) and a
//! [`MplexDriver`] future that owns the socket: it reads and routes frames and writes what the
//! streams queued. Streams never touch the socket and there is no task per stream. A write
//! copies the caller's bytes, already framed, into one shared output buffer; the driver swaps
//! that buffer with its own and writes it out in large writes, so small frames from many
//! streams go out in one system call. Received data is handed to streams without copying
//! (each frame's bytes are split off the read buffer).
//!
//! # Bounded memory
//!
//! mplex has no flow control, so a stream whose reader does not read would otherwise buffer
//! without limit. Each stream buffers at most [`MplexConfig::max_buffer_len`] bytes (plus one
//! frame); what happens when it is full is [`MplexConfig::buffer_policy`]:
//!
//! - [`BufferPolicy::Block`] (the default) stops reading the connection until that stream's
//!   reader drains below the limit. No data is lost and TCP's own flow control pushes back on
//!   the sender, which is what applications written for one reliable stream expect. The cost:
//!   a reader that never reads stalls every stream of its connection, so readers must keep
//!   reading (or drop the stream, which resets it and frees the connection).
//! - [`BufferPolicy::ResetStream`] resets the stream that overflowed and keeps the connection
//!   flowing: one slow reader cannot stall the others, but a burst larger than the buffer
//!   while the application is momentarily busy kills a healthy stream.
//!
//! The output side is bounded too: a write waits while the shared output buffer holds
//! [`MplexConfig::write_buffer_len`] bytes, and the driver stops reading input while its own
//! control answers (resets) pile up unsent. Frames longer than [`MplexConfig::max_frame_len`]
//! end the connection with an error before anything is allocated for them, and the read buffer
//! grows only with the bytes that arrive. A frame that has started arriving must finish within
//! [`MplexConfig::frame_timeout`], or the connection ends with [`MplexError::FrameTimeout`].
//! Inbound streams beyond [`MplexConfig::max_streams`] are reset.
//!
//! # Fairness
//!
//! Within one output buffer each stream may queue at most its share (the buffer's size over
//! the number of streams that wrote into the previous buffer, plus one), so a stream sending
//! flat out always leaves room for another stream's small message in the same write.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod frame;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::{AsyncRead, AsyncWrite};
use libp2p_core::{MuxerError, MuxerUpgrade, Role, Socket, StreamMuxer};

pub use error::MplexError;
use frame::{Decoded, Flag};

/// The protocol name.
pub const PROTOCOL: &str = "/mplex/6.7.0";

/// The spec's maximum frame payload: 1 MiB.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// The driver yields to the runtime after this many rounds of progress in one poll.
const DRIVER_BUDGET: usize = 32;

/// What to do when a stream's receive buffer is full. See the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BufferPolicy {
    /// Stop reading the connection until the stream's reader drains its buffer.
    #[default]
    Block,
    /// Reset the stream whose buffer overflowed.
    ResetStream,
}

/// Limits and sizes of an mplex connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MplexConfig {
    /// Concurrent inbound streams accepted; more are reset. Also the limit on concurrent
    /// outbound streams ([`MuxerError::TooManyStreams`]). Default 1,024.
    pub max_streams: usize,
    /// Bytes a stream buffers for its reader before [`MplexConfig::buffer_policy`] applies.
    /// Default 256 KiB.
    pub max_buffer_len: usize,
    /// What happens when a stream's buffer is full. Default [`BufferPolicy::Block`].
    pub buffer_policy: BufferPolicy,
    /// Largest frame payload accepted from the remote; a larger frame ends the connection.
    /// Default (and the spec's maximum) 1 MiB.
    pub max_frame_len: usize,
    /// Largest payload we put in one frame; longer writes are split. Default 64 KiB.
    pub split_send_size: usize,
    /// Bytes the streams may queue for the driver before writes wait. Default 512 KiB.
    pub write_buffer_len: usize,
    /// How long a frame may take from its first byte to its last; past it the connection ends
    /// with [`MplexError::FrameTimeout`] (inside [`MuxerError::Io`], kind `TimedOut`). Without
    /// it a remote could start a frame and never finish it, holding the read buffer (up to
    /// [`max_frame_len`](MplexConfig::max_frame_len)) for as long as the connection lives.
    /// The clock stops while a full stream keeps us from reading (that wait is ours).
    /// `Duration::MAX` turns it off. Needs a tokio runtime with the time driver.
    ///
    /// Default 30 s: a 1 MiB frame (the largest allowed) then needs only about 35 KB/s, far
    /// below any link a libp2p connection is useful on, and no real peer pauses inside a frame
    /// (they write frames whole), so only a stalled or hostile peer hits it.
    pub frame_timeout: Duration,
    /// How long a write to the socket may make no progress at all (the socket refusing every
    /// byte because the remote does not read) before the connection ends with
    /// [`MplexError::WriteTimeout`] (inside [`MuxerError::Io`], kind `TimedOut`). mplex has no
    /// flow control, so a remote that sends requests and never reads the answers would
    /// otherwise hold the connection, and what our streams queued for it, forever. The clock
    /// runs only while we have bytes the socket will not take. `Duration::MAX` turns it off.
    /// Needs a tokio runtime with the time driver.
    ///
    /// Default 60 s: the kernel's send buffer takes megabytes, so no byte accepted for a
    /// minute means a remote that stopped reading (or vanished), never just a slow link.
    pub write_timeout: Duration,
}

impl Default for MplexConfig {
    fn default() -> Self {
        MplexConfig {
            max_streams: 1024,
            max_buffer_len: 256 * 1024,
            buffer_policy: BufferPolicy::Block,
            max_frame_len: MAX_FRAME_LEN,
            split_send_size: 64 * 1024,
            write_buffer_len: 512 * 1024,
            frame_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// The mplex upgrade.
#[derive(Debug, Clone, Default)]
pub struct Mplex {
    config: MplexConfig,
}

impl Mplex {
    /// An upgrade with the given configuration.
    pub fn new(config: MplexConfig) -> Self {
        let mut config = config;
        config.split_send_size = config.split_send_size.clamp(1, MAX_FRAME_LEN);
        config.write_buffer_len = config.write_buffer_len.max(1);
        Mplex { config }
    }

    /// Sets up mplex on `socket` (the role does not matter to mplex).
    pub fn connect<C: Socket>(&self, socket: C) -> (MplexMuxer, MplexDriver<C>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(self.config.clone())),
        });
        let guard = Arc::new(HandleGuard(shared.clone()));
        let muxer = MplexMuxer {
            shared: shared.clone(),
            _guard: guard,
        };
        let driver = MplexDriver {
            socket,
            shared,
            inbox: Inbox {
                rbuf: BytesMut::new(),
                filled: 0,
                read_chunk: 8 * 1024,
                blocked: false,
                spare: None,
                frames: 0,
                partial_since: None,
            },
            frame_timeout: self.config.frame_timeout,
            write_timeout: self.config.write_timeout,
            write_stalled_since: None,
            frame_timer: None,
            writing: BytesMut::new(),
            written: 0,
            writing_epoch: 0,
            need_flush: false,
            finished: false,
        };
        (muxer, driver)
    }
}

impl<C: Socket> MuxerUpgrade<C> for Mplex {
    type Muxer = MplexMuxer;
    type Driver = MplexDriver<C>;

    fn protocol_names(&self) -> Vec<&'static str> {
        vec![PROTOCOL]
    }

    fn upgrade(
        &self,
        socket: C,
        _role: Role,
        _protocol: &str,
    ) -> impl Future<Output = Result<(Self::Muxer, Self::Driver), MuxerError>> + Send + 'static
    {
        let pair = self.connect(socket);
        async move { Ok(pair) }
    }
}

/// A stream's name: its id and whether we opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    id: u64,
    ours: bool,
}

impl Key {
    /// The flag we send a message with on this stream.
    fn message_flag(self) -> Flag {
        if self.ours {
            Flag::MessageInitiator
        } else {
            Flag::MessageReceiver
        }
    }
    fn close_flag(self) -> Flag {
        if self.ours {
            Flag::CloseInitiator
        } else {
            Flag::CloseReceiver
        }
    }
    fn reset_flag(self) -> Flag {
        if self.ours {
            Flag::ResetInitiator
        } else {
            Flag::ResetReceiver
        }
    }
}

#[derive(Default)]
struct StreamState {
    recv: VecDeque<Bytes>,
    recv_len: usize,
    remote_closed: bool,
    local_closed: bool,
    reset: bool,
    read_waker: Option<Waker>,
    /// The epoch of the output buffer this stream last wrote into (0: none).
    last_epoch: u64,
    /// Bytes written into the current output buffer.
    epoch_bytes: usize,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the connection, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct State {
    config: MplexConfig,
    streams: HashMap<Key, StreamState>,
    next_id: u64,
    inbound_count: usize,
    outbound_count: usize,
    /// Accepted by the driver, waiting for `accept()`.
    inbound: VecDeque<Key>,
    accept_wakers: Vec<Waker>,
    /// Frames queued by streams and the driver, in order.
    out: BytesMut,
    /// Epoch of `out`; the driver bumps it when it takes the buffer.
    epoch: u64,
    /// Highest epoch written to the socket and flushed.
    done_epoch: u64,
    writers_this_epoch: usize,
    share: usize,
    write_waiters: Vec<Waker>,
    flush_waiters: Vec<Waker>,
    driver_waker: Option<Waker>,
    /// The stream whose full buffer stops the driver from reading.
    blocked_on: Option<Key>,
    close_requested: bool,
    closed: Option<String>,
    /// Why the driver failed, when it did: `accept` gives it to the host, which reports it
    /// as the connection's close cause.
    failure: Option<MuxerError>,
    close_wakers: Vec<Waker>,
}

/// A copy of a muxer error for another caller (`MuxerError` holds an `io::Error`, which is
/// not `Clone`).
fn error_copy(e: &MuxerError) -> MuxerError {
    match e {
        MuxerError::Closed => MuxerError::Closed,
        MuxerError::Io(e) => MuxerError::Io(io::Error::new(e.kind(), e.to_string())),
        MuxerError::TooManyStreams { limit } => MuxerError::TooManyStreams { limit: *limit },
        MuxerError::Protocol(s) => MuxerError::Protocol(s.clone()),
        other => MuxerError::Other(other.to_string().into()),
    }
}

impl State {
    fn new(config: MplexConfig) -> Self {
        let share = config.write_buffer_len;
        State {
            config,
            streams: HashMap::new(),
            next_id: 0,
            inbound_count: 0,
            outbound_count: 0,
            inbound: VecDeque::new(),
            accept_wakers: Vec::new(),
            out: BytesMut::new(),
            epoch: 1,
            done_epoch: 0,
            writers_this_epoch: 0,
            share,
            write_waiters: Vec::new(),
            flush_waiters: Vec::new(),
            driver_waker: None,
            blocked_on: None,
            close_requested: false,
            closed: None,
            failure: None,
            close_wakers: Vec::new(),
        }
    }

    fn wake_driver(&self) {
        if let Some(w) = &self.driver_waker {
            w.wake_by_ref();
        }
    }

    fn push_frame(&mut self, key: Key, flag: Flag, data: &[u8]) {
        frame::encode(&mut self.out, key.id, flag, data);
    }

    fn remove_stream(&mut self, key: Key) -> Option<StreamState> {
        let st = self.streams.remove(&key)?;
        if key.ours {
            self.outbound_count -= 1;
        } else {
            self.inbound_count -= 1;
        }
        if self.blocked_on == Some(key) {
            self.blocked_on = None;
            self.wake_driver();
        }
        Some(st)
    }

    /// Marks the connection closed and wakes everyone waiting on it.
    fn shut(&mut self, reason: String) {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
        for st in self.streams.values_mut() {
            if let Some(w) = st.read_waker.take() {
                w.wake();
            }
        }
        for w in self
            .accept_wakers
            .drain(..)
            .chain(self.write_waiters.drain(..))
            .chain(self.flush_waiters.drain(..))
            .chain(self.close_wakers.drain(..))
        {
            w.wake();
        }
    }

    /// Routes one frame from the remote.
    fn dispatch(&mut self, id: u64, flag: Flag, data: &mut BytesMut) -> Result<(), MuxerError> {
        match flag {
            Flag::NewStream => {
                let key = Key { id, ours: false };
                if self.streams.contains_key(&key) {
                    return Err(MuxerError::Protocol(format!(
                        "NewStream for stream {id}, which is already open"
                    )));
                }
                if self.inbound_count >= self.config.max_streams || self.close_requested {
                    tracing::debug!(id, "too many inbound streams: resetting");
                    self.push_frame(key, key.reset_flag(), &[]);
                    return Ok(());
                }
                self.streams.insert(key, StreamState::default());
                self.inbound_count += 1;
                self.inbound.push_back(key);
                for w in self.accept_wakers.drain(..) {
                    w.wake();
                }
            }
            Flag::MessageReceiver | Flag::MessageInitiator => {
                let key = Key {
                    id,
                    ours: flag == Flag::MessageReceiver,
                };
                let max = self.config.max_buffer_len;
                let policy = self.config.buffer_policy;
                let Some(st) = self.streams.get_mut(&key) else {
                    return Ok(());
                };
                if st.reset || st.remote_closed || data.is_empty() {
                    return Ok(());
                }
                // The blocking policy is applied before the frame is taken off the read
                // buffer (see `MplexDriver::would_block`); here only the reset policy acts.
                if st.recv_len >= max && policy == BufferPolicy::ResetStream {
                    tracing::debug!(id, "receive buffer full: resetting the stream");
                    st.reset = true;
                    st.recv.clear();
                    st.recv_len = 0;
                    if let Some(w) = st.read_waker.take() {
                        w.wake();
                    }
                    self.push_frame(key, key.reset_flag(), &[]);
                    return Ok(());
                }
                let bytes = std::mem::take(data).freeze();
                st.recv_len += bytes.len();
                st.recv.push_back(bytes);
                if let Some(w) = st.read_waker.take() {
                    w.wake();
                }
            }
            Flag::CloseReceiver | Flag::CloseInitiator => {
                let key = Key {
                    id,
                    ours: flag == Flag::CloseReceiver,
                };
                if let Some(st) = self.streams.get_mut(&key) {
                    st.remote_closed = true;
                    if let Some(w) = st.read_waker.take() {
                        w.wake();
                    }
                }
            }
            Flag::ResetReceiver | Flag::ResetInitiator => {
                let key = Key {
                    id,
                    ours: flag == Flag::ResetReceiver,
                };
                if let Some(st) = self.streams.get_mut(&key) {
                    st.reset = true;
                    st.recv.clear();
                    st.recv_len = 0;
                    if let Some(w) = st.read_waker.take() {
                        w.wake();
                    }
                    // Writers blocked on output space learn of the reset when they retry.
                    for w in self.write_waiters.drain(..) {
                        w.wake();
                    }
                    if self.blocked_on == Some(key) {
                        self.blocked_on = None;
                    }
                }
            }
        }
        Ok(())
    }
}

fn register(wakers: &mut Vec<Waker>, waker: &Waker) {
    if !wakers.iter().any(|w| w.will_wake(waker)) {
        wakers.push(waker.clone());
    }
}

/// Dropping the last [`MplexMuxer`] clone closes the connection.
struct HandleGuard(Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.close_requested = true;
        st.wake_driver();
    }
}

/// A handle on an mplex connection: opens and accepts streams. Clones share the connection;
/// dropping the last clone closes it.
#[derive(Clone)]
pub struct MplexMuxer {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for MplexMuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("MplexMuxer")
            .field("streams", &st.streams.len())
            .field("closed", &st.closed)
            .finish()
    }
}

impl MplexMuxer {
    fn open_now(&self) -> Result<MplexStream, MuxerError> {
        let mut st = self.shared.lock();
        if st.closed.is_some() || st.close_requested {
            return Err(MuxerError::Closed);
        }
        if st.outbound_count >= st.config.max_streams {
            return Err(MuxerError::TooManyStreams {
                limit: st.config.max_streams,
            });
        }
        let key = Key {
            id: st.next_id,
            ours: true,
        };
        st.next_id += 1;
        st.streams.insert(key, StreamState::default());
        st.outbound_count += 1;
        let name = key.id.to_string();
        st.push_frame(key, Flag::NewStream, name.as_bytes());
        st.wake_driver();
        Ok(MplexStream {
            shared: self.shared.clone(),
            key,
        })
    }

    /// Number of streams currently open (both directions, including inbound streams not yet
    /// accepted).
    pub fn stream_count(&self) -> usize {
        self.shared.lock().streams.len()
    }

    /// Bytes currently buffered for readers, over all streams.
    pub fn buffered_len(&self) -> usize {
        self.shared
            .lock()
            .streams
            .values()
            .map(|s| s.recv_len)
            .sum()
    }
}

impl StreamMuxer for MplexMuxer {
    type Stream = MplexStream;

    fn open(&self) -> impl Future<Output = Result<MplexStream, MuxerError>> + Send + 'static {
        let result = self.open_now();
        async move { result }
    }

    fn accept(&self) -> impl Future<Output = Result<MplexStream, MuxerError>> + Send + 'static {
        let shared = self.shared.clone();
        futures::future::poll_fn(move |cx| {
            let mut st = shared.lock();
            if let Some(key) = st.inbound.pop_front() {
                return Poll::Ready(Ok(MplexStream {
                    shared: shared.clone(),
                    key,
                }));
            }
            if st.closed.is_some() {
                return Poll::Ready(Err(st
                    .failure
                    .as_ref()
                    .map_or(MuxerError::Closed, error_copy)));
            }
            register(&mut st.accept_wakers, cx.waker());
            Poll::Pending
        })
    }

    fn close(&self) -> impl Future<Output = Result<(), MuxerError>> + Send + 'static {
        let shared = self.shared.clone();
        {
            let mut st = shared.lock();
            st.close_requested = true;
            st.wake_driver();
        }
        futures::future::poll_fn(move |cx| {
            let mut st = shared.lock();
            if st.closed.is_some() {
                return Poll::Ready(Ok(()));
            }
            register(&mut st.close_wakers, cx.waker());
            Poll::Pending
        })
    }

    fn is_closed(&self) -> bool {
        let st = self.shared.lock();
        st.closed.is_some() || st.close_requested
    }
}

/// One mplex stream. Closing it (`poll_close`) closes only our write side. Dropping it
/// without closing it resets it; dropping it after closing it just stops reading (whatever the
/// remote still sends is discarded), so a reply sent and closed is never cut short.
pub struct MplexStream {
    shared: Arc<Shared>,
    key: Key,
}

impl std::fmt::Debug for MplexStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MplexStream")
            .field("id", &self.key.id)
            .field("ours", &self.key.ours)
            .finish()
    }
}

fn closed_error(reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("mplex connection closed: {reason}"),
    )
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "mplex stream reset")
}

impl AsyncRead for MplexStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let key = self.key;
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let max = state.config.max_buffer_len;
        let Some(st) = state.streams.get_mut(&key) else {
            return Poll::Ready(Err(reset_error()));
        };
        if st.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = st.recv.front_mut() else {
                break;
            };
            let k = front.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                st.recv.pop_front();
            }
            n += k;
        }
        if n > 0 {
            st.recv_len -= n;
            if state.blocked_on == Some(key) && st.recv_len < max {
                state.blocked_on = None;
                state.wake_driver();
            }
            return Poll::Ready(Ok(n));
        }
        if st.remote_closed {
            return Poll::Ready(Ok(0));
        }
        if let Some(reason) = &state.closed {
            return Poll::Ready(Err(closed_error(reason)));
        }
        match &st.read_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.read_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl MplexStream {
    /// Whether our bytes so far have reached the socket.
    fn poll_written(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let last = state
            .streams
            .get(&self.key)
            .map(|s| s.last_epoch)
            .unwrap_or(0);
        if last <= state.done_epoch {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &state.closed {
            return Poll::Ready(Err(closed_error(reason)));
        }
        register(&mut state.flush_waiters, cx.waker());
        state.wake_driver();
        Poll::Pending
    }
}

impl AsyncWrite for MplexStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let key = self.key;
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if let Some(reason) = &state.closed {
            return Poll::Ready(Err(closed_error(reason)));
        }
        let epoch = state.epoch;
        let share = state.share;
        let limit = state.config.write_buffer_len;
        let split = state.config.split_send_size;
        let Some(st) = state.streams.get_mut(&key) else {
            return Poll::Ready(Err(reset_error()));
        };
        if st.reset {
            return Poll::Ready(Err(reset_error()));
        }
        if st.local_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "mplex stream closed for writing",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if st.last_epoch != epoch {
            st.epoch_bytes = 0;
        }
        let room = share.saturating_sub(st.epoch_bytes);
        if state.out.len() >= limit || room == 0 {
            register(&mut state.write_waiters, cx.waker());
            state.wake_driver();
            return Poll::Pending;
        }
        let n = buf.len().min(split).min(room.max(1));
        if st.last_epoch != epoch {
            st.last_epoch = epoch;
            state.writers_this_epoch += 1;
        }
        st.epoch_bytes += n;
        frame::encode(&mut state.out, key.id, key.message_flag(), &buf[..n]);
        state.wake_driver();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_written(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let key = self.key;
            let mut guard = self.shared.lock();
            let state = &mut *guard;
            let epoch = state.epoch;
            match state.streams.get_mut(&key) {
                None => return Poll::Ready(Err(reset_error())),
                // Once our Close is queued, a reset that follows (a remote that read to the
                // end and dropped its side) does not undo it.
                Some(st) if st.reset && !st.local_closed => return Poll::Ready(Err(reset_error())),
                Some(st) if !st.local_closed => {
                    if let Some(reason) = &state.closed {
                        return Poll::Ready(Err(closed_error(reason)));
                    }
                    st.local_closed = true;
                    st.last_epoch = epoch;
                    frame::encode(&mut state.out, key.id, key.close_flag(), &[]);
                    state.wake_driver();
                }
                Some(_) => {}
            }
        }
        self.poll_written(cx)
    }
}

impl Drop for MplexStream {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let Some(st) = state.remove_stream(self.key) else {
            return;
        };
        if state.closed.is_none() && !st.reset && !st.local_closed {
            state.push_frame(self.key, self.key.reset_flag(), &[]);
            state.wake_driver();
        }
    }
}

/// The future that runs an mplex connection: spawn it. It ends when the connection closes,
/// with an error if the socket failed or the remote broke the protocol.
pub struct MplexDriver<C> {
    socket: C,
    shared: Arc<Shared>,
    inbox: Inbox,
    /// [`MplexConfig::frame_timeout`].
    frame_timeout: Duration,
    /// [`MplexConfig::write_timeout`].
    write_timeout: Duration,
    /// Since when the socket has refused our bytes (or our flush); `None` while writes go
    /// through or nothing is to be written.
    write_stalled_since: Option<Instant>,
    /// Wakes the driver when an unfinished frame or a stalled write may have run out of time;
    /// allocated the first time the driver waits with either, then reset as needed.
    frame_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The output buffer being written; `written` bytes of it are out.
    writing: BytesMut,
    written: usize,
    writing_epoch: u64,
    need_flush: bool,
    finished: bool,
}

impl<C> std::fmt::Debug for MplexDriver<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MplexDriver")
            .field("buffered_in", &self.inbox.filled)
            .field("pending_out", &(self.writing.len() - self.written))
            .finish()
    }
}

/// Largest read chunk the driver grows to.
const MAX_READ_CHUNK: usize = 256 * 1024;

/// The driver's input side: received bytes and the parser over them.
struct Inbox {
    /// `filled` valid bytes at the front, zeroed spare room behind.
    rbuf: BytesMut,
    filled: usize,
    read_chunk: usize,
    /// A full stream stopped the parsing; complete frames may wait in `rbuf`.
    blocked: bool,
    /// A large read buffer given up while streams still held frames split off it; used again
    /// once they have all dropped them (see [`Inbox::make_room`]).
    spare: Option<BytesMut>,
    /// Frames parsed so far (to tell a new unfinished frame from the same one).
    frames: u64,
    /// When the frame at the front of `rbuf` started to arrive, while it is unfinished and
    /// we are waiting for the remote (not blocked on a stream of ours).
    partial_since: Option<Instant>,
}

/// From this read chunk size on, a read buffer the driver moves away from is kept for reuse.
const RECYCLE_MIN: usize = 64 * 1024;

impl Inbox {
    /// Room a new read buffer gets beyond one chunk during bulk transfers: reads of up to 1.5
    /// chunks, as `BytesMut`'s own growth used to give (an in-memory pipe runs at two thirds of
    /// its speed with reads of one chunk). None for small buffers, which idle connections hold.
    fn bulk_headroom(&self) -> usize {
        if self.read_chunk >= RECYCLE_MIN {
            self.read_chunk / 2
        } else {
            0
        }
    }

    /// Makes room for a read of about `read_chunk` bytes after the `filled` ones.
    ///
    /// Received data frames are split off the read buffer without copying, so when it runs out
    /// of room, streams often still hold frames from it. Growing it then meant a fresh
    /// allocation for every chunk, which glibc soon trimmed away again (a noise+mplex receiver
    /// took 229,695 page faults per GiB). Instead, the buffer is swapped for the one given up
    /// before, once the streams have dropped everything from that one; only if they have not
    /// is a new buffer allocated. At most one such buffer is kept.
    fn make_room(&mut self) {
        let min = self.filled + self.read_chunk / 2;
        if self.rbuf.len() >= min {
            return;
        }
        let want = self.filled + self.read_chunk;
        // In place when the buffer has the room or is ours alone again (the zeroed room
        // already behind the received bytes is kept: it needs no zeroing again).
        if !self.rbuf.try_reclaim(want - self.rbuf.len()) {
            // Only the received bytes move to the other buffer.
            self.rbuf.truncate(self.filled);
            let mut next = self
                .spare
                .take()
                .and_then(|mut b| b.try_reclaim(min).then_some(b))
                .unwrap_or_else(|| BytesMut::with_capacity(want + self.bulk_headroom()));
            next.extend_from_slice(&self.rbuf);
            let mut old = std::mem::replace(&mut self.rbuf, next);
            // Worth keeping only during bulk transfers (small buffers are cheap to allocate,
            // and an idle connection should not hold two).
            if self.read_chunk >= RECYCLE_MIN {
                old.clear();
                self.spare = Some(old);
            }
        }
        // All the room there is (zeroed: a read needs initialized bytes): large reads are what
        // makes a fast pipe fast.
        let target = self.rbuf.capacity().max(min);
        self.rbuf.resize(target, 0);
    }

    /// Parses and routes the complete frames in the read buffer. A data frame for a stream
    /// that is full under the blocking policy stays in the buffer and stops the parsing.
    fn parse(&mut self, state: &mut State) -> Result<(), MuxerError> {
        self.blocked = false;
        loop {
            let decoded = frame::decode(&self.rbuf[..self.filled], state.config.max_frame_len)?;
            let Decoded::Frame {
                id,
                flag,
                header_len,
                len,
            } = decoded
            else {
                return Ok(());
            };
            let mut data = BytesMut::new();
            if flag.carries_data() && len > 0 {
                if state.would_block(id, flag) {
                    self.blocked = true;
                    return Ok(());
                }
                self.rbuf.advance(header_len);
                data = self.rbuf.split_to(len);
            } else {
                self.rbuf.advance(header_len + len);
            }
            self.filled -= header_len + len;
            self.frames += 1;
            state.dispatch(id, flag, &mut data)?;
        }
    }

    /// Notes whether an unfinished frame waits for the remote after a parse that started
    /// with `frames_before` frames parsed: its clock starts when it is new.
    fn note_partial(&mut self, frames_before: u64) {
        if self.filled == 0 || self.blocked {
            self.partial_since = None;
        } else if self.partial_since.is_none() || self.frames != frames_before {
            self.partial_since = Some(Instant::now());
        }
    }
}

impl State {
    /// Whether a data frame for this stream must wait (blocking policy, full buffer); if so,
    /// notes the stream whose reader will wake the driver.
    fn would_block(&mut self, id: u64, flag: Flag) -> bool {
        if self.config.buffer_policy != BufferPolicy::Block {
            return false;
        }
        let key = Key {
            id,
            ours: flag == Flag::MessageReceiver,
        };
        match self.streams.get(&key) {
            Some(st)
                if !st.reset && !st.remote_closed && st.recv_len >= self.config.max_buffer_len =>
            {
                self.blocked_on = Some(key);
                true
            }
            _ => false,
        }
    }
}

impl<C: Socket> MplexDriver<C> {
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MuxerError>> {
        {
            let mut state = self.shared.lock();
            match &state.driver_waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => state.driver_waker = Some(cx.waker().clone()),
            }
        }
        for _ in 0..DRIVER_BUDGET {
            let mut progress = false;

            // Output: write the current buffer, flush it, then take the next one.
            if self.written < self.writing.len() {
                match Pin::new(&mut self.socket).poll_write(cx, &self.writing[self.written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(MuxerError::Closed)),
                    Poll::Ready(Ok(n)) => {
                        self.written += n;
                        self.write_stalled_since = None;
                        progress = true;
                        if self.written == self.writing.len() {
                            self.need_flush = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(MuxerError::Io(e))),
                    Poll::Pending => {
                        self.write_stalled_since.get_or_insert_with(Instant::now);
                    }
                }
            }
            if self.written == self.writing.len() && self.need_flush {
                match Pin::new(&mut self.socket).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.write_stalled_since = None;
                        self.need_flush = false;
                        progress = true;
                        let mut state = self.shared.lock();
                        state.done_epoch = self.writing_epoch;
                        for w in state.flush_waiters.drain(..) {
                            w.wake();
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(MuxerError::Io(e))),
                    Poll::Pending => {
                        self.write_stalled_since.get_or_insert_with(Instant::now);
                    }
                }
            }
            let close_now;
            {
                let mut state = self.shared.lock();
                if self.written == self.writing.len() && !self.need_flush && !state.out.is_empty() {
                    self.writing.clear();
                    self.written = 0;
                    std::mem::swap(&mut self.writing, &mut state.out);
                    self.writing_epoch = state.epoch;
                    state.epoch += 1;
                    state.share = state.config.write_buffer_len / (state.writers_this_epoch + 1);
                    state.writers_this_epoch = 0;
                    for w in state.write_waiters.drain(..) {
                        w.wake();
                    }
                    progress = true;
                }
                close_now = state.close_requested
                    && state.out.is_empty()
                    && self.written == self.writing.len()
                    && !self.need_flush;
            }
            if close_now {
                return match Pin::new(&mut self.socket).poll_close(cx) {
                    Poll::Ready(_) => Poll::Ready(Ok(())),
                    Poll::Pending => {
                        // A close that cannot flush is a stalled write like any other.
                        self.write_stalled_since.get_or_insert_with(Instant::now);
                        self.poll_frame_deadline(cx)?;
                        Poll::Pending
                    }
                };
            }

            // Input: route buffered frames, then read more.
            let (out_len, limit, blocked) = {
                let mut state = self.shared.lock();
                if self.inbox.blocked && state.blocked_on.is_none() {
                    let before = self.inbox.frames;
                    self.inbox.parse(&mut state)?;
                    self.inbox.note_partial(before);
                    progress |= !self.inbox.blocked;
                }
                (
                    state.out.len(),
                    state.config.write_buffer_len,
                    self.inbox.blocked,
                )
            };
            // Stop reading while our own answers pile up unsent (a remote that opens streams
            // we reset without reading the resets), or while a full stream blocks.
            if !blocked && out_len < 2 * limit.max(64 * 1024) {
                let inbox = &mut self.inbox;
                inbox.make_room();
                match Pin::new(&mut self.socket).poll_read(cx, &mut inbox.rbuf[inbox.filled..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(n)) => {
                        if n == inbox.rbuf.len() - inbox.filled {
                            inbox.read_chunk = (inbox.read_chunk * 2).min(MAX_READ_CHUNK);
                        }
                        inbox.filled += n;
                        progress = true;
                        let before = inbox.frames;
                        inbox.parse(&mut self.shared.lock())?;
                        inbox.note_partial(before);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(MuxerError::Io(e))),
                    Poll::Pending => {}
                }
            }
            if !progress {
                self.poll_frame_deadline(cx)?;
                return Poll::Pending;
            }
        }
        self.poll_frame_deadline(cx)?;
        // Used up the budget: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Fails when the unfinished frame or the stalled write has run out of time; otherwise
    /// makes sure the driver is woken when one does. The timer is reset only when it fires
    /// early (the frame deadline moves only later, with each new frame), so a bulk transfer
    /// does not touch it per frame.
    fn poll_frame_deadline(&mut self, cx: &mut Context<'_>) -> Result<(), MuxerError> {
        let frame = self
            .inbox
            .partial_since
            .and_then(|since| since.checked_add(self.frame_timeout))
            .map(|at| {
                (
                    at,
                    MplexError::FrameTimeout {
                        timeout: self.frame_timeout,
                    },
                )
            });
        let write = self
            .write_stalled_since
            .and_then(|since| since.checked_add(self.write_timeout))
            .map(|at| {
                (
                    at,
                    MplexError::WriteTimeout {
                        timeout: self.write_timeout,
                    },
                )
            });
        let earliest = match (frame, write) {
            (Some(f), Some(w)) => Some(if w.0 < f.0 { w } else { f }),
            (f, w) => f.or(w),
        };
        let Some((deadline, error)) = earliest else {
            return Ok(());
        };
        let mut error = Some(error);
        let mut expired = || {
            MuxerError::Io(
                error
                    .take()
                    .expect("a deadline expires at most once")
                    .into_io(),
            )
        };
        if Instant::now() >= deadline {
            return Err(expired());
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        let timer = self
            .frame_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        while timer.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return Err(expired());
            }
            timer.as_mut().reset(deadline);
        }
        Ok(())
    }

    fn finish(&mut self, reason: String) {
        if !self.finished {
            self.finished = true;
            self.shared.lock().shut(reason);
        }
    }
}

impl<C: Socket> Future for MplexDriver<C> {
    type Output = Result<(), MuxerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Ok(()));
        }
        let result = match this.poll_run(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        match &result {
            Ok(()) => {
                tracing::debug!("mplex connection closed");
                this.finish("closed".into());
            }
            Err(e) => {
                tracing::debug!(error = %e, "mplex connection failed");
                this.shared.lock().failure = Some(error_copy(e));
                this.finish(e.to_string());
            }
        }
        Poll::Ready(result)
    }
}

impl<C> Drop for MplexDriver<C> {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            self.shared.lock().shut("driver dropped".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(read_chunk: usize) -> Inbox {
        Inbox {
            rbuf: BytesMut::new(),
            filled: 0,
            read_chunk,
            blocked: false,
            spare: None,
            frames: 0,
            partial_since: None,
        }
    }

    /// Pretends a read filled the room and the parser split all of it off but `keep` bytes.
    fn receive(inbox: &mut Inbox, keep: usize) -> BytesMut {
        let n = inbox.rbuf.len() - inbox.filled;
        inbox.rbuf[inbox.filled..].fill(7);
        inbox.filled += n;
        let frame = inbox.rbuf.split_to(inbox.filled - keep);
        inbox.filled = keep;
        frame
    }

    #[test]
    fn read_buffers_are_recycled_once_their_frames_are_dropped() {
        let mut inbox = inbox(MAX_READ_CHUNK);
        inbox.make_room();
        let first = inbox.rbuf.as_ptr();
        let held = receive(&mut inbox, 10);
        // A stream still holds the frame: a second buffer, with the 10 unparsed bytes.
        inbox.make_room();
        assert_ne!(inbox.rbuf.as_ptr(), first);
        assert_eq!(inbox.filled, 10);
        assert!(inbox.rbuf[..10].iter().all(|&b| b == 7));
        assert!(inbox.rbuf.len() >= 10 + MAX_READ_CHUNK);
        let second_frame = receive(&mut inbox, 3);
        // The first buffer's frame is gone by now: it is used again, no allocation.
        drop(held);
        inbox.make_room();
        assert_eq!(inbox.rbuf.as_ptr(), first);
        assert_eq!(inbox.filled, 3);
        drop(second_frame);
    }

    /// A header announcing the largest frame, then 10 bytes: the driver holds about one small
    /// read chunk, not the megabyte announced.
    #[tokio::test]
    async fn an_announced_frame_allocates_nothing_ahead() {
        use futures::AsyncWriteExt;
        let (a, mut b) = libp2p_core::testkit::memory_pair();
        let (_muxer, mut driver) = Mplex::default().connect(a);
        // NewStream 1, then a message announcing 1 MiB (varint 0x80 0x80 0x40).
        b.write_all(&[0x08, 0x00, 0x0a, 0x80, 0x80, 0x40])
            .await
            .unwrap();
        b.write_all(&[b'x'; 10]).await.unwrap();
        b.flush().await.unwrap();
        for _ in 0..100 {
            assert!(futures::poll!(&mut driver).is_pending());
            if driver.inbox.filled == 4 + 10 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            driver.inbox.filled,
            4 + 10,
            "the unfinished frame is buffered"
        );
        assert!(driver.inbox.partial_since.is_some());
        assert!(
            driver.inbox.rbuf.capacity() <= 64 * 1024,
            "{} bytes held for 14 received",
            driver.inbox.rbuf.capacity()
        );
    }

    #[test]
    fn small_read_buffers_are_not_kept() {
        let mut inbox = inbox(8 * 1024);
        inbox.make_room();
        let _held = receive(&mut inbox, 0);
        inbox.make_room();
        assert!(inbox.spare.is_none());
        assert!(inbox.rbuf.len() >= 8 * 1024);
    }
}
