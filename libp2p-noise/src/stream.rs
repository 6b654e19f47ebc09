//! The encrypted channel: messages of `2-byte big-endian length ‖ ciphertext ‖ 16-byte tag`.
//!
//! The handshake (snow) hands over its two transport keys; this side seals and opens the
//! messages with ring's ChaCha20-Poly1305 itself, in place in its own buffers: one copy in
//! (the caller's bytes into the message being filled) and one copy out (decrypted bytes to the
//! caller), no staging buffer in between.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use crate::{NoiseError, MAX_FRAME_PLAINTEXT, MAX_MESSAGE_LEN, TAG_LEN};

/// One direction's Noise `CipherState` for ChaChaPoly: a key and the message counter.
pub(crate) struct CipherState {
    key: LessSafeKey,
    nonce: u64,
}

impl CipherState {
    /// A cipher state with `key` and the counter at zero.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte ChaCha20 key");
        CipherState {
            key: LessSafeKey::new(key),
            nonce: 0,
        }
    }

    /// The next nonce: 4 zero bytes, then the counter as 8 little-endian bytes. The Noise
    /// spec reserves 2^64-1, so the channel ends before reaching it.
    fn next_nonce(&mut self) -> io::Result<Nonce> {
        if self.nonce == u64::MAX {
            return Err(io::Error::other(NoiseError::NonceExhausted));
        }
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&self.nonce.to_le_bytes());
        self.nonce += 1;
        Ok(Nonce::assume_unique_for_key(bytes))
    }

    /// Encrypts `in_out` in place and returns its tag.
    fn seal(&mut self, in_out: &mut [u8]) -> io::Result<aead::Tag> {
        let nonce = self.next_nonce()?;
        self.key
            .seal_in_place_separate_tag(nonce, Aad::empty(), in_out)
            .map_err(|_| io::Error::other(NoiseError::Encrypt))
    }

    /// Checks the tag at the end of `in_out` and decrypts the rest in place; returns the
    /// plaintext's length.
    fn open(&mut self, in_out: &mut [u8]) -> io::Result<usize> {
        let nonce = self.next_nonce()?;
        match self.key.open_in_place(nonce, Aad::empty(), in_out) {
            Ok(plain) => Ok(plain.len()),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                NoiseError::Noise(snow::Error::Decrypt),
            )),
        }
    }
}

/// A copy of a direction's first error, returned by every later call.
fn again(first: &io::Error) -> io::Error {
    libp2p_core::repeat_io_error(first, NoiseError::duplicate)
}

/// Records `e` as the direction's first error and returns it.
fn fail(slot: &mut Option<io::Error>, e: io::Error) -> io::Error {
    let copy = again(&e);
    *slot = Some(e);
    copy
}

/// The two cipher states of a finished handshake, from our point of view.
pub(crate) struct Ciphers {
    pub(crate) send: CipherState,
    pub(crate) recv: CipherState,
}

impl Ciphers {
    /// From the handshake's split `(initiator to responder, responder to initiator)`.
    pub(crate) fn from_split(initiator: bool, (i2r, r2i): ([u8; 32], [u8; 32])) -> Self {
        let (send, recv) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
        Ciphers {
            send: CipherState::new(&send),
            recv: CipherState::new(&recv),
        }
    }
}

/// Grows `buf`'s capacity to hold `needed` bytes, at most doubling and never beyond one
/// whole message (plus the next length prefix), so buffers stay at the size traffic needs.
fn reserve(buf: &mut Vec<u8>, needed: usize) {
    if buf.capacity() < needed {
        let target = needed.max(buf.capacity() * 2).min(2 + MAX_MESSAGE_LEN + 2);
        buf.reserve_exact(target.max(needed) - buf.len());
    }
}

