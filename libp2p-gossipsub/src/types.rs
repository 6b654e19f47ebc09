//! The small types the router speaks in: topics, message ids, messages, peer kinds.

use std::fmt;

use libp2p_core::PeerId;

/// A topic, as it appears on the wire (the topic string; hashing topic names, as some
/// applications do, is the application's business).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicHash(String);

impl TopicHash {
    /// The topic named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        TopicHash(name.into())
    }

    /// The topic string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TopicHash {
    fn from(name: &str) -> Self {
        TopicHash::new(name)
    }
}

impl fmt::Debug for TopicHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", self.0)
    }
}

impl fmt::Display for TopicHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message id, as the configured message id function made it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub Vec<u8>);

impl MessageId {
    /// The id bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for MessageId {
    fn from(bytes: Vec<u8>) -> Self {
        MessageId(bytes)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageId(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A received or published message, its fields checked and decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The author, when the message names one.
    pub source: Option<PeerId>,
    /// The payload.
    pub data: Vec<u8>,
    /// The author's sequence number, when there is one.
    pub sequence_number: Option<u64>,
    /// The topic.
    pub topic: TopicHash,
}

/// What the peer speaks, from the protocol its stream negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PeerKind {
    /// `/floodsub/1.0.0`: gets every message of its topics, no control messages.
    Floodsub,
    /// `/meshsub/1.0.0`: no peer exchange, no backoff in PRUNE.
    Gossipsub1_0,
    /// `/meshsub/1.1.0`: peer exchange, backoff, scoring.
    Gossipsub1_1,
    /// `/meshsub/1.2.0`: also IDONTWANT.
    Gossipsub1_2,
}

/// The floodsub protocol name.
pub const FLOODSUB_PROTOCOL: &str = "/floodsub/1.0.0";
/// The gossipsub v1.0 protocol name.
pub const GOSSIPSUB_1_0_PROTOCOL: &str = "/meshsub/1.0.0";
/// The gossipsub v1.1 protocol name.
pub const GOSSIPSUB_1_1_PROTOCOL: &str = "/meshsub/1.1.0";
/// The gossipsub v1.2 protocol name.
pub const GOSSIPSUB_1_2_PROTOCOL: &str = "/meshsub/1.2.0";

impl PeerKind {
    /// The protocols to offer, most preferred first.
    pub const PROTOCOLS: [&'static str; 4] = [
        GOSSIPSUB_1_2_PROTOCOL,
        GOSSIPSUB_1_1_PROTOCOL,
        GOSSIPSUB_1_0_PROTOCOL,
        FLOODSUB_PROTOCOL,
    ];

    /// The kind a negotiated protocol name stands for.
    pub fn from_protocol(name: &str) -> Option<PeerKind> {
        match name {
            FLOODSUB_PROTOCOL => Some(PeerKind::Floodsub),
            GOSSIPSUB_1_0_PROTOCOL => Some(PeerKind::Gossipsub1_0),
            GOSSIPSUB_1_1_PROTOCOL => Some(PeerKind::Gossipsub1_1),
            GOSSIPSUB_1_2_PROTOCOL => Some(PeerKind::Gossipsub1_2),
            _ => None,
        }
    }

    /// Whether it takes part in meshes and gossip.
    pub fn is_gossipsub(self) -> bool {
        self != PeerKind::Floodsub
    }

    /// Whether PRUNE may carry peer exchange and backoff to it.
    pub fn supports_px(self) -> bool {
        self >= PeerKind::Gossipsub1_1
    }

    /// Whether it understands IDONTWANT.
    pub fn supports_idontwant(self) -> bool {
        self >= PeerKind::Gossipsub1_2
    }
}

/// The application's verdict on a message (the validation hook).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: deliver it and forward it.
    Accept,
    /// Not for us, but not the sender's fault: drop it, no penalty.
    Ignore,
    /// Invalid: drop it and penalise every peer that sent it (P4).
    Reject,
}

/// Who signs the messages we publish and what goes in `from` and `seqno`.
#[derive(Clone, Debug)]
pub enum Authenticity {
    /// Signed with this key; `from` is its peer id, `seqno` counts up. The default for a host.
    Signed(libp2p_core::Keypair),
    /// `from` is this peer id and `seqno` counts up, but no signature (peers in strict mode
    /// reject these).
    Author(PeerId),
    /// No author, no sequence number, no signature (for networks in anonymous mode).
    Anonymous,
}

/// What we demand of the messages we receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValidationMode {
    /// Author, 8-byte sequence number and a valid signature are required (the default: the
    /// spec's default since v1.1, and what rust-libp2p and go-libp2p send).
    #[default]
    Strict,
    /// A signature, when present, must verify; unsigned messages pass.
    Permissive,
    /// Author, sequence number, signature and key must all be absent.
    Anonymous,
    /// Nothing is checked.
    None,
}
