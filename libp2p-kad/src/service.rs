//! Kademlia as a Host service: the [`Kad`] state machine driven over the host's streams.
//!
//! [`KadService::new`] gives the service (hand it to the host builder's `service`) and a
//! cloneable [`KadHandle`] with async methods for the application. The service's task owns
//! the [`Kad`] core; everything that waits (a request to a peer, a liveness ping, an inbound
//! stream) runs on a task of its own and reports back to it through a bounded channel, so
//! that a slow peer holds up only its own request.
//!
//! - **Inbound** (server mode only: in client mode the protocol is neither accepted nor
//!   announced, so the host refuses such streams): each stream may carry several requests,
//!   one after the other; every length is checked against [`Config::max_message_size`]
//!   before the body is read, every read has a timeout, and a request that does not decode
//!   resets that stream and nothing else. At most
//!   [`ServiceConfig::max_inbound_streams`] are served at once, and
//!   [`ServiceConfig::max_inbound_streams_per_peer`] for one peer; more are reset.
//! - **Outbound**: [`Action::SendRequest`] opens a stream (the peer's addresses go to the
//!   host's peerstore first, so the host can dial them), writes the request, reads one
//!   response if one is due, all by the action's deadline.
//! - **Liveness**: [`Action::CheckLiveness`] is one `/ipfs/ping/1.0.0` round trip within
//!   [`ServiceConfig::ping_timeout`].
//! - **Host events**: identify results go to [`Kad::on_identify`] (a peer listing
//!   `/ipfs/kad/1.0.0` is a server), connections to [`Kad::on_connection`], our listen
//!   addresses (as they change) to [`Kad::set_listen_addrs`].
//! - **Protection**: the connection manager of the host is asked (tag [`PROTECT_TAG`])
//!   to spare the connections to peers we have a kad request or liveness ping in flight to
//!   (until the last one ends), and to the [`PROTECTED_CLOSEST`] routing-table entries
//!   closest to our own id (updated as the table changes).
//! - **Time**: the core's [`Kad::poll_timeout`] is the task's timer; the periodic refresh
//!   is the core's [`Config::bootstrap_interval`].
//!
//! Two hosts, one bootstrapping from the other and finding a key it provides:
//!
//! ```
//! use libp2p_host::{Host, Keypair};
//! use libp2p_kad::{sha256_multihash, Config, KadService, ServiceConfig};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut nodes = Vec::new();
//! for _ in 0..2 {
//!     let (service, kad) = KadService::new(Config::default(), ServiceConfig::default());
//!     let host = Host::builder(Keypair::generate_ed25519())
//!         .listen_on("/ip4/127.0.0.1/tcp/0".parse()?)
//!         .service(service)
//!         .build()
//!         .await?;
//!     nodes.push((host, kad));
//! }
//! let (a, ka) = &nodes[0];
//! let (_b, kb) = &nodes[1];
//! kb.add_peer(a.peer_id(), a.listen_addrs()).await;
//! assert_eq!(kb.bootstrap().await?, 1);
//!
//! let key = sha256_multihash(b"hello");
//! kb.start_providing(key.clone()).await?;
//! let providers = ka.get_providers(key, Some(1)).await?;
//! assert_eq!(providers[0].id, nodes[1].0.peer_id());
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use libp2p_core::service::Event as HostEvent;
use libp2p_core::{
    Classify, Fault, HostContext, Multiaddr, NewStreamError, PeerId, Service, ServiceContext,
    Stream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::behaviour::{Action, Event, Kad, QueryId, QueryResult, QueryStats, RequestId};
use crate::config::{Config, Mode};
use crate::error::{
    AddProviderError, BootstrapError, DecodeError, FindNodeError, GetProvidersError, GetValueError,
    InboundError, PutValueError, StartError,
};
use crate::kbucket::InsertOutcome;
use crate::proto::{self, PeerInfo, ProtoMessage, PROTOCOL};

/// The ping protocol used for liveness checks (the kad PING message is deprecated).
const PING_PROTOCOL: &str = "/ipfs/ping/1.0.0";
/// Bytes in one ping.
const PING_SIZE: usize = 32;

/// The limits and timeouts of the service's I/O (the protocol's own are in [`Config`]).
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Inbound streams served at once, over all peers; a stream beyond it is reset at once.
    /// Default 64: a lookup sends at most `alpha` (3) requests to different peers at a time,
    /// so even a busy network rarely has more than a few dozen on one node, and the cap
    /// bounds the tasks and buffers (one message each) a flood of streams can cost.
    pub max_inbound_streams: usize,
    /// Inbound streams served at once for one peer; more from it are reset. Default 8: a
    /// lookup sends one request at a time to a peer (a few when several queries run), and
    /// the cap keeps one peer from holding every slot of
    /// [`max_inbound_streams`](Self::max_inbound_streams).
    pub max_inbound_streams_per_peer: usize,
    /// How long an inbound stream may stay silent before its next request (or while a
    /// request's bytes trickle in) before it is closed. Default 10 s, the core's request
    /// timeout: a requester waits no longer than that for our answer either.
    pub inbound_idle_timeout: Duration,
    /// Requests served on one inbound stream before it is closed. Default 1,024: peers that
    /// reuse streams (go-libp2p, rust-libp2p) open a new one when theirs closes, and the cap
    /// keeps one stream from living forever.
    pub max_requests_per_stream: usize,
    /// How long one liveness ping may take before the peer counts as dead. Default 10 s, a
    /// ping's usual bound; below the core's [`Config::liveness_timeout`] (30 s), so that our
    /// answer comes first.
    pub ping_timeout: Duration,
    /// How long the addresses learned from the DHT (closer peers, providers, the peers we
    /// send requests to) stay in the host's peerstore. Default 10 min, the core's bootstrap
    /// interval: a refresh finds the live ones again.
    pub address_ttl: Duration,
    /// Commands from [`KadHandle`]s not yet taken by the service; a caller beyond it waits.
    /// Default 64.
    pub command_queue: usize,
    /// Reports from the service's own tasks (answers, inbound requests, pings) not yet taken;
    /// a task beyond it waits. Default 256: every task has at most one report outstanding,
    /// and the core bounds the number of tasks.
    pub report_queue: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_inbound_streams: 64,
            max_inbound_streams_per_peer: 8,
            inbound_idle_timeout: Duration::from_secs(10),
            max_requests_per_stream: 1024,
            ping_timeout: Duration::from_secs(10),
            address_ttl: Duration::from_secs(10 * 60),
            command_queue: 64,
            report_queue: 256,
        }
    }
}

