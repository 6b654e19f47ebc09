//! Services: protocols that live as long as the host (identify, ping, Kademlia, gossipsub), and
//! the context a host gives them.
//!
//! A service is a plain struct with its own task. The host calls [`Service::protocols`] before
//! it listens or dials, so the very first identify message already lists them, then runs
//! [`Service::run`] on a task of its own with a [`ServiceContext`]: the inbound streams of the
//! service's protocols, the host's [`Event`]s (subscribed before anything happened), and a
//! [`HostContext`] to dial, open streams, accept more protocols and read or write the
//! peerstore. The service never reaches into the host's connection pool; the application talks
//! to it through a handle of the service's own making.
//!
//! These types live in core, so that a service crate depends on core and not on the host.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use libp2p_identity::{Keypair, PeerId, PublicKey};
use multiaddr::Multiaddr;
use tokio::sync::mpsc;

use crate::connection::{ConnectionId, ConnectionInfo};
use crate::fault::{Classify, Fault};
use crate::multistream::NegotiationError;
use crate::peerstore::Peerstore;
use crate::stream::Stream;
use crate::transport::TransportError;
use crate::upgrade::MuxerError;

/// A protocol that lives beside the host for the host's whole life.
pub trait Service: Send + 'static {
    /// A short name for logs (`"identify"`, `"kad"`).
    fn name(&self) -> &'static str;

    /// The protocols whose inbound streams go to this service. Asked once, before the host
    /// listens or dials.
    fn protocols(&self) -> Vec<String>;

    /// Runs the service until the host closes (its inbound streams and events then end). Runs
    /// on a task of its own.
    fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, ()>;
}

/// What a service gets from the host.
#[non_exhaustive]
pub struct ServiceContext {
    /// The host's side: dial, open streams, accept more protocols, the peerstore.
    pub host: Arc<dyn HostContext>,
    /// Inbound streams of the protocols of [`Service::protocols`], merged.
    pub inbound: SelectAll<Incoming>,
    /// The host's events from the start (before the first connection). A service with no use
    /// for them drops this at once: the host's ring keeps each event until every subscriber
    /// has read it, so a subscription nobody reads holds the last `event_buffer` events.
    pub events: Events,
}

impl ServiceContext {
    /// A context of these parts (hosts build them).
    pub fn new(host: Arc<dyn HostContext>, inbound: Vec<Incoming>, events: Events) -> Self {
        ServiceContext {
            host,
            inbound: futures::stream::select_all(inbound),
            events,
        }
    }
}

impl fmt::Debug for ServiceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceContext")
            .field("peer", &self.host.local_peer_id())
            .finish()
    }
}

/// What a host offers its services. Every method is cheap and never blocks; the ones that
/// wait return a future that owns what it needs.
pub trait HostContext: Send + Sync + 'static {
    /// Our peer id.
    fn local_peer_id(&self) -> PeerId;
    /// Our identity key pair (to sign records and messages).
    fn keypair(&self) -> &Keypair;
    /// The addresses we listen on (port 0 resolved).
    fn listen_addrs(&self) -> Vec<Multiaddr>;
    /// The protocols we accept inbound streams for, services' included.
    fn protocols(&self) -> Vec<String>;
    /// What we know about other peers.
    fn peerstore(&self) -> &Peerstore;
    /// The peers we have live connections to.
    fn connected_peers(&self) -> Vec<PeerId>;
    /// The live connections to `peer`.
    fn connections(&self, peer: &PeerId) -> Vec<(ConnectionId, ConnectionInfo)>;
    /// Dials `addr` (with or without `/p2p/<id>`); returns the peer reached. Reuses a live
    /// connection when the address names a connected peer.
    fn dial(&self, addr: Multiaddr) -> BoxFuture<'static, Result<PeerId, DialError>>;
    /// Connects to `peer` at the peerstore's addresses, unless already connected.
    fn connect(&self, peer: PeerId) -> BoxFuture<'static, Result<(), DialError>>;
    /// Opens a stream to `peer` for the first of `protocols` it supports, connecting first
    /// if needed.
    fn new_stream(
        &self,
        peer: PeerId,
        protocols: Vec<String>,
    ) -> BoxFuture<'static, Result<Stream, NewStreamError>>;
    /// Opens a stream to `peer` as [`HostContext::new_stream`] does, but only on a live
    /// connection: it never dials. For protocols that only make sense while connected
    /// (identify and its push), so that one racing a disconnection does not reconnect.
    fn new_stream_connected(
        &self,
        peer: PeerId,
        protocols: Vec<String>,
    ) -> BoxFuture<'static, Result<Stream, NewStreamError>>;
    /// Accepts inbound streams of one more protocol (replacing an earlier registration of the
    /// same name, whose stream then ends). Connected peers learn of it through identify push.
    fn accept(&self, protocol: &str) -> Result<Incoming, AcceptError>;
    /// A new subscription to the host's events, from now on.
    fn events(&self) -> Events;
    /// Records what identify learned of `peer` (in the peerstore) and announces it as
    /// [`Event::Identified`]. The identify service calls it; others may for their own
    /// discoveries of the same shape.
    fn report_identify(&self, peer: PeerId, info: IdentifyInfo);
    /// Closes every connection to `peer`.
    fn disconnect(&self, peer: PeerId) -> BoxFuture<'static, ()>;
    /// Protects the connections to `peer` from the host's connection manager (trimming and
    /// the idle timeout) under `tag` (`"kad"`, `"gossipsub-mesh"`): a peer stays protected
    /// while it has at least one tag. Hosts without a connection manager ignore it.
    fn protect(&self, peer: PeerId, tag: &str) {
        let _ = (peer, tag);
    }
    /// Removes one protection tag of `peer`; whether the peer is still protected (by other
    /// tags).
    fn unprotect(&self, peer: PeerId, tag: &str) -> bool {
        let _ = (peer, tag);
        false
    }
    /// Whether `peer` has any protection tag.
    fn is_protected(&self, peer: &PeerId) -> bool {
        let _ = peer;
        false
    }
}

