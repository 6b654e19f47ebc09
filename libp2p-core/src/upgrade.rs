//! The upgrade traits: security protocols and stream muxers, and the choice combinators.
//!
//! An upgrade names its protocol(s) and turns a socket into something better: a security
//! upgrade into `(PeerId, encrypted socket)`, a muxer upgrade into a [`StreamMuxer`]. A pair
//! `(A, B)` of upgrades is itself an upgrade that offers A's names then B's, in that order of
//! preference, and runs whichever the remote picked.

use std::future::Future;
use std::io;

use futures::future::Either;
use futures::{AsyncRead, AsyncWrite, FutureExt, TryFutureExt};
use libp2p_identity::PeerId;

/// Anything the upgrades can run over: a byte stream that can be moved between tasks.
pub trait Socket: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Socket for T {}

/// Which side of a connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// We opened the connection (multistream-select dialer, noise initiator).
    Dialer,
    /// We accepted the connection.
    Listener,
}

/// The protocol names of an upgrade, apart from the socket type it runs over.
///
/// A supertrait of [`SecurityUpgrade`] and [`MuxerUpgrade`] with no type parameter, so that
/// asking an upgrade for its names needs no turbofish and the names are the same whatever the
/// socket. The names are borrowed, not collected: negotiating and dispatching allocate nothing
/// for them.
pub trait UpgradeInfo {
    /// The protocol names this upgrade speaks, in order of preference, each once.
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_;
}

/// A security protocol: authenticates the remote peer and encrypts the socket.
///
/// One trait for both roles. `protocol` is the name multistream-select agreed on (one of
/// [`UpgradeInfo::protocol_names`]); single-protocol upgrades may ignore it.
pub trait SecurityUpgrade<C: Socket>: UpgradeInfo + Clone + Send + Sync + 'static {
    /// The secured socket.
    type Output: Socket;
    /// What can go wrong in the handshake, with its class: the pipeline keeps it whole
    /// (inside a [`FaultOf`](crate::FaultOf) in [`TransportError::Security`]) so that callers
    /// can tell the remote's fault from ours and from a timeout.
    ///
    /// [`TransportError::Security`]: crate::TransportError::Security
    type Error: std::error::Error + crate::fault::Classify + Send + Sync + 'static;

    /// Runs the handshake and returns the peer id the remote proved it holds. `expected` is
    /// the peer we meant to reach, when known, for protocols that need it in the handshake
    /// itself (TLS names it to its verifier); comparing it with the remote's id is the
    /// pipeline's job alone, which fails with the one
    /// [`TransportError::PeerIdMismatch`](crate::TransportError::PeerIdMismatch).
    fn secure(
        &self,
        socket: C,
        role: Role,
        expected: Option<PeerId>,
        protocol: &str,
    ) -> impl Future<Output = Result<(PeerId, Self::Output), Self::Error>> + Send + 'static;
}

/// Errors of a stream muxer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MuxerError {
    /// The muxed connection is closed (by us, by the remote, or because the socket ended).
    #[error("muxed connection closed")]
    Closed,
    /// The socket under the muxer failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// Opening a stream would exceed the limit on concurrent streams.
    #[error("too many streams (limit {limit})")]
    TooManyStreams {
        /// The configured limit.
        limit: usize,
    },
    /// The remote broke the muxer protocol; the connection is closed.
    #[error("remote violated the muxer protocol: {0}")]
    Protocol(String),
    /// Another error of the muxer implementation.
    #[error(transparent)]
    Other(crate::BoxError),
}

impl crate::fault::Classify for MuxerError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            MuxerError::Closed => Fault::Network,
            MuxerError::Io(e) => Fault::of_io(e),
            MuxerError::TooManyStreams { .. } => Fault::Local,
            MuxerError::Protocol(_) => Fault::Remote,
            MuxerError::Other(e) => crate::fault::fault_of_boxed(e.as_ref()),
        }
    }
}

impl<A: crate::fault::Classify, B: crate::fault::Classify> crate::fault::Classify
    for EitherError<A, B>
{
    fn fault(&self) -> crate::fault::Fault {
        match self {
            EitherError::A(a) => a.fault(),
            EitherError::B(b) => b.fault(),
        }
    }
}

/// A multiplexed connection: a cheap, cloneable handle that opens and accepts streams.
///
/// The connection makes progress on its own (its driver future runs on a task), whether or
/// not anyone calls these methods.
pub trait StreamMuxer: Clone + Send + Sync + 'static {
    /// One stream. Closing its write side (`poll_close`) leaves the read side open until the
    /// remote closes its own; dropping it without closing resets it for the remote.
    type Stream: Socket;

    /// Opens a new outbound stream.
    fn open(&self) -> impl Future<Output = Result<Self::Stream, MuxerError>> + Send + 'static;

    /// Waits for the next inbound stream. Fails with [`MuxerError::Closed`] once the
    /// connection is closed.
    fn accept(&self) -> impl Future<Output = Result<Self::Stream, MuxerError>> + Send + 'static;

    /// Closes the whole connection gracefully.
    fn close(&self) -> impl Future<Output = Result<(), MuxerError>> + Send + 'static;

    /// Whether the connection is closed.
    fn is_closed(&self) -> bool;
}