/// Why a request to a peer (or a liveness ping) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No stream could be opened (dial failed, protocol not supported...).
    #[error(transparent)]
    Stream(#[from] NewStreamError),
    /// The stream failed while writing or reading.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The response did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The remote closed the stream before its response.
    #[error("the stream ended before the response")]
    UnexpectedEof,
    /// The ping echo differed from what we sent.
    #[error("the ping echo differed from the ping")]
    PingMismatch,
    /// The deadline passed.
    #[error("no response in time")]
    Timeout,
}

impl Classify for RequestError {
    fn fault(&self) -> Fault {
        match self {
            RequestError::Stream(e) => e.fault(),
            RequestError::Io(e) => Fault::of_io(e),
            RequestError::Decode(e) => e.fault(),
            RequestError::UnexpectedEof => Fault::Network,
            RequestError::PingMismatch => Fault::Remote,
            RequestError::Timeout => Fault::Timeout,
        }
    }
}

/// Why an operation of the [`KadHandle`] failed: it could not start, the query failed (`E`,
/// the core's error of that query kind), or the service has stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError<E: std::error::Error + 'static> {
    /// The query could not be started.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The query ran and failed.
    #[error(transparent)]
    Query(E),
    /// The service is not running (the host closed).
    #[error("the Kademlia service has stopped")]
    Stopped,
}

impl<E: std::error::Error + Classify + 'static> Classify for QueryError<E> {
    fn fault(&self) -> Fault {
        match self {
            QueryError::Start(e) => e.fault(),
            QueryError::Query(e) => e.fault(),
            QueryError::Stopped => Fault::Local,
        }
    }
}

/// Why [`KadHandle::find_peer`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FindPeerError {
    /// The lookup could not run or failed.
    #[error(transparent)]
    Lookup(#[from] QueryError<FindNodeError>),
    /// The lookup finished without reaching the peer or an address of it.
    #[error("no address found for {peer}")]
    NotFound {
        /// The peer looked up.
        peer: PeerId,
    },
}

