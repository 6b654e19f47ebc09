//! The host's errors.

use libp2p_core::{Multiaddr, PeerId};

/// What can go wrong in a host operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    /// No address of the peer worked (or none is known). Each attempt is listed.
    #[error("cannot reach {peer}: {}", describe(attempts))]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// Each address tried and why it failed.
        attempts: Vec<(Multiaddr, String)>,
    },
    /// The peer is connected but has no handler for any of the protocols offered.
    #[error("{peer} supports none of the protocols {offered:?}")]
    ProtocolsNotSupported {
        /// The peer.
        peer: PeerId,
        /// What we offered.
        offered: Vec<String>,
    },
    /// Agreeing on a stream's protocol failed for another reason (bad message, timeout).
    #[error("negotiating a stream with {peer} failed: {reason}")]
    Negotiation {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// The connection failed while opening a stream.
    #[error("connection to {peer} failed: {reason}")]
    Connection {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// What went wrong.
        reason: String,
    },
    /// The connection limit is reached.
    #[error("connection limit of {0} reached")]
    ConnectionLimit(usize),
    /// Dialing ourselves.
    #[error("cannot dial ourselves")]
    DialSelf,
    /// A ping failed.
    #[error("ping of {peer} failed: {reason}")]
    Ping {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// The host is closed.
    #[error("the host is closed")]
    Closed,
}

fn describe(attempts: &[(Multiaddr, String)]) -> String {
    if attempts.is_empty() {
        return "no known address".into();
    }
    attempts
        .iter()
        .map(|(addr, why)| format!("{addr}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}