/// A Noise-encrypted socket: what [`Noise`](crate::Noise) hands out after the handshake.
///
/// Reads return decrypted bytes once each message's tag has been checked. Writes are
/// buffered up to [`MAX_FRAME_PLAINTEXT`](crate::MAX_FRAME_PLAINTEXT) bytes and sent as one
/// message when the buffer is full or on flush; call `flush` (or `close`) to push out what
/// was written. Closing closes the inner socket's write side (Noise has no close message);
/// the read side stays open until the remote closes its own.
pub struct NoiseStream<C> {
    socket: C,
    ciphers: Box<Ciphers>,
    remote_static: Option<Vec<u8>>,
    // Reading. `read_buf[..read_len]` holds bytes from the socket: the current message (its
    // length, then its plaintext once decrypted in place, then its tag) from 0 to `msg_end`,
    // then at most the start of the next message's length.
    read_buf: Vec<u8>,
    read_len: usize,
    /// The end of the current, decrypted message (0: none).
    msg_end: usize,
    /// Decrypted plaintext `read_buf[plain_pos..plain_end]` waiting to be handed out.
    plain_pos: usize,
    plain_end: usize,
    /// The remote closed its write side at a message boundary.
    read_eof: bool,
    /// A message failed (or the socket did): the read side returns this error again.
    read_failed: Option<io::Error>,
    // Writing.
    /// The message being filled: 2 bytes for its length, then plaintext (at most
    /// `MAX_FRAME_PLAINTEXT`), sealed in place when full or flushed.
    fill: Vec<u8>,
    /// The sealed message being sent: `out[out_pos..]` is still due.
    out: Vec<u8>,
    out_pos: usize,
    /// A write failed: the write side returns this error again.
    write_failed: Option<io::Error>,
}

impl<C> std::fmt::Debug for NoiseStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseStream")
            .field("buffered_plaintext", &self.fill.len().saturating_sub(2))
            .field("pending_write", &(self.out.len() - self.out_pos))
            .field("read_eof", &self.read_eof)
            .field("read_failed", &self.read_failed.is_some())
            .finish_non_exhaustive()
    }
}

impl<C> NoiseStream<C> {
    pub(crate) fn new(socket: C, ciphers: Ciphers, remote_static: Option<Vec<u8>>) -> Self {
        NoiseStream {
            socket,
            ciphers: Box::new(ciphers),
            remote_static,
            read_buf: Vec::new(),
            read_len: 0,
            msg_end: 0,
            plain_pos: 0,
            plain_end: 0,
            read_eof: false,
            read_failed: None,
            fill: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            write_failed: None,
        }
    }

    /// The remote's X25519 static public key, as proven in the handshake.
    pub fn remote_static_key(&self) -> Option<&[u8]> {
        self.remote_static.as_deref()
    }

    /// A shared reference to the socket underneath.
    pub fn get_ref(&self) -> &C {
        &self.socket
    }

    /// Plaintext bytes in the message being filled.
    fn filled(&self) -> usize {
        self.fill.len().saturating_sub(2)
    }

