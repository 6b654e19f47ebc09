//! The [`Host`]: connections, handlers, peerstore and limits, driving the steps of the core
//! pipeline. It does no protocol work of its own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use libp2p_core::multistream::{self, NegotiationError, ProtocolSet};
use libp2p_core::{Keypair, ListenerEvent, Multiaddr, PeerId, Protocol, Transport};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::HostConfig;
use crate::erased::{BoxedStream, DynMuxer, DynTransport};
use crate::error::HostError;
use crate::peerstore::Peerstore;
use crate::stream::Stream;
use crate::{identify, ping};

/// What a handler returns; any error is logged with the stream's protocol and peer.
pub type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

type HandlerFn = Arc<dyn Fn(Stream) -> BoxFuture<'static, HandlerResult> + Send + Sync>;
type Predicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone)]
struct HandlerEntry {
    /// The name registered (and listed in identify and `ls`).
    name: String,
    /// A predicate matching more names than `name`, if any.
    predicate: Option<Predicate>,
    handler: HandlerFn,
}

/// A snapshot of the handler table (copy on write, so negotiation never holds a lock).
#[derive(Clone, Default)]
struct Handlers(Arc<Vec<HandlerEntry>>);

impl Handlers {
    fn find(&self, protocol: &str) -> Option<&HandlerEntry> {
        self.0.iter().find(|h| h.name == protocol).or_else(|| {
            self.0
                .iter()
                .find(|h| h.predicate.as_ref().is_some_and(|p| p(protocol)))
        })
    }
}

impl ProtocolSet for Handlers {
    fn matches(&self, proposed: &str) -> bool {
        self.find(proposed).is_some()
    }
    fn list(&self) -> Vec<String> {
        self.0.iter().map(|h| h.name.clone()).collect()
    }
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We dialed.
    Outbound,
    /// The remote dialed us.
    Inbound,
}

/// What happens to the host's connections and peers.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// A connection is up (after security and muxer).
    Connected {
        /// The remote peer.
        peer: PeerId,
        /// The remote address.
        addr: Multiaddr,
        /// Who dialed.
        direction: Direction,
    },
    /// A connection closed.
    Disconnected {
        /// The remote peer.
        peer: PeerId,
        /// The remote address.
        addr: Multiaddr,
    },
    /// Identify told us about a peer (the peerstore has been updated).
    Identified {
        /// The peer.
        peer: PeerId,
        /// Its agent string.
        agent_version: String,
        /// The protocols it speaks.
        protocols: Vec<String>,
    },
}

struct Conn {
    id: u64,
    peer: PeerId,
    addr: Multiaddr,
    muxer: Arc<dyn DynMuxer>,
    /// The stream reused for repeated pings.
    pinger: tokio::sync::Mutex<Option<ping::Pinger<multistream::Negotiated<BoxedStream>>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

type DialFuture = Shared<BoxFuture<'static, Result<Arc<Conn>, HostError>>>;

struct Inner {
    key: Keypair,
    peer_id: PeerId,
    config: HostConfig,
    transport: Arc<dyn DynTransport>,
    handlers: RwLock<Handlers>,
    conns: Mutex<HashMap<PeerId, Vec<Arc<Conn>>>>,
    dials: Mutex<HashMap<PeerId, (u64, DialFuture)>>,
    peerstore: Peerstore,
    listen_addrs: RwLock<Vec<Multiaddr>>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    events: broadcast::Sender<HostEvent>,
    closed: AtomicBool,
    next_id: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for listener in self
            .listeners
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            listener.abort();
        }
        if let Ok(conns) = self.conns.get_mut() {
            for conn in conns.values().flatten() {
                if let Some(task) = conn.task.lock().ok().and_then(|mut t| t.take()) {
                    task.abort();
                }
            }
        }
    }
}

/// A libp2p node: listens, dials, and runs protocol handlers on streams.
///
/// Cheap to clone (all clones are the same host). See the crate documentation for an example.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("peer_id", &self.inner.peer_id)
            .finish()
    }
}

/// Builds a [`Host`].
pub struct HostBuilder {
    key: Keypair,
    config: HostConfig,
}

impl HostBuilder {
    /// Adds an address to listen on.
    pub fn listen_on(mut self, addr: Multiaddr) -> Self {
        self.config.listen_addrs.push(addr);
        self
    }

