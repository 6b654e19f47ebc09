//! The encrypted channel: messages of `2-byte big-endian length ‖ ciphertext ‖ 16-byte tag`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncWrite};

use crate::{NoiseError, MAX_FRAME_PLAINTEXT, MAX_MESSAGE_LEN, TAG_LEN};

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
        debug_assert!(self.write_pos == self.write_len);
        debug_assert!(self.write_plain.len() <= MAX_FRAME_PLAINTEXT);
        if self.write_frame.len() < 2 + MAX_MESSAGE_LEN {
            // Once per stream: the buffer is kept at its full size from then on.
            self.write_frame.resize(2 + MAX_MESSAGE_LEN, 0);
        }
        let len = match self
            .state
            .write_message(&self.write_plain, &mut self.write_frame[2..])
        {
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
        self.write_plain.clear();
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
        while self.write_pos < self.write_len {
            match Pin::new(&mut self.socket)
                .poll_write(cx, &self.write_frame[self.write_pos..self.write_len])
            {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    self.write_failed = true;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.write_pos += n,
                Poll::Ready(Err(e)) => {
                    self.write_failed = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
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