impl Classify for FindPeerError {
    fn fault(&self) -> Fault {
        match self {
            FindPeerError::Lookup(e) => e.fault(),
            FindPeerError::NotFound { .. } => Fault::Network,
        }
    }
}

type Reply = oneshot::Sender<Result<(QueryResult, QueryStats), StartError>>;

enum Command {
    AddPeer {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<InsertOutcome>,
    },
    Bootstrap(Reply),
    FindNode(PeerId, Reply),
    GetProviders(Vec<u8>, Option<usize>, Reply),
    StartProviding(Vec<u8>, Reply),
    StopProviding(Vec<u8>),
    PutValue(Vec<u8>, Vec<u8>, usize, Reply),
    GetValue(Vec<u8>, usize, Reply),
    /// The addresses the host's peerstore holds for a peer (find_peer's fallback).
    PeerstoreAddrs(PeerId, oneshot::Sender<Vec<Multiaddr>>),
}

enum Report {
    Inbound {
        peer: PeerId,
        message: ProtoMessage,
        reply: oneshot::Sender<Result<Option<ProtoMessage>, InboundError>>,
    },
    Outbound {
        id: RequestId,
        peer: PeerId,
        result: Result<Option<ProtoMessage>, RequestError>,
    },
    Liveness {
        peer: PeerId,
        alive: bool,
    },
}

/// The tag under which the service protects peers from the host's connection manager.
pub const PROTECT_TAG: &str = "kad";

/// How many routing-table entries closest to our own id stay protected: one bucket's worth
/// (k = 20). These are the nearest non-empty buckets, the ones a lookup of any key near us
/// ends in and the ones that hold the few peers that know of us; a bound of k keeps the
/// protected set small next to any sensible low watermark (kubo's is 32, the host's 160),
/// whereas protecting the whole table (up to 256 x k entries) would turn trimming off.
pub const PROTECTED_CLOSEST: usize = 20;

struct Shared {
    table_size: AtomicUsize,
}

/// The application's side of a running [`KadService`]: cheap to clone, every method async.
#[derive(Clone)]
pub struct KadHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KadHandle")
            .field("routing_table_size", &self.routing_table_size())
            .finish()
    }
}

/// The Kademlia service, to be given to the host (`HostBuilder::service`).
pub struct KadService {
    config: Config,
    io: ServiceConfig,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KadService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KadService")
            .field("mode", &self.config.mode)
            .finish()
    }
}

impl KadService {
    /// The service with the protocol's `config` and the I/O limits of `io`, and its handle.
    pub fn new(config: Config, io: ServiceConfig) -> (KadService, KadHandle) {
        let (tx, rx) = mpsc::channel(io.command_queue.max(1));
        let shared = Arc::new(Shared {
            table_size: AtomicUsize::new(0),
        });
        let handle = KadHandle {
            commands: tx,
            shared: shared.clone(),
        };
        let service = KadService {
            config,
            io,
            commands: rx,
            shared,
        };
        (service, handle)
    }
}

impl Service for KadService {
    fn name(&self) -> &'static str {
        "kad"
    }

    fn protocols(&self) -> Vec<String> {
        match self.config.mode {
            Mode::Server => vec![PROTOCOL.to_string()],
            Mode::Client => Vec::new(),
        }
    }

    fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, ()> {
        Box::pin(run(*self, ctx))
    }
}