    /// Replaces the configuration (listen addresses included).
    pub fn config(mut self, config: HostConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the host on the default stack: TCP; security noise, then secio; muxers yamux,
    /// then mplex.
    /// The handshake timeout of the config bounds each connection's upgrade.
    #[cfg(feature = "default-stack")]
    pub async fn build(self) -> Result<Host, HostError> {
        use libp2p_core::TransportExt;
        let transport = libp2p_transport_tcp::TcpTransport::new()
            .upgrade()
            .timeout(self.config.handshake_timeout())
            .authenticate((
                libp2p_noise::Noise::new(self.key.clone()),
                libp2p_secio::Secio::new(self.key.clone()),
            ))
            .multiplex((
                libp2p_yamux::Yamux::default(),
                libp2p_mplex::Mplex::default(),
            ));
        self.build_with_transport(transport).await
    }

    /// Builds the host on any transport whose output is an authenticated, multiplexed
    /// connection: the memory transport for tests, one security and one muxer, or your own.
    pub async fn build_with_transport<T, M>(self, transport: T) -> Result<Host, HostError>
    where
        T: Transport<Output = (PeerId, M)>,
        M: libp2p_core::StreamMuxer,
    {
        let (events, _) = broadcast::channel(1024);
        let peer_id = self.key.public().to_peer_id();
        let inner = Arc::new(Inner {
            peer_id,
            key: self.key,
            config: self.config.clone(),
            transport: Arc::new(transport),
            handlers: RwLock::default(),
            conns: Mutex::default(),
            dials: Mutex::default(),
            peerstore: Peerstore::default(),
            listen_addrs: RwLock::default(),
            listeners: Mutex::default(),
            events,
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        let host = Host { inner };
        host.install_builtin_handlers();
        for addr in self.config.listen_addrs {
            host.listen_on(addr).await?;
        }
        Ok(host)
    }
}

impl Host {
    /// Starts building a host with this identity.
    pub fn builder(key: Keypair) -> HostBuilder {
        HostBuilder {
            key,
            config: HostConfig::default(),
        }
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// Our identity key pair.
    pub fn keypair(&self) -> &Keypair {
        &self.inner.key
    }

    /// The addresses we listen on (concrete ones: port 0 resolved).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.listen_addrs.read().expect("lock").clone()
    }

    /// The peerstore.
    pub fn peerstore(&self) -> &Peerstore {
        &self.inner.peerstore
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// A receiver of connection events. Each call gives a new receiver that sees the events
    /// from then on; a receiver that falls more than 1,024 events behind loses the oldest.
    pub fn events(&self) -> broadcast::Receiver<HostEvent> {
        self.inner.events.subscribe()
    }

    /// Starts listening on `addr`; returns the first address it is reachable at.
    pub async fn listen_on(&self, addr: Multiaddr) -> Result<Multiaddr, HostError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(HostError::Closed);
        }
        let listen_err = |reason: String| HostError::Listen {
            addr: addr.clone(),
            reason,
        };
        let mut listener = self
            .inner
            .transport
            .listen(addr.clone())
            .map_err(|e| listen_err(e.to_string()))?;
        let first = loop {
            match listener.next().await {
                Some(ListenerEvent::NewAddress(a)) => break a,
                Some(ListenerEvent::Error(e)) => return Err(listen_err(e.to_string())),
                Some(_) => continue,
                None => return Err(listen_err("listener ended".into())),
            }
        };
        tracing::info!(addr = %first, "listening");
        self.inner
            .listen_addrs
            .write()
            .expect("lock")
            .push(first.clone());
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(run_listener(weak, listener));
        self.inner.listeners.lock().expect("lock").push(task);
        Ok(first)
    }

    /// Handles inbound streams for `protocol` with `handler`, one task per stream. A handler
    /// that panics or stalls harms only its own stream. Replaces an earlier handler of the
    /// same name.
    pub fn set_stream_handler<F, Fut>(&self, protocol: impl Into<String>, handler: F)
    where
        F: Fn(Stream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.insert_handler(protocol.into(), None, handler);
        self.push_identify();
    }

    /// Like [`Host::set_stream_handler`], but the handler takes every protocol `matches`
    /// accepts (for example every version of a protocol). `name` is what identify lists.
    pub fn set_stream_handler_match<P, F, Fut>(
        &self,
        name: impl Into<String>,
        matches: P,
        handler: F,
    ) where
        P: Fn(&str) -> bool + Send + Sync + 'static,
        F: Fn(Stream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.insert_handler(name.into(), Some(Arc::new(matches)), handler);
        self.push_identify();
    }

    /// Stops handling `protocol`.
    pub fn remove_stream_handler(&self, protocol: &str) {
        let mut handlers = self.inner.handlers.write().expect("lock");
        let kept: Vec<_> = handlers
            .0
            .iter()
            .filter(|h| h.name != protocol)
            .cloned()
            .collect();
        *handlers = Handlers(Arc::new(kept));
        drop(handlers);
        self.push_identify();
    }

    /// The protocols we handle.
    pub fn protocols(&self) -> Vec<String> {
        self.inner.handlers.read().expect("lock").list()
    }

    fn insert_handler<F, Fut>(&self, name: String, predicate: Option<Predicate>, handler: F)
    where
        F: Fn(Stream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler: HandlerFn = Arc::new(move |stream| handler(stream).boxed());
        let mut handlers = self.inner.handlers.write().expect("lock");
        let mut list: Vec<_> = handlers
            .0
            .iter()
            .filter(|h| h.name != name)
            .cloned()
            .collect();
        list.push(HandlerEntry {
            name,
            predicate,
            handler,
        });
        *handlers = Handlers(Arc::new(list));
    }

    /// Records `addrs` for `peer` and connects to it (reusing a live connection).
    pub async fn connect(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), HostError> {
        self.inner
            .peerstore
            .add_addrs(&peer, addrs, self.inner.config.address_ttl());
        self.connection_to(peer).await.map(drop)
    }

    /// Whether we have a live connection to `peer`.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.live_connection(peer).is_some()
    }

    /// The peers we have live connections to.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        let conns = self.inner.conns.lock().expect("lock");
        conns
            .iter()
            .filter(|(_, list)| list.iter().any(|c| !c.muxer.is_closed()))
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// Opens a stream to `peer` for the first of `protocols` it supports, dialing it (at the
    /// peerstore's addresses) if there is no live connection. Concurrent calls for the same
    /// peer share one dial.
    pub async fn new_stream(&self, peer: PeerId, protocols: &[&str]) -> Result<Stream, HostError> {
        let conn = self.connection_to(peer).await?;
        let span = tracing::debug_span!("new_stream", %peer, ?protocols);
        open_on(&conn, protocols, self.inner.config.negotiation_timeout())
            .instrument(span)
            .await
    }

    /// Pings `peer` once and returns the round-trip time. Repeated pings reuse one stream.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, HostError> {
        let conn = self.connection_to(peer).await?;
        let mut slot = conn.pinger.lock().await;
        if slot.is_none() {
            let stream = open_on(
                &conn,
                &[ping::PROTOCOL],
                self.inner.config.negotiation_timeout(),
            )
            .await?;
            *slot = Some(ping::Pinger::new(stream.into_negotiated()));
        }
        let pinger = slot.as_mut().expect("just set");
        // A peer that stops answering must not hold this connection's ping slot forever.
        let limit = self.inner.config.negotiation_timeout();
        let reason = match tokio::time::timeout(limit, pinger.ping()).await {
            Ok(Ok(rtt)) => return Ok(rtt),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {limit:?}"),
        };
        *slot = None;
        Err(HostError::Ping { peer, reason })
    }

