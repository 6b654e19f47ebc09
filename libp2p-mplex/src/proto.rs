//! The mplex protocol core: a plain state machine with no I/O, no wakers and no clock.
//!
//! [`Connection`] takes decoded frames from the remote ([`Connection::handle_frame`]) and the
//! streams' operations (open, read, write, close, drop), and gives out the bytes to send
//! ([`Connection::poll_transmit`]) and [`Event`]s that say who may make progress now
//! ([`Connection::poll_event`]). Time comes in as `Instant` arguments: the driver reports when
//! an unfinished frame or a stalled write started, asks for the next deadline
//! ([`Connection::poll_timeout`]) and tells the core when it passed
//! ([`Connection::handle_timeout`]). The driver (`driver.rs`) holds the socket, the read
//! buffer, the wakers and the timer; stream handles (`stream.rs`) call the core under the
//! driver's lock.
//!
//! Dispatch, the stream limits, resets, the receive-buffer policy (back-pressure) and the
//! fairness of the output buffer all live here, and the tests at the bottom run two cores
//! wired together, byte for byte, without a socket or a runtime.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::task::Poll;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use libp2p_core::MuxerError;

use crate::config::{BufferPolicy, Config, MIN_OUTPUT_PILE};
use crate::error::MplexError;
use crate::frame::{self, Flag, Header, StreamKey};

/// What one stream holds.
#[derive(Debug, Default)]
struct StreamState {
    /// Received data not read yet, in frames as they arrived.
    recv: VecDeque<Bytes>,
    /// The sum of `recv`'s lengths.
    recv_len: usize,
    remote_closed: bool,
    local_closed: bool,
    reset: bool,
    /// The epoch of the output buffer this stream last wrote into (0: none).
    last_epoch: u64,
    /// Bytes written into the current output buffer.
    epoch_bytes: usize,
}

/// What the core tells the driver: who may make progress now. The driver wakes the tasks
/// waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The stream has data, its end, or a reset for its reader.
    Readable(StreamKey),
    /// An inbound stream waits for `accept`.
    Inbound,
    /// There is room in the output buffer again (or a stream was reset): writers retry.
    WriteRoom,
    /// An output buffer reached the socket and was flushed: writers waiting for their
    /// bytes to be out retry.
    Flushed,
    /// The connection is closed: everyone waiting learns it.
    Closed,
    /// The driver has work: output was queued, a close was asked for, or a full stream that
    /// stopped reading was drained.
    Transmit,
}

/// The pending events: one flag per kind (they carry nothing), a list for the readable
/// streams. Bounded by the number of streams.
#[derive(Debug, Default)]
struct Events {
    readable: Vec<StreamKey>,
    inbound: bool,
    write_room: bool,
    flushed: bool,
    closed: bool,
    transmit: bool,
}

/// An mplex connection as a state machine. See the module docs.
#[derive(Debug)]
pub(crate) struct Connection {
    config: Config,
    streams: HashMap<StreamKey, StreamState>,
    next_id: u64,
    inbound_count: usize,
    outbound_count: usize,
    /// Inbound streams not accepted yet.
    inbound: VecDeque<StreamKey>,
    /// Frames queued by streams and the core, in order.
    out: BytesMut,
    /// Epoch of `out`; bumped when the driver takes the buffer.
    epoch: u64,
    /// Highest epoch written to the socket and flushed.
    done_epoch: u64,
    /// Streams that wrote into the current output buffer.
    writers_this_epoch: usize,
    /// What one stream may queue in the current output buffer.
    share: usize,
    /// The stream whose full buffer stops the driver from reading (blocking policy).
    blocked_on: Option<StreamKey>,
    close_requested: bool,
    /// Why the connection is closed, once it is.
    closed: Option<String>,
    /// Why the driver failed, when it did: `accept` gives it to the host, which reports it
    /// as the connection's close cause.
    failure: Option<MuxerError>,
    /// Since when an unfinished frame has been waiting for the remote.
    partial_since: Option<Instant>,
    /// Since when the socket has refused our bytes (or our flush).
    write_stalled_since: Option<Instant>,
    events: Events,
}

