//! Length-prefixed frames: the one framing layer of the workspace.
//!
//! A frame is a length head followed by that many bytes. The head is an unsigned varint
//! ([`Head::Uvarint`]: multistream-select, plaintext, identify, kad, gossipsub) or a fixed
//! big-endian integer ([`Head::U16`] for noise, [`Head::U32`] for secio).
//!
//! Two rules hold everywhere:
//! - the announced length is checked against the maximum as soon as the head is complete,
//!   before a byte is allocated for the body ([`FrameError::TooLong`]);
//! - memory grows with the bytes that arrive, never with the announced length: a head that
//!   announces megabytes and is followed by ten bytes costs ten bytes (plus, when reading
//!   straight into the decoder, at most one read chunk).
//!
//! [`Decoder`] is the sans-I/O core: push bytes in ([`Decoder::push`]) or read straight into
//! it ([`Decoder::read_buf`], [`Decoder::advance`]), pop whole frames out
//! ([`Decoder::next_frame`]). [`read_frame`], [`try_read_frame`] and [`write_frame`] are the
//! async helpers for the common uvarint case over futures' `AsyncRead` / `AsyncWrite`;
//! [`Codec::read`] and [`Codec::write`] do the same for any head. The readers never read a
//! byte past the frame, so a socket can be handed on (to the next protocol) right after.
//!
//! ```
//! use libp2p_multistream::framing::{Codec, Decoder};
//!
//! let codec = Codec::uvarint(1024);
//! let mut wire = Vec::new();
//! codec.encode(b"hello", &mut wire).unwrap();
//! let mut decoder = Decoder::new(codec);
//! decoder.push(&wire[..3]);
//! assert_eq!(decoder.next_frame().unwrap(), None);
//! decoder.push(&wire[3..]);
//! assert_eq!(decoder.next_frame().unwrap().as_deref(), Some(&b"hello"[..]));
//! ```

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A 64-bit unsigned varint takes at most this many bytes.
const MAX_VARINT_LEN: usize = 10;

/// Default for [`Decoder::with_read_chunk`]: the most [`Decoder::read_buf`] hands out beyond
/// the bytes held. 8 KiB: one socket read of a typical TCP segment train, and small next to
/// any frame limit.
pub const DEFAULT_READ_CHUNK: usize = 8 * 1024;

/// The form of the length head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Head {
    /// An unsigned varint (LEB128, at most 10 bytes, minimal encoding required).
    Uvarint,
    /// A 2-byte big-endian integer (lengths up to 65535).
    U16,
    /// A 4-byte big-endian integer.
    U32,
}

impl Head {
    /// The largest length this head can express.
    pub fn limit(self) -> u64 {
        match self {
            Head::Uvarint => u64::MAX,
            Head::U16 => u64::from(u16::MAX),
            Head::U32 => u64::from(u32::MAX),
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The socket failed, or ended in the middle of a frame (kind `UnexpectedEof`).
    #[error("i/o error while framing: {0}")]
    Io(#[from] io::Error),
    /// The remote announced a frame longer than the maximum; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// The announced length.
        len: u64,
        /// The maximum in force.
        max: usize,
    },
    /// The length head is not a valid (minimal, at most 64-bit) unsigned varint.
    #[error("invalid length prefix")]
    InvalidHead,
    /// We were asked to send a frame longer than the maximum or than the head can express.
    #[error("refusing to send a frame of {len} bytes (limit {max})")]
    Oversized {
        /// The length of the frame.
        len: usize,
        /// The limit it broke.
        max: u64,
    },
}

/// A codec: the head form and the largest body accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    head: Head,
    max: usize,
}

impl Codec {
    /// Frames with `head`, bodies of at most `max` bytes (capped by what `head` can express).
    pub fn new(head: Head, max: usize) -> Self {
        let max = u64::try_from(max).unwrap_or(u64::MAX).min(head.limit());
        Codec {
            head,
            max: usize::try_from(max).unwrap_or(usize::MAX),
        }
    }

