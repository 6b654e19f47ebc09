//! multistream-select 1.0.0: how two peers agree on the protocol to speak over a connection or
//! a stream.
//!
//! Every message is an unsigned-varint length followed by that many bytes, the last of which is
//! a newline. Both sides first send the header `/multistream/1.0.0`; then the dialer proposes
//! protocols one at a time and the listener answers each with the same name (accepted) or `na`
//! (not available). A dialer may also send `ls`, which the listener answers with the list of
//! protocols it supports.
//!
//! [`dialer_select`] and [`listener_select`] run the two roles over any
//! `futures::AsyncRead + AsyncWrite` and return a [`Negotiated`] socket that keeps whatever
//! bytes the remote sent after the negotiation, so nothing is lost when the remote pipelines its
//! first data behind its proposal. With [`Version::V1Lazy`] the dialer of a single protocol does
//! not wait for the answer: it sends header and proposal together and the answer is checked on
//! the first read, saving a round trip.
//!
//! Every length read off the wire is checked against [`Config::max_message_len`] before any
//! buffer grows, and the listener answers at most [`Config::max_proposals`] unknown proposals
//! and [`Config::max_list_requests`] `ls` requests.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod framing;
pub mod machine;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::poll_fn;
use futures::{AsyncRead, AsyncWrite};

use framing::{Codec, Decoder, FrameError};
use machine::{Machine, Outcome};

/// The multistream-select protocol name, sent as the first message by both sides.
pub const PROTOCOL: &str = "/multistream/1.0.0";
/// Largest number of bytes pulled from the socket at once while negotiating.
const READ_CHUNK: usize = 256;
/// The least bound on the listener's answer to `ls`, which holds every name it speaks.
const LS_ANSWER_MAX: usize = 64 * 1024;

/// How the dialer runs the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Version {
    /// Wait for the listener's answer to each proposal before returning.
    #[default]
    V1,
    /// When proposing the last (or only) protocol, return at once and check the listener's
    /// answer on the first read. Saves one round trip; if the listener refuses, the first read
    /// fails with an error wrapping [`NegotiationError::ProtocolNotSupported`]. Same bytes on
    /// the wire as [`Version::V1`].
    V1Lazy,
}

/// Limits for one negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest message accepted from the remote, in bytes (the length prefix excluded). Larger
    /// lengths end the negotiation with [`NegotiationError::MessageTooLong`] before anything is
    /// allocated. Default 1 KiB, far above any real protocol name ([`list_protocols`] allows
    /// at least 64 KiB for the `ls` answer).
    pub max_message_len: usize,
    /// Number of unsupported proposals the listener answers with `na` before giving up with
    /// [`NegotiationError::TooManyProposals`]. Default 64.
    pub max_proposals: usize,
    /// Number of `ls` requests the listener answers in one negotiation before giving up with
    /// [`NegotiationError::TooManyListRequests`]. Default 4: a dialer has no use for the list
    /// more than once, and every answer costs us the whole list in output, so a dialer sending
    /// `ls` in a loop would otherwise keep the listener busy writing for as long as it likes.
    pub max_list_requests: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_len: 1024,
            max_proposals: 64,
            max_list_requests: 4,
        }
    }
}