    /// Closes every connection to `peer`.
    pub async fn disconnect(&self, peer: PeerId) {
        let conns = self
            .inner
            .conns
            .lock()
            .expect("lock")
            .remove(&peer)
            .unwrap_or_default();
        for conn in conns {
            let _ = conn.muxer.close().await;
        }
    }

    /// Closes the host gracefully: listeners stop, connections close (and with them the
    /// handlers' streams), and further operations fail with [`HostError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        for listener in std::mem::take(&mut *self.inner.listeners.lock().expect("lock")) {
            listener.abort();
        }
        self.inner.listen_addrs.write().expect("lock").clear();
        let all: Vec<Arc<Conn>> = {
            let mut conns = self.inner.conns.lock().expect("lock");
            conns.drain().flat_map(|(_, list)| list).collect()
        };
        for conn in all {
            let _ = conn.muxer.close().await;
            let task = conn.task.lock().expect("lock").take();
            if let Some(task) = task {
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
        }
    }

    fn live_connection(&self, peer: &PeerId) -> Option<Arc<Conn>> {
        let conns = self.inner.conns.lock().expect("lock");
        conns
            .get(peer)
            .and_then(|list| list.iter().rev().find(|c| !c.muxer.is_closed()).cloned())
    }

    async fn connection_to(&self, peer: PeerId) -> Result<Arc<Conn>, HostError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(HostError::Closed);
        }
        if peer == self.inner.peer_id {
            return Err(HostError::DialSelf);
        }
        if let Some(conn) = self.live_connection(&peer) {
            return Ok(conn);
        }
        let (id, dial) = {
            let mut dials = self.inner.dials.lock().expect("lock");
            dials
                .entry(peer)
                .or_insert_with(|| {
                    let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                    let fut = dial_peer(self.inner.clone(), peer).boxed().shared();
                    (id, fut)
                })
                .clone()
        };
        let result = dial.await;
        let mut dials = self.inner.dials.lock().expect("lock");
        if dials.get(&peer).is_some_and(|(current, _)| *current == id) {
            dials.remove(&peer);
        }
        result
    }

    fn install_builtin_handlers(&self) {
        if self.inner.config.ping {
            self.insert_handler(ping::PROTOCOL.into(), None, |stream: Stream| async move {
                ping::serve(stream).await?;
                Ok(())
            });
        }
        if self.inner.config.identify {
            let weak = Arc::downgrade(&self.inner);
            self.insert_handler(identify::PROTOCOL.into(), None, move |stream: Stream| {
                let info = weak
                    .upgrade()
                    .map(|inner| local_info(&inner, Some(stream.remote_addr())));
                async move {
                    match info {
                        Some(info) => identify::send(stream, &info).await?,
                        None => return Err("host closed".into()),
                    }
                    Ok(())
                }
            });
            let weak = Arc::downgrade(&self.inner);
            let limit = self.inner.config.negotiation_timeout();
            self.insert_handler(
                identify::PUSH_PROTOCOL.into(),
                None,
                move |stream: Stream| {
                    let weak = weak.clone();
                    async move {
                        let peer = stream.remote_peer();
                        let info = receive_identify(stream, limit).await?;
                        if let Some(inner) = weak.upgrade() {
                            record_identify(&inner, peer, info);
                        }
                        Ok(())
                    }
                },
            );
        }
    }

    /// Tells connected peers that speak identify push about our new protocol list.
    fn push_identify(&self) {
        if !self.inner.config.identify {
            return;
        }
        let conns: Vec<Arc<Conn>> = {
            let conns = self.inner.conns.lock().expect("lock");
            conns.values().flatten().cloned().collect()
        };
        for conn in conns {
            let supports_push = self
                .inner
                .peerstore
                .protocols(&conn.peer)
                .iter()
                .any(|p| p == identify::PUSH_PROTOCOL);
            if !supports_push {
                continue;
            }
            let info = local_info(&self.inner, Some(conn.addr.clone()));
            let timeout = self.inner.config.negotiation_timeout();
            tokio::spawn(async move {
                if let Ok(stream) = open_on(&conn, &[identify::PUSH_PROTOCOL], timeout).await {
                    let _ = identify::send(stream, &info).await;
                }
            });
        }
    }
}