impl KadHandle {
    async fn query<E: std::error::Error + 'static>(
        &self,
        make: impl FnOnce(Reply) -> Command,
    ) -> Result<(QueryResult, QueryStats), QueryError<E>> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| QueryError::Stopped)?;
        rx.await
            .map_err(|_| QueryError::Stopped)?
            .map_err(QueryError::Start)
    }

    /// The number of peers in the routing table (as of the service's last step).
    pub fn routing_table_size(&self) -> usize {
        self.shared.table_size.load(Ordering::Relaxed)
    }

    /// Adds a peer known to serve the DHT (a bootstrap peer) at `addrs`; its addresses also
    /// go to the host's peerstore. `None` if the service has stopped.
    pub async fn add_peer(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Option<InsertOutcome> {
        let (tx, rx) = oneshot::channel();
        let command = Command::AddPeer {
            peer,
            addrs,
            reply: tx,
        };
        self.commands.send(command).await.ok()?;
        rx.await.ok()
    }

    /// Bootstraps (a lookup of our own id, then of a random key per non-empty bucket);
    /// returns the routing table's size afterwards.
    pub async fn bootstrap(&self) -> Result<usize, QueryError<BootstrapError>> {
        match self.query(Command::Bootstrap).await {
            Ok((QueryResult::Bootstrap(r), _)) => r.map_err(QueryError::Query),
            Ok(_) => Err(QueryError::Stopped),
            Err(e) => Err(e),
        }
    }

    /// The peers closest to `peer` that answered, closest first, with their addresses.
    pub async fn find_closest_peers(
        &self,
        peer: PeerId,
    ) -> Result<Vec<PeerInfo>, QueryError<FindNodeError>> {
        self.find_node(peer).await.map(|(found, _)| found)
    }

    async fn find_node(
        &self,
        peer: PeerId,
    ) -> Result<(Vec<PeerInfo>, QueryStats), QueryError<FindNodeError>> {
        match self.query(|r| Command::FindNode(peer, r)).await {
            Ok((QueryResult::FindNode(r), stats)) => {
                r.map(|found| (found, stats)).map_err(QueryError::Query)
            }
            Ok(_) => Err(QueryError::Stopped),
            Err(e) => Err(e),
        }
    }

    /// Looks `peer` up; returns its addresses once the lookup reached it or learned them.
    /// When the lookup ends without an address of `peer` (it found no path to the peer, or
    /// every request failed) but the host's peerstore holds some (learned from identify, an
    /// earlier lookup or the application), those are returned instead.
    pub async fn find_peer(&self, peer: PeerId) -> Result<Vec<Multiaddr>, FindPeerError> {
        self.find_peer_with_stats(peer).await.map(|(a, _)| a)
    }

    /// [`find_peer`](Self::find_peer), with what the lookup took.
    pub async fn find_peer_with_stats(
        &self,
        peer: PeerId,
    ) -> Result<(Vec<Multiaddr>, QueryStats), FindPeerError> {
        let (error, stats) = match self.find_node(peer).await {
            Ok((found, stats)) => {
                if let Some(p) = found
                    .into_iter()
                    .find(|p| p.id == peer && !p.addrs.is_empty())
                {
                    return Ok((p.addrs, stats));
                }
                (FindPeerError::NotFound { peer }, Some(stats))
            }
            // The lookup ran and failed: the peerstore may still know the peer.
            Err(QueryError::Query(e)) => (FindPeerError::Lookup(QueryError::Query(e)), None),
            // It could not start, or the service is gone: nothing to fall back on.
            Err(e) => return Err(e.into()),
        };
        let known = self.peerstore_addrs(peer).await;
        if known.is_empty() {
            return Err(error);
        }
        let now = Instant::now();
        let stats = stats.unwrap_or(QueryStats {
            requests: 0,
            successes: 0,
            failures: 0,
            hops: 0,
            found_at_hop: None,
            started: now,
            finished: now,
        });
        Ok((known, stats))
    }

    /// What the host's peerstore holds for `peer` (empty if the service has stopped).
    async fn peerstore_addrs(&self, peer: PeerId) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::PeerstoreAddrs(peer, tx))
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Looks up the providers of `key` (ours included); with `limit`, stops once that many
    /// are found. Their addresses go to the host's peerstore.
    pub async fn get_providers(
        &self,
        key: Vec<u8>,
        limit: Option<usize>,
    ) -> Result<Vec<PeerInfo>, QueryError<GetProvidersError>> {
        self.get_providers_with_stats(key, limit)
            .await
            .map(|(p, _)| p)
    }

    /// [`get_providers`](Self::get_providers), with what the lookup took.
    pub async fn get_providers_with_stats(
        &self,
        key: Vec<u8>,
        limit: Option<usize>,
    ) -> Result<(Vec<PeerInfo>, QueryStats), QueryError<GetProvidersError>> {
        match self.query(|r| Command::GetProviders(key, limit, r)).await {
            Ok((QueryResult::GetProviders(r), stats)) => {
                r.map(|p| (p, stats)).map_err(QueryError::Query)
            }
            Ok(_) => Err(QueryError::Stopped),
            Err(e) => Err(e),
        }
    }

    /// Announces us as a provider of `key` (republished until
    /// [`stop_providing`](Self::stop_providing)); returns the number of peers told.
    pub async fn start_providing(
        &self,
        key: Vec<u8>,
    ) -> Result<usize, QueryError<AddProviderError>> {
        match self.query(|r| Command::StartProviding(key, r)).await {
            Ok((QueryResult::AddProvider(r), _)) => r.map_err(QueryError::Query),
            Ok(_) => Err(QueryError::Stopped),
            Err(e) => Err(e),
        }
    }

    /// Stops providing `key`. Returns `false` if the service has stopped.
    pub async fn stop_providing(&self, key: Vec<u8>) -> bool {
        self.commands
            .send(Command::StopProviding(key))
            .await
            .is_ok()
    }

    /// Stores `value` under `key` on the closest peers (and in our store, republished);
    /// succeeds when `quorum` peers stored it, returning how many did.
    pub async fn put_value(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        quorum: usize,
    ) -> Result<usize, QueryError<PutValueError>> {
        match self
            .query(|r| Command::PutValue(key, value, quorum, r))
            .await
        {
            Ok((QueryResult::PutValue(r), _)) => r.map_err(QueryError::Query),
            Ok(_) => Err(QueryError::Stopped),
            Err(e) => Err(e),
        }
    }

    /// Looks up the value under `key` until `quorum` valid copies are found; returns the best.
    pub async fn get_value(
        &self,
        key: Vec<u8>,
        quorum: usize,
    ) -> Result<Vec<u8>, QueryError<GetValueError>> {
        match self.query(|r| Command::GetValue(key, quorum, r)).await {
            Ok((QueryResult::GetValue(r), _)) => r.map_err(QueryError::Query),
            Ok(_) => Err(QueryError::Stopped),
            Err(e) => Err(e),
        }
    }
}

