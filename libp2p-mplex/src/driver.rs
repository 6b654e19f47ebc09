//! The async part: the driver future that owns the socket, the read buffer, the output buffer
//! being written and the timer, and the wakers of everyone waiting on the core.
//!
//! The core ([`Connection`]) sits with the wakers behind one mutex ([`Shared`]), which the
//! stream handles lock too. After each call into the core, [`Inner::wake`] turns the core's
//! events into wake-ups.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use libp2p_core::{MuxerError, Socket};

use crate::config::{DRIVER_BUDGET, INITIAL_READ_CHUNK, MAX_READ_CHUNK, RECYCLE_MIN, SPARE_BLOCKS};
use crate::frame::{self, Decoded, StreamKey};
use crate::proto::{error_copy, Connection, Event};

/// The tasks waiting on the core, by what they wait for. Each list holds one entry per
/// distinct waiting task (a stream's reader, `accept` callers, writers waiting for room or
/// for their bytes to be out, `close` callers); bounded by the number of handles.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    read: HashMap<StreamKey, Waker>,
    accept: Vec<Waker>,
    write: Vec<Waker>,
    flush: Vec<Waker>,
    close: Vec<Waker>,
    driver: Option<Waker>,
}

fn register(wakers: &mut Vec<Waker>, waker: &Waker) {
    if !wakers.iter().any(|w| w.will_wake(waker)) {
        wakers.push(waker.clone());
    }
}

fn set(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// The core and the wakers, under [`Shared`]'s lock.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    wakers: Wakers,
}

impl Inner {
    /// Wakes the tasks the core's pending events concern.
    pub(crate) fn wake(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            let w = &mut self.wakers;
            match event {
                Event::Readable(key) => {
                    if let Some(w) = w.read.remove(&key) {
                        w.wake();
                    }
                }
                Event::Inbound => w.accept.drain(..).for_each(Waker::wake),
                Event::WriteRoom => w.write.drain(..).for_each(Waker::wake),
                Event::Flushed => w.flush.drain(..).for_each(Waker::wake),
                Event::Transmit => {
                    if let Some(d) = &w.driver {
                        d.wake_by_ref();
                    }
                }
                Event::Closed => {
                    for waker in w
                        .read
                        .drain()
                        .map(|(_, w)| w)
                        .chain(w.accept.drain(..))
                        .chain(w.write.drain(..))
                        .chain(w.flush.drain(..))
                        .chain(w.close.drain(..))
                    {
                        waker.wake();
                    }
                }
            }
        }
    }

    /// A stream's reader waits for [`Event::Readable`].
    pub(crate) fn wait_read(&mut self, key: StreamKey, waker: &Waker) {
        match self.wakers.read.get(&key) {
            Some(w) if w.will_wake(waker) => {}
            _ => {
                self.wakers.read.insert(key, waker.clone());
            }
        }
    }

    /// The stream is gone: its reader waits no more.
    pub(crate) fn forget(&mut self, key: StreamKey) {
        self.wakers.read.remove(&key);
    }

    /// An `accept` caller waits for [`Event::Inbound`].
    pub(crate) fn wait_accept(&mut self, waker: &Waker) {
        register(&mut self.wakers.accept, waker);
    }

    /// A writer waits for [`Event::WriteRoom`].
    pub(crate) fn wait_write(&mut self, waker: &Waker) {
        register(&mut self.wakers.write, waker);
    }

    /// A writer waits for [`Event::Flushed`].
    pub(crate) fn wait_flush(&mut self, waker: &Waker) {
        register(&mut self.wakers.flush, waker);
    }

    /// A `close` caller waits for [`Event::Closed`].
    pub(crate) fn wait_close(&mut self, waker: &Waker) {
        register(&mut self.wakers.close, waker);
    }
}

