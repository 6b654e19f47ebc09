//! The [`Host`]: connection pool, dispatch of inbound streams, peerstore and limits, driving
//! the steps of the core pipeline. It does no protocol work of its own: identify and ping are
//! services like any other.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use libp2p_core::multistream::{self, NegotiationError, ProtocolSet};
use libp2p_core::{
    split_peer_id, AcceptError, CloseCause, ConnectionId, ConnectionInfo, ConnectionRefusedReason,
    DialAttempt, DialError, Event, Events, IdentifyInfo, Incoming, IntoConnection, Keypair,
    ListenerEvent, Multiaddr, MuxerError, NewStreamError, PeerId, Peerstore, Protocol,
    RefusedReason, Service, ServiceContext, Stream, Transport,
};
use tokio::sync::broadcast;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use libp2p_core::Direction;

use crate::config::Config;
use crate::connmgr::{Activity, ActivityGuard, Candidate, ConnManager};
use crate::erased::{Connected, DynListener, DynMuxer, DynTransport};
use crate::error::{ListenError, PingError};
use crate::resource::{Reservation, ResourceManager, ResourceUsage, StreamReservation};
use crate::{identify, ping};

/// What a handler returns; any error is logged (at debug) with the stream's protocol and peer.
pub type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

type Predicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

type HandlerFn = Arc<dyn Fn(Stream) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// Where the streams of a protocol go.
#[derive(Clone)]
enum Sink {
    /// The queue of an `Incoming` (`accept`).
    Queue(mpsc::Sender<Stream>),
    /// A handler, run on a task per stream (`set_stream_handler`): no queue to fill, so a
    /// burst of streams waits only on the per-connection stream limit.
    Handler(HandlerFn),
}

/// One protocol we accept, and where its streams go.
#[derive(Clone)]
struct Registration {
    id: u64,
    /// The name registered (and listed in identify and `ls`).
    name: String,
    /// A predicate matching more names than `name`, if any.
    predicate: Option<Predicate>,
    sink: Sink,
}

/// A snapshot of the protocol table (copy on write, so negotiation never holds a lock).
#[derive(Clone, Default)]
struct Table(Arc<Vec<Registration>>);

impl Table {
    fn find(&self, protocol: &str) -> Option<&Registration> {
        self.0.iter().find(|r| r.name == protocol).or_else(|| {
            self.0
                .iter()
                .find(|r| r.predicate.as_ref().is_some_and(|p| p(protocol)))
        })
    }
}

impl ProtocolSet for Table {
    fn matches(&self, proposed: &str) -> bool {
        self.find(proposed).is_some()
    }
    fn list(&self) -> Vec<String> {
        self.0.iter().map(|r| r.name.clone()).collect()
    }
}

struct Conn {
    id: ConnectionId,
    peer: PeerId,
    info: ConnectionInfo,
    muxer: Arc<dyn DynMuxer>,
    /// Set when we close it, so that its end is reported as ours.
    closing: AtomicBool,
    /// Inbound streams open now (negotiating, queued or held).
    inbound: Arc<AtomicUsize>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// The host's metrics, for this connection's streams.
    #[cfg(feature = "metrics")]
    metrics: Option<Arc<crate::metrics::Recorder>>,
    /// When it joined the pool (for the grace period).
    opened_at: Instant,
    /// Its open streams, both directions (for trimming and the idle timeout).
    activity: Arc<Activity>,
    /// The host's resource manager, for this connection's streams.
    resources: ResourceManager,
    /// The connection's own memory reservation, released when it ends.
    reservation: Mutex<Option<Reservation>>,
    /// Why we close it, when the connection manager did (reported in place of `Local`).
    close_cause: Mutex<Option<CloseCause>>,
}

type DialFuture = Shared<BoxFuture<'static, Result<Arc<Conn>, DialError>>>;

/// A ping stream reused for repeated pings of one peer.
type PingSlot = Arc<tokio::sync::Mutex<Option<ping::Pinger<libp2p_core::FuturesStream>>>>;

pub(crate) struct Inner {
    key: Keypair,
    peer_id: PeerId,
    config: Config,
    transports: Vec<Arc<dyn DynTransport>>,
    /// Resolves names in dialed addresses before a transport is picked.
    #[cfg(feature = "dns")]
    dns: libp2p_dns::Dns,
    #[cfg(feature = "metrics")]
    metrics: Option<Arc<crate::metrics::Recorder>>,
    table: RwLock<Table>,
    conns: Mutex<HashMap<PeerId, Vec<Arc<Conn>>>>,
    dials: Mutex<HashMap<PeerId, (u64, DialFuture)>>,
    /// Addresses that failed, left out of peer dials for a while.
    backoff: Mutex<crate::dial::Backoff>,
    peerstore: Arc<Peerstore>,
    listen_addrs: RwLock<Vec<Multiaddr>>,
    /// Listener and service tasks, ended with the host.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    events: broadcast::Sender<Arc<Event>>,
    pings: Mutex<HashMap<PeerId, PingSlot>>,
    pending_incoming: AtomicUsize,
    /// Per-source-IP limits on inbound connections.
    sources: crate::limits::SourceLimits,
    /// Connections in `conns`, all peers together (kept beside the map, so that the limit
    /// check of every inbound connection does not walk the whole pool).
    established: AtomicUsize,
    /// Outbound connections in their upgrade (dials in progress).
    pending_outgoing: AtomicUsize,
    /// Watermarks, protection tags, idle timeout.
    connmgr: ConnManager,
    /// Stream and memory budgets.
    resources: ResourceManager,
    closed: AtomicBool,
    next_id: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
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

impl Inner {
    fn emit(&self, event: Event) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.on_event(&event);
        }
        // No subscriber is fine; a slow one misses events rather than slowing us.
        let _ = self.events.send(Arc::new(event));
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A libp2p node: listens, dials, hands inbound streams to whoever accepts their protocol,
/// and runs services beside.
///
/// Cheap to clone (all clones are the same host). See the crate documentation for an example.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("peer_id", &self.inner.peer_id)
            .finish()
    }
}

/// Builds a [`Host`]: its identity, configuration, transports and services.
pub struct HostBuilder {
    key: Keypair,
    config: Config,
    transports: Vec<Arc<dyn DynTransport>>,
    services: Vec<Box<dyn Service>>,
    #[cfg(feature = "dns")]
    dns: Option<libp2p_dns::Dns>,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
    tcp: bool,
    /// Listen on TCP and QUIC at these.
    listen_ips: Vec<(std::net::IpAddr, u16)>,
    /// QUIC asked for (`with_quic`), left out (`without_quic`), or as the default has it.
    #[cfg(feature = "quic")]
    quic: Option<bool>,
    #[cfg(feature = "websocket")]
    websocket: bool,
    #[cfg(feature = "secio")]
    secio: bool,
    #[cfg(feature = "mplex")]
    mplex: bool,
}

impl std::fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBuilder")
            .field("config", &self.config)
            .field("transports", &self.transports.len())
            .field("services", &self.services.len())
            .finish()
    }
}

impl HostBuilder {
    /// Adds an address to listen on.
    pub fn listen_on(mut self, addr: Multiaddr) -> Self {
        self.config.listen_addrs.push(addr);
        self
    }

    /// Replaces the configuration (listen addresses included).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Adds a transport: any stack whose output is a secured, muxed connection (the TCP
    /// pipeline, a QUIC transport, the memory transports, a combination made with `or`).
    /// Transports are tried in the order added; an address goes to the first that can take
    /// it. The handshake timeout of the config is the pipeline's own (`.timeout(...)`) for a
    /// stack built by hand: give it the same value.
    pub fn transport<T>(mut self, transport: T) -> Self
    where
        T: Transport,
        T::Output: IntoConnection,
    {
        self.transports.push(Arc::new(transport));
        self
    }