    /// Uvarint heads, bodies of at most `max` bytes.
    pub fn uvarint(max: usize) -> Self {
        Codec::new(Head::Uvarint, max)
    }

    /// The head form.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The largest body accepted.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Appends `body` to `out` as one frame.
    pub fn encode(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if body.len() > self.max {
            return Err(FrameError::Oversized {
                len: body.len(),
                max: self.max as u64,
            });
        }
        out.reserve(MAX_VARINT_LEN + body.len());
        match self.head {
            Head::Uvarint => {
                let mut buf = unsigned_varint::encode::usize_buffer();
                out.extend_from_slice(unsigned_varint::encode::usize(body.len(), &mut buf));
            }
            // `body.len() <= self.max <= head.limit()`, so the casts cannot truncate.
            Head::U16 => out.extend_from_slice(&(body.len() as u16).to_be_bytes()),
            Head::U32 => out.extend_from_slice(&(body.len() as u32).to_be_bytes()),
        }
        out.extend_from_slice(body);
        Ok(())
    }

    /// Parses a head at the start of `buf`: `Ok(None)` if more bytes are needed, else the
    /// head's length and the body's length (checked against the maximum).
    fn parse_head(&self, buf: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
        let (head_len, len) = match self.head {
            Head::Uvarint => match unsigned_varint::decode::u64(buf) {
                Ok((len, rest)) => (buf.len() - rest.len(), len),
                Err(unsigned_varint::decode::Error::Insufficient) if buf.len() < MAX_VARINT_LEN => {
                    return Ok(None)
                }
                Err(_) => return Err(FrameError::InvalidHead),
            },
            Head::U16 => match buf.get(..2) {
                Some(b) => (2, u64::from(u16::from_be_bytes([b[0], b[1]]))),
                None => return Ok(None),
            },
            Head::U32 => match buf.get(..4) {
                Some(b) => (4, u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
                None => return Ok(None),
            },
        };
        if len > self.max as u64 {
            return Err(FrameError::TooLong { len, max: self.max });
        }
        Ok(Some((head_len, len as usize)))
    }

    /// How many more bytes the frame starting at `buf` needs, reading no further than its
    /// end (a varint head is taken one byte at a time). Zero when it is whole.
    fn missing(&self, buf: &[u8]) -> Result<usize, FrameError> {
        Ok(match self.parse_head(buf)? {
            Some((head, len)) => (head + len).saturating_sub(buf.len()),
            None => match self.head {
                Head::Uvarint => 1,
                Head::U16 => 2 - buf.len(),
                Head::U32 => 4 - buf.len(),
            },
        })
    }

    /// Reads one frame from `io`, not a byte past it. The end of the stream in the middle of
    /// a frame, or before it, is an `UnexpectedEof` error.
    pub async fn read<R: AsyncRead + Unpin + ?Sized>(
        &self,
        io: &mut R,
    ) -> Result<Vec<u8>, FrameError> {
        match self.try_read(io).await? {
            Some(frame) => Ok(frame),
            None => Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
        }
    }

    /// Reads one frame from `io`, not a byte past it; `None` if the stream ended cleanly
    /// before its first byte.
    pub async fn try_read<R: AsyncRead + Unpin + ?Sized>(
        &self,
        io: &mut R,
    ) -> Result<Option<Vec<u8>>, FrameError> {
        let mut decoder = Decoder::new(*self);
        loop {
            if let Some(frame) = decoder.next_frame()? {
                return Ok(Some(frame));
            }
            let buf = decoder.read_buf()?;
            let n = io.read(buf).await?;
            if n == 0 {
                if decoder.buffered() == 0 {
                    return Ok(None);
                }
                return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            decoder.advance(n);
        }
    }

    /// Writes `body` to `io` as one frame (one write of head and body together), then
    /// flushes.
    pub async fn write<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        io: &mut W,
        body: &[u8],
    ) -> Result<(), FrameError> {
        let mut out = Vec::new();
        self.encode(body, &mut out)?;
        io.write_all(&out).await?;
        io.flush().await?;
        Ok(())
    }
}

/// Reads one uvarint-prefixed frame of at most `max` bytes, not a byte past it. See
/// [`Codec::read`].
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    Codec::uvarint(max).read(io).await
}

/// Reads one uvarint-prefixed frame of at most `max` bytes, or `None` at a clean end of the
/// stream. See [`Codec::try_read`].
pub async fn try_read_frame<R: AsyncRead + Unpin + ?Sized>(
    io: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    Codec::uvarint(max).try_read(io).await
}

/// Writes `body` as one uvarint-prefixed frame and flushes. See [`Codec::write`].
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(
    io: &mut W,
    body: &[u8],
) -> Result<(), FrameError> {
    Codec::uvarint(usize::MAX).write(io, body).await
}

/// The sans-I/O frame decoder: bytes in, whole frames out.
///
/// Memory: the buffer holds the bytes pushed (or read in) and not yet popped, and
/// [`Decoder::read_buf`] adds at most one read chunk past them, never more than the current
/// frame still needs. The capacity is reserved exactly, so a remote that announces a long
/// frame and sends little makes us hold little.
#[derive(Debug, Clone)]
pub struct Decoder {
    codec: Codec,
    /// `buf[pos..filled]` is what arrived and was not popped; `buf[filled..]` is room handed
    /// out by `read_buf` and not yet filled.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    chunk: usize,
    /// The frame [`Decoder::next_frame_in_place`] returned: its body's range in `buf` and the
    /// end of the frame, dropped by the next call that changes the decoder.
    current: Option<(usize, usize, usize)>,
    /// The first error, returned again by every later call.
    failed: Option<FailedWith>,
}

/// A remembered decoding error (they are all plain values).
#[derive(Debug, Clone, Copy)]
enum FailedWith {
    TooLong { len: u64, max: usize },
    InvalidHead,
}

impl FailedWith {
    fn error(self) -> FrameError {
        match self {
            FailedWith::TooLong { len, max } => FrameError::TooLong { len, max },
            FailedWith::InvalidHead => FrameError::InvalidHead,
        }
    }
}

impl Decoder {
    /// A decoder for `codec`'s frames, with [`DEFAULT_READ_CHUNK`].
    pub fn new(codec: Codec) -> Self {
        Decoder {
            codec,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            chunk: DEFAULT_READ_CHUNK,
            current: None,
            failed: None,
        }
    }