/// The state the handles, the streams and the driver share.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn new(conn: Connection) -> Self {
        Shared {
            inner: Mutex::new(Inner {
                conn,
                wakers: Wakers::default(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the connection, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The future that runs an mplex connection: spawn it. It ends when the connection closes,
/// with an error if the socket failed or the remote broke the protocol.
pub struct MplexDriver<C> {
    socket: C,
    shared: Arc<Shared>,
    inbox: Inbox,
    /// Wakes the driver when an unfinished frame or a stalled write may have run out of time;
    /// allocated the first time the driver waits with either, then reset as needed.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The output buffer being written; `written` bytes of it are out.
    writing: BytesMut,
    written: usize,
    writing_epoch: u64,
    need_flush: bool,
    /// The core's write clock runs (kept here too, so that a write that goes through needs
    /// no lock to say so).
    write_stalled: bool,
    finished: bool,
}

impl<C> std::fmt::Debug for MplexDriver<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MplexDriver")
            .field("buffered_in", &self.inbox.buffered())
            .field("pending_out", &(self.writing.len() - self.written))
            .finish()
    }
}

/// The driver's input side: received bytes and the parser over them.
///
/// Reads go into a block of memory that is zeroed once, when it is allocated, and then reused
/// for as long as the connection reads: a data frame is handed to its stream as a slice of the
/// block (no copy), and the block takes reads again once the streams have dropped every frame
/// of it. While they hold some, reads go into another block (a spare one that is free again,
/// else a new one) and only the unparsed bytes move over.
///
/// Why not one `BytesMut` with the frames split off its front: the room it gets back from
/// split-off frames comes back as spare capacity, which a `futures` read (into `&mut [u8]`)
/// can only use once it has been zeroed again, so every byte received cost a memset as well
/// as its copy. Safe code cannot tell `BytesMut` that its spare room still holds initialised
/// bytes; a `Bytes` view of the whole block keeps them initialised instead, and
/// [`Bytes::try_into_mut`] gives the whole block back, writable, once the view is the last
/// handle on it.
pub(crate) struct Inbox {
    /// The current block while it is ours alone (empty while `shared` holds it); every byte of
    /// it is initialised, and reads go behind `end`.
    open: BytesMut,
    /// The current block once frames have been taken from it: a view of all of it, of which
    /// the streams hold slices.
    shared: Option<Bytes>,
    /// Received bytes not parsed yet: `start..end` of the current block.
    start: usize,
    end: usize,
    read_chunk: usize,
    /// A full stream stopped the parsing; complete frames may wait in the block.
    blocked: bool,
    /// Blocks given up while streams still held frames of them (bulk transfers only, at most
    /// [`SPARE_BLOCKS`]), used again once the streams have dropped those.
    spare: Vec<Bytes>,
    /// Frames parsed so far (to tell a new unfinished frame from the same one).
    frames: u64,
}

impl Inbox {
    fn new(read_chunk: usize) -> Self {
        Inbox {
            open: BytesMut::new(),
            shared: None,
            start: 0,
            end: 0,
            read_chunk,
            blocked: false,
            spare: Vec::new(),
            frames: 0,
        }
    }

    /// Received bytes not parsed yet.
    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The current block, all of it.
    fn block(&self) -> &[u8] {
        self.shared.as_deref().unwrap_or(&self.open)
    }

    /// Bytes `from..to` of the current block, for a stream to hold (no copy). From here on
    /// the block takes no reads until the streams have dropped what they hold of it.
    fn take(&mut self, from: usize, to: usize) -> Bytes {
        let open = &mut self.open;
        let view = self
            .shared
            .get_or_insert_with(|| std::mem::take(open).freeze());
        view.slice(from..to)
    }

    /// Room a new block gets beyond one chunk during bulk transfers: reads of up to 1.5
    /// chunks, as `BytesMut`'s own growth used to give (an in-memory pipe runs at two thirds of
    /// its speed with reads of one chunk). None for small blocks, which idle connections hold.
    fn bulk_headroom(&self) -> usize {
        if self.read_chunk >= RECYCLE_MIN {
            self.read_chunk / 2
        } else {
            0
        }
    }

    /// Room for a read of about `read_chunk` bytes behind the unparsed ones (at least half a
    /// chunk): in the current block when it is ours alone again, else in another block.
    fn make_room(&mut self) -> &mut [u8] {
        if let Some(view) = self.shared.take() {
            match view.try_into_mut() {
                Ok(block) => self.open = block,
                Err(view) => self.shared = Some(view),
            }
        }
        let pending = self.buffered();
        if self.shared.is_none() {
            if pending == 0 {
                self.start = 0;
                self.end = 0;
            }
            if self.open.len() - self.end >= self.read_chunk / 2 {
                return &mut self.open[self.end..];
            }
            if self.start > 0 && self.open.len() >= pending + self.read_chunk {
                self.open.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = pending;
                return &mut self.open[pending..];
            }
        }
        let want = pending + self.read_chunk;
        let mut next = None;
        let mut i = 0;
        while i < self.spare.len() {
            if !self.spare[i].is_unique() {
                i += 1;
            } else if next.is_none() && self.spare[i].len() >= want {
                next = Some(self.spare.swap_remove(i));
            } else if self.spare[i].len() < self.read_chunk {
                // Too small for any read from now on (the chunk only grows).
                self.spare.swap_remove(i);
            } else {
                i += 1;
            }
        }
        // A spare found unique stays unique: nobody else holds a handle to clone it.
        let mut next = match next.map(Bytes::try_into_mut) {
            Some(Ok(block)) => block,
            _ => BytesMut::zeroed(want + self.bulk_headroom()),
        };
        let old = match self.shared.take() {
            Some(view) => view,
            None => std::mem::take(&mut self.open).freeze(),
        };
        next[..pending].copy_from_slice(&old[self.start..self.end]);
        // Worth keeping only during bulk transfers (small blocks are cheap to allocate, and
        // an idle connection should not hold two).
        if self.read_chunk >= RECYCLE_MIN && self.spare.len() < SPARE_BLOCKS && !old.is_empty() {
            self.spare.push(old);
        }
        self.open = next;
        self.start = 0;
        self.end = pending;
        &mut self.open[pending..]
    }

    /// Decodes the complete frames in the read buffer and hands them to the core. A data
    /// frame for a stream that is full under the blocking policy stays in the buffer and
    /// stops the parsing. Then tells the core whether an unfinished frame waits.
    fn parse(&mut self, conn: &mut Connection) -> Result<(), MuxerError> {
        let before = self.frames;
        self.blocked = false;
        let result = self.parse_frames(conn);
        let incomplete = self.buffered() > 0 && !self.blocked;
        // The clock is read only while a frame is unfinished.
        if incomplete || conn.has_partial_frame() {
            conn.note_input(incomplete, self.frames != before, Instant::now());
        }
        result
    }

    fn parse_frames(&mut self, conn: &mut Connection) -> Result<(), MuxerError> {
        loop {
            let max = conn.config().max_frame_len;
            let unparsed = &self.block()[self.start..self.end];
            let Decoded::Frame(header) = frame::decode(unparsed, max)? else {
                return Ok(());
            };
            let mut data = Bytes::new();
            if header.flag.carries_data() && header.len > 0 {
                if conn.would_block(&header) {
                    self.blocked = true;
                    return Ok(());
                }
                let from = self.start + header.header_len;
                data = self.take(from, from + header.len);
            }
            self.start += header.frame_len();
            self.frames += 1;
            conn.handle_frame(&header, &mut data)?;
        }
    }
}

impl<C: Socket> MplexDriver<C> {
    pub(crate) fn new(socket: C, shared: Arc<Shared>) -> Self {
        MplexDriver {
            socket,
            shared,
            inbox: Inbox::new(INITIAL_READ_CHUNK),
            timer: None,
            writing: BytesMut::new(),
            written: 0,
            writing_epoch: 0,
            need_flush: false,
            write_stalled: false,
            finished: false,
        }
    }

    /// The socket took bytes or flushed: the core's write clock stops.
    fn write_progressed(&mut self) {
        if std::mem::take(&mut self.write_stalled) {
            self.shared.lock().conn.write_progressed();
        }
    }

    /// The socket refused bytes, a flush or the close: the core's write clock starts.
    fn write_stalled(&mut self) {
        if !self.write_stalled {
            self.write_stalled = true;
            self.shared.lock().conn.write_stalled(Instant::now());
        }
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MuxerError>> {
        {
            let mut inner = self.shared.lock();
            set(&mut inner.wakers.driver, cx.waker());
        }
        for _ in 0..DRIVER_BUDGET {
            let mut progress = false;

            // Output: write the current buffer, flush it, then take the next one.
            if self.written < self.writing.len() {
                match Pin::new(&mut self.socket).poll_write(cx, &self.writing[self.written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(MuxerError::Closed)),
                    Poll::Ready(Ok(n)) => {
                        self.written += n;
                        self.write_progressed();
                        progress = true;
                        if self.written == self.writing.len() {
                            self.need_flush = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(MuxerError::Io(e))),
                    Poll::Pending => self.write_stalled(),
                }
            }
            if self.written == self.writing.len() && self.need_flush {
                match Pin::new(&mut self.socket).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.need_flush = false;
                        progress = true;
                        self.write_progressed();
                        let mut inner = self.shared.lock();
                        inner.conn.on_transmitted(self.writing_epoch);
                        inner.wake();
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(MuxerError::Io(e))),
                    Poll::Pending => self.write_stalled(),
                }
            }
            let all_out = self.written == self.writing.len() && !self.need_flush;
            let close_now;
            {
                let mut inner = self.shared.lock();
                if all_out {
                    if let Some(epoch) = inner.conn.poll_transmit(&mut self.writing) {
                        self.written = 0;
                        self.writing_epoch = epoch;
                        inner.wake();
                        progress = true;
                    }
                }
                close_now = inner.conn.wants_close()
                    && self.written == self.writing.len()
                    && !self.need_flush;
            }
            if close_now {
                return match Pin::new(&mut self.socket).poll_close(cx) {
                    Poll::Ready(_) => Poll::Ready(Ok(())),
                    Poll::Pending => {
                        // A close that cannot flush is a stalled write like any other.
                        self.write_stalled();
                        self.poll_deadline(cx)?;
                        Poll::Pending
                    }
                };
            }

            // Input: route buffered frames, then read more.
            let (may_read, blocked) = {
                let mut inner = self.shared.lock();
                if self.inbox.blocked && !inner.conn.is_blocked() {
                    let parsed = self.inbox.parse(&mut inner.conn);
                    inner.wake();
                    parsed?;
                    progress |= !self.inbox.blocked;
                }
                (inner.conn.may_read(), self.inbox.blocked)
            };
            // Stop reading while our own answers pile up unsent (a remote that opens streams
            // we reset without reading the resets), or while a full stream blocks.
            if !blocked && may_read {
                let inbox = &mut self.inbox;
                let room = inbox.make_room();
                let room_len = room.len();
                match Pin::new(&mut self.socket).poll_read(cx, room) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(n)) => {
                        if n == room_len {
                            inbox.read_chunk = (inbox.read_chunk * 2).min(MAX_READ_CHUNK);
                        }
                        inbox.end += n;
                        progress = true;
                        let mut inner = self.shared.lock();
                        let parsed = inbox.parse(&mut inner.conn);
                        inner.wake();
                        parsed?;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(MuxerError::Io(e))),
                    Poll::Pending => {}
                }
            }
            if !progress {
                self.poll_deadline(cx)?;
                return Poll::Pending;
            }
        }
        self.poll_deadline(cx)?;
        // Used up the budget: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Fails when the core's deadline (an unfinished frame, a stalled write) has passed;
    /// otherwise makes sure the driver is woken when it does. The timer is reset only when it
    /// fires early (the frame deadline moves only later, with each new frame), so a bulk
    /// transfer does not touch it per frame.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Result<(), MuxerError> {
        let deadline = {
            let inner = self.shared.lock();
            let Some(deadline) = inner.conn.poll_timeout() else {
                return Ok(());
            };
            inner
                .conn
                .handle_timeout(Instant::now())
                .map_err(|e| MuxerError::Io(e.into_io()))?;
            deadline
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        while timer.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= deadline {
                let inner = self.shared.lock();
                return inner
                    .conn
                    .handle_timeout(Instant::now().max(deadline.into_std()))
                    .map_err(|e| MuxerError::Io(e.into_io()));
            }
            timer.as_mut().reset(deadline);
        }
        Ok(())
    }

    fn finish(&mut self, reason: String, failure: Option<MuxerError>) {
        if !self.finished {
            self.finished = true;
            let mut inner = self.shared.lock();
            inner.conn.shut(reason, failure);
            inner.wake();
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
                this.finish("closed".into(), None);
            }
            Err(e) => {
                tracing::debug!(error = %e, "mplex connection failed");
                this.finish(e.to_string(), Some(error_copy(e)));
            }
        }
        Poll::Ready(result)
    }
}

