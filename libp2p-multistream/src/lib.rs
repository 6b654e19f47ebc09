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

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::poll_fn;
use futures::{AsyncRead, AsyncWrite};

/// The multistream-select protocol name, sent as the first message by both sides.
pub const PROTOCOL: &str = "/multistream/1.0.0";
/// The listener's answer to a protocol it does not support.
const NA: &str = "na";
/// The dialer's request for the listener's protocol list.
const LS: &str = "ls";
/// Largest number of bytes pulled from the socket at once while negotiating.
const READ_CHUNK: usize = 256;
/// A 64-bit unsigned varint takes at most this many bytes.
const MAX_VARINT_LEN: usize = 10;
/// The least bound on the listener's answer to `ls`, which holds every name it speaks.
const LS_ANSWER_MAX: usize = 64 * 1024;

/// How the dialer runs the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    let protocols: Vec<N> = protocols.into_iter().collect();
    for p in &protocols {
        check_name(p.as_ref(), config)?;
    }
    let offered = || protocols.iter().map(|p| p.as_ref().to_string()).collect();
    let count = protocols.len();
    if count == 0 {
        return Err(NegotiationError::ProtocolNotSupported { offered: offered() });
    }
    let mut framed = Framed::new(io, config.max_message_len);
    framed.queue(PROTOCOL.as_bytes());
    let mut header_seen = false;
    let mut iter = protocols.iter().enumerate();
    for (i, proposal) in &mut iter {
        let proposal = proposal.as_ref();
        tracing::trace!(protocol = proposal, "proposing");
        framed.queue(proposal.as_bytes());
        if version == Version::V1Lazy && i + 1 == count {
            framed.flush().await?;
            let pending = Pending {
                header: !header_seen,
                protocol: proposal.to_string(),
            };
            let chosen = protocols.into_iter().nth(i).expect("index within the list");
            return Ok((chosen, Negotiated::new(framed, Some(pending))));
        }
        loop {
            let msg = framed.recv().await?;
            let msg = text(&msg)?;
            if !header_seen {
                if msg != PROTOCOL {
                    return Err(NegotiationError::InvalidHeader(msg.to_string()));
                }
                header_seen = true;
                continue;
            }
            if msg == proposal {
                tracing::trace!(protocol = proposal, "accepted");
                let chosen = protocols.into_iter().nth(i).expect("index within the list");
                return Ok((chosen, Negotiated::new(framed, None)));
            }
            if msg == NA {
                break;
            }
            return Err(NegotiationError::UnexpectedMessage {
                proposed: proposal.to_string(),
                got: msg.to_string(),
            });
        }
    }
    Err(NegotiationError::ProtocolNotSupported { offered: offered() })
}

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
    let mut framed = Framed::new(io, config.max_message_len);
    let header = framed.recv().await?;
    let header = text(&header)?;
    if header != PROTOCOL {
        return Err(NegotiationError::InvalidHeader(header.to_string()));
    }
    framed.queue(PROTOCOL.as_bytes());
    let mut refused = 0usize;
    let mut listed = 0usize;
    loop {
        // `recv` flushes our queued answers before it waits for more input.
        let msg = framed.recv().await?;
        let msg = text(&msg)?;
        if msg == LS {
            listed += 1;
            if listed > config.max_list_requests {
                return Err(NegotiationError::TooManyListRequests(
                    config.max_list_requests,
                ));
            }
            let mut body = Vec::new();
            for name in protocols.list() {
                encode_message(&mut body, name.as_bytes());
            }
            framed.queue(&body);
            continue;
        }
        if protocols.matches(msg) {
            tracing::trace!(protocol = msg, "accepting");
            framed.queue(msg.as_bytes());
            framed.flush().await?;
            let protocol = msg.to_string();
            return Ok((protocol, Negotiated::new(framed, None)));
        }
        refused += 1;
        if refused > config.max_proposals {
            return Err(NegotiationError::TooManyProposals(config.max_proposals));
        }
        tracing::trace!(protocol = msg, "not available");
        framed.queue(NA.as_bytes());
    }
}

/// Asks a listener for the protocols it supports with `ls` (for diagnostics and tests; the
/// socket is used up).
pub async fn list_protocols<S>(io: S, config: &Config) -> Result<Vec<String>, NegotiationError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(io, config.max_message_len.max(LS_ANSWER_MAX));
    framed.queue(PROTOCOL.as_bytes());
    framed.queue(LS.as_bytes());
    let header = framed.recv().await?;
    let header = text(&header)?;
    if header != PROTOCOL {
        return Err(NegotiationError::InvalidHeader(header.to_string()));
    }
    let answer = framed.recv().await?;
    let mut body = answer
        .strip_suffix(b"\n")
        .ok_or(NegotiationError::InvalidMessage("missing trailing newline"))?;
    let mut names = Vec::new();
    while !body.is_empty() {
        let (len, rest) = unsigned_varint::decode::u64(body)
            .map_err(|_| NegotiationError::InvalidMessage("bad length in protocol list"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= rest.len())
            .ok_or(NegotiationError::InvalidMessage("truncated protocol list"))?;
        names.push(text(&rest[..len])?.to_string());
        body = &rest[len..];
    }
    Ok(names)
}

