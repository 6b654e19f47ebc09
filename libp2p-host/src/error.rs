//! The host's own errors: listening and ping (dial and stream errors are core's, shared with
//! services).

use std::sync::Arc;
use std::time::Duration;

use libp2p_core::{Classify, Fault, Multiaddr, NewStreamError, PeerId, TransportError};

/// Why listening on an address failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// No transport of the host can listen on this address.
    #[error("no transport can listen on {addr}")]
    UnsupportedAddress {
        /// The address.
        addr: Multiaddr,
    },
    /// The transport refused (address in use, permissions, ...).
    #[error("cannot listen on {addr}: {source}")]
    Transport {
        /// The address.
        addr: Multiaddr,
        /// Why.
        #[source]
        source: Arc<TransportError>,
    },
    /// The listener ended before it reported an address.
    #[error("the listener on {addr} ended before reporting an address")]
    Ended {
        /// The address.
        addr: Multiaddr,
    },
    /// The host is closed.
    #[error("the host is closed")]
    Closed,
}

impl Classify for ListenError {
    fn fault(&self) -> Fault {
        match self {
            ListenError::Transport { source, .. } => source.fault(),
            _ => Fault::Local,
        }
    }
}

/// Why a ping failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// No stream could be opened (no connection, ping not supported, ...).
    #[error(transparent)]
    Stream(#[from] NewStreamError),
    /// The stream failed, or the answer was not our payload.
    #[error("ping of {peer} failed: {source}")]
    Protocol {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        #[source]
        source: Arc<crate::ping::PingError>,
    },
    /// No answer within the bound.
    #[error("ping of {peer}: no answer within {after:?}")]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// The bound (the negotiation timeout).
        after: Duration,
    },
}

impl Classify for PingError {
    fn fault(&self) -> Fault {
        match self {
            PingError::Stream(e) => e.fault(),
            PingError::Protocol { source, .. } => source.fault(),
            PingError::Timeout { .. } => Fault::Timeout,
        }
    }
}