/// Why a negotiation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The socket failed or closed before the negotiation finished.
    #[error("i/o error during protocol negotiation: {0}")]
    Io(#[from] io::Error),
    /// The remote supports none of the protocols that were offered.
    #[error("remote supports none of the offered protocols {offered:?}")]
    ProtocolNotSupported {
        /// What was offered, in order.
        offered: Vec<String>,
    },
    /// The remote's first message was not the multistream-select 1.0.0 header.
    #[error("remote does not speak {PROTOCOL}: its first message was {0:?}")]
    InvalidHeader(String),
    /// The remote announced a message longer than [`Config::max_message_len`].
    #[error("negotiation message of {len} bytes exceeds the limit of {max}")]
    MessageTooLong {
        /// Announced length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// A message was not a newline-terminated UTF-8 line with a valid length prefix.
    #[error("malformed negotiation message: {0}")]
    InvalidMessage(&'static str),
    /// The listener answered a proposal with something other than the proposal or `na`.
    #[error("unexpected answer {got:?} to the proposal {proposed:?}")]
    UnexpectedMessage {
        /// What we proposed.
        proposed: String,
        /// What came back.
        got: String,
    },
    /// The dialer kept proposing unsupported protocols.
    #[error("remote made more than {0} unsupported proposals")]
    TooManyProposals(usize),
    /// The dialer kept asking for the protocol list with `ls`.
    #[error("remote sent more than {0} `ls` requests")]
    TooManyListRequests(usize),
    /// A protocol name we were asked to offer cannot be sent (not starting with `/`, too
    /// long, or holding a newline).
    #[error("invalid protocol name {0:?}")]
    InvalidProtocol(String),
}

/// The protocols a listener accepts.
pub trait ProtocolSet {
    /// Whether a proposal from the remote is accepted.
    fn matches(&self, proposed: &str) -> bool;
    /// The names announced in answer to `ls`.
    fn list(&self) -> Vec<String>;
}

impl<T: AsRef<str>> ProtocolSet for [T] {
    fn matches(&self, proposed: &str) -> bool {
        self.iter().any(|p| p.as_ref() == proposed)
    }
    fn list(&self) -> Vec<String> {
        self.iter().map(|p| p.as_ref().to_string()).collect()
    }
}

impl<T: AsRef<str>> ProtocolSet for Vec<T> {
    fn matches(&self, proposed: &str) -> bool {
        self.as_slice().matches(proposed)
    }
    fn list(&self) -> Vec<String> {
        self.as_slice().list()
    }
}

/// Runs the dialer side: proposes `protocols` in order of preference and returns the first one
/// the listener accepts, with the socket to speak it on.
pub async fn dialer_select<S, I, N>(
    io: S,
    protocols: I,
    version: Version,
    config: &Config,
) -> Result<(N, Negotiated<S>), NegotiationError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: IntoIterator<Item = N>,
    N: AsRef<str>,
{
    let mut protocols: Vec<N> = protocols.into_iter().collect();
    let names = protocols.iter().map(|p| p.as_ref().to_string()).collect();
    let mut machine = Machine::dialer(names, config)?;
    let mut framed = Framed::new(io, config.max_message_len);
    loop {
        framed.queue(&mut machine);
        if version == Version::V1Lazy && machine.proposing_last() {
            // Header (if still unanswered) and the last proposal go out now; the answers are
            // read by the machine on the first read of the socket.
            framed.flush().await?;
            let chosen = machine.current().expect("a dialer has a current proposal");
            let chosen = protocols.swap_remove(chosen);
            return Ok((chosen, Negotiated::new(framed, Some(machine))));
        }
        let msg = framed.recv().await?;
        if let Outcome::Selected(i) = machine.on_message(&msg, NO_PROTOCOLS)? {
            return Ok((protocols.swap_remove(i), Negotiated::new(framed, None)));
        }
    }
}

/// What a dialer accepts as a listener (nothing: the dialer roles ignore the set).
const NO_PROTOCOLS: &[&str] = &[];

/// Runs the listener side: answers the dialer's proposals until it proposes one that
/// `protocols` accepts, and returns that protocol with the socket to speak it on. `ls` is
/// answered with [`ProtocolSet::list`], at most [`Config::max_list_requests`] times.
pub async fn listener_select<S, P>(
    io: S,
    protocols: &P,
    config: &Config,
) -> Result<(String, Negotiated<S>), NegotiationError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: ProtocolSet + ?Sized,
{
    let mut machine = Machine::listener(config);
    let mut framed = Framed::new(io, config.max_message_len);
    loop {
        // `recv` flushes our queued answers before it waits for more input.
        let msg = framed.recv().await?;
        let outcome = machine.on_message(&msg, protocols)?;
        framed.queue(&mut machine);
        if let Outcome::Accepted(protocol) = outcome {
            framed.flush().await?;
            return Ok((protocol, Negotiated::new(framed, None)));
        }
    }
}

/// Asks a listener for the protocols it supports with `ls` (for diagnostics and tests; the
/// socket is used up).
pub async fn list_protocols<S>(io: S, config: &Config) -> Result<Vec<String>, NegotiationError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut machine = Machine::lister(config);
    let mut framed = Framed::new(io, config.max_message_len.max(LS_ANSWER_MAX));
    framed.queue(&mut machine);
    loop {
        let msg = framed.recv().await?;
        if let Outcome::Listed(names) = machine.on_message(&msg, NO_PROTOCOLS)? {
            return Ok(names);
        }
    }
}

impl From<FrameError> for NegotiationError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => NegotiationError::Io(e),
            FrameError::TooLong { len, max } => NegotiationError::MessageTooLong { len, max },
            _ => NegotiationError::InvalidMessage("bad length prefix"),
        }
    }
}