/// A stream muxer protocol: turns a secured socket into a [`StreamMuxer`]. Its names are
/// those of its [`UpgradeInfo`].
pub trait MuxerUpgrade<C: Socket>: UpgradeInfo + Clone + Send + Sync + 'static {
    /// The muxed connection handle.
    type Muxer: StreamMuxer;
    /// The future that drives the connection (reads the socket, routes frames, writes).
    /// Spawn it; it ends when the connection closes.
    type Driver: Future<Output = Result<(), MuxerError>> + Send + 'static;

    /// Sets up the muxer on `socket`.
    fn upgrade(
        &self,
        socket: C,
        role: Role,
        protocol: &str,
    ) -> impl Future<Output = Result<(Self::Muxer, Self::Driver), MuxerError>> + Send + 'static;
}

/// The error of a choice between two upgrades: the one that ran failed.
#[derive(Debug, thiserror::Error)]
pub enum EitherError<A, B> {
    /// The first choice's error.
    #[error(transparent)]
    A(A),
    /// The second choice's error.
    #[error(transparent)]
    B(B),
}

/// A pair offers the first's names, then those of the second that the first does not have.
impl<A: UpgradeInfo, B: UpgradeInfo> UpgradeInfo for (A, B) {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        let first = self.0.protocol_names();
        let seen = first.clone();
        first.chain(
            self.1
                .protocol_names()
                .filter(move |name| !seen.clone().any(|n| n == *name)),
        )
    }
}

/// Whether `upgrade` speaks `protocol`: which side of a pair runs the agreed protocol.
fn speaks(upgrade: &impl UpgradeInfo, protocol: &str) -> bool {
    upgrade.protocol_names().any(|name| name == protocol)
}

impl<C: Socket, A: SecurityUpgrade<C>, B: SecurityUpgrade<C>> SecurityUpgrade<C> for (A, B) {
    type Output = Either<A::Output, B::Output>;
    type Error = EitherError<A::Error, B::Error>;

    fn secure(
        &self,
        socket: C,
        role: Role,
        expected: Option<PeerId>,
        protocol: &str,
    ) -> impl Future<Output = Result<(PeerId, Self::Output), Self::Error>> + Send + 'static {
        if speaks(&self.0, protocol) {
            self.0
                .secure(socket, role, expected, protocol)
                .map_ok(|(peer, io)| (peer, Either::Left(io)))
                .map_err(EitherError::A)
                .left_future()
        } else {
            self.1
                .secure(socket, role, expected, protocol)
                .map_ok(|(peer, io)| (peer, Either::Right(io)))
                .map_err(EitherError::B)
                .right_future()
        }
    }
}

/// The muxed connection of a choice between two muxers.
#[derive(Debug, Clone)]
pub enum EitherMuxer<A, B> {
    /// The first choice was agreed on.
    A(A),
    /// The second choice was agreed on.
    B(B),
}

impl<A: StreamMuxer, B: StreamMuxer> StreamMuxer for EitherMuxer<A, B> {
    type Stream = Either<A::Stream, B::Stream>;

    fn open(&self) -> impl Future<Output = Result<Self::Stream, MuxerError>> + Send + 'static {
        match self {
            EitherMuxer::A(a) => a.open().map_ok(Either::Left).left_future(),
            EitherMuxer::B(b) => b.open().map_ok(Either::Right).right_future(),
        }
    }

    fn accept(&self) -> impl Future<Output = Result<Self::Stream, MuxerError>> + Send + 'static {
        match self {
            EitherMuxer::A(a) => a.accept().map_ok(Either::Left).left_future(),
            EitherMuxer::B(b) => b.accept().map_ok(Either::Right).right_future(),
        }
    }

    fn close(&self) -> impl Future<Output = Result<(), MuxerError>> + Send + 'static {
        match self {
            EitherMuxer::A(a) => a.close().left_future(),
            EitherMuxer::B(b) => b.close().right_future(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            EitherMuxer::A(a) => a.is_closed(),
            EitherMuxer::B(b) => b.is_closed(),
        }
    }
}

impl<C: Socket, A: MuxerUpgrade<C>, B: MuxerUpgrade<C>> MuxerUpgrade<C> for (A, B) {
    type Muxer = EitherMuxer<A::Muxer, B::Muxer>;
    type Driver = Either<A::Driver, B::Driver>;

    fn upgrade(
        &self,
        socket: C,
        role: Role,
        protocol: &str,
    ) -> impl Future<Output = Result<(Self::Muxer, Self::Driver), MuxerError>> + Send + 'static
    {
        if speaks(&self.0, protocol) {
            self.0
                .upgrade(socket, role, protocol)
                .map_ok(|(m, d)| (EitherMuxer::A(m), Either::Left(d)))
                .left_future()
        } else {
            self.1
                .upgrade(socket, role, protocol)
                .map_ok(|(m, d)| (EitherMuxer::B(m), Either::Right(d)))
                .right_future()
        }
    }
}
