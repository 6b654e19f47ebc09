//! The encrypted channel: frames of `4-byte big-endian length ‖ AES-CTR ciphertext ‖ HMAC`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ctr::cipher::{KeyIvInit, StreamCipher};
use futures::{AsyncRead, AsyncWrite};
use ring::hmac;

use crate::algo::{Cipher, Digest, StretchedKeys};
use crate::SecioError;
use libp2p_core::framing::{Codec, Decoder, Head};

/// One direction's AES-CTR keystream (one continuous stream for the whole connection).
/// Boxed: the expanded key schedules take up to 1 KiB, allocated once per connection.
enum CtrCipher {
    Aes128(Box<ctr::Ctr128BE<aes::Aes128>>),
    Aes256(Box<ctr::Ctr128BE<aes::Aes256>>),
}

impl CtrCipher {
    fn new(kind: Cipher, keys: &StretchedKeys) -> Result<Self, SecioError> {
        let bad = |_| SecioError::KeyLength;
        Ok(match kind {
            Cipher::Aes128 => CtrCipher::Aes128(Box::new(
                ctr::Ctr128BE::<aes::Aes128>::new_from_slices(&keys.cipher_key, &keys.iv)
                    .map_err(bad)?,
            )),
            Cipher::Aes256 => CtrCipher::Aes256(Box::new(
                ctr::Ctr128BE::<aes::Aes256>::new_from_slices(&keys.cipher_key, &keys.iv)
                    .map_err(bad)?,
            )),
        })
    }

    fn apply(&mut self, data: &mut [u8]) {
        match self {
            CtrCipher::Aes128(c) => c.apply_keystream(data),
            CtrCipher::Aes256(c) => c.apply_keystream(data),
        }
    }

    /// Encrypts or decrypts `input` into `output` (same length) in one pass, which saves the
    /// separate copy that `apply` on a copied buffer would need.
    fn apply_b2b(&mut self, input: &[u8], output: &mut [u8]) {
        let result = match self {
            CtrCipher::Aes128(c) => c.apply_keystream_b2b(input, output),
            CtrCipher::Aes256(c) => c.apply_keystream_b2b(input, output),
        };
        // Callers always pass slices of equal length, and the 128-bit counter cannot run out.
        result.expect("keystream buffers of equal length");
    }
}

/// Turns a stream error into an `io::Error` that carries the [`SecioError`].
/// A copy of a side's first error, returned by every later call.
fn again(first: &io::Error) -> io::Error {
    libp2p_core::repeat_io_error(first, SecioError::duplicate)
}

/// Records `e` as the side's first error and returns it.
fn fail(slot: &mut Option<io::Error>, e: io::Error) -> io::Error {
    let copy = again(&e);
    *slot = Some(e);
    copy
}