/// Reads the remote's identify message, giving up after `limit`: a peer that never sends one
/// must not hold the stream and its task for the life of the connection.
async fn receive_identify(
    stream: Stream,
    limit: Duration,
) -> Result<identify::Info, Box<dyn std::error::Error + Send + Sync>> {
    match tokio::time::timeout(limit, identify::receive(stream)).await {
        Ok(info) => Ok(info?),
        Err(_) => Err(format!("no identify message within {limit:?}").into()),
    }
}

/// Opens a stream on `conn` and agrees on one of `protocols`.
async fn open_on(conn: &Conn, protocols: &[&str], timeout: Duration) -> Result<Stream, HostError> {
    let peer = conn.peer;
    let raw = conn.muxer.open().await.map_err(|e| HostError::Connection {
        peer,
        reason: e.to_string(),
    })?;
    let config = multistream::Config::default();
    let select = multistream::dialer_select(
        raw,
        protocols.iter().copied(),
        multistream::Version::V1,
        &config,
    );
    match tokio::time::timeout(timeout, select).await {
        Ok(Ok((protocol, io))) => {
            tracing::debug!(%peer, %protocol, "protocol agreed");
            Ok(Stream::new(
                io,
                protocol.to_string(),
                peer,
                conn.addr.clone(),
            ))
        }
        Ok(Err(NegotiationError::ProtocolNotSupported { .. })) => {
            Err(HostError::ProtocolsNotSupported {
                peer,
                offered: protocols.iter().map(|p| p.to_string()).collect(),
            })
        }
        Ok(Err(e)) => Err(HostError::Negotiation {
            peer,
            reason: e.to_string(),
        }),
        Err(_) => Err(HostError::Negotiation {
            peer,
            reason: format!("timed out after {timeout:?}"),
        }),
    }
}