/// What a peer says about itself in identify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyInfo {
    /// Its public key.
    pub public_key: PublicKey,
    /// Its protocol version (`/ipfs/0.1.0`).
    pub protocol_version: String,
    /// Its agent string.
    pub agent_version: String,
    /// The addresses it listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// The protocols it accepts.
    pub protocols: Vec<String>,
    /// The address it sees us at, if it said.
    pub observed_addr: Option<Multiaddr>,
}

/// The inbound streams of one protocol: a `futures::Stream` of [`Stream`]s, fed by the host
/// through a bounded queue. Dropping it unregisters the protocol.
pub struct Incoming {
    protocol: String,
    queue: mpsc::Receiver<Stream>,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Incoming {
    /// An `Incoming` for `protocol` fed through `queue`; `on_drop` runs when it is dropped
    /// (hosts build them).
    pub fn new(
        protocol: String,
        queue: mpsc::Receiver<Stream>,
        on_drop: Box<dyn FnOnce() + Send + Sync>,
    ) -> Self {
        Incoming {
            protocol,
            queue,
            on_drop: Some(on_drop),
        }
    }

    /// The protocol whose streams these are.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl futures::Stream for Incoming {
    type Item = Stream;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Stream>> {
        self.queue.poll_recv(cx)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

/// What happens to a host: connections, listen addresses, identify, refusals.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A connection is up (secured and muxed).
    ConnectionEstablished {
        /// The connection.
        id: ConnectionId,
        /// The remote.
        peer: PeerId,
        /// What it was built from: security, muxer, addresses, direction.
        info: ConnectionInfo,
        /// How many connections to `peer` we now have, this one included.
        connections: usize,
    },
    /// A connection closed.
    ConnectionClosed {
        /// The connection.
        id: ConnectionId,
        /// The remote.
        peer: PeerId,
        /// What it was built from.
        info: ConnectionInfo,
        /// Why it closed.
        cause: CloseCause,
        /// How many connections to `peer` remain.
        remaining: usize,
    },
    /// A dial failed (every address it tried).
    DialFailed {
        /// The peer, when it was known before the dial.
        peer: Option<PeerId>,
        /// Why.
        error: Arc<DialError>,
    },
    /// We listen on a new address.
    ListenAddrAdded {
        /// The address (port 0 resolved).
        addr: Multiaddr,
    },
    /// We no longer listen on an address.
    ListenAddrExpired {
        /// The address.
        addr: Multiaddr,
    },
    /// Identify told us about a peer; the peerstore has been updated.
    Identified {
        /// The peer.
        peer: PeerId,
        /// What it said.
        info: Arc<IdentifyInfo>,
    },
    /// The set of protocols we accept changed (a handler or `accept` came or went).
    ProtocolsChanged {
        /// The protocols now accepted.
        protocols: Vec<String>,
    },
    /// An inbound stream was refused (reset).
    InboundStreamRefused {
        /// The remote.
        peer: PeerId,
        /// The protocol agreed, when it got that far.
        protocol: Option<String>,
        /// Why.
        reason: RefusedReason,
    },
    /// An inbound connection was closed before its upgrade began: a limit on inbound
    /// connections refused it.
    InboundConnectionRefused {
        /// Where it came from.
        remote_addr: Multiaddr,
        /// Which limit.
        reason: ConnectionRefusedReason,
    },
    /// This subscriber fell behind and missed this many events (the host never waits for a
    /// slow subscriber).
    Missed {
        /// Events lost.
        count: u64,
    },
}

/// Why a connection closed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CloseCause {
    /// We closed it (`disconnect`, or the host closed).
    Local,
    /// The remote closed it, or the socket ended.
    Remote,
    /// The connection failed.
    Error(Arc<MuxerError>),
    /// The connection manager closed it to bring the host back to its low watermark (it was
    /// among the least valuable unprotected connections past their grace period).
    Trimmed,
    /// The connection manager closed it: it had no stream open for the idle timeout.
    IdleTimeout,
}

/// The scope of a resource budget (see the host's `ResourceLimits`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceScope {
    /// The whole host.
    Host,
    /// One remote peer, all its connections together.
    Peer,
    /// One connection.
    Connection,
    /// One protocol, all peers together.
    Protocol(String),
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceScope::Host => f.write_str("host"),
            ResourceScope::Peer => f.write_str("peer"),
            ResourceScope::Connection => f.write_str("connection"),
            ResourceScope::Protocol(p) => write!(f, "protocol {p}"),
        }
    }
}