    /// Adds the default TCP stack (noise, then TLS and secio where enabled; yamux, then mplex
    /// where enabled), beside the transports given. `build` adds it by itself when no
    /// transport was given.
    #[cfg(feature = "default-stack")]
    pub fn with_tcp(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// Adds QUIC (`/udp/P/quic-v1`, TLS 1.3 and QUIC's own streams) beside the default TCP
    /// stack: the host listens on both kinds of address and dials each with its own transport.
    /// Part of the default stack already; this adds both beside transports given by hand.
    #[cfg(feature = "quic")]
    pub fn with_quic(mut self) -> Self {
        self.quic = Some(true);
        self.tcp = true;
        self
    }

    /// Leaves QUIC out of the default stack (TCP only).
    #[cfg(feature = "quic")]
    pub fn without_quic(mut self) -> Self {
        self.quic = Some(false);
        self
    }

    /// Listens on `ip` at `port` with every transport of the default stack: TCP
    /// (`/ip4/<ip>/tcp/<port>`) and, where QUIC is on, QUIC (`/ip4/<ip>/udp/<port>/quic-v1`).
    /// With port 0 each gets a port of its own; [`Host::listen_addrs`] reports both.
    pub fn listen_on_ip(mut self, ip: std::net::IpAddr, port: u16) -> Self {
        self.listen_ips.push((ip, port));
        self
    }

    /// Adds WebSocket (`/tcp/P/ws`, noise and yamux on top as over TCP) beside the default
    /// TCP stack.
    #[cfg(feature = "websocket")]
    pub fn with_websocket(mut self) -> Self {
        self.websocket = true;
        self.tcp = true;
        self
    }

    /// Offers secio after noise on the default TCP stack. Off by default: multistream-select
    /// is unauthenticated, so an active attacker could push both sides down to the weaker
    /// protocol; turn it on only to reach peers that speak nothing else.
    #[cfg(feature = "secio")]
    pub fn with_secio(mut self) -> Self {
        self.secio = true;
        self
    }

    /// Offers mplex after yamux on the default TCP stack (for peers without yamux). mplex has
    /// no flow control per stream: a stalled reader holds the connection's buffers.
    #[cfg(feature = "mplex")]
    pub fn with_mplex(mut self) -> Self {
        self.mplex = true;
        self
    }

    /// Resolves names in dialed addresses (`/dns4/...`, `/dnsaddr/...`) with `dns` instead of
    /// the system's resolver, which is the default and is read only when a name is first
    /// dialed.
    #[cfg(feature = "dns")]
    pub fn dns(mut self, dns: libp2p_dns::Dns) -> Self {
        self.dns = Some(dns);
        self
    }

    /// Records the host's metrics in `metrics` (see [`crate::metrics`]).
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Adds a service (its protocols are accepted from the start, so the very first identify
    /// lists them).
    pub fn service(mut self, service: impl Service) -> Self {
        self.services.push(Box::new(service));
        self
    }

    /// Builds the host on the transports given, or on the default stack when none was given
    /// (TCP with noise then TLS, and yamux; QUIC beside it); starts identify, ping and the
    /// services; listens on the config's addresses. Every listen address is known when it
    /// returns.
    pub async fn build(mut self) -> Result<Host, ListenError> {
        let default = self.transports.is_empty();
        #[cfg(feature = "default-stack")]
        if self.tcp || default {
            let tcp = self.default_tcp();
            self.transports.push(tcp);
        }
        #[cfg(not(feature = "default-stack"))]
        let _ = default;
        #[cfg(feature = "quic")]
        let quic = self.quic.unwrap_or(default);
        #[cfg(not(feature = "quic"))]
        let quic = false;
        for (ip, port) in std::mem::take(&mut self.listen_ips) {
            let ip = match ip {
                std::net::IpAddr::V4(ip) => Protocol::Ip4(ip),
                std::net::IpAddr::V6(ip) => Protocol::Ip6(ip),
            };
            let base = Multiaddr::empty().with(ip);
            self.config
                .listen_addrs
                .push(base.clone().with(Protocol::Tcp(port)));
            if quic {
                let addr = base.with(Protocol::Udp(port)).with(Protocol::QuicV1);
                self.config.listen_addrs.push(addr);
            }
        }
        #[cfg(feature = "quic")]
        if quic {
            let config = libp2p_quic::Config::default()
                .with_handshake_timeout(self.config.handshake_timeout);
            let quic = libp2p_quic::QuicTransport::with_config(self.key.clone(), config);
            self.transports.push(Arc::new(quic));
        }
        #[cfg(feature = "websocket")]
        if self.websocket {
            use libp2p_core::TransportExt;
            let ws = libp2p_websocket::WsTransport::new(libp2p_transport_tcp::TcpTransport::new())
                .upgrade()
                .timeout(self.config.handshake_timeout)
                .authenticate(libp2p_noise::Noise::new(self.key.clone()))
                .multiplex(self.yamux());
            self.transports.push(Arc::new(ws));
        }
        self.start().await
    }

    /// Builds the host on `transport` alone (the same as `.transport(transport).build()`).
    pub async fn build_with_transport<T>(self, transport: T) -> Result<Host, ListenError>
    where
        T: Transport,
        T::Output: IntoConnection,
    {
        self.transport(transport).build().await
    }

    /// yamux as the default stacks use it: the config's write timeout.
    #[cfg(feature = "default-stack")]
    fn yamux(&self) -> libp2p_yamux::Yamux {
        libp2p_yamux::Yamux::with_config(
            libp2p_yamux::Config::default().with_write_timeout(self.config.muxer_write_timeout),
        )
    }

    #[cfg(feature = "default-stack")]
    fn default_tcp(&self) -> Arc<dyn DynTransport> {
        use libp2p_core::TransportExt;
        let secured = libp2p_transport_tcp::TcpTransport::new()
            .upgrade()
            .timeout(self.config.handshake_timeout);
        let noise = libp2p_noise::Noise::new(self.key.clone());
        // TLS after noise: the names offered in this order, the remote picks the first it has.
        #[cfg(feature = "tls")]
        let noise = (noise, libp2p_tls::Tls::new(self.key.clone()));
        let yamux = self.yamux();
        #[cfg(feature = "secio")]
        let secio = self
            .secio
            .then(|| libp2p_secio::Secio::new(self.key.clone()));
        #[cfg(not(feature = "secio"))]
        let secio: Option<()> = None;
        #[cfg(feature = "mplex")]
        let mplex = self.mplex.then(|| {
            libp2p_mplex::Mplex::with_config(libp2p_mplex::Config {
                write_timeout: self.config.muxer_write_timeout,
                ..Default::default()
            })
        });
        #[cfg(not(feature = "mplex"))]
        let mplex: Option<()> = None;
        match (secio, mplex) {
            #[cfg(all(feature = "secio", feature = "mplex"))]
            (Some(secio), Some(mplex)) => Arc::new(
                secured
                    .authenticate((noise, secio))
                    .multiplex((yamux, mplex)),
            ),
            #[cfg(feature = "secio")]
            (Some(secio), None) => Arc::new(secured.authenticate((noise, secio)).multiplex(yamux)),
            #[cfg(feature = "mplex")]
            (None, Some(mplex)) => Arc::new(secured.authenticate(noise).multiplex((yamux, mplex))),
            _ => Arc::new(secured.authenticate(noise).multiplex(yamux)),
        }
    }

    async fn start(self) -> Result<Host, ListenError> {
        let (events, _) = broadcast::channel(self.config.event_buffer.max(1));
        let peer_id = self.key.public().to_peer_id();
        let inner = Arc::new(Inner {
            peer_id,
            key: self.key,
            config: self.config.clone(),
            transports: self.transports,
            #[cfg(feature = "dns")]
            dns: self.dns.unwrap_or_default(),
            #[cfg(feature = "metrics")]
            metrics: self.metrics.map(|m| m.recorder()),
            table: RwLock::default(),
            conns: Mutex::default(),
            dials: Mutex::default(),
            backoff: Mutex::new(crate::dial::Backoff::new(&self.config.dial)),
            peerstore: Arc::new(Peerstore::with_max_peers(self.config.max_peerstore_peers)),
            listen_addrs: RwLock::default(),
            tasks: Mutex::default(),
            events,
            pings: Mutex::default(),
            pending_incoming: AtomicUsize::new(0),
            sources: crate::limits::SourceLimits::new(
                self.config.max_pending_incoming_per_ip,
                self.config.max_incoming_per_ip_per_second,
            ),
            established: AtomicUsize::new(0),
            pending_outgoing: AtomicUsize::new(0),
            connmgr: ConnManager::new(self.config.connection_manager.clone()),
            resources: ResourceManager::new(self.config.resources.clone()),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        let manager = tokio::spawn(run_manager(Arc::downgrade(&inner)));
        inner.tasks.lock().expect("lock").push(manager);
        let host = Host { inner };
        let mut services = self.services;
        if self.config.ping {
            services.insert(
                0,
                Box::new(ping::PingService {
                    interval: self.config.ping_interval,
                    timeout: self.config.ping_timeout,
                }),
            );
        }
        if self.config.identify {
            services.insert(
                0,
                Box::new(identify::IdentifyService {
                    protocol_version: self.config.protocol_version.clone(),
                    agent_version: self.config.agent_version.clone(),
                    timeout: self.config.negotiation_timeout,
                }),
            );
        }
        for service in services {
            host.start_service(service)?;
        }
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
            config: Config::default(),
            transports: Vec::new(),
            services: Vec::new(),
            #[cfg(feature = "dns")]
            dns: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            tcp: false,
            listen_ips: Vec::new(),
            #[cfg(feature = "quic")]
            quic: None,
            #[cfg(feature = "websocket")]
            websocket: false,
            #[cfg(feature = "secio")]
            secio: false,
            #[cfg(feature = "mplex")]
            mplex: false,
        }
    }

    fn start_service(&self, service: Box<dyn Service>) -> Result<(), ListenError> {
        let name = service.name();
        let mut inbound = Vec::new();
        for protocol in service.protocols() {
            match self.accept(&protocol) {
                Ok(incoming) => inbound.push(incoming),
                Err(AcceptError::Closed) => return Err(ListenError::Closed),
                Err(e) => tracing::warn!(service = name, error = %e, "service protocol refused"),
            }
        }
        let ctx = ServiceContext::new(
            Arc::new(crate::context::HostRef::new(self)),
            inbound,
            self.events(),
        );
        let span = tracing::debug_span!("service", name);
        let task = tokio::spawn(service.run(ctx).instrument(span));
        self.inner.tasks.lock().expect("lock").push(task);
        Ok(())
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// Our identity key pair.
    pub fn keypair(&self) -> &Keypair {
        &self.inner.key
    }

    /// The addresses we listen on (concrete ones: port 0 resolved, one per interface for an
    /// unspecified IP).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.listen_addrs.read().expect("lock").clone()
    }

    /// The addresses we listen on, each with `/p2p/<our id>`: what another host dials.
    pub fn p2p_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs()
            .into_iter()
            .map(|a| a.with(Protocol::P2p(self.inner.peer_id)))
            .collect()
    }

    /// The peerstore.
    pub fn peerstore(&self) -> &Peerstore {
        &self.inner.peerstore
    }

    pub(crate) fn peerstore_arc(&self) -> Arc<Peerstore> {
        self.inner.peerstore.clone()
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Protects the connections to `peer` from the connection manager (trimming and the
    /// idle timeout) under `tag`; a peer stays protected while it has any tag, so that
    /// several services can protect the same peer for their own reasons.
    pub fn protect(&self, peer: PeerId, tag: &str) {
        self.inner.connmgr.protect(peer, tag);
    }

    /// Removes the protection `tag` of `peer`; whether the peer is still protected (by its
    /// other tags).
    pub fn unprotect(&self, peer: PeerId, tag: &str) -> bool {
        self.inner.connmgr.unprotect(peer, tag)
    }

    /// Whether `peer` has any protection tag.
    pub fn is_protected(&self, peer: &PeerId) -> bool {
        self.inner.connmgr.is_protected(peer)
    }

    /// What the whole host holds in the resource manager now: open streams and reserved
    /// bytes (see [`crate::resource`] for what is charged).
    pub fn resource_usage(&self) -> ResourceUsage {
        self.inner.resources.host_usage()
    }

    /// What `peer`'s scope holds in the resource manager now.
    pub fn peer_resource_usage(&self, peer: &PeerId) -> ResourceUsage {
        self.inner.resources.peer_usage(peer)
    }

    /// What `protocol`'s scope holds in the resource manager now.
    pub fn protocol_resource_usage(&self, protocol: &str) -> ResourceUsage {
        self.inner.resources.protocol_usage(protocol)
    }

    /// A new subscription to the host's events, from now on (a `futures::Stream`). A
    /// subscriber that falls more than `event_buffer` events behind is told how many it
    /// missed ([`Event::Missed`]); the host never waits for it.
    pub fn events(&self) -> Events {
        Events::from_broadcast(self.inner.events.subscribe())
    }

    /// Starts listening on `addr` with the first transport that takes it; returns the first
    /// address it is reachable at (all of them are in [`Host::listen_addrs`] by then).
    pub async fn listen_on(&self, addr: Multiaddr) -> Result<Multiaddr, ListenError> {
        if self.inner.is_closed() {
            return Err(ListenError::Closed);
        }
        let mut listener = None;
        for transport in &self.inner.transports {
            match transport.listen(addr.clone()) {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(libp2p_core::TransportError::MultiaddrNotSupported(_)) => continue,
                Err(e) => {
                    return Err(ListenError::Transport {
                        addr,
                        source: Arc::new(e),
                    })
                }
            }
        }
        let mut listener =
            listener.ok_or_else(|| ListenError::UnsupportedAddress { addr: addr.clone() })?;
        let first = loop {
            match listener.next().await {
                Some(ListenerEvent::NewAddress(a)) => break a,
                Some(ListenerEvent::Error(e)) => {
                    return Err(ListenError::Transport {
                        addr,
                        source: Arc::new(e),
                    })
                }
                Some(_) => continue,
                None => return Err(ListenError::Ended { addr }),
            }
        };
        self.add_listen_addr(first.clone());
        // The other addresses of this listener (one per interface) are reported at once:
        // take them now, so that every address is known when we return. Anything else that is
        // already there is handled by the listener's task.
        let mut early = Vec::new();
        while let Some(Some(event)) = listener.next().now_or_never() {
            match event {
                ListenerEvent::NewAddress(a) => self.add_listen_addr(a),
                other => {
                    early.push(other);
                    break;
                }
            }
        }
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(run_listener(weak, early, listener));
        self.inner.tasks.lock().expect("lock").push(task);
        Ok(first)
    }

    fn add_listen_addr(&self, addr: Multiaddr) {
        add_listen_addr(&self.inner, addr);
    }

    /// Accepts inbound streams of `protocol`: a `futures::Stream` of [`Stream`]s, fed through
    /// a bounded queue (`accept_queue` in the config; a stream that finds it full is reset and
    /// reported as [`Event::InboundStreamRefused`]). Replaces an earlier registration of the
    /// same name, whose stream then ends. Dropping it stops accepting the protocol; connected
    /// peers learn of both through identify push.
    pub fn accept(&self, protocol: &str) -> Result<Incoming, AcceptError> {
        self.register_queue(protocol.to_string(), None)
    }

    /// Like [`Host::accept`], but takes every protocol `matches` accepts (every version of a
    /// protocol, say). `name` is what identify lists.
    pub fn accept_matching(
        &self,
        name: &str,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Result<Incoming, AcceptError> {
        self.register_queue(name.to_string(), Some(Arc::new(matches)))
    }

    /// Puts `sink` in the table under `name` (replacing a registration of that name); its id.
    fn register(
        &self,
        name: &str,
        predicate: Option<Predicate>,
        sink: Sink,
    ) -> Result<u64, AcceptError> {
        if !libp2p_core::service::is_valid_protocol(name) {
            return Err(AcceptError::InvalidProtocol(name.to_string()));
        }
        if self.inner.is_closed() {
            return Err(AcceptError::Closed);
        }
        let id = self.inner.next_id();
        {
            let mut table = self.inner.table.write().expect("lock");
            let mut list: Vec<_> = table.0.iter().filter(|r| r.name != name).cloned().collect();
            list.push(Registration {
                id,
                name: name.to_string(),
                predicate,
                sink,
            });
            *table = Table(Arc::new(list));
        }
        self.protocols_changed();
        Ok(id)
    }

    fn register_queue(
        &self,
        name: String,
        predicate: Option<Predicate>,
    ) -> Result<Incoming, AcceptError> {
        let (queue, receiver) = mpsc::channel(self.inner.config.accept_queue.max(1));
        let id = self.register(&name, predicate, Sink::Queue(queue))?;
        let weak = Arc::downgrade(&self.inner);
        let on_drop = Box::new(move || {
            if let Some(inner) = weak.upgrade() {
                if unregister(&inner, |r| r.id == id) {
                    Host { inner }.protocols_changed();
                }
            }
        });
        Ok(Incoming::new(name, receiver, on_drop))
    }

    fn protocols_changed(&self) {
        self.inner.emit(Event::ProtocolsChanged {
            protocols: self.protocols(),
        });
    }

    /// Handles inbound streams of `protocol` with `handler`, one task per stream: the push
    /// form of [`Host::accept`] (the same table, limits and events; no queue, since every
    /// stream gets its task at once). A handler that fails, panics or stalls harms only its
    /// own stream. Replaces an earlier registration of the same name.
    pub fn set_stream_handler<F, Fut>(&self, protocol: &str, handler: F) -> Result<(), AcceptError>
    where
        F: Fn(Stream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(protocol, None, handler_sink(handler))
            .map(drop)
    }

    /// Like [`Host::set_stream_handler`], for every protocol `matches` accepts; `name` is
    /// what identify lists.
    pub fn set_stream_handler_matching<P, F, Fut>(
        &self,
        name: &str,
        matches: P,
        handler: F,
    ) -> Result<(), AcceptError>
    where
        P: Fn(&str) -> bool + Send + Sync + 'static,
        F: Fn(Stream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.register(name, Some(Arc::new(matches)), handler_sink(handler))
            .map(drop)
    }

    /// Stops accepting `protocol` (its handler or `accept` stream ends).
    pub fn remove_stream_handler(&self, protocol: &str) {
        if unregister(&self.inner, |r| r.name == protocol) {
            self.protocols_changed();
        }
    }

    /// The protocols we accept.
    pub fn protocols(&self) -> Vec<String> {
        self.inner.table.read().expect("lock").list()
    }

    /// Dials `addr` with the first transport that can: with `/p2p/<id>`, the remote must
    /// prove to be that peer (and a live connection to it is reused); without, the peer is
    /// whoever answers. Returns the peer reached.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, DialError> {
        let (_, expected) = split_peer_id(&addr);
        if let Some(peer) = expected {
            if peer == self.inner.peer_id {
                return Err(DialError::DialSelf);
            }
            if self.live_connection(&peer).is_some() {
                return Ok(peer);
            }
        }
        let result = dial_addr(&self.inner, addr, expected).await;
        match result {
            Ok(conn) => Ok(conn.peer),
            Err(e) => {
                self.inner.emit(Event::DialFailed {
                    peer: expected,
                    error: Arc::new(e.clone()),
                });
                Err(e)
            }
        }
    }

    /// Records `addrs` for `peer` and connects to it (reusing a live connection).
    pub async fn connect(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), DialError> {
        self.inner
            .peerstore
            .add_addrs(&peer, addrs, self.inner.config.address_ttl);
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

    /// The live connections to `peer`, with what each was built from.
    pub fn connections(&self, peer: &PeerId) -> Vec<(ConnectionId, ConnectionInfo)> {
        let conns = self.inner.conns.lock().expect("lock");
        conns
            .get(peer)
            .map(|list| {
                list.iter()
                    .filter(|c| !c.muxer.is_closed())
                    .map(|c| (c.id, c.info.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Opens a stream to `peer` for the first of `protocols` it supports, dialing it (at the
    /// peerstore's addresses) if there is no live connection. Concurrent calls for the same
    /// peer share one dial.
    pub async fn new_stream(
        &self,
        peer: PeerId,
        protocols: &[&str],
    ) -> Result<Stream, NewStreamError> {
        let conn = self.connection_to(peer).await?;
        let span = tracing::debug_span!("new_stream", %peer, ?protocols);
        open_on(&conn, protocols, self.inner.config.negotiation_timeout)
            .instrument(span)
            .await
    }

    /// Opens a stream to `peer` for the first of `protocols` it supports, on a live
    /// connection only: it never dials (for protocols that only make sense while connected;
    /// identify and its push use it, so that one racing a disconnection does not reconnect).
    pub async fn new_stream_connected(
        &self,
        peer: PeerId,
        protocols: &[&str],
    ) -> Result<Stream, NewStreamError> {
        let conn = self
            .live_connection(&peer)
            .ok_or(NewStreamError::NotConnected { peer })?;
        let span = tracing::debug_span!("new_stream", %peer, ?protocols);
        open_on(&conn, protocols, self.inner.config.negotiation_timeout)
            .instrument(span)
            .await
    }

    /// Pings `peer` once and returns the round-trip time. Repeated pings reuse one stream;
    /// each waits at most the negotiation timeout.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, PingError> {
        let slot = self
            .inner
            .pings
            .lock()
            .expect("lock")
            .entry(peer)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        let limit = self.inner.config.negotiation_timeout;
        if slot.is_none() {
            let stream = self.new_stream(peer, &[ping::PROTOCOL]).await?;
            *slot = Some(ping::Pinger::new(stream.into_futures()));
        }
        let pinger = slot.as_mut().expect("just set");
        // A peer that stops answering must not hold the ping slot forever.
        let error = match tokio::time::timeout(limit, pinger.ping()).await {
            Ok(Ok(rtt)) => {
                #[cfg(feature = "metrics")]
                if let Some(m) = &self.inner.metrics {
                    m.ping(rtt);
                }
                return Ok(rtt);
            }
            Ok(Err(e)) => PingError::Protocol {
                peer,
                source: Arc::new(e),
            },
            Err(_) => PingError::Timeout { peer, after: limit },
        };
        *slot = None;
        Err(error)
    }

    /// Closes every connection to `peer` (at once gone from the pool; each reports its close
    /// as ours). Returns once each has closed and its [`Event::ConnectionClosed`] is out (or,
    /// for a connection whose close is stuck, after [`Config::muxer_write_timeout`]), so
    /// that a dial made after it is seen by every service as a new connection, not as a
    /// second one beside the old.
    pub async fn disconnect(&self, peer: PeerId) {
        let conns = self
            .inner
            .conns
            .lock()
            .expect("lock")
            .remove(&peer)
            .unwrap_or_default();
        self.inner
            .established
            .fetch_sub(conns.len(), Ordering::SeqCst);
        let wait = self.inner.config.muxer_write_timeout;
        for conn in conns {
            conn.closing.store(true, Ordering::SeqCst);
            let _ = conn.muxer.close().await;
            // Its task reports the close once the muxer has ended; dropping the handle on a
            // timeout lets it finish on its own.
            let task = conn.task.lock().expect("lock").take();
            if let Some(task) = task {
                let _ = tokio::time::timeout(wait, task).await;
            }
        }
    }

    /// Closes the host gracefully: listeners and services stop, connections close, every
    /// `accept` stream ends. Later calls fail with a `Closed` error.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for task in std::mem::take(&mut *self.inner.tasks.lock().expect("lock")) {
            task.abort();
        }
        *self.inner.table.write().expect("lock") = Table::default();
        let conns: Vec<Arc<Conn>> = self
            .inner
            .conns
            .lock()
            .expect("lock")
            .values()
            .flatten()
            .cloned()
            .collect();
        for conn in conns {
            conn.closing.store(true, Ordering::SeqCst);
            let _ = conn.muxer.close().await;
        }
        self.inner.listen_addrs.write().expect("lock").clear();
    }

    fn live_connection(&self, peer: &PeerId) -> Option<Arc<Conn>> {
        live_connection(&self.inner, peer)
    }

    /// A live connection to `peer`, dialing one if needed (one dial per peer at a time).
    async fn connection_to(&self, peer: PeerId) -> Result<Arc<Conn>, DialError> {
        if self.inner.is_closed() {
            return Err(DialError::Closed);
        }
        if peer == self.inner.peer_id {
            return Err(DialError::DialSelf);
        }
        if let Some(conn) = self.live_connection(&peer) {
            return Ok(conn);
        }
        let (id, dial) = {
            let mut dials = self.inner.dials.lock().expect("lock");
            dials
                .entry(peer)
                .or_insert_with(|| {
                    let id = self.inner.next_id();
                    let fut = dial_peer(self.inner.clone(), peer).boxed().shared();
                    (id, fut)
                })
                .clone()
        };
        let result = dial.await;
        let mut dials = self.inner.dials.lock().expect("lock");
        if dials.get(&peer).is_some_and(|(current, _)| *current == id) {
            dials.remove(&peer);
            drop(dials);
            if let Err(e) = &result {
                self.inner.emit(Event::DialFailed {
                    peer: Some(peer),
                    error: Arc::new(e.clone()),
                });
            }
        }
        result
    }

    pub(crate) fn report_identify(&self, peer: PeerId, info: IdentifyInfo) {
        let store = &self.inner.peerstore;
        store.set_public_key(&peer, info.public_key.clone());
        store.add_addrs(
            &peer,
            info.listen_addrs.clone(),
            self.inner.config.address_ttl,
        );
        store.set_protocols(&peer, info.protocols.clone());
        store.set_agent_version(&peer, info.agent_version.clone());
        tracing::debug!(%peer, agent = %info.agent_version, "identified");
        self.inner.emit(Event::Identified {
            peer,
            info: Arc::new(info),
        });
    }
}

/// A handler as a table entry.
fn handler_sink<F, Fut>(handler: F) -> Sink
where
    F: Fn(Stream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    Sink::Handler(Arc::new(move |stream| handler(stream).boxed()))
}

/// Removes the registrations `matches` picks; whether any was there.
fn unregister(inner: &Inner, matches: impl Fn(&Registration) -> bool) -> bool {
    let mut table = inner.table.write().expect("lock");
    let before = table.0.len();
    let kept: Vec<_> = table.0.iter().filter(|r| !matches(r)).cloned().collect();
    let changed = kept.len() != before;
    *table = Table(Arc::new(kept));
    changed
}

fn add_listen_addr(inner: &Inner, addr: Multiaddr) {
    let added = {
        let mut addrs = inner.listen_addrs.write().expect("lock");
        if addrs.contains(&addr) {
            false
        } else {
            addrs.push(addr.clone());
            true
        }
    };
    if added {
        tracing::info!(%addr, "listening");
        inner.emit(Event::ListenAddrAdded { addr });
    }
}

fn live_connection(inner: &Inner, peer: &PeerId) -> Option<Arc<Conn>> {
    let conns = inner.conns.lock().expect("lock");
    conns
        .get(peer)?
        .iter()
        .find(|c| !c.muxer.is_closed())
        .cloned()
}

/// Opens a stream on `conn` and agrees on one of `protocols`.
async fn open_on(
    conn: &Conn,
    protocols: &[&str],
    timeout: Duration,
) -> Result<Stream, NewStreamError> {
    let peer = conn.peer;
    let mut reservation = conn
        .resources
        .reserve_stream(peer, conn.id, Direction::Outbound)
        .map_err(|source| {
            tracing::debug!(%peer, %source, "outbound stream refused");
            #[cfg(feature = "metrics")]
            if let Some(m) = &conn.metrics {
                m.refuse_resource("stream", &source);
            }
            NewStreamError::Resource { peer, source }
        })?;
    let activity = conn.activity.stream();
    let raw = conn.muxer.open().await.map_err(|e| NewStreamError::Muxer {
        peer,
        source: Arc::new(e),
    })?;
    #[cfg(feature = "metrics")]
    let (raw, meter) = match &conn.metrics {
        Some(m) => {
            let (raw, meter) = m.meter(raw);
            (raw, Some((m, meter)))
        }
        None => (raw, None),
    };
    let config = multistream::Config::default();
    let select = multistream::dialer_select(
        raw,
        protocols.iter().copied(),
        multistream::Version::V1,
        &config,
    );
    match tokio::time::timeout(timeout, select).await {
        Ok(Ok((protocol, io))) => {
            if let Err(source) = reservation.set_protocol(protocol) {
                // Dropping `io` resets the stream.
                tracing::debug!(%peer, %protocol, %source, "outbound stream refused");
                #[cfg(feature = "metrics")]
                if let Some(m) = &conn.metrics {
                    m.refuse_resource("stream", &source);
                }
                return Err(NewStreamError::Resource { peer, source });
            }
            tracing::debug!(%peer, %protocol, "protocol agreed");
            #[cfg(feature = "metrics")]
            if let Some((m, meter)) = meter {
                meter.agreed(m, protocol, Direction::Outbound);
            }
            Ok(Stream::new(
                io,
                protocol.to_string(),
                peer,
                conn.id,
                conn.info.remote_addr.clone(),
            )
            .with_guard(StreamGuard {
                _inbound: None,
                _activity: activity,
                resources: reservation,
            }))
        }
        Ok(Err(NegotiationError::ProtocolNotSupported { .. })) => {
            Err(NewStreamError::ProtocolsNotSupported {
                peer,
                offered: protocols.iter().map(|p| p.to_string()).collect(),
            })
        }
        Ok(Err(e)) => Err(NewStreamError::Negotiation {
            peer,
            source: Arc::new(e),
        }),
        Err(_) => Err(NewStreamError::Timeout {
            peer,
            after: timeout,
        }),
    }
}

/// Dials one address; `expected` is the peer it names, if any. A name in it is resolved and
/// what it stands for raced (see [`crate::dial`]); an explicit dial ignores back-off.
async fn dial_addr(
    inner: &Arc<Inner>,
    addr: Multiaddr,
    expected: Option<PeerId>,
) -> Result<Arc<Conn>, DialError> {
    admit_dial(inner)?;
    let connected = connect_any(inner.clone(), addr, expected).await?;
    finish_dial(inner, connected)
}

/// Dials `peer` at its known addresses, ranked and raced (see [`crate::dial`]); addresses
/// still backed off after failing are left out.
async fn dial_peer(inner: Arc<Inner>, peer: PeerId) -> Result<Arc<Conn>, DialError> {
    admit_dial(&inner)?;
    let addrs = inner.peerstore.addrs(&peer);
    if addrs.is_empty() {
        return Err(DialError::NoAddresses { peer });
    }
    let mut candidates = Vec::with_capacity(addrs.len());
    let mut backed_off = Vec::new();
    {
        let now = std::time::Instant::now();
        let mut backoff = inner.backoff.lock().expect("lock");
        for addr in addrs {
            let full = addr.with(Protocol::P2p(peer));
            match backoff.check(&full, now) {
                Some(error) => backed_off.push(DialAttempt { addr: full, error }),
                None => candidates.push(full),
            }
        }
    }
    if candidates.is_empty() {
        tracing::debug!(%peer, addrs = backed_off.len(), "every address backed off");
        return Err(DialError::BackedOff {
            peer,
            attempts: backed_off,
        });
    }
    let connected = race_addrs(&inner, candidates, Some(peer), || DialError::NoAddresses {
        peer,
    })
    .await?;
    finish_dial(&inner, connected)
}

/// Checks that a dial may start at all.
fn admit_dial(inner: &Inner) -> Result<(), DialError> {
    if inner.is_closed() {
        return Err(DialError::Closed);
    }
    if connection_count(inner) >= inner.config.max_connections {
        return Err(DialError::ConnectionLimit {
            limit: inner.config.max_connections,
        });
    }
    Ok(())
}

/// Takes the connection a dial made into the pool (or refuses one that reached ourselves).
fn finish_dial(inner: &Arc<Inner>, connected: Connected) -> Result<Arc<Conn>, DialError> {
    if connected.peer == inner.peer_id {
        let muxer = connected.muxer.clone();
        tokio::spawn(async move { muxer.close().await });
        return Err(DialError::DialSelf);
    }
    add_connection(inner, connected)
}

/// Ranks `addrs` and races them (see [`crate::dial`]); each address is checked against the
/// peer it names, else against `expected`. `none` is the error when no transport could take
/// any of them.
async fn race_addrs(
    inner: &Arc<Inner>,
    addrs: Vec<Multiaddr>,
    expected: Option<PeerId>,
    none: impl FnOnce() -> DialError,
) -> Result<Connected, DialError> {
    use crate::dial::{race, rank, Outcome, RaceError};
    let config = &inner.config.dial;
    let schedule = rank(addrs, config);
    let result = race(schedule, config.max_parallel, |addr| {
        let peer = split_peer_id(&addr).1.or(expected);
        connect_any(inner.clone(), addr, peer).map(|r| match r {
            Ok(connected) => Outcome::Won(connected),
            Err(e @ (DialError::Failed { .. } | DialError::UnsupportedAddress { .. })) => {
                Outcome::Failed(e)
            }
            Err(e) => Outcome::Abort(e),
        })
    })
    .await;
    let errors = match result {
        Ok(connected) => return Ok(connected),
        Err(RaceError::Aborted(e)) => return Err(e),
        Err(RaceError::AllFailed(errors)) => errors,
    };
    let attempts: Vec<DialAttempt> = errors
        .into_iter()
        .flat_map(|e| match e {
            DialError::Failed { attempts, .. } => attempts,
            _ => Vec::new(),
        })
        .collect();
    if attempts.is_empty() {
        return Err(none());
    }
    Err(DialError::Failed {
        peer: expected,
        attempts,
    })
}

/// Connects to one address, resolving a name in it first when no transport takes it as it
/// is. Boxed: a name's addresses are raced in turn.
fn connect_any(
    inner: Arc<Inner>,
    addr: Multiaddr,
    expected: Option<PeerId>,
) -> BoxFuture<'static, Result<Connected, DialError>> {
    async move {
        #[cfg(feature = "dns")]
        if libp2p_dns::needs_resolving(&addr) && !inner.transports.iter().any(|t| t.can_dial(&addr))
        {
            return connect_resolved(&inner, addr, expected).await;
        }
        connect_direct(&inner, addr, expected).await
    }
    .boxed()
}

/// Connects to an address a transport of the host can take as it is (no name in it), within
/// the per-address deadline, and records the outcome in the back-off table.
async fn connect_direct(
    inner: &Arc<Inner>,
    addr: Multiaddr,
    expected: Option<PeerId>,
) -> Result<Connected, DialError> {
    let transport = inner
        .transports
        .iter()
        .find(|t| t.can_dial(&addr))
        .ok_or_else(|| DialError::UnsupportedAddress { addr: addr.clone() })?;
    let _pending = PendingOutgoing::take(inner)?;
    #[cfg(feature = "metrics")]
    if let Some(m) = &inner.metrics {
        m.dial(&addr);
    }
    let span = tracing::debug_span!("dial", %addr);
    // The per-address deadline bounds every stack, also one built by hand with its own.
    let limit = inner.config.dial.address_timeout;
    let dial = tokio::time::timeout(limit, transport.dial(addr.clone()).instrument(span))
        .map(move |r| r.unwrap_or(Err(libp2p_core::TransportError::Timeout(limit))));
    match dial.await {
        Ok(connected) => {
            inner.backoff.lock().expect("lock").succeeded(&addr);
            Ok(connected)
        }
        Err(e) => {
            tracing::debug!(%addr, error = %e, "dial failed");
            #[cfg(feature = "metrics")]
            if let Some(m) = &inner.metrics {
                m.dial_failed(&addr, &e);
            }
            let error = Arc::new(e);
            inner.backoff.lock().expect("lock").failed(
                &addr,
                error.clone(),
                std::time::Instant::now(),
            );
            Err(DialError::Failed {
                peer: expected,
                attempts: vec![DialAttempt { addr, error }],
            })
        }
    }
}

/// Resolves the names in `addr` and races what they stand for. Each resolved address is
/// checked against the peer it names (`/dnsaddr` records end in `/p2p/<id>`), or else
/// against the one `addr` named.
#[cfg(feature = "dns")]
async fn connect_resolved(
    inner: &Arc<Inner>,
    addr: Multiaddr,
    expected: Option<PeerId>,
) -> Result<Connected, DialError> {
    let resolved = match inner.dns.resolve(&addr).await {
        Ok(list) => list,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "resolving failed");
            return Err(DialError::Failed {
                peer: expected,
                attempts: vec![DialAttempt {
                    addr: addr.clone(),
                    error: Arc::new(libp2p_core::TransportError::Resolve {
                        addr,
                        source: libp2p_core::FaultOf::new(e),
                    }),
                }],
            });
        }
    };
    let candidates: Vec<Multiaddr> = resolved
        .into_iter()
        // The resolver never returns a name; dialing one here would need another round.
        .filter(|c| !libp2p_dns::needs_resolving(c))
        .map(|c| match (split_peer_id(&c).1, expected) {
            (None, Some(peer)) => c.with(Protocol::P2p(peer)),
            _ => c,
        })
        .collect();
    race_addrs(inner, candidates, expected, || {
        DialError::UnsupportedAddress { addr }
    })
    .await
}

fn connection_count(inner: &Inner) -> usize {
    inner.established.load(Ordering::SeqCst)
}

fn add_connection(inner: &Arc<Inner>, connected: Connected) -> Result<Arc<Conn>, DialError> {
    let Connected { peer, muxer, info } = connected;
    let now = Instant::now();
    let conn = Arc::new(Conn {
        id: ConnectionId::new(inner.next_id()),
        peer,
        info,
        muxer,
        closing: AtomicBool::new(false),
        inbound: Arc::new(AtomicUsize::new(0)),
        task: Mutex::new(None),
        #[cfg(feature = "metrics")]
        metrics: inner.metrics.clone(),
        opened_at: now,
        activity: Activity::new(now),
        resources: inner.resources.clone(),
        reservation: Mutex::new(None),
        close_cause: Mutex::new(None),
    });
    match inner.resources.reserve_connection(peer, conn.id) {
        Ok(reservation) => *conn.reservation.lock().expect("lock") = Some(reservation),
        Err(source) => {
            tracing::debug!(%peer, addr = %conn.info.remote_addr, %source, "connection refused");
            if conn.info.direction == Direction::Inbound {
                inner.emit(Event::InboundConnectionRefused {
                    remote_addr: conn.info.remote_addr.clone(),
                    reason: ConnectionRefusedReason::Resource(source.clone()),
                });
            } else {
                #[cfg(feature = "metrics")]
                if let Some(m) = &inner.metrics {
                    m.refuse_resource("connection", &source);
                }
            }
            let muxer = conn.muxer.clone();
            tokio::spawn(async move {
                let _ = muxer.close().await;
            });
            return Err(DialError::Resource(source));
        }
    }
    let (refused, connections) = {
        let mut conns = inner.conns.lock().expect("lock");
        let count = connection_count(inner);
        let to_peer = conns.get(&peer).map_or(0, Vec::len);
        let refused = if inner.is_closed() {
            Some(DialError::Closed)
        } else if count >= inner.config.max_connections
            || to_peer >= inner.config.max_connections_per_peer
        {
            Some(DialError::ConnectionLimit {
                limit: if count >= inner.config.max_connections {
                    inner.config.max_connections
                } else {
                    inner.config.max_connections_per_peer
                },
            })
        } else {
            conns.entry(peer).or_default().push(conn.clone());
            inner.established.fetch_add(1, Ordering::SeqCst);
            None
        };
        (refused, to_peer + 1)
    };
    if let Some(error) = refused {
        #[cfg(feature = "metrics")]
        if let Some(m) = &inner.metrics {
            m.refuse("connection", "connection_limit");
        }
        let muxer = conn.muxer.clone();
        tokio::spawn(async move {
            let _ = muxer.close().await;
        });
        return Err(error);
    }
    tracing::info!(%peer, addr = %conn.info.remote_addr, direction = ?conn.info.direction,
        security = %conn.info.security, muxer = %conn.info.muxer, "connected");
    inner.emit(Event::ConnectionEstablished {
        id: conn.id,
        peer,
        info: conn.info.clone(),
        connections,
    });
    let task = tokio::spawn(run_connection(Arc::downgrade(inner), conn.clone()));
    *conn.task.lock().expect("lock") = Some(task);
    if inner.connmgr.due(connection_count(inner), now) {
        trim(inner, now);
    }
    Ok(conn)
}

/// Holds one dial's place in the count of dials in progress.
struct PendingOutgoing(Arc<Inner>);

impl PendingOutgoing {
    fn take(inner: &Arc<Inner>) -> Result<Self, DialError> {
        let limit = inner.connmgr.config().max_pending_outgoing;
        if inner.pending_outgoing.fetch_add(1, Ordering::SeqCst) >= limit {
            inner.pending_outgoing.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(limit, "dials in progress at their limit; dial refused");
            #[cfg(feature = "metrics")]
            if let Some(m) = &inner.metrics {
                m.refuse("dial", "pending_outgoing_limit");
            }
            return Err(DialError::PendingLimit { limit });
        }
        Ok(PendingOutgoing(inner.clone()))
    }
}

impl Drop for PendingOutgoing {
    fn drop(&mut self) {
        self.0.pending_outgoing.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the connection manager sees of the pool now.
fn candidates(inner: &Inner) -> Vec<Candidate> {
    let conns = inner.conns.lock().expect("lock");
    conns
        .values()
        .flatten()
        .filter(|c| !c.muxer.is_closed())
        .map(|c| Candidate {
            id: c.id,
            peer: c.peer,
            opened_at: c.opened_at,
            streams: c.activity.streams(),
            idle_since: c.activity.idle_since(),
        })
        .collect()
}

/// Trims the pool to the low watermark if it is over the high one (and the silence period
/// allows).
fn trim(inner: &Arc<Inner>, now: Instant) {
    let ids = inner.connmgr.trim(&candidates(inner), now);
    if !ids.is_empty() {
        tracing::debug!(count = ids.len(), "trimming connections");
        close_connections(inner, &ids, CloseCause::Trimmed);
    }
}

/// Takes the connections `ids` out of the pool and closes them; each reports `cause`.
fn close_connections(inner: &Arc<Inner>, ids: &[ConnectionId], cause: CloseCause) {
    let mut closing = Vec::new();
    {
        let mut conns = inner.conns.lock().expect("lock");
        conns.retain(|_, list| {
            list.retain(|c| {
                if ids.contains(&c.id) {
                    closing.push(c.clone());
                    false
                } else {
                    true
                }
            });
            !list.is_empty()
        });
        inner.established.fetch_sub(closing.len(), Ordering::SeqCst);
    }
    for conn in closing {
        *conn.close_cause.lock().expect("lock") = Some(cause.clone());
        conn.closing.store(true, Ordering::SeqCst);
        let muxer = conn.muxer.clone();
        tokio::spawn(async move {
            let _ = muxer.close().await;
        });
    }
}

/// The connection manager's task: every tick, closes connections idle for the idle timeout
/// and trims the pool if it is over the high watermark.
async fn run_manager(weak: Weak<Inner>) {
    let tick = match weak.upgrade() {
        Some(inner) => inner.connmgr.config().tick(),
        None => return,
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.is_closed() {
            return;
        }
        // The pool is listed only when something may come of it: with an idle timeout, or
        // when a trim is due. (A process of many hosts ticks thousands of times a second.)
        let now = Instant::now();
        if inner.connmgr.config().idle_timeout.is_some() {
            let idle = inner.connmgr.idle(&candidates(&inner), now);
            if !idle.is_empty() {
                tracing::debug!(count = idle.len(), "closing idle connections");
                close_connections(&inner, &idle, CloseCause::IdleTimeout);
            }
        }
        if inner.connmgr.due(connection_count(&inner), now) {
            trim(&inner, now);
        }
    }
}

/// Whether an I/O error only says that the socket ended (the remote closed or reset it).
fn is_socket_end(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected
    )
}

/// Holds one inbound stream's place in its connection's count.
struct InboundGuard(Arc<AtomicUsize>);

/// What a stream holds for as long as it lives: its place in the connection's inbound
/// count (inbound streams), in its activity, and its resource reservation.
struct StreamGuard {
    _inbound: Option<InboundGuard>,
    _activity: ActivityGuard,
    resources: StreamReservation,
}

impl Drop for InboundGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts the inbound streams of one connection until it closes.
async fn run_connection(weak: Weak<Inner>, conn: Arc<Conn>) {
    let end = loop {
        let raw = match conn.muxer.accept().await {
            Ok(raw) => raw,
            Err(e) => break e,
        };
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let limit = inner.config.max_inbound_streams_per_connection;
        if conn.inbound.load(Ordering::SeqCst) >= limit {
            tracing::debug!(peer = %conn.peer, limit, "inbound stream limit reached; reset");
            drop(raw);
            inner.emit(Event::InboundStreamRefused {
                peer: conn.peer,
                protocol: None,
                reason: RefusedReason::StreamLimit { limit },
            });
            continue;
        }
        let resources = match inner
            .resources
            .reserve_stream(conn.peer, conn.id, Direction::Inbound)
        {
            Ok(r) => r,
            Err(source) => {
                tracing::debug!(peer = %conn.peer, %source, "inbound stream refused; reset");
                drop(raw);
                inner.emit(Event::InboundStreamRefused {
                    peer: conn.peer,
                    protocol: None,
                    reason: RefusedReason::Resource(source),
                });
                continue;
            }
        };
        conn.inbound.fetch_add(1, Ordering::SeqCst);
        let guard = StreamGuard {
            _inbound: Some(InboundGuard(conn.inbound.clone())),
            _activity: conn.activity.stream(),
            resources,
        };
        #[cfg(feature = "metrics")]
        let (raw, meter) = match &conn.metrics {
            Some(m) => {
                let (raw, meter) = m.meter(raw);
                (raw, Some((m.clone(), meter)))
            }
            None => (raw, None),
        };
        #[cfg(not(feature = "metrics"))]
        let meter = ();
        let table = inner.table.read().expect("lock").clone();
        let timeout = inner.config.negotiation_timeout;
        let weak = weak.clone();
        let (peer, id, addr) = (conn.peer, conn.id, conn.info.remote_addr.clone());
        drop(inner);
        tokio::spawn(async move {
            handle_inbound(raw, table, weak, peer, id, addr, timeout, guard, meter).await;
        });
    };
    drop(conn.reservation.lock().expect("lock").take());
    let Some(inner) = weak.upgrade() else { return };
    let remaining = {
        let mut conns = inner.conns.lock().expect("lock");
        let mut remaining = 0;
        if let Some(list) = conns.get_mut(&conn.peer) {
            let before = list.len();
            list.retain(|c| c.id != conn.id);
            if list.len() < before {
                inner.established.fetch_sub(1, Ordering::SeqCst);
            }
            remaining = list.len();
            if list.is_empty() {
                conns.remove(&conn.peer);
            }
        }
        remaining
    };
    if remaining == 0 {
        inner.pings.lock().expect("lock").remove(&conn.peer);
    }
    let by_manager = conn.close_cause.lock().expect("lock").take();
    let cause = if let Some(cause) = by_manager {
        cause
    } else if conn.closing.load(Ordering::SeqCst) || inner.is_closed() {
        CloseCause::Local
    } else {
        match end {
            MuxerError::Closed => CloseCause::Remote,
            // The socket ended under a write or a read: the remote went away, it broke nothing.
            MuxerError::Io(e) if is_socket_end(&e) => CloseCause::Remote,
            other => CloseCause::Error(Arc::new(other)),
        }
    };
    tracing::info!(peer = %conn.peer, addr = %conn.info.remote_addr, ?cause, "disconnected");
    inner.emit(Event::ConnectionClosed {
        id: conn.id,
        peer: conn.peer,
        info: conn.info.clone(),
        cause,
        remaining,
    });
}

/// What counts an inbound stream's bytes once its protocol is agreed (nothing without the
/// `metrics` feature).
#[cfg(feature = "metrics")]
type InboundMeter = Option<(Arc<crate::metrics::Recorder>, crate::metrics::StreamMeter)>;
#[cfg(not(feature = "metrics"))]
type InboundMeter = ();

#[allow(clippy::too_many_arguments)]
async fn handle_inbound(
    raw: libp2p_core::BoxedStream,
    table: Table,
    weak: Weak<Inner>,
    peer: PeerId,
    id: ConnectionId,
    addr: Multiaddr,
    timeout: Duration,
    mut guard: StreamGuard,
    meter: InboundMeter,
) {
    let config = multistream::Config::default();
    let select = multistream::listener_select(raw, &table, &config);
    let refuse = |reason: RefusedReason, protocol: Option<String>| {
        if let Some(inner) = weak.upgrade() {
            inner.emit(Event::InboundStreamRefused {
                peer,
                protocol,
                reason,
            });
        }
    };
    let (protocol, io) = match tokio::time::timeout(timeout, select).await {
        Ok(Ok(agreed)) => agreed,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "inbound negotiation failed");
            let reason = match e {
                NegotiationError::TooManyProposals(_) => RefusedReason::NotSupported,
                NegotiationError::Io(ref io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                    RefusedReason::NotSupported
                }
                other => RefusedReason::Negotiation(Arc::new(other)),
            };
            refuse(reason, None);
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "inbound negotiation timed out");
            refuse(RefusedReason::Timeout, None);
            return;
        }
    };
    let Some(registration) = table.find(&protocol) else {
        return;
    };
    if let Err(source) = guard.resources.set_protocol(&protocol) {
        // Dropping `io` resets the stream.
        tracing::debug!(%peer, %protocol, %source, "inbound stream refused; reset");
        refuse(RefusedReason::Resource(source), Some(protocol));
        return;
    }
    #[cfg(feature = "metrics")]
    if let Some((m, meter)) = meter {
        meter.agreed(&m, &protocol, Direction::Inbound);
    }
    #[cfg(not(feature = "metrics"))]
    let () = meter;
    tracing::debug!(%peer, %protocol, "inbound stream");
    let stream = Stream::new(io, protocol.clone(), peer, id, addr).with_guard(guard);
    let queue = match &registration.sink {
        Sink::Handler(handler) => {
            // This task is the stream's own: run the handler here.
            if let Err(e) = handler(stream).await {
                tracing::debug!(%peer, %protocol, error = %e, "handler failed");
            }
            return;
        }
        Sink::Queue(queue) => queue,
    };
    if let Err(e) = queue.try_send(stream) {
        let reason = if matches!(e, mpsc::error::TrySendError::Full(_)) {
            tracing::debug!(%peer, %protocol, "accept queue full; stream reset");
            RefusedReason::QueueFull {
                capacity: weak.upgrade().map_or(0, |inner| inner.config.accept_queue),
            }
        } else {
            RefusedReason::NotSupported
        };
        refuse(reason, Some(protocol));
    }
}

/// Runs a listener: records its addresses, upgrades inbound connections (each on its own
/// task, under the pipeline's timeout, at most `max_pending_incoming` at once) and adds them
/// to the pool.
async fn run_listener(
    weak: Weak<Inner>,
    early: Vec<ListenerEvent<crate::erased::PendingUpgrade>>,
    listener: DynListener,
) {
    let mut events = futures::stream::iter(early).chain(listener);
    while let Some(event) = events.next().await {
        let Some(inner) = weak.upgrade() else { return };
        match event {
            ListenerEvent::NewAddress(addr) => add_listen_addr(&inner, addr),
            ListenerEvent::AddressExpired(addr) => {
                inner
                    .listen_addrs
                    .write()
                    .expect("lock")
                    .retain(|a| *a != addr);
                inner.emit(Event::ListenAddrExpired { addr });
            }
            ListenerEvent::Incoming {
                pending,
                remote_addr,
                ..
            } => {
                let refuse = |reason: ConnectionRefusedReason| {
                    tracing::debug!(%remote_addr, ?reason, "inbound connection refused");
                    inner.emit(Event::InboundConnectionRefused {
                        remote_addr: remote_addr.clone(),
                        reason,
                    });
                };
                if connection_count(&inner) >= inner.config.max_connections {
                    refuse(ConnectionRefusedReason::ConnectionLimit {
                        limit: inner.config.max_connections,
                    });
                    continue;
                }
                let slot = match crate::limits::source_ip(&remote_addr) {
                    Some(ip) => match inner.sources.admit(ip, std::time::Instant::now()) {
                        Ok(slot) => Some(slot),
                        Err(reason) => {
                            refuse(reason);
                            continue;
                        }
                    },
                    None => None,
                };
                let pending_now = inner.pending_incoming.fetch_add(1, Ordering::SeqCst);
                if pending_now >= inner.config.max_pending_incoming {
                    inner.pending_incoming.fetch_sub(1, Ordering::SeqCst);
                    refuse(ConnectionRefusedReason::PendingLimit {
                        limit: inner.config.max_pending_incoming,
                    });
                    continue;
                }
                let weak = weak.clone();
                let span = tracing::debug_span!("inbound", %remote_addr);
                let limit = inner.config.handshake_timeout;
                tokio::spawn(
                    async move {
                        let result = tokio::time::timeout(limit, pending)
                            .await
                            .unwrap_or(Err(libp2p_core::TransportError::Timeout(limit)));
                        drop(slot);
                        let Some(inner) = weak.upgrade() else { return };
                        inner.pending_incoming.fetch_sub(1, Ordering::SeqCst);
                        match result {
                            Ok(connected) => {
                                let peer = connected.peer;
                                if let Err(e) = add_connection(&inner, connected) {
                                    tracing::debug!(%peer, error = %e, "inbound refused");
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
