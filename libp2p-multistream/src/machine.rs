//! The negotiation as one plain state machine: no sockets, no async, no clock.
//!
//! The eager dialer, the lazy dialer, the `ls` client and the listener all drive a
//! [`Machine`]: feed it each whole message the remote sent ([`Machine::on_message`]), send
//! what it queued ([`Machine::take_output`]), until it reports an [`Outcome`] other than
//! [`Outcome::Continue`]. The rules (header first, `na`, the echo, the `ls` and `na` counts)
//! live here once.
//!
//! ```
//! use libp2p_multistream::machine::{Machine, Outcome};
//! use libp2p_multistream::Config;
//!
//! let config = Config::default();
//! let mut dialer = Machine::dialer(vec!["/echo/1".to_string()], &config).unwrap();
//! let mut listener = Machine::listener(&config);
//! let supported = ["/echo/1"];
//! // Every message the dialer queued (header, proposal) reaches the listener...
//! let mut answer = Vec::new();
//! for msg in libp2p_multistream::machine::split(&dialer.take_output()) {
//!     if let Outcome::Accepted(name) = listener.on_message(&msg, &supported[..]).unwrap() {
//!         assert_eq!(name, "/echo/1");
//!     }
//!     answer.extend(listener.take_output());
//! }
//! // ...and the listener's header and echo reach the dialer.
//! let outcomes: Vec<_> = libp2p_multistream::machine::split(&answer)
//!     .map(|msg| dialer.on_message(&msg, &[] as &[&str]).unwrap())
//!     .collect();
//! assert_eq!(outcomes.last(), Some(&Outcome::Selected(0)));
//! ```

use crate::framing::{Codec, Decoder};
use crate::{Config, NegotiationError, ProtocolSet, PROTOCOL};

/// The listener's answer to a protocol it does not support.
pub const NA: &str = "na";
/// The dialer's request for the listener's protocol list.
pub const LS: &str = "ls";

/// What a message changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The negotiation goes on: send the output, wait for the next message.
    Continue,
    /// (Dialer) the listener accepted the proposal at this index of the dialer's list.
    Selected(usize),
    /// (Listener) we accepted this protocol; its echo is in the output.
    Accepted(String),
    /// (`ls` client) the listener's protocol list.
    Listed(Vec<String>),
}

#[derive(Debug)]
enum State {
    /// Proposing `protocols[current]`.
    Dialer {
        protocols: Vec<String>,
        current: usize,
        header_seen: bool,
    },
    /// Waiting for the dialer's header, then its proposals.
    Listener {
        header_seen: bool,
        refused: usize,
        listed: usize,
    },
    /// Asked for the list with `ls`.
    Lister { header_seen: bool },
    /// Agreed, listed or failed: no more messages.
    Done,
}

/// One multistream-select 1.0.0 negotiation, in either role.
#[derive(Debug)]
pub struct Machine {
    state: State,
    out: Vec<u8>,
    codec: Codec,
    max_proposals: usize,
    max_list_requests: usize,
}

impl Machine {
    /// The dialer of `protocols`, in order of preference: the header and the first proposal
    /// are queued. Fails if the list is empty or holds a name that cannot be sent.
    pub fn dialer(protocols: Vec<String>, config: &Config) -> Result<Self, NegotiationError> {
        for p in &protocols {
            check_name(p, config)?;
        }
        if protocols.is_empty() {
            return Err(NegotiationError::ProtocolNotSupported { offered: protocols });
        }
        let mut machine = Machine::new(
            State::Dialer {
                protocols,
                current: 0,
                header_seen: false,
            },
            config,
        );
        machine.queue(PROTOCOL);
        machine.queue_current();
        Ok(machine)
    }

    /// The listener: waits for the dialer's header.
    pub fn listener(config: &Config) -> Self {
        Machine::new(
            State::Listener {
                header_seen: false,
                refused: 0,
                listed: 0,
            },
            config,
        )
    }

    /// A dialer that only asks for the listener's protocols (`ls`): header and `ls` queued.
    pub fn lister(config: &Config) -> Self {
        let mut machine = Machine::new(State::Lister { header_seen: false }, config);
        machine.queue(PROTOCOL);
        machine.queue(LS);
        machine
    }

    fn new(state: State, config: &Config) -> Self {
        Machine {
            state,
            out: Vec::new(),
            codec: Codec::uvarint(usize::MAX),
            max_proposals: config.max_proposals,
            max_list_requests: config.max_list_requests,
        }
    }

