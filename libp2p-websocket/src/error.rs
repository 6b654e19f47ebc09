//! What can go wrong in the WebSocket upgrade.

use libp2p_core::{Classify, Fault, FaultOf, TransportError};

/// Why the WebSocket upgrade (the HTTP request and response) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The remote's HTTP head went past [`crate::Config::max_handshake_bytes`].
    #[error("the remote's upgrade request or response is over {max} bytes")]
    HeadTooLarge {
        /// The limit.
        max: usize,
    },
    /// The upgrade failed: a malformed request or response, a refusal, the socket closing.
    #[error("websocket upgrade failed: {0}")]
    WebSocket(#[source] tokio_tungstenite::tungstenite::Error),
}

impl Classify for UpgradeError {
    fn fault(&self) -> Fault {
        use tokio_tungstenite::tungstenite::Error as E;
        match self {
            UpgradeError::HeadTooLarge { .. } => Fault::Remote,
            UpgradeError::WebSocket(e) => match e {
                E::Io(io) => io.fault(),
                E::ConnectionClosed | E::AlreadyClosed => Fault::Network,
                E::Url(_) => Fault::Local,
                E::Http(_) | E::HttpFormat(_) => Fault::Incompatible,
                _ => Fault::Remote,
            },
        }
    }
}

impl From<UpgradeError> for TransportError {
    fn from(e: UpgradeError) -> Self {
        TransportError::Security {
            protocol: crate::PROTOCOL.to_string(),
            source: Box::new(FaultOf::new(e)),
        }
    }
}