/// A socket with the frame decoder for the remote's messages and a write buffer for answers
/// that go out together.
struct Framed<S> {
    io: S,
    decoder: Decoder,
    wbuf: Vec<u8>,
    /// Bytes were handed to `io` since its last completed flush. A socket that buffers (a
    /// secure channel) may hold them until flushed, so an empty `wbuf` is not enough to know
    /// that everything went out.
    unflushed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    fn new(io: S, max: usize) -> Self {
        Framed {
            io,
            decoder: Decoder::new(Codec::uvarint(max)),
            wbuf: Vec::new(),
            unflushed: false,
        }
    }

    /// Moves the machine's output to the write buffer.
    fn queue(&mut self, machine: &mut Machine) {
        if machine.has_output() {
            self.wbuf.extend(machine.take_output());
            self.unflushed = true;
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Writes the whole write buffer, then flushes the socket.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.drain(..n);
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    async fn recv(&mut self) -> Result<Vec<u8>, NegotiationError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next whole message (newline included). Queued output is flushed before waiting for
    /// input, so answers to everything received so far go out in one write.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<u8>, NegotiationError>> {
        loop {
            if let Some(msg) = self.decoder.next_frame()? {
                return Poll::Ready(Ok(msg));
            }
            if self.unflushed {
                ready!(self.poll_flush(cx))?;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = ready!(Pin::new(&mut self.io).poll_read(cx, &mut chunk))?;
            if n == 0 {
                return Poll::Ready(Err(NegotiationError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during protocol negotiation",
                ))));
            }
            self.decoder.push(&chunk[..n]);
        }
    }
}

/// A socket on which a protocol has been agreed. Reads first return any bytes the remote sent
/// right behind the negotiation; with [`Version::V1Lazy`] the first read also checks the
/// listener's answer.
pub struct Negotiated<S> {
    framed: Framed<S>,
    /// A lazy dialer's negotiation, still waiting for the listener's answers.
    pending: Option<Machine>,
}

impl<S> fmt::Debug for Negotiated<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Negotiated")
            .field("buffered", &self.framed.decoder.buffered())
            .field("pending", &self.pending)
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Negotiated<S> {
    fn new(framed: Framed<S>, pending: Option<Machine>) -> Self {
        Negotiated { framed, pending }
    }

    /// Whether the listener's acceptance has been read (always true except for a lazy dialer
    /// that has not read yet).
    pub fn is_confirmed(&self) -> bool {
        self.pending.is_none()
    }

    /// The underlying socket. Bytes already buffered here are not visible through it.
    pub fn get_ref(&self) -> &S {
        &self.framed.io
    }

    /// Reads the listener's answers that a lazy dialer skipped, with the same machine that
    /// sent the proposal.
    fn poll_confirm(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(machine) = self.pending.as_mut() {
            let msg = ready!(self.framed.poll_recv(cx)).map_err(into_io)?;
            match machine.on_message(&msg, NO_PROTOCOLS).map_err(into_io)? {
                Outcome::Continue => {}
                _ => self.pending = None,
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn into_io(e: NegotiationError) -> io::Error {
    match e {
        NegotiationError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Negotiated<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            ready!(this.poll_confirm(cx))?;
        }
        let left = this.framed.decoder.buffered_bytes();
        if !left.is_empty() {
            let n = left.len().min(buf.len());
            buf[..n].copy_from_slice(&left[..n]);
            this.framed.decoder.consume(n);
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.framed.io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Negotiated<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().framed.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().framed.io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().framed.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().framed.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::machine::{check_name, encode_line, text};
    use super::*;

    #[test]
    fn messages_are_length_prefixed_lines() {
        let mut out = Vec::new();
        encode_line(&mut out, PROTOCOL.as_bytes());
        assert_eq!(out[0], 19);
        assert_eq!(&out[1..], b"/multistream/1.0.0\n");
        assert_eq!(text(&out[1..]).unwrap(), PROTOCOL);
    }

    #[test]
    fn text_rejects_bad_lines() {
        assert!(matches!(
            text(b"abc"),
            Err(NegotiationError::InvalidMessage(_))
        ));
        assert!(matches!(
            text(b"\xff\n"),
            Err(NegotiationError::InvalidMessage(_))
        ));
    }

    #[test]
    fn names_are_checked() {
        let config = Config::default();
        assert!(check_name("/echo/1.0.0", &config).is_ok());
        assert!(check_name("", &config).is_err());
        assert!(check_name("echo/1.0.0", &config).is_err());
        assert!(check_name("/a\nb", &config).is_err());
        assert!(check_name(&"x".repeat(config.max_message_len), &config).is_err());
    }
}