/// The service's task state.
struct Driver {
    kad: Kad,
    host: Arc<dyn HostContext>,
    io: ServiceConfig,
    max_message: usize,
    pending: HashMap<QueryId, Reply>,
    reports: mpsc::Sender<Report>,
    inbound_slots: Arc<Semaphore>,
    /// Inbound streams being served, per peer.
    inbound_per_peer: Arc<Mutex<HashMap<PeerId, usize>>>,
    shared: Arc<Shared>,
    /// Kad requests and liveness pings in flight, per peer (bounded by the queries'
    /// parallelism and the table's pending checks).
    in_flight: HashMap<PeerId, usize>,
    /// The routing-table entries closest to our own id, at most [`PROTECTED_CLOSEST`].
    closest: HashSet<PeerId>,
    /// Whether the table may have changed since `closest` was computed.
    table_changed: bool,
}

/// One inbound stream's place in [`Driver::inbound_per_peer`], given back on drop.
struct PeerSlot {
    peer: PeerId,
    table: Arc<Mutex<HashMap<PeerId, usize>>>,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut table = self.table.lock().expect("inbound table");
        if let Some(n) = table.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.peer);
            }
        }
    }
}

async fn run(service: KadService, ctx: ServiceContext) {
    let KadService {
        config,
        io,
        mut commands,
        shared,
    } = service;
    let ServiceContext {
        host,
        mut inbound,
        mut events,
        ..
    } = ctx;
    let (report_tx, mut reports) = mpsc::channel(io.report_queue.max(1));
    let max_message = config.max_message_size;
    let mut kad = Kad::new(host.local_peer_id(), config, Instant::now());
    kad.set_listen_addrs(host.listen_addrs());
    let mut driver = Driver {
        kad,
        host,
        inbound_slots: Arc::new(Semaphore::new(io.max_inbound_streams)),
        inbound_per_peer: Arc::default(),
        io,
        max_message,
        pending: HashMap::new(),
        reports: report_tx,
        shared,
        in_flight: HashMap::new(),
        closest: HashSet::new(),
        table_changed: true,
    };
    let (mut inbound_open, mut commands_open) = (true, true);
    loop {
        let deadline = driver
            .kad
            .poll_timeout()
            .map(tokio::time::Instant::from_std);
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv(), if commands_open => match command {
                Some(command) => driver.on_command(command),
                // Every handle is gone: nobody can ask anything any more, but a server goes
                // on serving the DHT for others until the host closes.
                None => {
                    commands_open = false;
                    if !inbound_open {
                        break;
                    }
                }
            },
            stream = inbound.next(), if inbound_open => match stream {
                Some(stream) => driver.on_inbound(stream),
                None => {
                    inbound_open = false;
                    if !commands_open {
                        break;
                    }
                }
            },
            event = events.next() => match event {
                Some(event) => driver.on_host_event(event),
                None => break,
            },
            report = reports.recv() => {
                if let Some(report) = report {
                    driver.on_report(report);
                }
            }
            _ = timer => driver.kad.handle_timeout(Instant::now()),
        }
        driver.step();
    }
}