    /// The bytes to send, taken out of the machine.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// (Dialer) whether the proposal waiting for an answer is the last one offered: a lazy
    /// dialer hands the socket out at this point and checks the answer on its first read.
    pub fn proposing_last(&self) -> bool {
        matches!(&self.state, State::Dialer { protocols, current, .. } if current + 1 == protocols.len())
    }

    /// (Dialer) the index of the proposal waiting for an answer.
    pub fn current(&self) -> Option<usize> {
        match &self.state {
            State::Dialer { current, .. } => Some(*current),
            _ => None,
        }
    }

    /// (Dialer) the proposal waiting for an answer.
    pub fn current_protocol(&self) -> Option<&str> {
        match &self.state {
            State::Dialer {
                protocols, current, ..
            } => protocols.get(*current).map(String::as_str),
            _ => None,
        }
    }

    /// Takes one whole message from the remote (its body: the text and the newline).
    /// `protocols` is what a listener accepts (ignored in the dialer roles). After an
    /// outcome other than [`Outcome::Continue`], or an error, the machine takes no more.
    pub fn on_message<P: ProtocolSet + ?Sized>(
        &mut self,
        msg: &[u8],
        protocols: &P,
    ) -> Result<Outcome, NegotiationError> {
        let result = self.step(msg, protocols);
        if !matches!(result, Ok(Outcome::Continue)) {
            self.state = State::Done;
        }
        result
    }

    fn step<P: ProtocolSet + ?Sized>(
        &mut self,
        msg: &[u8],
        protocols: &P,
    ) -> Result<Outcome, NegotiationError> {
        let max_proposals = self.max_proposals;
        let max_list_requests = self.max_list_requests;
        match &mut self.state {
            State::Done => Err(NegotiationError::InvalidMessage(
                "message after the negotiation ended",
            )),
            State::Dialer {
                protocols: offered,
                current,
                header_seen,
            } => {
                let msg = text(msg)?;
                if !*header_seen {
                    expect_header(msg)?;
                    *header_seen = true;
                    return Ok(Outcome::Continue);
                }
                let proposal = &offered[*current];
                if msg == proposal {
                    tracing::trace!(protocol = proposal, "accepted");
                    return Ok(Outcome::Selected(*current));
                }
                if msg != NA {
                    return Err(NegotiationError::UnexpectedMessage {
                        proposed: proposal.clone(),
                        got: msg.to_string(),
                    });
                }
                *current += 1;
                if *current == offered.len() {
                    return Err(NegotiationError::ProtocolNotSupported {
                        offered: std::mem::take(offered),
                    });
                }
                self.queue_current();
                Ok(Outcome::Continue)
            }
            State::Listener {
                header_seen,
                refused,
                listed,
            } => {
                let msg = text(msg)?;
                if !*header_seen {
                    expect_header(msg)?;
                    *header_seen = true;
                    self.queue(PROTOCOL);
                    return Ok(Outcome::Continue);
                }
                if msg == LS {
                    *listed += 1;
                    if *listed > max_list_requests {
                        return Err(NegotiationError::TooManyListRequests(max_list_requests));
                    }
                    let mut body = Vec::new();
                    for name in protocols.list() {
                        encode_line(&mut body, name.as_bytes());
                    }
                    // The list is one message whose body is the names, each a message.
                    body.push(b'\n');
                    self.push_frame(&body);
                    return Ok(Outcome::Continue);
                }
                if protocols.matches(msg) {
                    tracing::trace!(protocol = msg, "accepting");
                    let name = msg.to_string();
                    self.queue(&name);
                    return Ok(Outcome::Accepted(name));
                }
                *refused += 1;
                if *refused > max_proposals {
                    return Err(NegotiationError::TooManyProposals(max_proposals));
                }
                tracing::trace!(protocol = msg, "not available");
                self.queue(NA);
                Ok(Outcome::Continue)
            }
            State::Lister { header_seen } => {
                if !*header_seen {
                    expect_header(text(msg)?)?;
                    *header_seen = true;
                    return Ok(Outcome::Continue);
                }
                Ok(Outcome::Listed(parse_list(msg)?))
            }
        }
    }

    fn queue_current(&mut self) {
        if let State::Dialer {
            protocols, current, ..
        } = &self.state
        {
            let name = protocols[*current].clone();
            tracing::trace!(protocol = %name, "proposing");
            self.queue(&name);
        }
    }