fn check_name(name: &str, config: &Config) -> Result<(), NegotiationError> {
    if !name.starts_with('/') || name.len() >= config.max_message_len || name.contains('\n') {
        return Err(NegotiationError::InvalidProtocol(name.to_string()));
    }
    Ok(())
}

/// The text of a message: UTF-8, newline-terminated (the newline is not part of the text).
fn text(msg: &[u8]) -> Result<&str, NegotiationError> {
    let line = msg
        .strip_suffix(b"\n")
        .ok_or(NegotiationError::InvalidMessage("missing trailing newline"))?;
    std::str::from_utf8(line).map_err(|_| NegotiationError::InvalidMessage("not UTF-8"))
}

/// Appends `body` plus a newline, prefixed with their length.
fn encode_message(out: &mut Vec<u8>, body: &[u8]) {
    let mut len = unsigned_varint::encode::usize_buffer();
    out.extend_from_slice(unsigned_varint::encode::usize(body.len() + 1, &mut len));
    out.extend_from_slice(body);
    out.push(b'\n');
}

/// A socket with a read buffer for the length-prefixed messages and a write buffer for answers
/// that go out together.
struct Framed<S> {
    io: S,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Bytes were handed to `io` since its last completed flush. A socket that buffers (a
    /// secure channel) may hold them until flushed, so an empty `wbuf` is not enough to know
    /// that everything went out.
    unflushed: bool,
    max: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    fn new(io: S, max: usize) -> Self {
        Framed {
            io,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            unflushed: false,
            max,
        }
    }

    fn queue(&mut self, body: &[u8]) {
        encode_message(&mut self.wbuf, body);
        self.unflushed = true;
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
            if let Some(msg) = self.decode()? {
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
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Takes one whole message off the read buffer, if there is one.
    fn decode(&mut self) -> Result<Option<Vec<u8>>, NegotiationError> {
        match unsigned_varint::decode::u64(&self.rbuf) {
            Ok((len, rest)) => {
                if len > self.max as u64 {
                    return Err(NegotiationError::MessageTooLong { len, max: self.max });
                }
                let len = len as usize;
                if rest.len() < len {
                    return Ok(None);
                }
                let prefix = self.rbuf.len() - rest.len();
                let msg = rest[..len].to_vec();
                self.rbuf.drain(..prefix + len);
                Ok(Some(msg))
            }
            Err(unsigned_varint::decode::Error::Insufficient)
                if self.rbuf.len() < MAX_VARINT_LEN =>
            {
                Ok(None)
            }
            Err(_) => Err(NegotiationError::InvalidMessage("bad length prefix")),
        }
    }
}

/// What a lazy dialer still has to read before the application's bytes.
#[derive(Debug)]
struct Pending {
    /// The listener's header is still to come.
    header: bool,
    /// The listener's echo of this proposal is still to come.
    protocol: String,
}

/// A socket on which a protocol has been agreed. Reads first return any bytes the remote sent
/// right behind the negotiation; with [`Version::V1Lazy`] the first read also checks the
/// listener's answer.
pub struct Negotiated<S> {
    framed: Framed<S>,
    /// Read position in `framed.rbuf` (the leftover bytes).
    pos: usize,
    pending: Option<Pending>,
}

impl<S> fmt::Debug for Negotiated<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Negotiated")
            .field("buffered", &(self.framed.rbuf.len() - self.pos))
            .field("pending", &self.pending)
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Negotiated<S> {
    fn new(framed: Framed<S>, pending: Option<Pending>) -> Self {
        Negotiated {
            framed,
            pos: 0,
            pending,
        }
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

    /// Reads the listener's answers that a lazy dialer skipped.
    fn poll_confirm(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = self.pending.as_mut() {
            let msg = ready!(self.framed.poll_recv(cx)).map_err(into_io)?;
            let msg = text(&msg).map_err(into_io)?;
            if pending.header {
                if msg != PROTOCOL {
                    return Poll::Ready(Err(into_io(NegotiationError::InvalidHeader(
                        msg.to_string(),
                    ))));
                }
                pending.header = false;
            } else if msg == pending.protocol {
                self.pending = None;
            } else if msg == NA {
                let offered = vec![pending.protocol.clone()];
                return Poll::Ready(Err(into_io(NegotiationError::ProtocolNotSupported {
                    offered,
                })));
            } else {
                return Poll::Ready(Err(into_io(NegotiationError::UnexpectedMessage {
                    proposed: pending.protocol.clone(),
                    got: msg.to_string(),
                })));
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
        let left = &this.framed.rbuf[this.pos..];
        if !left.is_empty() {
            let n = left.len().min(buf.len());
            buf[..n].copy_from_slice(&left[..n]);
            this.pos += n;
            if this.pos == this.framed.rbuf.len() {
                this.framed.rbuf = Vec::new();
                this.pos = 0;
            }
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
    use super::*;

    #[test]
    fn messages_are_length_prefixed_lines() {
        let mut out = Vec::new();
        encode_message(&mut out, PROTOCOL.as_bytes());
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
