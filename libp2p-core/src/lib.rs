//! The shared ground of the modular libp2p: identities and addresses, the [`Transport`]
//! trait, the security and muxer upgrade traits, the upgrade pipeline that composes them, an
//! in-memory transport, and (with the `testkit` feature) the conformance kits every
//! implementation runs.
//!
//! ```
//! use libp2p_core::{MemoryTransport, Multiaddr, Transport, TransportExt};
//!
//! # fn needs_a_security_upgrade() {}
//! let transport = MemoryTransport::new();
//! let listener = transport.listen("/memory/0".parse::<Multiaddr>().unwrap()).unwrap();
//! // A real stack: TcpTransport::new().upgrade().authenticate(security).multiplex(muxer)
//! let _builder = transport.upgrade();
//! # drop(listener);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod connection;
pub mod duration;
pub mod fault;
pub mod memory;
pub mod memory_muxed;
pub mod net;
pub mod or;
pub mod peerstore;
pub mod pipeline;
pub mod service;
pub mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;
pub mod upgrade;

pub use libp2p_identity as identity;
pub use libp2p_identity::{Keypair, PeerId, PublicKey};
pub use libp2p_multistream as multistream;
pub use libp2p_multistream::framing;
pub use libp2p_multistream::Negotiated;
pub use multiaddr::{self, Multiaddr, Protocol};

pub use connection::{Connection, ConnectionId, ConnectionInfo, Direction, IntoConnection};
pub use fault::{Classify, Fault, FaultOf};
pub use memory::{MemorySocket, MemoryTransport};
pub use memory_muxed::{MemoryMuxer, MuxedMemoryTransport};
pub use or::Or;
pub use peerstore::Peerstore;
pub use pipeline::{Authenticated, Builder, Inbound, Multiplexed, TransportExt};
pub use service::{
    AcceptError, CloseCause, ConnectionRefusedReason, DialAttempt, DialError, Event, Events,
    HostContext, IdentifyInfo, Incoming, NewStreamError, RefusedReason, ResourceKind,
    ResourceLimitExceeded, ResourceScope, Service, ServiceContext,
};
pub use stream::{BoxedStream, FuturesStream, Stream};
pub use transport::{split_peer_id, BoxError, ListenerEvent, Stage, Transport, TransportError};
pub use upgrade::{
    EitherError, EitherMuxer, MuxerError, MuxerUpgrade, Role, SecurityUpgrade, Socket, StreamMuxer,
    UpgradeInfo,
};

/// Runs `fut` for at most `limit`; `None` if the time ran out (the clock is tokio's). For
/// callers that stand in for the pipeline's deadline, such as test kits: the upgrades keep no
/// timer of their own.
pub async fn with_timeout<F: std::future::Future>(
    limit: std::time::Duration,
    fut: F,
) -> Option<F::Output> {
    tokio::time::timeout(limit, fut).await.ok()
}

/// Writes `buf[*pos..]` to `socket`, advancing `*pos`, until all of it is out: the write half
/// of every framed secure channel (a frame is encrypted into a buffer, then drained). A socket
/// that accepts nothing is a `WriteZero` error.
pub fn poll_write_out<S: futures::AsyncWrite + Unpin + ?Sized>(
    socket: &mut S,
    cx: &mut std::task::Context<'_>,
    buf: &[u8],
    pos: &mut usize,
) -> std::task::Poll<std::io::Result<()>> {
    use std::task::Poll;
    while *pos < buf.len() {
        match std::pin::Pin::new(&mut *socket).poll_write(cx, &buf[*pos..]) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => *pos += n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

/// A copy of `error` for a stream that failed and returns its first error again on every
/// later call (an `io::Error` cannot be cloned): the kind, the OS code, the protocol's own
/// error when `duplicate` can copy it (so that it still downcasts to its type), else the
/// message.
pub fn repeat_io_error<E>(
    error: &std::io::Error,
    duplicate: impl Fn(&E) -> Option<E>,
) -> std::io::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    if let Some(code) = error.raw_os_error() {
        return std::io::Error::from_raw_os_error(code);
    }
    match error.get_ref() {
        Some(inner) => match inner.downcast_ref::<E>().and_then(duplicate) {
            Some(copy) => std::io::Error::new(error.kind(), copy),
            None => std::io::Error::new(error.kind(), inner.to_string()),
        },
        None => error.kind().into(),
    }
}
