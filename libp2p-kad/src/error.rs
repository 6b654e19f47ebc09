//! Errors, one enum per operation, each with its [`Fault`] class.

use libp2p_core::{Classify, Fault, PeerId};

use crate::proto::MessageType;

/// A message that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix announced more than the configured maximum.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The maximum.
        max: usize,
    },
    /// The length prefix is not a valid uvarint.
    #[error("malformed length prefix")]
    BadLength,
    /// The body is not a valid protobuf `Message`.
    #[error("malformed message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The message type is none of the spec's.
    #[error("unknown message type {0}")]
    UnknownType(i32),
    /// A PUT_VALUE without a record.
    #[error("PUT_VALUE without a record")]
    MissingRecord,
    /// A PUT_VALUE whose record key differs from the message key.
    #[error("PUT_VALUE record key differs from the message key")]
    RecordKeyMismatch,
    /// A response of another type than the request.
    #[error("expected a {expected:?} response, got {actual:?}")]
    UnexpectedType {
        /// The request's type.
        expected: MessageType,
        /// The response's type.
        actual: MessageType,
    },
}

impl Classify for DecodeError {
    fn fault(&self) -> Fault {
        Fault::Remote
    }
}

/// A record the validation hook refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordRejected {
    /// The validator refused it, for the reason given.
    #[error("record rejected: {reason}")]
    Invalid {
        /// Why, in the validator's words.
        reason: &'static str,
    },
    /// The record's key is not one this node accepts records for (e.g. an unknown namespace).
    #[error("no validator accepts this key")]
    UnknownKey,
    /// We hold a record of our own under this key that the validator prefers.
    #[error("a better record is stored under this key")]
    Outdated,
}

impl Classify for RecordRejected {
    fn fault(&self) -> Fault {
        Fault::Remote
    }
}

/// The store refused a record or provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds its maximum number of records.
    #[error("record store full ({max} records)")]
    MaxRecords {
        /// The limit.
        max: usize,
    },
    /// The value is larger than the limit for one record.
    #[error("record value of {len} bytes exceeds the maximum of {max}")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Storing it would exceed the limit on the bytes of all records together.
    #[error("record store holds its maximum of {max} bytes")]
    MaxTotalBytes {
        /// The limit.
        max: usize,
    },
    /// The store holds providers for its maximum number of keys.
    #[error("provider store full ({max} keys)")]
    MaxProviderKeys {
        /// The limit.
        max: usize,
    },
    /// A key longer than the limit.
    #[error("key of {len} bytes exceeds the maximum of {max}")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Classify for StoreError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// An inbound request we could not serve: the host resets the stream (and only the stream).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// The request did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// We run in client mode and serve no requests.
    #[error("client mode: requests are not served")]
    ClientMode,
    /// A PUT_VALUE whose record the validation hook refused.
    #[error(transparent)]
    Rejected(#[from] RecordRejected),
    /// A PUT_VALUE the store could not take.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for InboundError {
    fn fault(&self) -> Fault {
        match self {
            InboundError::Decode(e) => e.fault(),
            InboundError::ClientMode => Fault::Local,
            InboundError::Rejected(e) => e.fault(),
            InboundError::Store(e) => e.fault(),
        }
    }
}

/// A lookup for the peers closest to a key failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FindNodeError {
    /// The routing table is empty: there is nobody to ask.
    #[error("no known peers to ask")]
    NoKnownPeers,
    /// The query ran out of time; the closest peers that answered so far are given.
    #[error("lookup timed out")]
    Timeout {
        /// The closest peers that answered before the deadline.
        closest: Vec<PeerId>,
    },
}

impl Classify for FindNodeError {
    fn fault(&self) -> Fault {
        match self {
            FindNodeError::NoKnownPeers => Fault::Local,
            FindNodeError::Timeout { .. } => Fault::Timeout,
        }
    }
}

/// A lookup for providers failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetProvidersError {
    /// The routing table is empty and we know no provider ourselves.
    #[error("no known peers to ask")]
    NoKnownPeers,
    /// The query ran out of time before it found any provider.
    #[error("provider lookup timed out")]
    Timeout,
}