    /// Sets the most [`Decoder::read_buf`] hands out at once (at least 1).
    pub fn with_read_chunk(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Changes the largest body accepted from the next frame on.
    pub fn set_max(&mut self, max: usize) {
        self.codec = Codec::new(self.codec.head, max);
    }

    /// Bytes that arrived and were not popped as frames.
    pub fn buffered(&self) -> usize {
        self.filled - self.pos
    }

    /// The bytes that arrived and were not popped as frames (what follows the last frame).
    pub fn buffered_bytes(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Drops the first `n` of [`Decoder::buffered_bytes`] (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.release();
        self.pos += n.min(self.buffered());
        self.reset_if_empty();
    }

    /// The bytes the buffer can hold without growing (for tests and diagnostics).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Adds bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.release();
        self.compact();
        let end = self.filled + bytes.len();
        self.grow(end);
        self.buf[self.filled..end].copy_from_slice(bytes);
        self.filled = end;
    }

    /// Makes `buf` at least `len` long, reserving exactly (the usual doubling could hold
    /// twice what arrived). The initialized length is kept across frames, so that a
    /// connection's buffer is zero-filled once, not per frame.
    fn grow(&mut self, len: usize) {
        if self.buf.len() < len {
            self.buf.reserve_exact(len - self.buf.len());
            self.buf.resize(len, 0);
        }
    }

    /// Room to read into, for the bytes the current frame still needs (never past its end,
    /// so nothing after the frame is taken from the socket), at most one read chunk. Empty
    /// when a whole frame is buffered: pop it first. Fill it, then call
    /// [`Decoder::advance`] with the count.
    pub fn read_buf(&mut self) -> Result<&mut [u8], FrameError> {
        self.release();
        self.check()?;
        let missing = match self.codec.missing(&self.buf[self.pos..self.filled]) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(e)),
        };
        let want = missing.min(self.chunk);
        self.compact();
        let end = self.filled + want;
        self.grow(end);
        Ok(&mut self.buf[self.filled..end])
    }