pub(crate) fn io_error(e: SecioError) -> io::Error {
    match e {
        SecioError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

/// How far the read buffer may grow past the bytes of a frame body that have arrived: a whole
/// frame of our default write size (64 KiB plus its MAC) fits in one read.
const READ_CHUNK: usize = 128 * 1024;

/// Where the reader is within the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Reading a frame (its 4-byte length, then its body) into the decoder.
    Reading,
    /// The MAC of `frame[..end]` checked (the decoder's current frame); `frame[pos..end]`
    /// waits to be handed out.
    /// Unless `decrypted`, it is still ciphertext and is decrypted as it is copied out (the
    /// keystream is continuous, so decrypting a frame piecewise, in order, is the same).
    Plain {
        pos: usize,
        end: usize,
        decrypted: bool,
    },
    /// The remote closed its write side at a frame boundary.
    Eof,
    /// A frame failed; the read side returns the first error (in `read_failed`) again.
    Failed,
}

/// A SECIO-encrypted socket: what [`Secio`](crate::Secio) hands out after the handshake.
///
/// Reads return decrypted bytes once each frame's MAC has been checked; writes are encrypted
/// and sent as frames of at most [`Config::max_write_frame`](crate::Config) bytes of
/// plaintext. Closing closes the inner socket's write side (SECIO has no close message); the
/// read side stays open until the remote closes its own.
pub struct SecioStream<C> {
    socket: C,
    // Reading.
    read_cipher: CtrCipher,
    read_mac: hmac::Key,
    /// The frames as they arrive: the length checked before anything is allocated, the
    /// buffer growing with the bytes that came (at most one read chunk past them), never
    /// reading past the frame.
    decoder: Decoder,
    read_state: ReadState,
    tag_len: usize,
    /// The read side's first error, once it failed.
    read_failed: Option<io::Error>,
    // Writing.
    write_cipher: CtrCipher,
    write_mac: hmac::Key,
    /// The frame being sent is `write_buf[..write_end]` (the buffer is kept at its largest
    /// size so that encoding never zero-fills it again); `write_pos` bytes of it are sent.
    write_buf: Vec<u8>,
    write_pos: usize,
    write_end: usize,
    /// The write side's first error, once it failed.
    write_failed: Option<io::Error>,
    max_write_frame: usize,
}

impl<C> std::fmt::Debug for SecioStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecioStream")
            .field("read_state", &self.read_state)
            .field("pending_write", &(self.write_end - self.write_pos))
            .finish_non_exhaustive()
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> SecioStream<C> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        socket: C,
        cipher: Cipher,
        hash: Digest,
        local: &StretchedKeys,
        remote: &StretchedKeys,
        max_frame_len: usize,
        max_write_frame: usize,
    ) -> Result<Self, SecioError> {
        Ok(SecioStream {
            socket,
            read_cipher: CtrCipher::new(cipher, remote)?,
            read_mac: hmac::Key::new(hash.hmac(), &remote.mac_key),
            decoder: Decoder::new(Codec::new(Head::U32, max_frame_len)).with_read_chunk(READ_CHUNK),
            read_state: ReadState::Reading,
            tag_len: hash.tag_len(),
            read_failed: None,
            write_cipher: CtrCipher::new(cipher, local)?,
            write_mac: hmac::Key::new(hash.hmac(), &local.mac_key),
            write_buf: Vec::new(),
            write_pos: 0,
            write_end: 0,
            write_failed: None,
            // A frame length must fit the 4-byte prefix, tag included.
            max_write_frame: max_write_frame.clamp(1, (u32::MAX as usize) - 64),
        })
    }

    /// Reads the next frame, checks its MAC and decrypts it in place. `Some(len)` is the
    /// plaintext length (now in the decoder's frame), `None` a clean end of stream.
    pub(crate) fn poll_next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<usize>>> {
        let result = ready!(self.poll_next_verified_frame(cx));
        if let Ok(Some(end)) = result {
            self.read_cipher.apply(&mut self.decoder.frame_mut()[..end]);
            self.read_state = ReadState::Plain {
                pos: 0,
                end,
                decrypted: true,
            };
        }
        Poll::Ready(result)
    }

    /// Reads the next frame and checks its MAC, leaving it encrypted. `Some(len)` is the
    /// payload length (ciphertext in the decoder's frame), `None` a clean end of stream.
    fn poll_next_verified_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<usize>>> {
        Poll::Ready(match ready!(self.poll_next_frame_inner(cx)) {
            Err(e) => {
                self.read_state = ReadState::Failed;
                Err(fail(&mut self.read_failed, e))
            }
            ok => ok,
        })
    }

    fn poll_next_frame_inner(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<usize>>> {
        let framing = |e| io_error(SecioError::from(e));
        loop {
            match self.read_state {
                ReadState::Failed => {
                    let first = self.read_failed.as_ref().expect("failed with an error");
                    return Poll::Ready(Err(again(first)));
                }
                ReadState::Eof => return Poll::Ready(Ok(None)),
                // The decoder drops the frame handed out on its next call.
                ReadState::Plain { .. } => self.read_state = ReadState::Reading,
                ReadState::Reading => {
                    if let Some(len) = self.decoder.next_frame_in_place().map_err(framing)? {
                        if len < self.tag_len {
                            return Poll::Ready(Err(io_error(SecioError::FrameTooShort {
                                len,
                                mac: self.tag_len,
                            })));
                        }
                        let end = len - self.tag_len;
                        let (data, tag) = self.decoder.frame_mut().split_at_mut(end);
                        if hmac::verify(&self.read_mac, data, tag).is_err() {
                            return Poll::Ready(Err(io_error(SecioError::MacMismatch)));
                        }
                        self.read_state = ReadState::Plain {
                            pos: 0,
                            end,
                            decrypted: false,
                        };
                        return Poll::Ready(Ok(Some(end)));
                    }
                    // Room for what the frame still needs (the length, then its body), at most
                    // one chunk: a header announcing megabytes costs nothing until they come.
                    let room = self.decoder.read_buf().map_err(framing)?;
                    let n = ready!(Pin::new(&mut self.socket).poll_read(cx, room))?;
                    if n == 0 {
                        if self.decoder.buffered() == 0 {
                            self.read_state = ReadState::Eof;
                            return Poll::Ready(Ok(None));
                        }
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                    self.decoder.advance(n);
                }
            }
        }
    }

    /// The plaintext of the frame [`Self::poll_next_frame`] returned.
    pub(crate) fn frame(&self) -> &[u8] {
        match self.read_state {
            ReadState::Plain {
                pos,
                end,
                decrypted: true,
            } => &self.decoder.frame()[pos..end],
            _ => &[],
        }
    }

    /// Marks the current frame as consumed.
    pub(crate) fn consume_frame(&mut self) {
        if let ReadState::Plain { end, decrypted, .. } = self.read_state {
            self.read_state = ReadState::Plain {
                pos: end,
                end,
                decrypted,
            };
        }
    }

    /// Encrypts `data` as one frame into the write buffer (which must be empty).
    pub(crate) fn encode_frame(&mut self, data: &[u8]) {
        debug_assert!(self.write_pos == self.write_end);
        let body_end = 4 + data.len();
        let frame_end = body_end + self.tag_len;
        if self.write_buf.len() < frame_end {
            // Zero-fills only when the buffer grows (in practice once per connection).
            self.write_buf.resize(frame_end, 0);
        }
        // Encrypt straight from the caller's bytes into the frame: no separate copy.
        self.write_cipher
            .apply_b2b(data, &mut self.write_buf[4..body_end]);
        let tag = hmac::sign(&self.write_mac, &self.write_buf[4..body_end]);
        self.write_buf[body_end..frame_end].copy_from_slice(tag.as_ref());
        let len = (frame_end - 4) as u32;
        self.write_buf[..4].copy_from_slice(&len.to_be_bytes());
        self.write_pos = 0;
        self.write_end = frame_end;
    }

    /// Writes out whatever is left of the buffered frame.
    pub(crate) fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(first) = &self.write_failed {
            return Poll::Ready(Err(again(first)));
        }
        let out = libp2p_core::poll_write_out(
            &mut self.socket,
            cx,
            &self.write_buf[..self.write_end],
            &mut self.write_pos,
        );
        if let Poll::Ready(Err(e)) = out {
            return Poll::Ready(Err(fail(&mut self.write_failed, e)));
        }
        ready!(out)?;
        self.write_pos = 0;
        self.write_end = 0;
        Poll::Ready(Ok(()))
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncRead for SecioStream<C> {
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
            if let ReadState::Plain {
                pos,
                end,
                decrypted,
            } = this.read_state
            {
                if pos < end {
                    let n = buf.len().min(end - pos);
                    let (src, dst) = (&this.decoder.frame()[pos..pos + n], &mut buf[..n]);
                    if decrypted {
                        dst.copy_from_slice(src);
                    } else {
                        // Decrypt while copying out: one pass instead of two.
                        this.read_cipher.apply_b2b(src, dst);
                    }
                    this.read_state = ReadState::Plain {
                        pos: pos + n,
                        end,
                        decrypted,
                    };
                    return Poll::Ready(Ok(n));
                }
            }
            // Empty frames carry nothing: go on to the next one rather than report EOF.
            if ready!(this.poll_next_verified_frame(cx))?.is_none() {
                return Poll::Ready(Ok(0));
            }
        }
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for SecioStream<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(this.max_write_frame);
        this.encode_frame(&buf[..n]);
        // Start sending right away; what does not fit now goes out on the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.socket).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::stretch_keys;
    use futures::{AsyncReadExt, AsyncWriteExt};

    fn pair_over(
        a: futures::io::Cursor<Vec<u8>>,
        max_write: usize,
    ) -> SecioStream<futures::io::Cursor<Vec<u8>>> {
        let (k1, k2) = stretch_keys(Cipher::Aes256, Digest::Sha256, b"secret");
        SecioStream::new(
            a,
            Cipher::Aes256,
            Digest::Sha256,
            &k1,
            &k2,
            1 << 20,
            max_write,
        )
        .unwrap()
    }

    fn reader_over(bytes: Vec<u8>) -> SecioStream<futures::io::Cursor<Vec<u8>>> {
        let (k1, k2) = stretch_keys(Cipher::Aes256, Digest::Sha256, b"secret");
        // The reader uses the writer's keys for its read direction.
        SecioStream::new(
            futures::io::Cursor::new(bytes),
            Cipher::Aes256,
            Digest::Sha256,
            &k2,
            &k1,
            1 << 20,
            1024,
        )
        .unwrap()
    }

    fn written(data: &[u8], max_write: usize) -> Vec<u8> {
        let mut w = pair_over(futures::io::Cursor::new(Vec::new()), max_write);
        futures::executor::block_on(async {
            w.write_all(data).await.unwrap();
            w.flush().await.unwrap();
        });
        w.socket.into_inner()
    }

    /// Yields its bytes, then is pending forever (a remote that stopped sending).
    struct Trickle(Vec<u8>);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.0.is_empty() {
                return Poll::Pending;
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A header announcing the largest frame allowed, then 10 bytes: the reader holds no more
    /// than those bytes and one read chunk, not the 8 MiB announced.
    #[test]
    fn the_read_buffer_grows_with_what_arrives() {
        let max = 8 << 20;
        let mut wire = (max as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&[7u8; 10]);
        let (k1, k2) = stretch_keys(Cipher::Aes256, Digest::Sha256, b"secret");
        let mut r = SecioStream::new(
            Trickle(wire),
            Cipher::Aes256,
            Digest::Sha256,
            &k2,
            &k1,
            max,
            1024,
        )
        .unwrap();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = [0u8; 64];
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_pending());
        // Still reading the frame: its 4-byte length and 10 bytes of body have arrived.
        assert_eq!(r.read_state, ReadState::Reading);
        assert_eq!(r.decoder.buffered(), 4 + 10);
        assert!(
            r.decoder.capacity() <= 4 + 10 + READ_CHUNK,
            "{} bytes held for 10 received",
            r.decoder.capacity()
        );
    }

    /// A frame several read chunks long still arrives whole.
    #[test]
    fn a_frame_longer_than_a_read_chunk_round_trips() {
        let data: Vec<u8> = (0..600 * 1024u32).map(|i| (i * 31) as u8).collect();
        let wire = written(&data, data.len());
        assert_eq!(wire.len(), 4 + data.len() + 32, "one frame");
        let mut r = reader_over(wire);
        let mut back = Vec::new();
        futures::executor::block_on(r.read_to_end(&mut back)).unwrap();
        assert_eq!(back, data);
        assert!(r.decoder.capacity() <= data.len() + 32 + READ_CHUNK);
    }

    #[test]
    fn frames_round_trip_and_split() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let wire = written(&data, 1000);
        // 10 frames of 4 + 1000 + 32 bytes.
        assert_eq!(wire.len(), 10 * (4 + 1000 + 32));
        assert_eq!(&wire[..4], &1032u32.to_be_bytes());
        let mut r = reader_over(wire);
        let mut back = Vec::new();
        futures::executor::block_on(r.read_to_end(&mut back)).unwrap();
        assert_eq!(back, data);
    }

    /// Frames are decrypted as they are copied out, so reads of any size, ending inside or
    /// across frames, must still line up with the continuous keystream.
    #[test]
    fn small_and_uneven_reads_decrypt_piecewise() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 13 + 5) as u8).collect();
        let wire = written(&data, 1000);
        let mut r = reader_over(wire);
        let mut back = Vec::new();
        let sizes = [1usize, 7, 999, 1000, 1001, 3, 4096];
        let mut i = 0;
        futures::executor::block_on(async {
            loop {
                let mut buf = vec![0u8; sizes[i % sizes.len()]];
                i += 1;
                let n = r.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
        });
        assert_eq!(back, data);
    }

    #[test]
    fn tampering_is_detected() {
        let data = vec![42u8; 100];
        let wire = written(&data, 1000);
        for index in [0usize, 3, 4, 50, wire.len() - 1] {
            let mut bad = wire.clone();
            bad[index] ^= 1;
            let mut r = reader_over(bad);
            let mut back = Vec::new();
            let err = futures::executor::block_on(r.read_to_end(&mut back)).unwrap_err();
            assert!(
                err.kind() == io::ErrorKind::InvalidData
                    || err.kind() == io::ErrorKind::UnexpectedEof,
                "{index}: {err}"
            );
        }
        // A truncated frame is an unexpected EOF.
        let mut r = reader_over(wire[..wire.len() - 1].to_vec());
        let err = futures::executor::block_on(r.read_to_end(&mut Vec::new())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // An oversized length is refused.
        let mut r = reader_over(vec![0xff, 0xff, 0xff, 0xff, 0]);
        let err = futures::executor::block_on(r.read_to_end(&mut Vec::new())).unwrap_err();
        let inner = err.into_inner().unwrap().downcast::<SecioError>().unwrap();
        assert!(matches!(*inner, SecioError::FrameTooLarge { .. }));
    }

    #[test]
    fn a_failed_stream_returns_its_first_error_again() {
        let wire = written(&[42u8; 100], 1000);
        let mut bad = wire.clone();
        bad[50] ^= 1;
        let mut r = reader_over(bad);
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            let err = futures::executor::block_on(r.read(&mut buf)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            let inner = err.get_ref().and_then(|e| e.downcast_ref::<SecioError>());
            assert!(matches!(inner, Some(SecioError::MacMismatch)), "{err}");
        }
        // A frame shorter than its MAC.
        let mut r = reader_over(vec![0, 0, 0, 3, 1, 2, 3]);
        let err = futures::executor::block_on(r.read(&mut buf)).unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<SecioError>());
        assert!(
            matches!(inner, Some(SecioError::FrameTooShort { len: 3, mac: 32 })),
            "{err}"
        );
    }
}