fn local_info(inner: &Inner, observed: Option<Multiaddr>) -> identify::Info {
    identify::Info {
        public_key: inner.key.public(),
        protocol_version: inner.config.protocol_version.clone(),
        agent_version: inner.config.agent_version.clone(),
        listen_addrs: inner.listen_addrs.read().expect("lock").clone(),
        protocols: inner.handlers.read().expect("lock").list(),
        observed_addr: observed,
    }
}

fn record_identify(inner: &Inner, peer: PeerId, info: identify::Info) {
    if info.public_key.to_peer_id() != peer {
        tracing::warn!(%peer, "identify carried another peer's key; ignored");
        return;
    }
    let store = &inner.peerstore;
    store.set_public_key(&peer, info.public_key);
    store.add_addrs(&peer, info.listen_addrs, inner.config.address_ttl());
    store.set_protocols(&peer, info.protocols.clone());
    store.set_agent_version(&peer, info.agent_version.clone());
    tracing::debug!(%peer, agent = %info.agent_version, "identified");
    let _ = inner.events.send(HostEvent::Identified {
        peer,
        agent_version: info.agent_version,
        protocols: info.protocols,
    });
}

async fn dial_peer(inner: Arc<Inner>, peer: PeerId) -> Result<Arc<Conn>, HostError> {
    let addrs = inner.peerstore.addrs(&peer);
    let mut attempts = Vec::new();
    for addr in addrs {
        if connection_count(&inner) >= inner.config.max_connections {
            return Err(HostError::ConnectionLimit(inner.config.max_connections));
        }
        let full = addr.clone().with(Protocol::P2p(peer));
        let span = tracing::debug_span!("dial", %peer, %addr);
        match inner.transport.dial(full).instrument(span).await {
            Ok((remote, muxer)) => {
                return add_connection(&inner, remote, muxer, addr, Direction::Outbound);
            }
            Err(e) => {
                tracing::debug!(%peer, %addr, error = %e, "dial failed");
                attempts.push((addr, e.to_string()));
            }
        }
    }
    Err(HostError::Unreachable { peer, attempts })
}

fn connection_count(inner: &Inner) -> usize {
    inner
        .conns
        .lock()
        .expect("lock")
        .values()
        .map(Vec::len)
        .sum()
}

fn add_connection(
    inner: &Arc<Inner>,
    peer: PeerId,
    muxer: Arc<dyn DynMuxer>,
    addr: Multiaddr,
    direction: Direction,
) -> Result<Arc<Conn>, HostError> {
    let limit = inner.config.max_connections;
    let conn = Arc::new(Conn {
        id: inner.next_id.fetch_add(1, Ordering::Relaxed),
        peer,
        addr: addr.clone(),
        muxer,
        pinger: tokio::sync::Mutex::new(None),
        task: Mutex::new(None),
    });
    {
        let mut conns = inner.conns.lock().expect("lock");
        let count: usize = conns.values().map(Vec::len).sum();
        if count >= limit || inner.closed.load(Ordering::SeqCst) {
            drop(conns);
            let muxer = conn.muxer.clone();
            tokio::spawn(async move {
                let _ = muxer.close().await;
            });
            return Err(if inner.closed.load(Ordering::SeqCst) {
                HostError::Closed
            } else {
                HostError::ConnectionLimit(limit)
            });
        }
        conns.entry(peer).or_default().push(conn.clone());
    }
    tracing::info!(%peer, %addr, ?direction, "connected");
    let _ = inner.events.send(HostEvent::Connected {
        peer,
        addr,
        direction,
    });
    let task = tokio::spawn(run_connection(Arc::downgrade(inner), conn.clone()));
    *conn.task.lock().expect("lock") = Some(task);
    if inner.config.identify {
        let timeout = inner.config.negotiation_timeout();
        let weak = Arc::downgrade(inner);
        let conn = conn.clone();
        tokio::spawn(async move {
            let stream = match open_on(&conn, &[identify::PROTOCOL], timeout).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(peer = %conn.peer, error = %e, "identify not answered");
                    return;
                }
            };
            match receive_identify(stream, timeout).await {
                Ok(info) => {
                    if let Some(inner) = weak.upgrade() {
                        record_identify(&inner, conn.peer, info);
                    }
                }
                Err(e) => tracing::debug!(peer = %conn.peer, error = %e, "identify failed"),
            }
        });
    }
    Ok(conn)
}