impl Driver {
    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        let started = match command {
            Command::AddPeer { peer, addrs, reply } => {
                self.host
                    .peerstore()
                    .add_addrs(&peer, addrs.clone(), self.io.address_ttl);
                let _ = reply.send(self.kad.add_peer(peer, &addrs, now));
                return;
            }
            Command::StopProviding(key) => {
                self.kad.stop_providing(&key);
                return;
            }
            Command::PeerstoreAddrs(peer, reply) => {
                let _ = reply.send(self.host.peerstore().addrs(&peer));
                return;
            }
            Command::Bootstrap(r) => (self.kad.bootstrap(now), r),
            Command::FindNode(peer, r) => (self.kad.find_node(&peer, now), r),
            Command::GetProviders(key, limit, r) => (self.kad.get_providers(key, limit, now), r),
            Command::StartProviding(key, r) => (self.kad.start_providing(key, now), r),
            Command::PutValue(key, value, quorum, r) => {
                (self.kad.put_value(key, value, quorum, now), r)
            }
            Command::GetValue(key, quorum, r) => (self.kad.get_value(key, quorum, now), r),
        };
        match started {
            (Ok(id), reply) => {
                self.pending.insert(id, reply);
            }
            (Err(e), reply) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn on_inbound(&mut self, stream: Stream) {
        let peer = stream.remote_peer();
        let slot = {
            let mut table = self.inbound_per_peer.lock().expect("inbound table");
            let n = table.get(&peer).copied().unwrap_or(0);
            if n >= self.io.max_inbound_streams_per_peer {
                tracing::debug!(%peer, "too many inbound kad streams from this peer; reset");
                return;
            }
            table.insert(peer, n + 1);
            PeerSlot {
                peer,
                table: self.inbound_per_peer.clone(),
            }
        };
        let Ok(permit) = self.inbound_slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many inbound kad streams; reset");
            return;
        };
        let reports = self.reports.clone();
        let io = self.io.clone();
        let max = self.max_message;
        tokio::spawn(async move {
            let peer = stream.remote_peer();
            if let Err(e) = serve_inbound(stream, reports, io, max).await {
                tracing::debug!(%peer, error = %e, "inbound kad stream ended");
            }
            drop((permit, slot));
        });
    }

    fn on_host_event(&mut self, event: HostEvent) {
        let now = Instant::now();
        match event {
            HostEvent::ConnectionEstablished { peer, .. } => self.kad.on_connection(&peer, true),
            HostEvent::ConnectionClosed {
                peer, remaining: 0, ..
            } => self.kad.on_connection(&peer, false),
            HostEvent::Identified { peer, info } => {
                let server = info.protocols.iter().any(|p| p == PROTOCOL);
                self.kad.on_identify(peer, &info.listen_addrs, server, now);
            }
            HostEvent::ListenAddrAdded { .. } | HostEvent::ListenAddrExpired { .. } => {
                self.kad.set_listen_addrs(self.host.listen_addrs());
            }
            HostEvent::Missed { count } => {
                // What can be read again is: our addresses and who is connected now.
                tracing::debug!(count, "kad missed host events; resynchronising");
                self.kad.set_listen_addrs(self.host.listen_addrs());
                for peer in self.host.connected_peers() {
                    self.kad.on_connection(&peer, true);
                }
            }
            _ => {}
        }
    }