impl<C> Drop for MplexDriver<C> {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            let mut inner = self.shared.lock();
            inner.conn.shut("driver dropped".into(), None);
            inner.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mplex;

    /// Pretends a read filled the room and the parser took all of it but `keep` bytes as a
    /// frame.
    fn receive(inbox: &mut Inbox, keep: usize) -> Bytes {
        let end = inbox.end;
        inbox.open[end..].fill(7);
        inbox.end = inbox.open.len();
        let frame = inbox.take(inbox.start, inbox.end - keep);
        inbox.start = inbox.end - keep;
        frame
    }

    #[test]
    fn read_buffers_are_recycled_once_their_frames_are_dropped() {
        let mut inbox = Inbox::new(MAX_READ_CHUNK);
        let first = inbox.make_room().as_ptr();
        let held = receive(&mut inbox, 10);
        // A stream still holds the frame: a second block, with the 10 unparsed bytes.
        inbox.make_room();
        assert_ne!(inbox.block().as_ptr(), first);
        assert_eq!(inbox.buffered(), 10);
        assert!(inbox.block()[..10].iter().all(|&b| b == 7));
        assert!(inbox.block().len() >= 10 + MAX_READ_CHUNK);
        let second_frame = receive(&mut inbox, 3);
        // The first block's frame is gone by now: it is used again, no allocation, and not
        // zeroed again (what the first read left in it is still there behind the 3 bytes).
        drop(held);
        inbox.make_room();
        assert_eq!(inbox.block().as_ptr(), first);
        assert_eq!(inbox.buffered(), 3);
        assert!(inbox.block().iter().all(|&b| b == 7));
        drop(second_frame);
    }