/// Accepts the inbound streams of one connection until it closes.
async fn run_connection(weak: Weak<Inner>, conn: Arc<Conn>) {
    let active = Arc::new(AtomicUsize::new(0));
    while let Ok(raw) = conn.muxer.accept().await {
        let Some(inner) = weak.upgrade() else { break };
        let limit = inner.config.max_inbound_streams_per_connection;
        if active.load(Ordering::SeqCst) >= limit {
            tracing::debug!(peer = %conn.peer, limit, "inbound stream limit reached; reset");
            drop(raw);
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let guard = ActiveGuard(active.clone());
        let handlers = inner.handlers.read().expect("lock").clone();
        let timeout = inner.config.negotiation_timeout();
        let peer = conn.peer;
        let addr = conn.addr.clone();
        drop(inner);
        tokio::spawn(async move {
            let _guard = guard;
            handle_inbound(raw, handlers, peer, addr, timeout).await;
        });
    }
    if let Some(inner) = weak.upgrade() {
        let mut conns = inner.conns.lock().expect("lock");
        if let Some(list) = conns.get_mut(&conn.peer) {
            list.retain(|c| c.id != conn.id);
            if list.is_empty() {
                conns.remove(&conn.peer);
            }
        }
        drop(conns);
        tracing::info!(peer = %conn.peer, addr = %conn.addr, "disconnected");
        let _ = inner.events.send(HostEvent::Disconnected {
            peer: conn.peer,
            addr: conn.addr.clone(),
        });
    }
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle_inbound(
    raw: BoxedStream,
    handlers: Handlers,
    peer: PeerId,
    addr: Multiaddr,
    timeout: Duration,
) {
    let config = multistream::Config::default();
    let select = multistream::listener_select(raw, &handlers, &config);
    let (protocol, io) = match tokio::time::timeout(timeout, select).await {
        Ok(Ok(agreed)) => agreed,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "inbound negotiation failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "inbound negotiation timed out");
            return;
        }
    };
    let Some(entry) = handlers.find(&protocol) else {
        return;
    };
    tracing::debug!(%peer, %protocol, "inbound stream");
    let handler = entry.handler.clone();
    let stream = Stream::new(io, protocol.clone(), peer, addr);
    if let Err(e) = handler(stream).await {
        tracing::debug!(%peer, %protocol, error = %e, "handler failed");
    }
}

/// Runs a listener: records its addresses, upgrades inbound connections (each on its own
/// task, under the pipeline's timeout) and adds them to the pool.
async fn run_listener(
    weak: Weak<Inner>,
    mut listener: futures::stream::BoxStream<'static, ListenerEvent<crate::erased::PendingUpgrade>>,
) {
    while let Some(event) = listener.next().await {
        let Some(inner) = weak.upgrade() else { return };
        match event {
            ListenerEvent::NewAddress(addr) => {
                tracing::info!(%addr, "listening");
                let mut addrs = inner.listen_addrs.write().expect("lock");
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            ListenerEvent::AddressExpired(addr) => {
                inner
                    .listen_addrs
                    .write()
                    .expect("lock")
                    .retain(|a| *a != addr);
            }
            ListenerEvent::Incoming {
                pending,
                remote_addr,
                ..
            } => {
                if connection_count(&inner) >= inner.config.max_connections {
                    tracing::debug!(%remote_addr, "connection limit reached; inbound dropped");
                    continue;
                }
                let weak = weak.clone();
                let span = tracing::debug_span!("inbound", %remote_addr);
                tokio::spawn(
                    async move {
                        match pending.await {
                            Ok((peer, muxer)) => {
                                if let Some(inner) = weak.upgrade() {
                                    if let Err(e) = add_connection(
                                        &inner,
                                        peer,
                                        muxer,
                                        remote_addr,
                                        Direction::Inbound,
                                    ) {
                                        tracing::debug!(%peer, error = %e, "inbound refused");
                                    }
                                }
                            }
                            Err(e) => tracing::debug!(error = %e, "inbound upgrade failed"),
                        }
                    }
                    .instrument(span),
                );
            }
            ListenerEvent::Error(e) => tracing::warn!(error = %e, "listener error"),
        }
    }
}