    fn on_report(&mut self, report: Report) {
        let now = Instant::now();
        match report {
            Report::Inbound {
                peer,
                message,
                reply,
            } => {
                let _ = reply.send(self.kad.handle_request(&peer, message, now));
            }
            Report::Outbound { id, peer, result } => {
                self.request_ended(peer);
                match result {
                    Ok(Some(message)) => self.kad.on_response(id, message, now),
                    Ok(None) => self.kad.on_sent(id, now),
                    Err(e) => {
                        tracing::debug!(error = %e, "kad request failed");
                        self.kad.on_request_failed(id, e.fault(), now)
                    }
                }
            }
            Report::Liveness { peer, alive } => {
                self.request_ended(peer);
                self.kad.on_liveness(&peer, alive, now);
                self.table_changed = true;
            }
        }
    }

    /// Carries out what the core asks for and hands results to their callers.
    fn step(&mut self) {
        while let Some(action) = self.kad.poll_action() {
            match action {
                Action::SendRequest {
                    id,
                    peer,
                    addrs,
                    message,
                    expects_response,
                    deadline,
                } => {
                    self.learn(&peer, &addrs);
                    self.request_started(peer);
                    let host = self.host.clone();
                    let reports = self.reports.clone();
                    let max = self.max_message;
                    tokio::spawn(async move {
                        let deadline = tokio::time::Instant::from_std(deadline);
                        let result = tokio::time::timeout_at(
                            deadline,
                            send_request(host, peer, message, expects_response, max),
                        )
                        .await
                        .unwrap_or(Err(RequestError::Timeout));
                        let _ = reports.send(Report::Outbound { id, peer, result }).await;
                    });
                }
                Action::CheckLiveness { peer, addrs } => {
                    self.learn(&peer, &addrs);
                    self.request_started(peer);
                    let host = self.host.clone();
                    let reports = self.reports.clone();
                    let timeout = self.io.ping_timeout;
                    tokio::spawn(async move {
                        let alive = tokio::time::timeout(timeout, ping(host, peer))
                            .await
                            .is_ok_and(|r| r.is_ok());
                        let _ = reports.send(Report::Liveness { peer, alive }).await;
                    });
                }
            }
        }
        while let Some(event) = self.kad.poll_event() {
            if let Event::RoutingUpdated { .. } = event {
                self.table_changed = true;
            }
            if let Event::QueryFinished { id, result, stats } = event {
                match &result {
                    QueryResult::FindNode(Ok(peers)) | QueryResult::GetProviders(Ok(peers)) => {
                        for p in peers {
                            self.learn(&p.id, &p.addrs);
                        }
                    }
                    _ => {}
                }
                if let Some(reply) = self.pending.remove(&id) {
                    let _ = reply.send(Ok((result, stats)));
                }
            }
        }
        let size = self.kad.routing_table().len();
        if self.shared.table_size.swap(size, Ordering::Relaxed) != size {
            self.table_changed = true;
        }
        if self.table_changed {
            self.table_changed = false;
            self.update_closest();
        }
    }

    /// Whether `peer` should be protected: a request in flight, or among the closest.
    fn wants_protection(&self, peer: &PeerId) -> bool {
        self.in_flight.contains_key(peer) || self.closest.contains(peer)
    }

    fn request_started(&mut self, peer: PeerId) {
        let n = self.in_flight.entry(peer).or_insert(0);
        *n += 1;
        if *n == 1 && !self.closest.contains(&peer) {
            self.host.protect(peer, PROTECT_TAG);
        }
    }

