//! Errors, one enum per operation, each with its [`Fault`] class.

use libp2p_core::{Classify, Fault, PeerId};

/// Why a received datagram was refused as a whole.
///
/// Every variant is the sender's doing: mDNS traffic comes from anyone on the link, so a refused
/// packet costs nothing but a debug line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram is larger than [`Config::max_packet_size`](crate::Config::max_packet_size).
    #[error("mDNS packet of {len} bytes is over the limit of {max}")]
    PacketTooLarge {
        /// Its size (at least; a datagram cut short by our buffer counts as one byte over).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header announces more records than
    /// [`Config::max_records`](crate::Config::max_records) allows.
    #[error("mDNS packet announces {count} records, over the limit of {max}")]
    TooManyRecords {
        /// Questions plus answer, authority and additional records, as the header counts them.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Not a DNS message, or one that breaks the DNS wire format.
    #[error("malformed DNS message: {0}")]
    Malformed(#[source] hickory_proto::serialize::binary::DecodeError),
    /// A DNS message with an operation code other than a standard query, which RFC 6762 §18.3
    /// says to ignore.
    #[error("DNS message with operation code {op_code}, not a standard query")]
    UnsupportedOpCode {
        /// The operation code.
        op_code: u8,
    },
}

impl Classify for DecodeError {
    fn fault(&self) -> Fault {
        match self {
            DecodeError::UnsupportedOpCode { .. } => Fault::Incompatible,
            _ => Fault::Remote,
        }
    }
}

/// Why one `dnsaddr` entry of an otherwise well-formed response was skipped. The rest of the
/// packet is still used; the first few of these are kept in
/// [`Response::rejected`](crate::proto::Response::rejected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The TXT string is not UTF-8.
    #[error("dnsaddr entry is not UTF-8")]
    NotUtf8,
    /// The value is not a multiaddr.
    #[error("dnsaddr entry {value:?} is not a multiaddr")]
    InvalidMultiaddr {
        /// The value as received (at most 255 bytes, the TXT string limit).
        value: String,
    },
    /// The multiaddr does not end in `/p2p/<peer id>`.
    #[error("dnsaddr entry {value:?} does not end in /p2p/<peer id>")]
    MissingPeerId {
        /// The value as received.
        value: String,
    },
    /// Entries of one record name name two different peers.
    #[error("dnsaddr entries of one name disagree on the peer: {expected} and {actual}")]
    PeerIdMismatch {
        /// The peer of the first entry.
        expected: PeerId,
        /// The peer of this entry.
        actual: PeerId,
    },
}

impl Classify for RecordError {
    fn fault(&self) -> Fault {
        Fault::Remote
    }
}

/// Why a packet of ours could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A name we built is not a valid DNS name (a service or peer name from our configuration).
    #[error("invalid DNS name {name:?}: {source}")]
    InvalidName {
        /// The name.
        name: String,
        /// What `hickory-proto` said.
        #[source]
        source: hickory_proto::ProtoError,
    },
    /// `hickory-proto` failed to serialise the message.
    #[error("cannot encode DNS message: {0}")]
    Dns(#[source] hickory_proto::ProtoError),
}

impl Classify for EncodeError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Why the mDNS driver could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The network interfaces could not be listed.
    #[error("cannot list network interfaces: {0}")]
    Interfaces(#[source] std::io::Error),
    /// Our own service or peer name is not a valid DNS name.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl Classify for StartError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Why a socket for one interface could not be opened. The driver logs it and goes on with the
/// other interfaces; it is public for callers that open sockets themselves.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// A socket call failed.
    #[error("mDNS socket on {interface} ({step}): {source}")]
    Io {
        /// The interface.
        interface: String,
        /// Which step failed: "bind", "join", ...
        step: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Classify for SocketError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}
