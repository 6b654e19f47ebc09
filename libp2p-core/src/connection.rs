//! An established connection as every transport yields it: the remote's identity, the muxer,
//! and what the connection was built from.
//!
//! A TCP stack gets there through the upgrade pipeline (socket, then security, then muxer); a
//! transport whose connections arrive secured and muxed by themselves (QUIC) yields the same
//! [`Connection`] directly, so the host cannot tell them apart.

use futures::future::Either;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use crate::upgrade::{EitherMuxer, Role, StreamMuxer};

/// A connection's number, unique within one host for the host's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The id with this number (hosts hand them out).
    pub fn new(n: u64) -> Self {
        ConnectionId(n)
    }

    /// Its number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Direction {
    /// We dialed.
    Outbound,
    /// The remote dialed us.
    Inbound,
}

impl From<Role> for Direction {
    fn from(role: Role) -> Self {
        match role {
            Role::Dialer => Direction::Outbound,
            Role::Listener => Direction::Inbound,
        }
    }
}

/// What a connection was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The security protocol agreed (`/noise`, `/tls/1.0.0`, ...). A transport that secures
    /// its connections itself names its own handshake here.
    pub security: String,
    /// The stream muxer agreed (`/yamux/1.0.0`, `/mplex/6.7.0`, ...), or the transport's own.
    pub muxer: String,
    /// Our address of the connection, when the transport knows it.
    pub local_addr: Option<Multiaddr>,
    /// The remote's address of the connection (for a dial, the address dialed, without
    /// `/p2p/<id>`).
    pub remote_addr: Multiaddr,
    /// Who opened the connection.
    pub direction: Direction,
}

impl ConnectionInfo {
    /// Connection info of the given parts.
    pub fn new(
        security: impl Into<String>,
        muxer: impl Into<String>,
        local_addr: Option<Multiaddr>,
        remote_addr: Multiaddr,
        direction: Direction,
    ) -> Self {
        ConnectionInfo {
            security: security.into(),
            muxer: muxer.into(),
            local_addr,
            remote_addr,
            direction,
        }
    }
}

/// An authenticated, multiplexed connection: the output of every stack the host can use.
#[derive(Debug, Clone)]
pub struct Connection<M> {
    /// The remote, as its handshake proved.
    pub peer: PeerId,
    /// The muxed connection.
    pub muxer: M,
    /// What the connection was built from.
    pub info: ConnectionInfo,
}

/// Anything that is a [`Connection`]: a connection itself, or the output of a choice between
/// transports ([`Or`](crate::Or)), whose muxer becomes an [`EitherMuxer`].
pub trait IntoConnection: Send + 'static {
    /// The muxer of the connection.
    type Muxer: StreamMuxer;
    /// The connection.
    fn into_connection(self) -> Connection<Self::Muxer>;
}

impl<M: StreamMuxer> IntoConnection for Connection<M> {
    type Muxer = M;
    fn into_connection(self) -> Connection<M> {
        self
    }
}

impl<A: IntoConnection, B: IntoConnection> IntoConnection for Either<A, B> {
    type Muxer = EitherMuxer<A::Muxer, B::Muxer>;
    fn into_connection(self) -> Connection<Self::Muxer> {
        match self {
            Either::Left(a) => {
                let c = a.into_connection();
                Connection {
                    peer: c.peer,
                    muxer: EitherMuxer::A(c.muxer),
                    info: c.info,
                }
            }
            Either::Right(b) => {
                let c = b.into_connection();
                Connection {
                    peer: c.peer,
                    muxer: EitherMuxer::B(c.muxer),
                    info: c.info,
                }
            }
        }
    }
}
