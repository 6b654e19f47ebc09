//! The [`Transport`] trait: dial an address, listen on an address.

use std::future::Future;
use std::io;
use std::time::Duration;

use futures::Stream;
use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};

/// A boxed error from a security protocol or any other layer with its own error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when dialing, listening or upgrading a connection.
///
/// One concrete type for every transport, raw or upgraded, so that errors read the same
/// whatever stack produced them. Errors of a security protocol are kept whole in
/// [`TransportError::Security`] and can be downcast to that protocol's own error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// This transport cannot dial or listen on this kind of address.
    #[error("multiaddr not supported by this transport: {0}")]
    MultiaddrNotSupported(Multiaddr),
    /// The operating system or the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// multistream-select found no protocol both sides speak, or the remote broke its rules.
    #[error("negotiating the {stage} protocol failed: {source}")]
    Negotiation {
        /// Which step of the upgrade was being negotiated.
        stage: Stage,
        /// What went wrong.
        #[source]
        source: libp2p_multistream::NegotiationError,
    },
    /// The security handshake failed (the source is the protocol's own error).
    #[error("security handshake ({protocol}) failed: {source}")]
    Security {
        /// The security protocol that was agreed on.
        protocol: String,
        /// The protocol's own error.
        #[source]
        source: BoxError,
    },
    /// Setting up the stream muxer failed.
    #[error("muxer upgrade ({protocol}) failed: {source}")]
    Muxer {
        /// The muxer protocol that was agreed on.
        protocol: String,
        /// What went wrong.
        #[source]
        source: crate::MuxerError,
    },
    /// The address named a peer (`/p2p/<id>`) but the remote authenticated as another.
    #[error("peer id mismatch: dialed {expected}, but the remote is {actual}")]
    PeerIdMismatch {
        /// The peer id in the dialed address.
        expected: Box<PeerId>,
        /// The peer id the remote proved it holds.
        actual: Box<PeerId>,
    },
    /// The connection upgrade did not finish in time.
    #[error("connection upgrade timed out after {0:?}")]
    Timeout(Duration),
    /// No listener at this address (in-memory transport), or the listener went away.
    #[error("connection refused: {0}")]
    ConnectionRefused(Multiaddr),
    /// The address is already in use by another listener.
    #[error("address in use: {0}")]
    AddressInUse(Multiaddr),
    /// A name in the address (`/dns4/...`, `/dnsaddr/...`) could not be resolved; the source
    /// is the resolver's own error, with its class.
    #[error("resolving {addr} failed: {source}")]
    Resolve {
        /// The address whose name failed.
        addr: Multiaddr,
        /// The resolver's error.
        #[source]
        source: crate::fault::FaultOf,
    },
}

impl crate::fault::Classify for TransportError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            TransportError::MultiaddrNotSupported(_) | TransportError::AddressInUse(_) => {
                Fault::Local
            }
            TransportError::Io(e) => e.fault(),
            TransportError::Negotiation { source, .. } => source.fault(),
            TransportError::Security { source, .. } => {
                crate::fault::fault_of_boxed(source.as_ref())
            }
            TransportError::Muxer { source, .. } => source.fault(),
            TransportError::PeerIdMismatch { .. } => Fault::Remote,
            TransportError::Timeout(_) => Fault::Timeout,
            TransportError::ConnectionRefused(_) => Fault::Network,
            TransportError::Resolve { source, .. } => source.fault,
        }
    }
}

/// The step of a connection upgrade, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Choosing the security protocol.
    Security,
    /// Choosing the stream muxer.
    Muxer,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Security => "security",
            Stage::Muxer => "muxer",
        })
    }
}

/// What a listener reports.
#[derive(Debug)]
pub enum ListenerEvent<P> {
    /// The listener is reachable at this address (the real one: port 0 resolved,
    /// one event per interface when listening on an unspecified IP).
    NewAddress(Multiaddr),
    /// The listener is no longer reachable at this address.
    AddressExpired(Multiaddr),
    /// A remote connected. Pass `pending` to [`Transport::accept`] to finish the connection
    /// (run its upgrade) on whatever task you like, so that one slow handshake does not hold
    /// up the listener.
    Incoming {
        /// The connection, not yet upgraded.
        pending: P,
        /// Our address of this connection.
        local_addr: Multiaddr,
        /// The remote's address of this connection.
        remote_addr: Multiaddr,
    },
    /// A non-fatal error (for example a failed `accept` on the socket); the listener goes on.
    Error(TransportError),
}

/// A way to reach and be reached by other nodes.
///
/// A raw transport (TCP, memory) yields sockets; the upgrade pipeline wraps a raw transport in
/// another `Transport` whose output is an authenticated, multiplexed connection. Returned
/// futures own everything they need (`'static`), so they can be spawned.
pub trait Transport: Clone + Send + Sync + 'static {
    /// What a successful dial or accept yields.
    type Output: Send + 'static;
    /// An inbound connection that [`Transport::accept`] turns into an `Output`.
    type Pending: Send + 'static;
    /// The stream of a listener's events. Dropping it stops listening.
    type Listener: Stream<Item = ListenerEvent<Self::Pending>> + Send + Unpin + 'static;

    /// Whether this transport can dial `addr` (its kind of address: `/ip4/../tcp/..` for TCP,
    /// `/memory/..` for memory), without dialing. A trailing `/p2p/<id>` does not change the
    /// answer. Combinators and the host pick a transport by it.
    fn can_dial(&self, addr: &Multiaddr) -> bool;

    /// Our own address of a connection this transport produced, when it has one (the local
    /// socket address of a TCP dial). Upgraded transports pass it on in their connection info.
    fn local_addr_of(output: &Self::Output) -> Option<Multiaddr> {
        let _ = output;
        None
    }

    /// Connect to `addr`. A trailing `/p2p/<id>` is accepted; an upgraded transport checks
    /// that the remote authenticates as that peer.
    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static;

    /// Start listening on `addr`. The first events name the bound address(es).
    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError>;

    /// Finish an inbound connection reported by a listener.
    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static;
}

/// Splits a trailing `/p2p/<peer id>` off an address.
pub fn split_peer_id(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut addr = addr.clone();
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => {
            addr.pop();
            (addr, Some(peer))
        }
        _ => (addr, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_peer_id_takes_trailing_p2p_only() {
        let peer = PeerId::random();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        let (base, id) = split_peer_id(&addr);
        assert_eq!(
            base,
            "/ip4/127.0.0.1/tcp/4001".parse::<Multiaddr>().unwrap()
        );
        assert_eq!(id, Some(peer));
        let (same, none) = split_peer_id(&base);
        assert_eq!(same, base);
        assert_eq!(none, None);
    }
}