    /// Records that `n` bytes were read into the slice [`Decoder::read_buf`] returned.
    ///
    /// # Panics
    ///
    /// If `n` is larger than the room handed out.
    pub fn advance(&mut self, n: usize) {
        assert!(
            self.filled + n <= self.buf.len(),
            "advance past the read buffer"
        );
        self.filled += n;
    }

    /// Like [`Decoder::next_frame`], without copying: the body's length, the body itself
    /// in [`Decoder::frame`] / [`Decoder::frame_mut`] (to decrypt in place) until the next
    /// call that changes the decoder, which drops it.
    pub fn next_frame_in_place(&mut self) -> Result<Option<usize>, FrameError> {
        self.release();
        Ok(self.locate()?.map(|(start, len)| {
            self.current = Some((start, len, start + len));
            len
        }))
    }

    /// The body of the frame [`Decoder::next_frame_in_place`] returned (empty if none).
    pub fn frame(&self) -> &[u8] {
        match self.current {
            Some((start, len, _)) => &self.buf[start..start + len],
            None => &[],
        }
    }

    /// The body of the frame [`Decoder::next_frame_in_place`] returned, to change in place.
    pub fn frame_mut(&mut self) -> &mut [u8] {
        match self.current {
            Some((start, len, _)) => &mut self.buf[start..start + len],
            None => &mut [],
        }
    }

    /// Drops the frame handed out in place, if any.
    fn release(&mut self) {
        if let Some((_, _, end)) = self.current.take() {
            self.pos = end;
            self.reset_if_empty();
        }
    }