    #[test]
    fn a_block_whose_frames_are_dropped_takes_the_next_read_in_place() {
        let mut inbox = Inbox::new(MAX_READ_CHUNK);
        let first = inbox.make_room().as_ptr();
        let frame = receive(&mut inbox, 10);
        drop(frame);
        // Ours alone again: the 10 unparsed bytes move to its front, nothing is allocated.
        let room = inbox.make_room().len();
        assert_eq!(inbox.block().as_ptr(), first);
        assert_eq!((inbox.start, inbox.end), (0, 10));
        assert_eq!(room, inbox.block().len() - 10);
        assert!(inbox.spare.is_empty());
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
            if driver.inbox.buffered() == 4 + 10 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            driver.inbox.buffered(),
            4 + 10,
            "the unfinished frame is buffered"
        );
        assert!(driver.shared.lock().conn.has_partial_frame());
        assert!(
            driver.inbox.block().len() <= 64 * 1024,
            "{} bytes held for 14 received",
            driver.inbox.block().len()
        );
    }

    #[test]
    fn small_read_buffers_are_not_kept() {
        let mut inbox = Inbox::new(8 * 1024);
        inbox.make_room();
        let _held = receive(&mut inbox, 0);
        inbox.make_room();
        assert!(inbox.spare.is_empty());
        assert!(inbox.block().len() >= 8 * 1024);
    }
}