/// What a resource budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceKind {
    /// Inbound streams open at once.
    InboundStreams,
    /// Outbound streams open at once.
    OutboundStreams,
    /// Streams open at once, both directions.
    Streams,
    /// Bytes reserved (the fixed reservations per connection and per stream).
    Memory,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::InboundStreams => "inbound streams",
            ResourceKind::OutboundStreams => "outbound streams",
            ResourceKind::Streams => "streams",
            ResourceKind::Memory => "memory",
        })
    }
}

/// A resource budget that had no room: which scope, which resource, and its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scope} limit of {limit} {resource} reached")]
#[non_exhaustive]
pub struct ResourceLimitExceeded {
    /// The scope whose budget is full.
    pub scope: ResourceScope,
    /// The resource.
    pub resource: ResourceKind,
    /// The limit (a count, or bytes for memory).
    pub limit: usize,
}

impl ResourceLimitExceeded {
    /// The refusal of `resource` in `scope` at `limit` (resource managers build them).
    pub fn new(scope: ResourceScope, resource: ResourceKind, limit: usize) -> Self {
        ResourceLimitExceeded {
            scope,
            resource,
            limit,
        }
    }
}

impl Classify for ResourceLimitExceeded {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Which limit refused an inbound connection (see the host's config for each).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionRefusedReason {
    /// The host had its limit of established connections.
    ConnectionLimit {
        /// The limit.
        limit: usize,
    },
    /// The host had its limit of inbound connections in their upgrade.
    PendingLimit {
        /// The limit.
        limit: usize,
    },
    /// This source IP had its limit of inbound connections in their upgrade.
    PendingPerIp {
        /// The limit.
        limit: usize,
    },
    /// This source IP had opened its limit of inbound connections in the last second.
    RatePerIp {
        /// The limit (connections per second).
        limit: u32,
    },
    /// The resource manager had no room for the connection's memory reservation (checked
    /// right after the upgrade, when the peer is known).
    Resource(ResourceLimitExceeded),
}

/// Why an inbound stream was refused.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RefusedReason {
    /// The queue of the protocol's `accept` was full: its consumer is not keeping up.
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The connection already had its limit of inbound streams open.
    StreamLimit {
        /// The limit.
        limit: usize,
    },
    /// The remote proposed only protocols we do not accept.
    NotSupported,
    /// The remote did not finish agreeing a protocol in time.
    Timeout,
    /// The remote broke multistream-select, or the stream failed while agreeing.
    Negotiation(Arc<NegotiationError>),
    /// A budget of the resource manager had no room for the stream (streams or memory of
    /// the connection, the peer, the protocol or the host).
    Resource(ResourceLimitExceeded),
}

/// A subscription to a host's [`Event`]s: a `futures::Stream` that ends when the host closes.
/// A subscriber that falls behind gets [`Event::Missed`] and then the newest events.
pub struct Events {
    inner: BoxStream<'static, Event>,
}

impl Events {
    /// Events from a broadcast channel (hosts build them). The channel carries `Arc`s: its
    /// ring of `event_buffer` slots is allocated whole when the host starts, and a pointer
    /// per slot costs a thirtieth of an [`Event`]'s size; each subscriber takes its own copy
    /// as it reads, as a channel of `Event`s would clone one for it.
    pub fn from_broadcast(receiver: tokio::sync::broadcast::Receiver<Arc<Event>>) -> Self {
        use tokio::sync::broadcast::error::RecvError;
        let inner = futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(event) => Some((Arc::unwrap_or_clone(event), receiver)),
                Err(RecvError::Lagged(count)) => Some((Event::Missed { count }, receiver)),
                Err(RecvError::Closed) => None,
            }
        })
        .boxed();
        Events { inner }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Events")
    }
}

impl futures::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// One address a dial tried, and why it failed.
#[derive(Debug, Clone)]
pub struct DialAttempt {
    /// The address.
    pub addr: Multiaddr,
    /// Why it failed.
    pub error: Arc<TransportError>,
}