    fn request_ended(&mut self, peer: PeerId) {
        if let Some(n) = self.in_flight.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&peer);
                if !self.wants_protection(&peer) {
                    self.host.unprotect(peer, PROTECT_TAG);
                }
            }
        }
    }

    /// Recomputes the protected closest entries and protects or unprotects the difference.
    fn update_closest(&mut self) {
        let table = self.kad.routing_table();
        let now: HashSet<PeerId> = table
            .closest(&table.local_key().clone(), PROTECTED_CLOSEST, None)
            .into_iter()
            .map(|e| e.peer)
            .collect();
        if now == self.closest {
            return;
        }
        let old = std::mem::replace(&mut self.closest, now);
        for peer in old.difference(&self.closest) {
            if !self.in_flight.contains_key(peer) {
                self.host.unprotect(*peer, PROTECT_TAG);
            }
        }
        for peer in self.closest.difference(&old) {
            if !self.in_flight.contains_key(peer) {
                self.host.protect(*peer, PROTECT_TAG);
            }
        }
    }

    /// Addresses learned from the DHT go to the host's peerstore.
    fn learn(&self, peer: &PeerId, addrs: &[Multiaddr]) {
        if !addrs.is_empty() && *peer != self.host.local_peer_id() {
            self.host
                .peerstore()
                .add_addrs(peer, addrs.iter().cloned(), self.io.address_ttl);
        }
    }
}

/// Reads one length-prefixed message: `Ok(None)` at a clean end of stream before the first
/// byte. The length is checked against `max` before the body is allocated.
async fn read_message(
    stream: &mut Stream,
    max: usize,
) -> Result<Option<ProtoMessage>, RequestError> {
    let mut prefix = [0u8; 10];
    let mut n = 0;
    let len = loop {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await? == 0 {
            return if n == 0 {
                Ok(None)
            } else {
                Err(RequestError::UnexpectedEof)
            };
        }
        prefix[n] = byte[0];
        n += 1;
        if let Some((len, _)) = proto::decode_length(&prefix[..n], max)? {
            break len;
        }
        if n == prefix.len() {
            return Err(DecodeError::BadLength.into());
        }
    };
    let mut body = vec![0u8; len];
    match stream.read_exact(&mut body).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(RequestError::UnexpectedEof)
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Some(proto::decode_body(&body)?))
}

async fn write_message(stream: &mut Stream, message: &ProtoMessage) -> std::io::Result<()> {
    let mut frame = Vec::new();
    proto::encode_frame(message, &mut frame);
    stream.write_all(&frame).await?;
    stream.flush().await
}

async fn send_request(
    host: Arc<dyn HostContext>,
    peer: PeerId,
    message: ProtoMessage,
    expects_response: bool,
    max: usize,
) -> Result<Option<ProtoMessage>, RequestError> {
    let mut stream = host.new_stream(peer, vec![PROTOCOL.to_string()]).await?;
    write_message(&mut stream, &message).await?;
    let response = if expects_response {
        // Read the answer before closing: some servers reset the stream on our half-close.
        match read_message(&mut stream, max).await? {
            Some(m) => Some(m),
            None => return Err(RequestError::UnexpectedEof),
        }
    } else {
        None
    };
    // A reset after a full answer is no failure.
    let _ = stream.shutdown().await;
    Ok(response)
}

async fn ping(host: Arc<dyn HostContext>, peer: PeerId) -> Result<(), RequestError> {
    let mut stream = host
        .new_stream(peer, vec![PING_PROTOCOL.to_string()])
        .await?;
    let payload: [u8; PING_SIZE] = rand::random();
    stream.write_all(&payload).await?;
    stream.flush().await?;
    let mut back = [0u8; PING_SIZE];
    stream.read_exact(&mut back).await?;
    let _ = stream.shutdown().await;
    if back != payload {
        return Err(RequestError::PingMismatch);
    }
    Ok(())
}

async fn serve_inbound(
    mut stream: Stream,
    reports: mpsc::Sender<Report>,
    io: ServiceConfig,
    max: usize,
) -> Result<(), RequestError> {
    let peer = stream.remote_peer();
    for _ in 0..io.max_requests_per_stream {
        let message =
            match tokio::time::timeout(io.inbound_idle_timeout, read_message(&mut stream, max))
                .await
            {
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => break,
                // Junk or a timeout: the stream goes (dropped, hence reset), nothing else.
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(RequestError::Timeout),
            };
        let (tx, rx) = oneshot::channel();
        let report = Report::Inbound {
            peer,
            message,
            reply: tx,
        };
        if reports.send(report).await.is_err() {
            return Ok(());
        }
        match rx.await {
            Ok(Ok(Some(answer))) => write_message(&mut stream, &answer).await?,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "kad request refused; stream reset");
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
    let _ = stream.shutdown().await;
    Ok(())
}