/// A copy of a muxer error for another caller (`MuxerError` holds an `io::Error`, which is
/// not `Clone`).
pub(crate) fn error_copy(e: &MuxerError) -> MuxerError {
    match e {
        MuxerError::Closed => MuxerError::Closed,
        MuxerError::Io(e) => MuxerError::Io(io::Error::new(e.kind(), e.to_string())),
        MuxerError::TooManyStreams { limit } => MuxerError::TooManyStreams { limit: *limit },
        MuxerError::Protocol(s) => MuxerError::Protocol(s.clone()),
        other => MuxerError::Other(other.to_string().into()),
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

impl Connection {
    /// A fresh connection (the role does not matter to mplex).
    pub(crate) fn new(config: Config) -> Self {
        let share = config.write_buffer_len;
        Connection {
            config,
            streams: HashMap::new(),
            next_id: 0,
            inbound_count: 0,
            outbound_count: 0,
            inbound: VecDeque::new(),
            out: BytesMut::new(),
            epoch: 1,
            done_epoch: 0,
            writers_this_epoch: 0,
            share,
            blocked_on: None,
            close_requested: false,
            closed: None,
            failure: None,
            partial_since: None,
            write_stalled_since: None,
            events: Events::default(),
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The next event, if any.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        let e = &mut self.events;
        if let Some(key) = e.readable.pop() {
            return Some(Event::Readable(key));
        }
        for (flag, event) in [
            (&mut e.closed, Event::Closed),
            (&mut e.inbound, Event::Inbound),
            (&mut e.write_room, Event::WriteRoom),
            (&mut e.flushed, Event::Flushed),
            (&mut e.transmit, Event::Transmit),
        ] {
            if std::mem::take(flag) {
                return Some(event);
            }
        }
        None
    }

    fn readable(&mut self, key: StreamKey) {
        if !self.events.readable.contains(&key) {
            self.events.readable.push(key);
        }
    }

    fn push_frame(&mut self, key: StreamKey, flag: Flag, data: &[u8]) {
        frame::encode(&mut self.out, key.id, flag, data);
        self.events.transmit = true;
    }

    // ---- the connection ----

    /// Whether the connection is closed or closing: no new streams.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_some() || self.close_requested
    }

    /// Whether the connection has ended (not just been asked to close).
    pub(crate) fn has_ended(&self) -> bool {
        self.closed.is_some()
    }

    /// Asks for a graceful close: no new streams, inbound ones are reset, and the driver
    /// closes the socket once the queued output is out.
    pub(crate) fn request_close(&mut self) {
        self.close_requested = true;
        self.events.transmit = true;
    }

    /// Marks the connection closed (`failure` when the driver failed) and tells everyone
    /// waiting on it.
    pub(crate) fn shut(&mut self, reason: String, failure: Option<MuxerError>) {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
        if self.failure.is_none() {
            self.failure = failure;
        }
        let keys: Vec<StreamKey> = self.streams.keys().copied().collect();
        for key in keys {
            self.readable(key);
        }
        self.events.closed = true;
    }

    /// Number of streams open (both directions, including inbound ones not accepted yet).
    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Bytes buffered for readers, over all streams.
    pub(crate) fn buffered_len(&self) -> usize {
        self.streams.values().map(|s| s.recv_len).sum()
    }

    /// Why the connection is closed, if it is.
    pub(crate) fn closed_reason(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    // ---- opening and accepting ----

    /// Opens an outbound stream: queues its NewStream.
    pub(crate) fn open_stream(&mut self) -> Result<StreamKey, MuxerError> {
        if self.is_closed() {
            return Err(MuxerError::Closed);
        }
        if self.inbound_count + self.outbound_count >= self.config.max_streams {
            return Err(MuxerError::TooManyStreams {
                limit: self.config.max_streams,
            });
        }
        let key = StreamKey {
            id: self.next_id,
            ours: true,
        };
        self.next_id += 1;
        self.streams.insert(key, StreamState::default());
        self.outbound_count += 1;
        let name = key.id.to_string();
        self.push_frame(key, Flag::NewStream, name.as_bytes());
        Ok(key)
    }

    /// The next inbound stream; `Pending` until one arrives ([`Event::Inbound`]) or the
    /// connection ends ([`Event::Closed`]).
    pub(crate) fn accept_stream(&mut self) -> Poll<Result<StreamKey, MuxerError>> {
        if let Some(key) = self.inbound.pop_front() {
            return Poll::Ready(Ok(key));
        }
        if self.closed.is_some() {
            return Poll::Ready(Err(self
                .failure
                .as_ref()
                .map_or(MuxerError::Closed, error_copy)));
        }
        Poll::Pending
    }

    // ---- the streams ----

    /// Reads buffered data; `Pending` until [`Event::Readable`] for this stream.
    pub(crate) fn read(&mut self, key: StreamKey, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let max = self.config.max_buffer_len;
        let Some(st) = self.streams.get_mut(&key) else {
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
            if self.blocked_on == Some(key) && st.recv_len < max {
                self.blocked_on = None;
                self.events.transmit = true;
            }
            return Poll::Ready(Ok(n));
        }
        if st.remote_closed {
            return Poll::Ready(Ok(0));
        }
        if let Some(reason) = &self.closed {
            return Poll::Ready(Err(closed_error(reason)));
        }
        Poll::Pending
    }

    /// Queues a message with (a prefix of) `buf`; `Pending` while the output buffer is full
    /// or this stream has used its share of it, until [`Event::WriteRoom`].
    ///
    /// Fairness: within one output buffer each stream may queue at most its share (the
    /// buffer's size over the number of streams that wrote into the previous buffer, plus
    /// one), so a stream sending flat out always leaves room for another's small message.
    pub(crate) fn write(&mut self, key: StreamKey, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(reason) = &self.closed {
            return Poll::Ready(Err(closed_error(reason)));
        }
        let epoch = self.epoch;
        let share = self.share;
        let limit = self.config.write_buffer_len;
        let split = self.config.split_send_size;
        let Some(st) = self.streams.get_mut(&key) else {
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
        if self.out.len() >= limit || room == 0 {
            self.events.transmit = true;
            return Poll::Pending;
        }
        let n = buf.len().min(split).min(room.max(1));
        if st.last_epoch != epoch {
            st.last_epoch = epoch;
            self.writers_this_epoch += 1;
        }
        st.epoch_bytes += n;
        frame::encode(&mut self.out, key.id, key.message_flag(), &buf[..n]);
        self.events.transmit = true;
        Poll::Ready(Ok(n))
    }

    /// Whether this stream's queued bytes have reached the socket (flushed); `Pending` until
    /// [`Event::Flushed`].
    pub(crate) fn poll_written(&mut self, key: StreamKey) -> Poll<io::Result<()>> {
        let last = self.streams.get(&key).map(|s| s.last_epoch).unwrap_or(0);
        if last <= self.done_epoch {
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &self.closed {
            return Poll::Ready(Err(closed_error(reason)));
        }
        self.events.transmit = true;
        Poll::Pending
    }

    /// Closes our write side: queues a Close (once). Then [`Connection::poll_written`] says
    /// when it is out.
    pub(crate) fn close_write(&mut self, key: StreamKey) -> io::Result<()> {
        let epoch = self.epoch;
        match self.streams.get_mut(&key) {
            None => Err(reset_error()),
            // Once our Close is queued, a reset that follows (a remote that read to the end
            // and dropped its side) does not undo it.
            Some(st) if st.reset && !st.local_closed => Err(reset_error()),
            Some(st) if !st.local_closed => {
                if let Some(reason) = &self.closed {
                    return Err(closed_error(reason));
                }
                st.local_closed = true;
                st.last_epoch = epoch;
                self.push_frame(key, key.close_flag(), &[]);
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// The stream's handle is gone: forget the stream, and reset it for the remote unless it
    /// was closed (a reply sent and closed is never cut short) or reset already.
    pub(crate) fn drop_stream(&mut self, key: StreamKey) {
        let Some(st) = self.streams.remove(&key) else {
            return;
        };
        if key.ours {
            self.outbound_count -= 1;
        } else {
            self.inbound_count -= 1;
        }
        if self.blocked_on == Some(key) {
            self.blocked_on = None;
            self.events.transmit = true;
        }
        if self.closed.is_none() && !st.reset && !st.local_closed {
            self.push_frame(key, key.reset_flag(), &[]);
        }
    }

    // ---- input ----

    /// Whether the data frame `header` announces must wait in the read buffer (blocking
    /// policy, its stream's buffer full); if so, notes the stream whose reader will release
    /// the driver ([`Event::Transmit`] once it has read).
    pub(crate) fn would_block(&mut self, header: &Header) -> bool {
        if self.config.buffer_policy != BufferPolicy::Block
            || !header.flag.carries_data()
            || header.len == 0
        {
            return false;
        }
        match self.streams.get(&header.key) {
            Some(st)
                if !st.reset && !st.remote_closed && st.recv_len >= self.config.max_buffer_len =>
            {
                self.blocked_on = Some(header.key);
                true
            }
            _ => false,
        }
    }

    /// Whether a full stream stops the reading (until its reader drains it).
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked_on.is_some()
    }

    /// Whether the driver may read more input: not while our own answers pile up unsent.
    pub(crate) fn may_read(&self) -> bool {
        self.out.len() < 2 * self.config.write_buffer_len.max(MIN_OUTPUT_PILE)
    }

    /// Routes one frame from the remote; `data` is its payload (taken for a message).
    /// `Err` when the remote broke the protocol: the connection must end.
    pub(crate) fn handle_frame(
        &mut self,
        header: &Header,
        data: &mut Bytes,
    ) -> Result<(), MuxerError> {
        let key = header.key;
        let id = key.id;
        match header.flag {
            Flag::NewStream => {
                if self.streams.contains_key(&key) {
                    return Err(MuxerError::Protocol(format!(
                        "NewStream for stream {id}, which is already open"
                    )));
                }
                if self.inbound_count + self.outbound_count >= self.config.max_streams
                    || self.close_requested
                {
                    tracing::debug!(id, "too many inbound streams: resetting");
                    self.push_frame(key, key.reset_flag(), &[]);
                    return Ok(());
                }
                self.streams.insert(key, StreamState::default());
                self.inbound_count += 1;
                self.inbound.push_back(key);
                self.events.inbound = true;
            }
            Flag::MessageReceiver | Flag::MessageInitiator => {
                let max = self.config.max_buffer_len;
                let policy = self.config.buffer_policy;
                let Some(st) = self.streams.get_mut(&key) else {
                    return Ok(());
                };
                if st.reset || st.remote_closed || data.is_empty() {
                    return Ok(());
                }
                // The blocking policy is applied before the frame is taken off the read
                // buffer (`would_block`); here only the reset policy acts.
                if st.recv_len >= max && policy == BufferPolicy::ResetStream {
                    tracing::debug!(id, "receive buffer full: resetting the stream");
                    st.reset = true;
                    st.recv.clear();
                    st.recv_len = 0;
                    self.readable(key);
                    self.push_frame(key, key.reset_flag(), &[]);
                    return Ok(());
                }
                let bytes = std::mem::take(data);
                st.recv_len += bytes.len();
                st.recv.push_back(bytes);
                self.readable(key);
            }
            Flag::CloseReceiver | Flag::CloseInitiator => {
                if let Some(st) = self.streams.get_mut(&key) {
                    st.remote_closed = true;
                    self.readable(key);
                }
            }
            Flag::ResetReceiver | Flag::ResetInitiator => {
                if let Some(st) = self.streams.get_mut(&key) {
                    st.reset = true;
                    st.recv.clear();
                    st.recv_len = 0;
                    self.readable(key);
                    // Writers blocked on output space learn of the reset when they retry.
                    self.events.write_room = true;
                    if self.blocked_on == Some(key) {
                        self.blocked_on = None;
                    }
                }
            }
        }
        Ok(())
    }

    // ---- output ----

    /// Hands the queued frames to the driver when it has written everything before: swaps
    /// `buf` (empty) with the output buffer and returns the epoch to report back to
    /// [`Connection::on_transmitted`] once they are written and flushed. The next buffer's
    /// fair share is set from the number of streams that wrote into this one.
    pub(crate) fn poll_transmit(&mut self, buf: &mut BytesMut) -> Option<u64> {
        if self.out.is_empty() {
            return None;
        }
        buf.clear();
        std::mem::swap(buf, &mut self.out);
        let epoch = self.epoch;
        self.epoch += 1;
        self.share = self.config.write_buffer_len / (self.writers_this_epoch + 1);
        self.writers_this_epoch = 0;
        self.events.write_room = true;
        Some(epoch)
    }

    /// The output buffer of `epoch` is written and flushed.
    pub(crate) fn on_transmitted(&mut self, epoch: u64) {
        self.done_epoch = epoch;
        self.events.flushed = true;
    }

    /// Whether the driver should close the socket now: a close was asked for and nothing is
    /// queued (the driver checks that its own buffer is out too).
    pub(crate) fn wants_close(&self) -> bool {
        self.close_requested && self.out.is_empty()
    }

    // ---- time ----

    /// After a parse: whether an unfinished frame now waits for the remote (`incomplete`),
    /// and whether whole frames were parsed since the last call (`progressed`): the frame's
    /// clock starts at `now` when it is a new one.
    pub(crate) fn note_input(&mut self, incomplete: bool, progressed: bool, now: Instant) {
        if !incomplete {
            self.partial_since = None;
        } else if self.partial_since.is_none() || progressed {
            self.partial_since = Some(now);
        }
    }

    /// Whether an unfinished frame's clock runs.
    pub(crate) fn has_partial_frame(&self) -> bool {
        self.partial_since.is_some()
    }

    /// The socket refused our bytes (or our flush) at `now`: the write clock starts, unless
    /// it runs already.
    pub(crate) fn write_stalled(&mut self, now: Instant) {
        self.write_stalled_since.get_or_insert(now);
    }

    /// The socket took bytes (or flushed): the write clock stops.
    pub(crate) fn write_progressed(&mut self) {
        self.write_stalled_since = None;
    }

    /// The earliest deadline running, and the error it ends the connection with.
    fn deadline(&self) -> Option<(Instant, MplexError)> {
        let frame_timeout = self.config.frame_timeout;
        let write_timeout = self.config.write_timeout;
        let frame = self
            .partial_since
            .and_then(|since| since.checked_add(frame_timeout))
            .map(|at| {
                let e = MplexError::FrameTimeout {
                    timeout: frame_timeout,
                };
                (at, e)
            });
        let write = self
            .write_stalled_since
            .and_then(|since| since.checked_add(write_timeout))
            .map(|at| {
                let e = MplexError::WriteTimeout {
                    timeout: write_timeout,
                };
                (at, e)
            });
        match (frame, write) {
            (Some(f), Some(w)) => Some(if w.0 < f.0 { w } else { f }),
            (f, w) => f.or(w),
        }
    }

    /// When the driver must call [`Connection::handle_timeout`] next, if ever.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadline().map(|(at, _)| at)
    }

    /// Fails when the unfinished frame or the stalled write has run out of time at `now`.
    pub(crate) fn handle_timeout(&self, now: Instant) -> Result<(), MplexError> {
        match self.deadline() {
            Some((at, error)) if now >= at => Err(error),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two cores wired together: every byte one sends is decoded and handed to the other,
    //! synchronously, with time as a plain `Instant`.

    use super::*;
    use crate::frame::{decode, Decoded};
    use std::time::Duration;

    /// Moves everything `from` has queued into `to`, frame by frame, as a driver would
    /// (a frame for a full stream under the blocking policy stays in `pending`). Returns the
    /// bytes moved.
    fn transfer(from: &mut Connection, to: &mut Connection, pending: &mut BytesMut) -> usize {
        let mut buf = BytesMut::new();
        let mut moved = 0;
        if let Some(epoch) = from.poll_transmit(&mut buf) {
            moved = buf.len();
            pending.extend_from_slice(&buf);
            from.on_transmitted(epoch);
        }
        deliver(to, pending).expect("valid frames");
        moved
    }

    /// Hands the whole frames in `pending` to `to` until one must wait.
    fn deliver(to: &mut Connection, pending: &mut BytesMut) -> Result<(), MuxerError> {
        loop {
            let Decoded::Frame(header) = decode(pending, to.config().max_frame_len)? else {
                return Ok(());
            };
            if to.would_block(&header) {
                return Ok(());
            }
            pending.advance(header.header_len);
            let mut data = pending.split_to(header.len).freeze();
            to.handle_frame(&header, &mut data)?;
        }
    }

    fn events(c: &mut Connection) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn read_all(c: &mut Connection, key: StreamKey) -> Poll<io::Result<Vec<u8>>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(key, &mut buf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(got)),
                Poll::Ready(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if got.is_empty() => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(got)),
            }
        }
    }

    /// Two connections of `config` and the two directions of the wire between them (a to b,
    /// b to a).
    fn pair(config: Config) -> (Connection, Connection, BytesMut, BytesMut) {
        (
            Connection::new(config.clone()),
            Connection::new(config),
            BytesMut::new(),
            BytesMut::new(),
        )
    }

    /// A configuration that allows `max_streams` streams.
    fn max_streams(max_streams: usize) -> Config {
        Config {
            max_streams,
            ..Config::default()
        }
    }

    /// Whether `poll` is the error of a reset stream.
    fn is_reset<T>(poll: Poll<io::Result<T>>) -> bool {
        matches!(poll, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset)
    }

    #[test]
    fn dispatch_opens_carries_and_closes_both_ways() {
        let (mut a, mut b, mut wire_ab, mut wire_ba) = pair(Config::default());
        let s = a.open_stream().unwrap();
        assert!(events(&mut a).contains(&Event::Transmit));
        assert!(b.accept_stream().is_pending());
        assert!(matches!(a.write(s, b"hello"), Poll::Ready(Ok(5))));
        transfer(&mut a, &mut b, &mut wire_ab);
        assert!(events(&mut b).contains(&Event::Inbound));
        let Poll::Ready(Ok(r)) = b.accept_stream() else {
            panic!("an inbound stream");
        };
        assert_eq!(
            r,
            StreamKey {
                id: s.id,
                ours: false
            }
        );
        assert_eq!(
            read_all(&mut b, r).map(|x| x.unwrap()),
            Poll::Ready(b"hello".to_vec())
        );
        // The answer comes back on the receiver's flag, to the stream we opened.
        assert!(b.write(r, b"back").is_ready());
        b.close_write(r).unwrap();
        transfer(&mut b, &mut a, &mut wire_ba);
        assert!(events(&mut a).contains(&Event::Readable(s)));
        assert_eq!(
            read_all(&mut a, s).map(|x| x.unwrap()),
            Poll::Ready(b"back".to_vec())
        );
        // After the remote's Close, the end of the stream.
        let mut buf = [0u8; 8];
        assert!(matches!(a.read(s, &mut buf), Poll::Ready(Ok(0))));
        // Our write side stays open until we close it.
        assert!(matches!(a.poll_written(s), Poll::Ready(Ok(()))));
        a.close_write(s).unwrap();
        assert!(a.poll_written(s).is_pending());
        transfer(&mut a, &mut b, &mut wire_ab);
        assert!(matches!(a.poll_written(s), Poll::Ready(Ok(()))));
        assert!(matches!(b.read(r, &mut buf), Poll::Ready(Ok(0))));
        // Dropping both closed streams sends no reset.
        a.drop_stream(s);
        b.drop_stream(r);
        assert_eq!(transfer(&mut a, &mut b, &mut wire_ab), 0);
        assert_eq!(transfer(&mut b, &mut a, &mut wire_ba), 0);
        assert_eq!((a.stream_count(), b.stream_count()), (0, 0));
    }

    #[test]
    fn stream_limits_hold_in_both_directions() {
        let (mut a, mut b, mut wire_ab, mut wire_ba) = pair(max_streams(2));
        let s0 = a.open_stream().unwrap();
        let _s1 = a.open_stream().unwrap();
        assert!(matches!(
            a.open_stream(),
            Err(MuxerError::TooManyStreams { limit: 2 })
        ));
        // A dropped stream frees its place.
        a.drop_stream(s0);
        let _s2 = a.open_stream().unwrap();
        // b, with a limit of 2 too, takes two inbound streams and resets the third: bypass
        // a's own limit by raising it.
        let mut c = Connection::new(Config::default());
        for _ in 0..3 {
            c.open_stream().unwrap();
        }
        transfer(&mut c, &mut b, &mut wire_ab);
        assert_eq!(b.stream_count(), 2);
        transfer(&mut b, &mut c, &mut wire_ba);
        let mut buf = [0u8; 1];
        let third = StreamKey { id: 2, ours: true };
        assert!(is_reset(c.read(third, &mut buf)));
        let first = StreamKey { id: 0, ours: true };
        assert!(c.read(first, &mut buf).is_pending());
    }

    #[test]
    fn the_stream_limit_counts_both_directions_together() {
        let (mut a, mut b, mut wire_ab, mut wire_ba) = pair(max_streams(2));
        // One stream each way: a holds two, its limit.
        let _ours = a.open_stream().unwrap();
        let _theirs = b.open_stream().unwrap();
        transfer(&mut b, &mut a, &mut wire_ba);
        assert_eq!(a.stream_count(), 2);
        assert!(matches!(
            a.open_stream(),
            Err(MuxerError::TooManyStreams { limit: 2 })
        ));
        // b's next stream is reset by a, which is full.
        let third = b.open_stream().unwrap();
        transfer(&mut b, &mut a, &mut wire_ba);
        assert_eq!(a.stream_count(), 2);
        transfer(&mut a, &mut b, &mut wire_ab);
        let mut buf = [0u8; 1];
        assert!(is_reset(b.read(third, &mut buf)));
    }

    #[test]
    fn resets_reach_the_other_side_and_fail_both_ends() {
        let (mut a, mut b, mut wire_ab, mut wire_ba) = pair(Config::default());
        let s = a.open_stream().unwrap();
        transfer(&mut a, &mut b, &mut wire_ab);
        let Poll::Ready(Ok(r)) = b.accept_stream() else {
            panic!("an inbound stream");
        };
        // b drops the stream unclosed: a reset for a.
        b.drop_stream(r);
        transfer(&mut b, &mut a, &mut wire_ba);
        assert!(events(&mut a).contains(&Event::Readable(s)));
        let mut buf = [0u8; 4];
        assert!(is_reset(a.read(s, &mut buf)));
        assert!(is_reset(a.write(s, b"x")));
        // A reset stream is not reset again when dropped.
        a.drop_stream(s);
        assert_eq!(transfer(&mut a, &mut b, &mut wire_ab), 0);
        // Frames for unknown streams are ignored.
        let mut raw = BytesMut::new();
        frame::encode(&mut raw, 9, Flag::MessageInitiator, b"hi");
        frame::encode(&mut raw, 9, Flag::CloseInitiator, &[]);
        frame::encode(&mut raw, 9, Flag::ResetInitiator, &[]);
        deliver(&mut b, &mut raw).unwrap();
        assert_eq!(b.stream_count(), 0);
        // A NewStream for an id in use breaks the protocol.
        let t = a.open_stream().unwrap();
        transfer(&mut a, &mut b, &mut wire_ab);
        let mut dup = BytesMut::new();
        frame::encode(&mut dup, t.id, Flag::NewStream, &[]);
        assert!(matches!(
            deliver(&mut b, &mut dup),
            Err(MuxerError::Protocol(_))
        ));
    }

    #[test]
    fn back_pressure_blocks_the_connection_until_the_reader_drains() {
        let config = Config {
            max_buffer_len: 1000,
            split_send_size: 400,
            ..Config::default()
        };
        let (mut a, mut b, mut wire, _) = pair(config);
        let s = a.open_stream().unwrap();
        transfer(&mut a, &mut b, &mut wire);
        let Poll::Ready(Ok(r)) = b.accept_stream() else {
            panic!("an inbound stream");
        };
        for _ in 0..5 {
            assert!(matches!(a.write(s, &[7; 400]), Poll::Ready(Ok(400))));
        }
        transfer(&mut a, &mut b, &mut wire);
        // 1,200 bytes taken (the buffer holds its limit plus one frame), 800 wait on the wire.
        assert_eq!(b.buffered_len(), 1200);
        assert!(b.is_blocked());
        assert!(!wire.is_empty());
        let mut buf = [0u8; 300];
        assert!(matches!(b.read(r, &mut buf[..100]), Poll::Ready(Ok(100))));
        // Still at its limit: still blocked.
        assert!(b.is_blocked());
        assert!(matches!(b.read(r, &mut buf), Poll::Ready(Ok(300))));
        assert!(!b.is_blocked());
        assert!(events(&mut b).contains(&Event::Transmit));
        // One more frame fits; the last one waits again.
        deliver(&mut b, &mut wire).unwrap();
        assert_eq!(b.buffered_len(), 1200);
        assert!(b.is_blocked());
        assert_eq!(wire.len(), 400 + 3);
        assert_eq!(
            read_all(&mut b, r).map(|v| v.unwrap().len()),
            Poll::Ready(1200)
        );
        assert!(!b.is_blocked());
        deliver(&mut b, &mut wire).unwrap();
        assert!(wire.is_empty());
        assert_eq!(
            read_all(&mut b, r).map(|v| v.unwrap().len()),
            Poll::Ready(400)
        );
    }

    #[test]
    fn the_reset_policy_resets_the_full_stream_and_keeps_the_others() {
        let config = Config {
            max_buffer_len: 1000,
            split_send_size: 400,
            buffer_policy: BufferPolicy::ResetStream,
            ..Config::default()
        };
        let (mut a, mut b, mut wire_ab, mut wire_ba) = pair(config);
        let slow = a.open_stream().unwrap();
        let other = a.open_stream().unwrap();
        for _ in 0..4 {
            assert!(a.write(slow, &[1; 400]).is_ready());
        }
        assert!(a.write(other, b"still here").is_ready());
        transfer(&mut a, &mut b, &mut wire_ab);
        assert!(!b.is_blocked());
        let Poll::Ready(Ok(rs)) = b.accept_stream() else {
            panic!("stream")
        };
        let Poll::Ready(Ok(ro)) = b.accept_stream() else {
            panic!("stream")
        };
        let mut buf = [0u8; 16];
        assert!(is_reset(b.read(rs, &mut buf)));
        assert_eq!(b.buffered_len(), 10);
        assert!(matches!(b.read(ro, &mut buf), Poll::Ready(Ok(10))));
        transfer(&mut b, &mut a, &mut wire_ba);
        assert!(matches!(a.write(slow, b"x"), Poll::Ready(Err(_))));
        assert!(a.write(other, b"x").is_ready());
    }

    #[test]
    fn a_flat_out_stream_leaves_room_for_another_in_the_same_buffer() {
        let config = Config {
            write_buffer_len: 64 * 1024,
            split_send_size: 16 * 1024,
            ..Config::default()
        };
        let mut a = Connection::new(config);
        let bulk = a.open_stream().unwrap();
        let small = a.open_stream().unwrap();
        let mut buf = BytesMut::new();
        // Epoch 1: bulk fills the whole buffer on its own (nobody wrote before it).
        while a.write(bulk, &[0; 16 * 1024]).is_ready() {}
        assert!(a.poll_transmit(&mut buf).is_some());
        // Epoch 2: bulk wrote alone into epoch 1, so its share is half the buffer; small
        // writes into the same buffer after bulk is stopped.
        let mut bulk_bytes = 0;
        while let Poll::Ready(Ok(n)) = a.write(bulk, &[0; 16 * 1024]) {
            bulk_bytes += n;
        }
        assert_eq!(bulk_bytes, 32 * 1024);
        assert!(events(&mut a).contains(&Event::Transmit));
        assert!(matches!(a.write(small, b"ping"), Poll::Ready(Ok(4))));
        assert!(a.poll_transmit(&mut buf).is_some());
        let mut frames = Vec::new();
        while let Decoded::Frame(h) = decode(&buf, MAX_TEST_FRAME).unwrap() {
            frames.push((h.key.id, h.len));
            buf.advance(h.frame_len());
        }
        assert_eq!(frames.last(), Some(&(small.id, 4)));
        // Room again: writers are told.
        assert!(events(&mut a).contains(&Event::WriteRoom));
    }

    const MAX_TEST_FRAME: usize = 1 << 20;

    #[test]
    fn unfinished_frames_and_stalled_writes_time_out_at_their_bound() {
        let config = Config {
            frame_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            ..Config::default()
        };
        let mut a = Connection::new(config);
        let t0 = Instant::now();
        assert_eq!(a.poll_timeout(), None);
        a.note_input(true, false, t0);
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        // The same frame still unfinished later: the clock does not restart.
        a.note_input(true, false, t0 + Duration::from_secs(10));
        assert!(a.handle_timeout(t0 + Duration::from_secs(29)).is_ok());
        assert!(matches!(
            a.handle_timeout(t0 + Duration::from_secs(30)),
            Err(MplexError::FrameTimeout { .. })
        ));
        // A new frame after progress restarts it; a complete buffer stops it.
        a.note_input(true, true, t0 + Duration::from_secs(20));
        assert!(a.handle_timeout(t0 + Duration::from_secs(49)).is_ok());
        a.note_input(false, true, t0 + Duration::from_secs(21));
        assert_eq!(a.poll_timeout(), None);
        // The write clock.
        a.write_stalled(t0);
        a.write_stalled(t0 + Duration::from_secs(5));
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        assert!(matches!(
            a.handle_timeout(t0 + Duration::from_secs(60)),
            Err(MplexError::WriteTimeout { .. })
        ));
        a.write_progressed();
        assert!(a.handle_timeout(t0 + Duration::from_secs(600)).is_ok());
    }

    #[test]
    fn a_closed_connection_fails_everyone_with_its_cause() {
        let (mut a, ..) = pair(Config::default());
        let s = a.open_stream().unwrap();
        let _ = events(&mut a);
        a.shut(
            "gone".into(),
            Some(MuxerError::Protocol("bad frame".into())),
        );
        let ev = events(&mut a);
        assert!(ev.contains(&Event::Closed) && ev.contains(&Event::Readable(s)));
        let mut buf = [0u8; 1];
        assert!(
            matches!(a.read(s, &mut buf), Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted)
        );
        assert!(matches!(a.write(s, b"x"), Poll::Ready(Err(_))));
        assert!(matches!(
            a.accept_stream(),
            Poll::Ready(Err(MuxerError::Protocol(_)))
        ));
        assert!(matches!(a.open_stream(), Err(MuxerError::Closed)));
    }
}