/// Why a dial failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// We know no address of the peer.
    #[error("no known address of {peer}")]
    NoAddresses {
        /// The peer.
        peer: PeerId,
    },
    /// No transport of the host can dial this address.
    #[error("no transport can dial {addr}")]
    UnsupportedAddress {
        /// The address.
        addr: Multiaddr,
    },
    /// Every address tried failed.
    #[error("dial failed: {}", describe(attempts))]
    Failed {
        /// The peer, when it was known before the dial.
        peer: Option<PeerId>,
        /// Each address tried and why it failed, in the order the failures came (a host dials
        /// several addresses at once).
        attempts: Vec<DialAttempt>,
    },
    /// Every address of the peer failed a little while ago and is still backed off, so none
    /// was dialed; each comes with the error that put it there.
    #[error("every address is backed off after failing: {}", describe(attempts))]
    BackedOff {
        /// The peer.
        peer: PeerId,
        /// Each address and its last failure.
        attempts: Vec<DialAttempt>,
    },
    /// The address names our own peer id, or the remote turned out to be us.
    #[error("cannot dial ourselves")]
    DialSelf,
    /// The host holds its limit of connections.
    #[error("connection limit of {limit} reached")]
    ConnectionLimit {
        /// The limit.
        limit: usize,
    },
    /// The host has its limit of outbound connections in their upgrade (dials in progress).
    #[error("limit of {limit} dials in progress reached")]
    PendingLimit {
        /// The limit.
        limit: usize,
    },
    /// The resource manager had no room for the new connection's memory reservation.
    #[error(transparent)]
    Resource(ResourceLimitExceeded),
    /// The host is closed.
    #[error("the host is closed")]
    Closed,
}

fn describe(attempts: &[DialAttempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.addr, a.error))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Classify for DialError {
    fn fault(&self) -> Fault {
        match self {
            DialError::Failed { attempts, .. } | DialError::BackedOff { attempts, .. } => attempts
                .last()
                .map(|a| a.error.fault())
                .unwrap_or(Fault::Local),
            _ => Fault::Local,
        }
    }
}

/// Why opening a stream failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NewStreamError {
    /// There was no connection and dialing failed.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The peer accepts none of the protocols offered.
    #[error("{peer} supports none of the protocols {offered:?}")]
    ProtocolsNotSupported {
        /// The peer.
        peer: PeerId,
        /// What we offered.
        offered: Vec<String>,
    },
    /// Agreeing on the protocol failed (the remote broke multistream-select, or the stream
    /// failed underneath).
    #[error("negotiating a stream with {peer} failed: {source}")]
    Negotiation {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        #[source]
        source: Arc<NegotiationError>,
    },
    /// The muxer could not open a stream (connection closed, stream limit).
    #[error("opening a stream to {peer} failed: {source}")]
    Muxer {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        #[source]
        source: Arc<MuxerError>,
    },
    /// The remote did not answer the negotiation in time.
    #[error("negotiating a stream with {peer} timed out after {after:?}")]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// The bound.
        after: Duration,
    },
    /// The host is closed.
    #[error("the host is closed")]
    Closed,
    /// No live connection to the peer, and the call was one that never dials.
    #[error("not connected to {peer}")]
    NotConnected {
        /// The peer.
        peer: PeerId,
    },
    /// A budget of our resource manager had no room for the stream.
    #[error("stream to {peer} refused: {source}")]
    Resource {
        /// The peer.
        peer: PeerId,
        /// Which budget.
        #[source]
        source: ResourceLimitExceeded,
    },
}

impl Classify for NewStreamError {
    fn fault(&self) -> Fault {
        match self {
            NewStreamError::Dial(e) => e.fault(),
            NewStreamError::ProtocolsNotSupported { .. } => Fault::Incompatible,
            NewStreamError::Negotiation { source, .. } => source.fault(),
            NewStreamError::Muxer { source, .. } => source.fault(),
            NewStreamError::Timeout { .. } => Fault::Timeout,
            NewStreamError::Closed => Fault::Local,
            NewStreamError::NotConnected { .. } => Fault::Network,
            NewStreamError::Resource { .. } => Fault::Local,
        }
    }
}

/// Why a protocol cannot be accepted.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// multistream-select cannot carry this name (it must start with `/`, hold no newline and
    /// be shorter than 1 KiB).
    #[error("invalid protocol name {0:?}")]
    InvalidProtocol(String),
    /// The host is closed.
    #[error("the host is closed")]
    Closed,
}

impl Classify for AcceptError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Whether multistream-select can carry `name` as a protocol.
pub fn is_valid_protocol(name: &str) -> bool {
    name.starts_with('/') && !name.contains('\n') && name.len() < 1024
}