impl Classify for GetProvidersError {
    fn fault(&self) -> Fault {
        match self {
            GetProvidersError::NoKnownPeers => Fault::Local,
            GetProvidersError::Timeout => Fault::Timeout,
        }
    }
}

/// A lookup for a record failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetValueError {
    /// The routing table is empty and the record is not in our store.
    #[error("no known peers to ask")]
    NoKnownPeers,
    /// The lookup finished and nobody had the record.
    #[error("record not found")]
    NotFound,
    /// The lookup finished with fewer copies than the quorum asked for.
    #[error("found {found} copies of the record, the quorum is {quorum}")]
    QuorumFailed {
        /// The best value found, if any.
        best: Option<Vec<u8>>,
        /// Copies found.
        found: usize,
        /// Copies asked for.
        quorum: usize,
    },
    /// The query ran out of time before the quorum was reached.
    #[error("record lookup timed out")]
    Timeout {
        /// The best value found, if any.
        best: Option<Vec<u8>>,
    },
}

impl Classify for GetValueError {
    fn fault(&self) -> Fault {
        match self {
            GetValueError::NoKnownPeers => Fault::Local,
            // Nobody broke a rule: the network did not hold (enough of) the record.
            GetValueError::NotFound | GetValueError::QuorumFailed { .. } => Fault::Network,
            GetValueError::Timeout { .. } => Fault::Timeout,
        }
    }
}

/// Storing a record in the DHT failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutValueError {
    /// The routing table is empty.
    #[error("no known peers to store the record on")]
    NoKnownPeers,
    /// Fewer peers than the quorum stored the record.
    #[error("{stored} peers stored the record, the quorum is {quorum}")]
    QuorumFailed {
        /// Peers that stored it.
        stored: usize,
        /// Peers asked for.
        quorum: usize,
    },
    /// The query ran out of time before the quorum was reached.
    #[error("record put timed out after {stored} peers stored it")]
    Timeout {
        /// Peers that stored it.
        stored: usize,
    },
}

impl Classify for PutValueError {
    fn fault(&self) -> Fault {
        match self {
            PutValueError::NoKnownPeers => Fault::Local,
            PutValueError::QuorumFailed { .. } => Fault::Network,
            PutValueError::Timeout { .. } => Fault::Timeout,
        }
    }
}

/// Announcing ourselves as a provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddProviderError {
    /// The routing table is empty.
    #[error("no known peers to announce to")]
    NoKnownPeers,
    /// The announcement could not be sent to any peer.
    #[error("the announcement reached no peer")]
    NotSent,
    /// The query ran out of time before the announcement went out.
    #[error("provider announcement timed out")]
    Timeout,
}

impl Classify for AddProviderError {
    fn fault(&self) -> Fault {
        match self {
            AddProviderError::NoKnownPeers => Fault::Local,
            AddProviderError::NotSent => Fault::Network,
            AddProviderError::Timeout => Fault::Timeout,
        }
    }
}

/// A bootstrap (lookup of our own id, then of one key per bucket) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The routing table is empty: add a bootstrap peer first.
    #[error("no known peers to bootstrap from")]
    NoKnownPeers,
    /// The lookups ran out of time.
    #[error("bootstrap timed out")]
    Timeout,
}

impl Classify for BootstrapError {
    fn fault(&self) -> Fault {
        match self {
            BootstrapError::NoKnownPeers => Fault::Local,
            BootstrapError::Timeout => Fault::Timeout,
        }
    }
}

/// A query could not be started (every cause is on our side; what happens once it runs is
/// reported in its result).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// As many queries run as the configuration allows.
    #[error("{max} queries already running")]
    TooManyQueries {
        /// The limit.
        max: usize,
    },
    /// Our own validation hook refused the record to put.
    #[error(transparent)]
    Rejected(#[from] RecordRejected),
    /// Our own store refused the record or provider record.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// We have no listen address to announce as a provider: remote peers would drop (or be
    /// unable to use) the provider record.
    #[error("no listen address to announce")]
    NoListenAddress,
}

impl Classify for StartError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}