    /// Queues `text` and its newline as one message.
    fn queue(&mut self, text: &str) {
        let mut body = Vec::with_capacity(text.len() + 1);
        body.extend_from_slice(text.as_bytes());
        body.push(b'\n');
        self.push_frame(&body);
    }

    fn push_frame(&mut self, body: &[u8]) {
        self.codec
            .encode(body, &mut self.out)
            .expect("the output codec has no limit");
    }
}

/// Splits bytes holding whole messages into their bodies (for tests and examples; a partial
/// or malformed tail is dropped).
pub fn split(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> {
    let mut decoder = Decoder::new(Codec::uvarint(usize::MAX));
    decoder.push(bytes);
    std::iter::from_fn(move || decoder.next_frame().ok().flatten())
}

fn expect_header(msg: &str) -> Result<(), NegotiationError> {
    if msg != PROTOCOL {
        return Err(NegotiationError::InvalidHeader(msg.to_string()));
    }
    Ok(())
}

/// Checks that `name` can be proposed: starts with `/`, shorter than the message limit, no
/// newline.
pub(crate) fn check_name(name: &str, config: &Config) -> Result<(), NegotiationError> {
    if !name.starts_with('/') || name.len() >= config.max_message_len || name.contains('\n') {
        return Err(NegotiationError::InvalidProtocol(name.to_string()));
    }
    Ok(())
}

/// The text of a message: UTF-8, newline-terminated (the newline is not part of the text).
pub(crate) fn text(msg: &[u8]) -> Result<&str, NegotiationError> {
    let line = msg
        .strip_suffix(b"\n")
        .ok_or(NegotiationError::InvalidMessage("missing trailing newline"))?;
    std::str::from_utf8(line).map_err(|_| NegotiationError::InvalidMessage("not UTF-8"))
}

/// Appends `body` plus a newline, prefixed with their length.
pub(crate) fn encode_line(out: &mut Vec<u8>, body: &[u8]) {
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend_from_slice(body);
    line.push(b'\n');
    Codec::uvarint(usize::MAX)
        .encode(&line, out)
        .expect("no limit");
}

/// The names in the answer to `ls`: a newline-terminated body of length-prefixed lines.
fn parse_list(msg: &[u8]) -> Result<Vec<String>, NegotiationError> {
    let body = msg
        .strip_suffix(b"\n")
        .ok_or(NegotiationError::InvalidMessage("missing trailing newline"))?;
    let mut decoder = Decoder::new(Codec::uvarint(usize::MAX));
    decoder.push(body);
    let mut names = Vec::new();
    loop {
        match decoder.next_frame() {
            Ok(Some(line)) => names.push(text(&line)?.to_string()),
            Ok(None) if decoder.buffered() == 0 => return Ok(names),
            Ok(None) => return Err(NegotiationError::InvalidMessage("truncated protocol list")),
            Err(_) => {
                return Err(NegotiationError::InvalidMessage(
                    "bad length in protocol list",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[&str] = &[];

    fn line(s: &str) -> Vec<u8> {
        format!("{s}\n").into_bytes()
    }

    fn messages(bytes: Vec<u8>) -> Vec<String> {
        split(&bytes)
            .map(|m| text(&m).unwrap().to_string())
            .collect()
    }

    #[test]
    fn dialer_queues_header_and_first_proposal_together() {
        let mut d =
            Machine::dialer(vec!["/a/1".into(), "/b/1".into()], &Config::default()).unwrap();
        assert_eq!(messages(d.take_output()), [PROTOCOL, "/a/1"]);
        assert!(!d.proposing_last());
        assert_eq!(
            d.on_message(&line(PROTOCOL), NONE).unwrap(),
            Outcome::Continue
        );
        assert_eq!(d.on_message(&line(NA), NONE).unwrap(), Outcome::Continue);
        assert_eq!(messages(d.take_output()), ["/b/1"]);
        assert!(d.proposing_last());
        assert_eq!(d.current_protocol(), Some("/b/1"));
        assert_eq!(
            d.on_message(&line("/b/1"), NONE).unwrap(),
            Outcome::Selected(1)
        );
        // Done: nothing more is taken.
        assert!(d.on_message(&line("/b/1"), NONE).is_err());
    }

    #[test]
    fn dialer_checks_every_answer() {
        let config = Config::default();
        let mut d = Machine::dialer(vec!["/a/1".into()], &config).unwrap();
        assert!(matches!(
            d.on_message(&line("/other/1.0.0"), NONE),
            Err(NegotiationError::InvalidHeader(_))
        ));
        let mut d = Machine::dialer(vec!["/a/1".into()], &config).unwrap();
        d.on_message(&line(PROTOCOL), NONE).unwrap();
        assert!(matches!(
            d.on_message(&line("/b/1"), NONE),
            Err(NegotiationError::UnexpectedMessage { .. })
        ));
        let mut d = Machine::dialer(vec!["/a/1".into()], &config).unwrap();
        d.on_message(&line(PROTOCOL), NONE).unwrap();
        match d.on_message(&line(NA), NONE) {
            Err(NegotiationError::ProtocolNotSupported { offered }) => {
                assert_eq!(offered, ["/a/1"])
            }
            other => panic!("{other:?}"),
        }
        let mut d = Machine::dialer(vec!["/a/1".into()], &config).unwrap();
        assert!(matches!(
            d.on_message(b"no newline", NONE),
            Err(NegotiationError::InvalidMessage(_))
        ));
        assert!(matches!(
            Machine::dialer(vec![], &config),
            Err(NegotiationError::ProtocolNotSupported { .. })
        ));
        assert!(matches!(
            Machine::dialer(vec!["no-slash".into()], &config),
            Err(NegotiationError::InvalidProtocol(_))
        ));
    }

    #[test]
    fn listener_answers_header_na_ls_and_the_echo() {
        let config = Config::default();
        let ours = ["/x/1", "/y/1"];
        let mut l = Machine::listener(&config);
        assert!(!l.has_output());
        assert_eq!(
            l.on_message(&line(PROTOCOL), &ours[..]).unwrap(),
            Outcome::Continue
        );
        assert_eq!(
            l.on_message(&line(LS), &ours[..]).unwrap(),
            Outcome::Continue
        );
        assert_eq!(
            l.on_message(&line("/z/1"), &ours[..]).unwrap(),
            Outcome::Continue
        );
        let out = messages(l.take_output());
        assert_eq!(out[0], PROTOCOL);
        assert_eq!(out[2], NA);
        assert_eq!(
            l.on_message(&line("/y/1"), &ours[..]).unwrap(),
            Outcome::Accepted("/y/1".into())
        );
        assert_eq!(messages(l.take_output()), ["/y/1"]);
        // The `ls` answer, read by the lister.
        let mut l = Machine::listener(&config);
        l.on_message(&line(PROTOCOL), &ours[..]).unwrap();
        l.on_message(&line(LS), &ours[..]).unwrap();
        let mut c = Machine::lister(&config);
        assert_eq!(messages(c.take_output()), [PROTOCOL, LS]);
        let mut last = Outcome::Continue;
        for msg in split(&l.take_output()) {
            last = c.on_message(&msg, NONE).unwrap();
        }
        assert_eq!(last, Outcome::Listed(vec!["/x/1".into(), "/y/1".into()]));
    }

    #[test]
    fn listener_counts_refusals_and_list_requests() {
        let config = Config {
            max_proposals: 2,
            max_list_requests: 1,
            ..Config::default()
        };
        let ours = ["/x/1"];
        let mut l = Machine::listener(&config);
        l.on_message(&line(PROTOCOL), &ours[..]).unwrap();
        for _ in 0..2 {
            assert_eq!(
                l.on_message(&line("/no/1"), &ours[..]).unwrap(),
                Outcome::Continue
            );
        }
        assert!(matches!(
            l.on_message(&line("/no/1"), &ours[..]),
            Err(NegotiationError::TooManyProposals(2))
        ));
        let mut l = Machine::listener(&config);
        l.on_message(&line(PROTOCOL), &ours[..]).unwrap();
        l.on_message(&line(LS), &ours[..]).unwrap();
        assert!(matches!(
            l.on_message(&line(LS), &ours[..]),
            Err(NegotiationError::TooManyListRequests(1))
        ));
        let mut l = Machine::listener(&config);
        assert!(matches!(
            l.on_message(&line("/x/1"), &ours[..]),
            Err(NegotiationError::InvalidHeader(_))
        ));
    }

    #[test]
    fn lists_are_checked() {
        assert_eq!(parse_list(b"\n").unwrap(), Vec::<String>::new());
        assert!(parse_list(b"\x05/a/1\n").is_err());
        assert!(parse_list(b"\x09/a/1\n\n").is_err());
    }
}
