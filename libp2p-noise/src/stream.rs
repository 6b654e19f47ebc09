//! The encrypted channel: messages of `2-byte big-endian length ‖ ciphertext ‖ 16-byte tag`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};

use crate::{NoiseError, MAX_FRAME_PLAINTEXT, TAG_LEN};

/// Where the reader is within the current message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Reading the 2-byte length; `filled` bytes of it so far.
    Header { filled: usize },
    /// Reading a message of `len` bytes into the frame buffer; `filled` so far.
    Body { len: usize, filled: usize },
    /// The remote closed its write side at a message boundary.
    Eof,
    /// A message failed (or the socket did); the read side is unusable.
    Failed,
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
    state: Box<snow::TransportState>,
    // Reading.
    read_state: ReadState,
    header: [u8; 2],
    /// The encrypted message being read (capacity reused).
    read_frame: Vec<u8>,
    /// Decrypted plaintext `read_plain[read_pos..read_end]` waiting to be handed out.
    read_plain: Vec<u8>,
    read_pos: usize,
    read_end: usize,
    // Writing.
    /// Plaintext written but not yet encrypted (at most `MAX_FRAME_PLAINTEXT`).
    write_plain: Vec<u8>,
    /// The encrypted message being sent: `write_frame[write_pos..write_len]` is still due.
    write_frame: Vec<u8>,
    write_pos: usize,
    write_len: usize,
    write_failed: bool,
}

impl<C> std::fmt::Debug for NoiseStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseStream")
            .field("read_state", &self.read_state)
            .field("buffered_plaintext", &self.write_plain.len())
            .field("pending_write", &(self.write_len - self.write_pos))
            .finish_non_exhaustive()
    }
}

/// A decryption failure: the stream's data cannot be trusted any more.
fn invalid_data(e: snow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, NoiseError::from(e))
}

impl<C> NoiseStream<C> {
    pub(crate) fn new(socket: C, state: snow::TransportState) -> Self {
        NoiseStream {
            socket,
            state: Box::new(state),
            read_state: ReadState::Header { filled: 0 },
            header: [0; 2],
            read_frame: Vec::new(),
            read_plain: Vec::new(),
            read_pos: 0,
            read_end: 0,
            write_plain: Vec::new(),
            write_frame: Vec::new(),
            write_pos: 0,
            write_len: 0,
            write_failed: false,
        }
    }

    /// The remote's X25519 static public key, as proven in the handshake.
    pub fn remote_static_key(&self) -> Option<&[u8]> {
        self.state.get_remote_static()
    }

    /// A shared reference to the socket underneath.
    pub fn get_ref(&self) -> &C {
        &self.socket
    }

    /// Encrypts the buffered plaintext into the frame buffer (whose previous frame must be
    /// fully written).
    fn encrypt_buffered(&mut self) -> io::Result<()> {
        let plain = std::mem::take(&mut self.write_plain);
        let result = self.encrypt(&plain);
        self.write_plain = plain;
        self.write_plain.clear();
        result
    }

    /// Encrypts `plain` (at most one message) into the frame buffer, whose previous frame must
    /// be fully written.
    fn encrypt(&mut self, plain: &[u8]) -> io::Result<()> {
        debug_assert!(self.write_pos == self.write_len);
        debug_assert!(plain.len() <= MAX_FRAME_PLAINTEXT);
        let needed = 2 + plain.len() + TAG_LEN;
        if self.write_frame.len() < needed {
            // Grows to the largest message sent so far and is kept: an idle connection that
            // only sent small messages holds a small buffer, a busy one allocates no more.
            self.write_frame.resize(needed, 0);
        }
        let len = match self.state.write_message(plain, &mut self.write_frame[2..]) {
            Ok(len) => len,
            Err(e) => {
                self.write_failed = true;
                return Err(io::Error::other(NoiseError::from(e)));
            }
        };
        let prefix = match u16::try_from(len) {
            Ok(p) => p,
            Err(_) => {
                self.write_failed = true;
                return Err(io::Error::other(NoiseError::Noise(
                    "message too long".into(),
                )));
            }
        };
        self.write_frame[..2].copy_from_slice(&prefix.to_be_bytes());
        self.write_pos = 0;
        self.write_len = 2 + len;
        Ok(())
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> NoiseStream<C> {
    /// Reads the next message and decrypts it into `read_plain`. `Ok(true)` when there is a
    /// new message (maybe with empty plaintext), `Ok(false)` at a clean end of stream.
    fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let result = ready!(self.poll_next_message_inner(cx));
        if result.is_err() {
            self.read_state = ReadState::Failed;
        }
        Poll::Ready(result)
    }

    fn poll_next_message_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            match self.read_state {
                ReadState::Failed => {
                    return Poll::Ready(Err(io::Error::other("noise stream failed earlier")))
                }
                ReadState::Eof => return Poll::Ready(Ok(false)),
                ReadState::Header { mut filled } => {
                    while filled < 2 {
                        let n = match Pin::new(&mut self.socket)
                            .poll_read(cx, &mut self.header[filled..])
                        {
                            Poll::Ready(r) => r?,
                            Poll::Pending => {
                                self.read_state = ReadState::Header { filled };
                                return Poll::Pending;
                            }
                        };
                        if n == 0 {
                            if filled == 0 {
                                self.read_state = ReadState::Eof;
                                return Poll::Ready(Ok(false));
                            }
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        filled += n;
                    }
                    let len = usize::from(u16::from_be_bytes(self.header));
                    // Bounded by the 2-byte length; the allocation is reused.
                    if self.read_frame.len() < len {
                        self.read_frame.resize(len, 0);
                    }
                    self.read_state = ReadState::Body { len, filled: 0 };
                }
                ReadState::Body { len, mut filled } => {
                    while filled < len {
                        let n = match Pin::new(&mut self.socket)
                            .poll_read(cx, &mut self.read_frame[filled..len])
                        {
                            Poll::Ready(r) => r?,
                            Poll::Pending => {
                                self.read_state = ReadState::Body { len, filled };
                                return Poll::Pending;
                            }
                        };
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        filled += n;
                    }
                    let plain_len = len.saturating_sub(TAG_LEN);
                    if self.read_plain.len() < plain_len {
                        self.read_plain.resize(plain_len, 0);
                    }
                    let n = self
                        .state
                        .read_message(&self.read_frame[..len], &mut self.read_plain)
                        .map_err(invalid_data)?;
                    self.read_pos = 0;
                    self.read_end = n;
                    self.read_state = ReadState::Header { filled: 0 };
                    return Poll::Ready(Ok(true));
                }
            }
        }
    }