    /// The next whole frame's body range in `buf`, if it has arrived.
    fn locate(&mut self) -> Result<Option<(usize, usize)>, FrameError> {
        self.check()?;
        let arrived = &self.buf[self.pos..self.filled];
        let (head, len) = match self.codec.parse_head(arrived) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.fail(e)),
        };
        if arrived.len() < head + len {
            return Ok(None);
        }
        Ok(Some((self.pos + head, len)))
    }

    /// The next whole frame's body, if one has arrived. After an error, every call returns
    /// the same error again.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.release();
        let Some((start, len)) = self.locate()? else {
            return Ok(None);
        };
        let frame = self.buf[start..start + len].to_vec();
        self.pos = start + len;
        self.reset_if_empty();
        Ok(Some(frame))
    }

    fn check(&self) -> Result<(), FrameError> {
        match self.failed {
            Some(failed) => Err(failed.error()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = match e {
            FrameError::TooLong { len, max } => Some(FailedWith::TooLong { len, max }),
            FrameError::InvalidHead => Some(FailedWith::InvalidHead),
            _ => None,
        };
        e
    }

    /// Moves the unpopped bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
    }

    fn reset_if_empty(&mut self) {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(codec: Codec, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        codec.encode(body, &mut out).unwrap();
        out
    }

    #[test]
    fn heads_have_their_wire_form() {
        assert_eq!(frame(Codec::uvarint(1000), b"ab"), b"\x02ab");
        assert_eq!(frame(Codec::uvarint(1000), &[0u8; 300])[..2], [0xac, 0x02]);
        assert_eq!(frame(Codec::new(Head::U16, 1000), b"ab"), b"\x00\x02ab");
        assert_eq!(
            frame(Codec::new(Head::U32, 1000), b"ab"),
            b"\x00\x00\x00\x02ab"
        );
    }

    #[test]
    fn the_maximum_is_refused_before_anything_is_allocated() {
        for head in [Head::Uvarint, Head::U16, Head::U32] {
            let mut announced = Vec::new();
            Codec::new(head, usize::MAX)
                .encode(&vec![0u8; 60_000], &mut announced)
                .unwrap();
            announced.truncate(if head == Head::Uvarint { 3 } else { 4 });
            let mut decoder = Decoder::new(Codec::new(head, 1000));
            decoder.push(&announced);
            let before = decoder.capacity();
            assert!(matches!(
                decoder.next_frame(),
                Err(FrameError::TooLong {
                    len: 60_000,
                    max: 1000
                })
            ));
            assert_eq!(decoder.capacity(), before, "{head:?}");
            // The error stays, and read_buf hands out nothing.
            assert!(matches!(
                decoder.next_frame(),
                Err(FrameError::TooLong { .. })
            ));
            assert!(decoder.read_buf().is_err());
        }
    }

    #[test]
    fn split_arrivals_make_whole_frames() {
        let codec = Codec::uvarint(100_000);
        let mut wire = frame(codec, b"first");
        wire.extend(frame(codec, &[7u8; 300]));
        wire.extend(frame(codec, b""));
        wire.extend(frame(codec, b"last"));
        // Every split point, one byte at a time and in two pieces.
        let mut decoder = Decoder::new(codec);
        let mut got = Vec::new();
        for byte in &wire {
            decoder.push(std::slice::from_ref(byte));
            while let Some(f) = decoder.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], b"first");
        assert_eq!(got[1], vec![7u8; 300]);
        assert!(got[2].is_empty());
        assert_eq!(got[3], b"last");
        for split in 0..wire.len() {
            let mut decoder = Decoder::new(codec);
            decoder.push(&wire[..split]);
            let mut n = 0;
            while decoder.next_frame().unwrap().is_some() {
                n += 1;
            }
            decoder.push(&wire[split..]);
            while decoder.next_frame().unwrap().is_some() {
                n += 1;
            }
            assert_eq!(n, 4, "split at {split}");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn reserve_never_goes_above_the_arrived_bytes() {
        // A head announcing 8 MiB, then ten bytes: pushed, the decoder holds the 14 bytes.
        let codec = Codec::new(Head::U32, 8 << 20);
        let mut wire = (8u32 << 20).to_be_bytes().to_vec();
        wire.extend_from_slice(&[1u8; 10]);
        let mut decoder = Decoder::new(codec);
        decoder.push(&wire);
        assert_eq!(decoder.next_frame().unwrap(), None);
        assert!(decoder.capacity() <= wire.len(), "{}", decoder.capacity());
        // Read straight in: at most one chunk past what arrived.
        let mut decoder = Decoder::new(codec).with_read_chunk(1024);
        let mut arrived = 0;
        for piece in [&wire[..4], &wire[4..]] {
            let buf = decoder.read_buf().unwrap();
            assert!(buf.len() <= 1024);
            buf[..piece.len()].copy_from_slice(piece);
            decoder.advance(piece.len());
            arrived += piece.len();
        }
        assert_eq!(decoder.next_frame().unwrap(), None);
        let _ = decoder.read_buf().unwrap();
        assert!(
            decoder.capacity() <= arrived + 1024,
            "{} held for {arrived} arrived",
            decoder.capacity()
        );
    }

    #[test]
    fn read_buf_never_reaches_past_the_frame() {
        let codec = Codec::uvarint(1000);
        let mut decoder = Decoder::new(codec);
        // A varint head is taken a byte at a time.
        assert_eq!(decoder.read_buf().unwrap().len(), 1);
        decoder.read_buf().unwrap()[0] = 0xac;
        decoder.advance(1);
        assert_eq!(decoder.read_buf().unwrap().len(), 1);
        decoder.read_buf().unwrap()[0] = 0x02;
        decoder.advance(1);
        // 300 bytes of body, exactly.
        assert_eq!(decoder.read_buf().unwrap().len(), 300);
        decoder.advance(300);
        assert!(decoder.read_buf().unwrap().is_empty());
        assert_eq!(decoder.next_frame().unwrap().unwrap().len(), 300);
        let fixed = Codec::new(Head::U16, 1000);
        let mut decoder = Decoder::new(fixed);
        assert_eq!(decoder.read_buf().unwrap().len(), 2);
    }

    #[test]
    fn bad_varints_and_oversized_writes_are_refused() {
        let mut decoder = Decoder::new(Codec::uvarint(usize::MAX));
        decoder.push(&[0xff; 11]);
        assert!(matches!(decoder.next_frame(), Err(FrameError::InvalidHead)));
        let mut decoder = Decoder::new(Codec::uvarint(usize::MAX));
        // Not minimal: 0x80 0x00 encodes zero in two bytes.
        decoder.push(&[0x80, 0x00]);
        assert!(matches!(decoder.next_frame(), Err(FrameError::InvalidHead)));
        let mut out = Vec::new();
        assert!(matches!(
            Codec::uvarint(3).encode(b"four", &mut out),
            Err(FrameError::Oversized { len: 4, max: 3 })
        ));
        // The head's own limit caps the maximum.
        assert_eq!(Codec::new(Head::U16, usize::MAX).max(), 65535);
    }

    #[test]
    fn frames_in_place_stay_until_the_next_call() {
        let codec = Codec::new(Head::U32, 100);
        let mut wire = frame(codec, b"abc");
        wire.extend(frame(codec, b"de"));
        let mut decoder = Decoder::new(codec);
        decoder.push(&wire);
        assert_eq!(decoder.next_frame_in_place().unwrap(), Some(3));
        decoder.frame_mut().make_ascii_uppercase();
        assert_eq!(decoder.frame(), b"ABC");
        assert_eq!(decoder.next_frame_in_place().unwrap(), Some(2));
        assert_eq!(decoder.frame(), b"de");
        assert_eq!(decoder.next_frame_in_place().unwrap(), None);
        assert!(decoder.frame().is_empty());
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn leftover_bytes_after_a_frame_stay_buffered() {
        let codec = Codec::uvarint(100);
        let mut wire = frame(codec, b"negotiated");
        wire.extend_from_slice(b"app data");
        let mut decoder = Decoder::new(codec);
        decoder.push(&wire);
        assert_eq!(decoder.next_frame().unwrap().unwrap(), b"negotiated");
        assert_eq!(decoder.buffered_bytes(), b"app data");
        decoder.consume(4);
        assert_eq!(decoder.buffered_bytes(), b"data");
        decoder.consume(100);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn async_helpers_read_exactly_one_frame() {
        futures::executor::block_on(async {
            let mut wire = Vec::new();
            write_frame(&mut wire, b"hello").await.unwrap();
            wire.extend_from_slice(b"rest");
            let mut io = futures::io::Cursor::new(wire);
            assert_eq!(read_frame(&mut io, 100).await.unwrap(), b"hello");
            let mut rest = Vec::new();
            io.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"rest");
            // A clean end, and an end mid-frame.
            let mut empty = futures::io::Cursor::new(Vec::new());
            assert!(try_read_frame(&mut empty, 100).await.unwrap().is_none());
            let mut cut = futures::io::Cursor::new(vec![5u8, b'a']);
            match read_frame(&mut cut, 100).await {
                Err(FrameError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
                other => panic!("{other:?}"),
            }
            let mut long = futures::io::Cursor::new(vec![0xe8, 0x07]);
            assert!(matches!(
                read_frame(&mut long, 100).await,
                Err(FrameError::TooLong {
                    len: 1000,
                    max: 100
                })
            ));
            let noise = Codec::new(Head::U16, 65535);
            let mut out = Vec::new();
            noise.write(&mut out, b"xx").await.unwrap();
            assert_eq!(out, b"\x00\x02xx");
        });
    }
}
