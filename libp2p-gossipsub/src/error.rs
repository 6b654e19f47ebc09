//! One error type per operation, each with its [`Fault`] class.

use libp2p_core::{Classify, Fault};

/// Reading one RPC frame off the wire failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix is longer than ten bytes or overflows a `u64`.
    #[error("RPC length prefix is not a valid uvarint")]
    VarintOverflow,
    /// The frame is longer than we accept.
    #[error("RPC of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// Our limit.
        max: usize,
    },
    /// The body is not a valid RPC protobuf.
    #[error("RPC is not valid protobuf: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

impl Classify for DecodeError {
    fn fault(&self) -> Fault {
        Fault::Remote
    }
}

/// Writing one RPC frame failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The RPC is longer than the frame limit.
    #[error("RPC of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Classify for EncodeError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Publishing a message failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The same message (same id) was published or seen already.
    #[error("message already published or seen")]
    Duplicate,
    /// No peer to send it to: none is subscribed to the topic (or all score below the
    /// publish threshold).
    #[error("no peer to publish to")]
    NoPeers,
    /// The message does not fit in one RPC.
    #[error("message of {len} bytes does not fit the RPC limit of {max}")]
    MessageTooLarge {
        /// Its encoded length.
        len: usize,
        /// The RPC size limit.
        max: usize,
    },
    /// Our key could not sign it.
    #[error("signing failed: {0}")]
    Signing(#[source] libp2p_core::identity::SigningError),
}

impl Classify for PublishError {
    fn fault(&self) -> Fault {
        match self {
            PublishError::NoPeers => Fault::Network,
            _ => Fault::Local,
        }
    }
}

/// Subscribing to a topic failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// We are subscribed to as many topics as the configuration allows.
    #[error("already subscribed to the maximum of {max} topics")]
    TooManyTopics {
        /// The limit (`Config::max_subscribed_topics`).
        max: usize,
    },
}

impl Classify for SubscribeError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Why a received message was rejected before validation by the application.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Signing is required and the message has no signature.
    #[error("message is not signed")]
    MissingSignature,
    /// The signature does not verify under the author's key.
    #[error("message signature is invalid")]
    InvalidSignature,
    /// The message has no author (`from`) where one is required.
    #[error("message has no author")]
    MissingAuthor,
    /// The author field is not a valid peer id.
    #[error("message author is not a valid peer id")]
    InvalidAuthor,
    /// The message has no sequence number where one is required, or not an 8-byte one.
    #[error("message sequence number is missing or not 8 bytes")]
    InvalidSeqno,
    /// No public key: none in `key` and the peer id does not inline one.
    #[error("no public key for the message author")]
    MissingKey,
    /// The `key` field is not a valid public key, or not the author's.
    #[error("message key is invalid or not the author's")]
    InvalidKey,
    /// Anonymous mode: the message carries an author, sequence number, signature or key.
    #[error("anonymous mode forbids author, seqno, signature and key")]
    NotAnonymous,
    /// The application rejected it.
    #[error("rejected by the application's validation")]
    RejectedByApplication,
}

impl Classify for MessageError {
    fn fault(&self) -> Fault {
        Fault::Remote
    }
}

/// The configuration is inconsistent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The mesh degrees must satisfy `mesh_n_low <= mesh_n <= mesh_n_high` and
    /// `mesh_outbound_min < mesh_n_low`, `mesh_outbound_min <= mesh_n / 2`.
    #[error("mesh degrees out of order: low {low}, n {n}, high {high}, outbound {outbound}")]
    MeshDegrees {
        /// `mesh_n_low`.
        low: usize,
        /// `mesh_n`.
        n: usize,
        /// `mesh_n_high`.
        high: usize,
        /// `mesh_outbound_min`.
        outbound: usize,
    },
    /// `history_gossip` must be at most `history_length`, and `history_length` at least 1.
    #[error("history_gossip {gossip} over history_length {length}")]
    History {
        /// `history_gossip`.
        gossip: usize,
        /// `history_length`.
        length: usize,
    },
    /// The heartbeat interval must be above zero.
    #[error("heartbeat interval must be above zero")]
    HeartbeatInterval,
    /// The packing size must be between
    /// [`MIN_RPC_PACK_SIZE`](crate::config::MIN_RPC_PACK_SIZE) and the RPC size limit.
    #[error("RPC packing size {pack} outside 512 ..= the RPC limit {max}")]
    RpcPackSize {
        /// [`Config::rpc_pack_size`](crate::Config::rpc_pack_size).
        pack: usize,
        /// [`Config::max_rpc_size`](crate::Config::max_rpc_size).
        max: usize,
    },
    /// A score parameter is out of its range (the field named).
    #[error("score parameter {0} out of range")]
    ScoreParam(&'static str),
    /// The thresholds must satisfy `graylist <= publish <= gossip <= 0 <= accept_px` and
    /// `opportunistic_graft >= 0`.
    #[error("score thresholds out of order")]
    Thresholds,
}

impl Classify for ConfigError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Reporting the application's validation result failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// No message with this id awaits validation (never received, already reported, or
    /// expired from the message cache).
    #[error("no message with this id awaits validation")]
    UnknownMessage,
}

impl Classify for ReportError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}