    /// Seals the message being filled and makes it the one being sent (whose predecessor
    /// must be fully written).
    fn seal_fill(&mut self) -> io::Result<()> {
        debug_assert!(self.out_pos == self.out.len());
        let plain = self.filled();
        debug_assert!(plain <= MAX_FRAME_PLAINTEXT);
        reserve(&mut self.fill, 2 + plain + TAG_LEN);
        let tag = match self.ciphers.send.seal(&mut self.fill[2..]) {
            Ok(tag) => tag,
            Err(e) => return Err(fail(&mut self.write_failed, e)),
        };
        self.fill.extend_from_slice(tag.as_ref());
        let len = u16::try_from(plain + TAG_LEN).expect("bounded by MAX_FRAME_PLAINTEXT");
        self.fill[..2].copy_from_slice(&len.to_be_bytes());
        std::mem::swap(&mut self.fill, &mut self.out);
        self.out_pos = 0;
        self.fill.clear();
        Ok(())
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> NoiseStream<C> {
    /// Makes the next message's plaintext available in `read_buf[plain_pos..plain_end]`.
    /// `Ok(true)` when there is a new message (maybe with empty plaintext), `Ok(false)` at a
    /// clean end of stream.
    fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if let Some(first) = &self.read_failed {
            return Poll::Ready(Err(again(first)));
        }
        if self.read_eof {
            return Poll::Ready(Ok(false));
        }
        Poll::Ready(match ready!(self.poll_next_message_inner(cx)) {
            Err(e) => Err(fail(&mut self.read_failed, e)),
            Ok(false) => {
                self.read_eof = true;
                Ok(false)
            }
            Ok(true) => Ok(true),
        })
    }

    fn poll_next_message_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.msg_end > 0 {
            // The previous message is used up: keep what followed it (at most 2 bytes).
            self.read_buf.copy_within(self.msg_end..self.read_len, 0);
            self.read_len -= self.msg_end;
            self.msg_end = 0;
        }
        loop {
            // Until the length is known, read just the length; then the message and the
            // next message's length, which usually saves a read per message.
            let want = if self.read_len < 2 {
                2
            } else {
                let len = usize::from(u16::from_be_bytes([self.read_buf[0], self.read_buf[1]]));
                if self.read_len >= 2 + len {
                    return Poll::Ready(self.open_message(len).map(|()| true));
                }
                2 + len + 2
            };
            if self.read_buf.len() < want {
                // Bounded by the 2-byte length; the allocation is kept for later messages.
                reserve(&mut self.read_buf, want);
                self.read_buf.resize(want, 0);
            }
            let n =
                ready!(Pin::new(&mut self.socket)
                    .poll_read(cx, &mut self.read_buf[self.read_len..want]))?;
            if n == 0 {
                if self.read_len == 0 {
                    return Poll::Ready(Ok(false));
                }
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            self.read_len += n;
        }
    }

    /// Decrypts the whole message of `len` bytes at the front of the read buffer in place.
    fn open_message(&mut self, len: usize) -> io::Result<()> {
        if len < TAG_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                NoiseError::Noise(snow::Error::Input),
            ));
        }
        let plain = self.ciphers.recv.open(&mut self.read_buf[2..2 + len])?;
        self.plain_pos = 2;
        self.plain_end = 2 + plain;
        self.msg_end = 2 + len;
        Ok(())
    }

    /// Writes out whatever is left of the message being sent.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(first) = &self.write_failed {
            return Poll::Ready(Err(again(first)));
        }
        let out = libp2p_core::poll_write_out(&mut self.socket, cx, &self.out, &mut self.out_pos);
        if let Poll::Ready(Err(e)) = out {
            return Poll::Ready(Err(fail(&mut self.write_failed, e)));
        }
        ready!(out)?;
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncRead for NoiseStream<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.plain_pos < this.plain_end {
                let n = buf.len().min(this.plain_end - this.plain_pos);
                buf[..n].copy_from_slice(&this.read_buf[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(n));
            }
            // Empty messages carry nothing: go on to the next one rather than report EOF.
            if !ready!(this.poll_next_message(cx))? {
                return Poll::Ready(Ok(0));
            }
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for NoiseStream<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = &this.write_failed {
            return Poll::Ready(Err(again(first)));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.filled() >= MAX_FRAME_PLAINTEXT {
            // The message being filled is full: it is sealed once the previous one is out.
            ready!(this.poll_drain(cx))?;
            this.seal_fill()?;
        }
        if this.fill.is_empty() {
            this.fill.extend_from_slice(&[0, 0]);
        }
        let n = buf.len().min(MAX_FRAME_PLAINTEXT - this.filled());
        let needed = this.fill.len() + n + TAG_LEN;
        reserve(&mut this.fill, needed);
        this.fill.extend_from_slice(&buf[..n]);
        if this.filled() >= MAX_FRAME_PLAINTEXT && this.out_pos == this.out.len() {
            // Full, and nothing is being sent: seal now and start sending; what does not go
            // out now goes on the next write or flush.
            this.seal_fill()?;
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.filled() > 0 {
            this.seal_fill()?;
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().socket).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use futures::{AsyncReadExt, AsyncWriteExt};

    /// The cipher states of an XX handshake completed in memory (initiator, responder).
    fn transport_pair() -> (Ciphers, Ciphers) {
        let ka = crate::builder().generate_keypair().unwrap();
        let kb = crate::builder().generate_keypair().unwrap();
        let mut a = crate::builder()
            .local_private_key(&ka.private)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut b = crate::builder()
            .local_private_key(&kb.private)
            .unwrap()
            .build_responder()
            .unwrap();
        let (mut msg, mut payload) = (vec![0u8; 65535], vec![0u8; 65535]);
        let n = a.write_message(&[], &mut msg).unwrap();
        b.read_message(&msg[..n], &mut payload).unwrap();
        let n = b.write_message(&[], &mut msg).unwrap();
        a.read_message(&msg[..n], &mut payload).unwrap();
        let n = a.write_message(&[], &mut msg).unwrap();
        b.read_message(&msg[..n], &mut payload).unwrap();
        (
            Ciphers::from_split(true, a.dangerously_get_raw_split()),
            Ciphers::from_split(false, b.dangerously_get_raw_split()),
        )
    }

    /// What the initiator puts on the wire for `writes` (each written whole, flushing after
    /// the ones marked), and a reader for it on the responder side.
    fn wire(writes: &[(&[u8], bool)]) -> (Vec<u8>, Ciphers) {
        let (a, b) = transport_pair();
        let mut w = NoiseStream::new(Cursor::new(Vec::new()), a, None);
        futures::executor::block_on(async {
            for (data, flush) in writes {
                w.write_all(data).await.unwrap();
                if *flush {
                    w.flush().await.unwrap();
                }
            }
            w.close().await.unwrap();
        });
        (w.socket.into_inner(), b)
    }

    fn frame_lengths(mut wire: &[u8]) -> Vec<usize> {
        let mut lens = Vec::new();
        while wire.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([wire[0], wire[1]]));
            lens.push(len);
            wire = &wire[2 + len..];
        }
        assert!(wire.is_empty(), "whole frames only");
        lens
    }

    fn read_all(bytes: Vec<u8>, ciphers: Ciphers) -> io::Result<Vec<u8>> {
        let mut r = NoiseStream::new(Cursor::new(bytes), ciphers, None);
        let mut back = Vec::new();
        futures::executor::block_on(r.read_to_end(&mut back)).map(|_| back)
    }

    #[test]
    fn large_writes_are_split_and_small_ones_buffered() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (bytes, reader) = wire(&[(&data[..10], false), (&data[10..], true)]);
        // 200_000 = 3 * 65519 + 3443: four messages, the small first write merged in.
        assert_eq!(frame_lengths(&bytes), [65535, 65535, 65535, 3443 + 16]);
        assert_eq!(read_all(bytes, reader).unwrap(), data);
    }

    #[test]
    fn flush_sends_what_is_buffered_and_empty_flushes_send_nothing() {
        let (bytes, reader) = wire(&[(b"hello", true), (b"", true), (b" world", true)]);
        assert_eq!(frame_lengths(&bytes), [5 + 16, 6 + 16]);
        assert_eq!(read_all(bytes, reader).unwrap(), b"hello world");
        let (bytes, _) = wire(&[]);
        assert!(bytes.is_empty());
    }

    #[test]
    fn tampering_and_truncation_fail_without_panicking() {
        let data = vec![42u8; 100];
        // Two messages of 2 + 100 + 16 bytes: lengths, bodies and tags of both.
        for index in [0, 1, 2, 60, 101, 117, 118, 119, 120, 180, 235] {
            let (mut bytes, reader) = wire(&[(&data, true), (&data, true)]);
            assert_eq!(bytes.len(), 236);
            bytes[index] ^= 0x01;
            let err = read_all(bytes, reader).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ),
                "{index}: {err}"
            );
            if err.kind() == io::ErrorKind::InvalidData {
                let inner = err.get_ref().and_then(|e| e.downcast_ref::<NoiseError>());
                assert!(matches!(inner, Some(NoiseError::Noise(_))), "{index}");
            }
        }
        for cut in [1, 2, 3, 50, 117, 119, 120, 235] {
            let (bytes, reader) = wire(&[(&data, true), (&data, true)]);
            let err = read_all(bytes[..cut].to_vec(), reader).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
    }

    #[test]
    fn a_failed_stream_stays_failed() {
        let (mut bytes, reader) = wire(&[(b"first", true), (b"second", true)]);
        bytes[3] ^= 0x80;
        let mut r = NoiseStream::new(Cursor::new(bytes), reader, None);
        let mut buf = [0u8; 64];
        futures::executor::block_on(async {
            let first = r.read(&mut buf).await.unwrap_err();
            let again = r.read(&mut buf).await.unwrap_err();
            // The same error, not "failed earlier".
            for err in [first, again] {
                assert_eq!(err.kind(), io::ErrorKind::InvalidData);
                let inner = err.get_ref().and_then(|e| e.downcast_ref::<NoiseError>());
                assert!(
                    matches!(inner, Some(NoiseError::Noise(snow::Error::Decrypt))),
                    "{err}"
                );
            }
        });
    }

    #[test]
    fn short_and_empty_messages() {
        // A length below the tag size, and a zero length: decryption errors, not panics.
        for bytes in [vec![0, 5, 1, 2, 3, 4, 5], vec![0, 0], vec![0xff, 0xff]] {
            let (_, reader) = transport_pair();
            let err = read_all(bytes, reader).unwrap_err();
            assert!(matches!(
                err.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ));
        }
    }

    #[test]
    fn the_nonce_stops_before_the_reserved_value() {
        let mut c = CipherState::new(&[7u8; 32]);
        c.nonce = u64::MAX - 1;
        let mut data = [1u8; 8];
        assert!(c.seal(&mut data).is_ok());
        let err = c
            .seal(&mut data)
            .err()
            .expect("the reserved nonce is refused");
        assert!(err.to_string().contains("nonce exhausted"), "{err}");
    }

    #[test]
    fn counters_advance_per_message_in_both_directions() {
        // Three messages; the reader must track the writer's nonce for each of them.
        let (bytes, reader) = wire(&[(b"a", true), (b"bb", true), (b"ccc", true)]);
        assert_eq!(frame_lengths(&bytes), [17, 18, 19]);
        assert_eq!(read_all(bytes, reader).unwrap(), b"abbccc");
    }
}