    /// Writes out whatever is left of the current encrypted message.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_failed {
            return Poll::Ready(Err(io::Error::other("noise stream failed earlier")));
        }
        let out = libp2p_core::poll_write_out(
            &mut self.socket,
            cx,
            &self.write_frame[..self.write_len],
            &mut self.write_pos,
        );
        if let Poll::Ready(Err(e)) = out {
            self.write_failed = true;
            return Poll::Ready(Err(e));
        }
        ready!(out)?;
        self.write_pos = 0;
        self.write_len = 0;
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
            if this.read_pos < this.read_end {
                let n = buf.len().min(this.read_end - this.read_pos);
                buf[..n].copy_from_slice(&this.read_plain[this.read_pos..this.read_pos + n]);
                this.read_pos += n;
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
        if this.write_failed {
            return Poll::Ready(Err(io::Error::other("noise stream failed earlier")));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write_plain.len() >= MAX_FRAME_PLAINTEXT {
            // The buffer is full: it becomes a message once the previous one is out.
            ready!(this.poll_drain(cx))?;
            this.encrypt_buffered()?;
        }
        if this.write_plain.is_empty() && buf.len() >= MAX_FRAME_PLAINTEXT {
            // A whole message from the caller's bytes: encrypt it straight into the frame,
            // without staging it in the plaintext buffer first.
            ready!(this.poll_drain(cx))?;
            this.encrypt(&buf[..MAX_FRAME_PLAINTEXT])?;
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(MAX_FRAME_PLAINTEXT));
        }
        let n = buf.len().min(MAX_FRAME_PLAINTEXT - this.write_plain.len());
        this.write_plain.extend_from_slice(&buf[..n]);
        if this.write_plain.len() >= MAX_FRAME_PLAINTEXT && this.write_pos == this.write_len {
            // Full, and the frame buffer is free: encrypt now and start sending; what does not
            // fit now goes out on the next write or flush.
            this.encrypt_buffered()?;
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if !this.write_plain.is_empty() {
            this.encrypt_buffered()?;
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

    /// Two transport states that completed an XX handshake in memory (initiator, responder).
    fn transport_pair() -> (snow::TransportState, snow::TransportState) {
        let params: snow::params::NoiseParams = crate::NOISE_PARAMS.parse().unwrap();
        let ka = snow::Builder::new(params.clone())
            .generate_keypair()
            .unwrap();
        let kb = snow::Builder::new(params.clone())
            .generate_keypair()
            .unwrap();
        let mut a = snow::Builder::new(params.clone())
            .local_private_key(&ka.private)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut b = snow::Builder::new(params)
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
            a.into_transport_mode().unwrap(),
            b.into_transport_mode().unwrap(),
        )
    }

    /// What the initiator puts on the wire for `writes` (each written whole, flushing after
    /// the ones marked), and a reader for it on the responder side.
    fn wire(writes: &[(&[u8], bool)]) -> (Vec<u8>, snow::TransportState) {
        let (a, b) = transport_pair();
        let mut w = NoiseStream::new(Cursor::new(Vec::new()), a);
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

    fn read_all(bytes: Vec<u8>, state: snow::TransportState) -> io::Result<Vec<u8>> {
        let mut r = NoiseStream::new(Cursor::new(bytes), state);
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
        let mut r = NoiseStream::new(Cursor::new(bytes), reader);
        let mut buf = [0u8; 64];
        futures::executor::block_on(async {
            assert!(r.read(&mut buf).await.is_err());
            assert!(r.read(&mut buf).await.is_err());
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
}
