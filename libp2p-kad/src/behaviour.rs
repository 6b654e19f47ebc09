//! The node: routing table, store and queries together, as a state machine without I/O.
//!
//! Inputs are method calls that carry `now`; outputs are pulled: [`Kad::poll_action`] for what
//! the host must do on the network (send a request, check a peer's liveness),
//! [`Kad::poll_event`] for what the application learns (query results, routing changes), and
//! [`Kad::poll_timeout`] for when [`Kad::handle_timeout`] must be called next.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use libp2p_core::{Fault, Multiaddr, PeerId};
use sha2::{Digest, Sha256};

use crate::config::{Config, Mode};
use crate::error::{
    AddProviderError, BootstrapError, DecodeError, FindNodeError, GetProvidersError, GetValueError,
    InboundError, PutValueError, RecordRejected, StartError,
};
use crate::kbucket::{InsertOutcome, RoutingTable};
use crate::key::Key;
use crate::proto::{
    ConnectionType, MessageType, PeerInfo, ProtoMessage, Request, Response, WireRecord,
};
use crate::query::{Lookup, LookupStep};
use crate::store::{
    AcceptAll, Due, MemoryStore, MemoryStoreConfig, ProviderRecord, Record, RecordStore,
    RecordValidator,
};

/// Identifies a query, from its start to its [`Event::QueryFinished`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(u64);

/// Identifies one outbound request, from [`Action::SendRequest`] to its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// What the host must do on the network. Their number is bounded: every request belongs to
/// one of at most [`Config::max_queries`] queries (at most `max(alpha, k)` in flight each), and
/// every liveness check to one of the 256 buckets (one pending check each).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open a stream to `peer` on `/ipfs/kad/1.0.0` (dialing `addrs` if not connected), write
    /// `message` with [`encode_frame`](crate::proto::encode_frame), then, if
    /// `expects_response`, read one framed response. Report the outcome by `deadline` (the
    /// host may give up then) with [`Kad::on_response`], [`Kad::on_sent`] (no response
    /// expected) or [`Kad::on_request_failed`]; if none comes by `deadline`, the request
    /// counts as failed anyway.
    SendRequest {
        /// The request's id.
        id: RequestId,
        /// The peer.
        peer: PeerId,
        /// Its addresses, as we learned them.
        addrs: Vec<Multiaddr>,
        /// The message to send.
        message: ProtoMessage,
        /// Whether one response is to be read (all but ADD_PROVIDER).
        expects_response: bool,
        /// When the request counts as failed.
        deadline: Instant,
    },
    /// Check that `peer` is alive (with `/ipfs/ping/1.0.0`) and report it with
    /// [`Kad::on_liveness`]: it is the least recently seen of a full bucket that another peer
    /// waits to enter.
    CheckLiveness {
        /// The peer.
        peer: PeerId,
        /// Its addresses.
        addrs: Vec<Multiaddr>,
    },
}

/// What the application learns.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A query finished.
    QueryFinished {
        /// The query.
        id: QueryId,
        /// Its result.
        result: QueryResult,
        /// What it took.
        stats: QueryStats,
    },
    /// A peer entered the routing table.
    RoutingUpdated {
        /// The peer.
        peer: PeerId,
        /// The peer evicted to make room for it, after a failed liveness check.
        evicted: Option<PeerId>,
    },
}

/// The result of a query, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// [`Kad::find_closest`]: the closest peers that answered, closest first.
    FindNode(Result<Vec<PeerInfo>, FindNodeError>),
    /// [`Kad::get_providers`]: the providers found (ours included), possibly none.
    GetProviders(Result<Vec<PeerInfo>, GetProvidersError>),
    /// [`Kad::get_value`]: the best value found.
    GetValue(Result<Vec<u8>, GetValueError>),
    /// [`Kad::put_value`] or a republish: the number of peers that stored the record.
    PutValue(Result<usize, PutValueError>),
    /// [`Kad::start_providing`] or a republish: the number of peers the announcement went to.
    AddProvider(Result<usize, AddProviderError>),
    /// [`Kad::bootstrap`]: the number of peers in the routing table afterwards.
    Bootstrap(Result<usize, BootstrapError>),
}

/// What a query took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryStats {
    /// Requests sent.
    pub requests: u32,
    /// Requests answered (or, without a response, sent).
    pub successes: u32,
    /// Requests failed or timed out.
    pub failures: u32,
    /// The deepest hop that answered: 1 for a peer from our own table, n + 1 for a peer
    /// learned from a hop-n answer.
    pub hops: u32,
    /// The hop of the first answer that carried what was looked for (a provider, a value).
    pub found_at_hop: Option<u32>,
    /// When the query started.
    pub started: Instant,
    /// When it finished.
    pub finished: Instant,
}

#[derive(Debug)]
enum Kind {
    FindNode,
    GetProviders {
        key: Vec<u8>,
        found: Vec<PeerInfo>,
        limit: Option<usize>,
    },
    GetValue {
        key: Vec<u8>,
        quorum: usize,
        best: Option<Vec<u8>>,
        found: usize,
        /// The peers that answered with `best`.
        holders: Vec<(PeerId, Vec<Multiaddr>)>,
        /// The peers that answered with a worse value or none: they get `best` at the end
        /// (the spec's entry correction). At most `k`.
        stale: Vec<(PeerId, Vec<Multiaddr>)>,
    },
    PutValue {
        record: WireRecord,
        quorum: usize,
    },
    AddProvider {
        key: Vec<u8>,
    },
    Bootstrap {
        /// Refresh targets still to look up, once our own id is done.
        remaining: Option<Vec<Key>>,
    },
}

#[derive(Debug)]
enum Phase {
    Lookup,
    /// Sending PUT_VALUE or ADD_PROVIDER to the closest peers.
    Storing {
        outstanding: usize,
        stored: usize,
    },
}

#[derive(Debug)]
struct Query {
    kind: Kind,
    lookup: Lookup,
    phase: Phase,
    /// Whether the lookup started with at least one peer.
    seeded: bool,
    deadline: Instant,
    stats: QueryStats,
}

#[derive(Debug)]
struct Outstanding {
    query: QueryId,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    expected: MessageType,
    deadline: Instant,
}

/// A Kademlia node: the routing table, the record store, the running queries.
pub struct Kad<S = MemoryStore> {
    local: PeerId,
    config: Config,
    table: RoutingTable,
    store: S,
    validator: Box<dyn RecordValidator + Send>,
    listen_addrs: Vec<Multiaddr>,
    queries: HashMap<QueryId, Query>,
    requests: HashMap<RequestId, Outstanding>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Query results waiting in `events`: they count against `max_queries` until polled, so
    /// that an application that starts queries and never polls cannot grow the queue.
    queued_results: usize,
    next_query: u64,
    next_request: u64,
    /// Counter of the refresh-target generator.
    random_counter: u64,
    next_bootstrap: Option<Instant>,
    bootstrap_running: Option<QueryId>,
    next_maintenance: Instant,
}

impl Kad<MemoryStore> {
    /// A node for `local` with a [`MemoryStore`] of default limits and a validator that
    /// accepts every record.
    pub fn new(local: PeerId, config: Config, now: Instant) -> Self {
        let store = MemoryStore::new(local, MemoryStoreConfig::default());
        Kad::with_store(local, config, store, now)
    }
}

impl<S: RecordStore> Kad<S> {
    /// A node for `local` over `store`.
    pub fn with_store(local: PeerId, config: Config, store: S, now: Instant) -> Self {
        let table = RoutingTable::new(Key::from_peer(&local), &config);
        Kad {
            local,
            table,
            store,
            validator: Box::new(AcceptAll),
            listen_addrs: Vec::new(),
            queries: HashMap::new(),
            requests: HashMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            queued_results: 0,
            next_query: 0,
            next_request: 0,
            random_counter: 0,
            next_bootstrap: None,
            bootstrap_running: None,
            next_maintenance: now + config.maintenance_interval,
            config,
        }
    }

    /// Sets the validation hook for records (PUT_VALUE received or sent, GET_VALUE answers).
    pub fn set_validator(&mut self, validator: impl RecordValidator + Send + 'static) {
        self.validator = Box::new(validator);
    }

    /// Our own id.
    pub fn local_peer_id(&self) -> &PeerId {
        &self.local
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Client or server mode. In server mode the host registers a handler for
    /// [`PROTOCOL`](crate::PROTOCOL) and lists it in identify; in client mode it
    /// does neither.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// The routing table.
    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The number of queries running.
    pub fn num_queries(&self) -> usize {
        self.queries.len()
    }

    /// Sets our own listen addresses: they go into our ADD_PROVIDER announcements and into
    /// answers that list us as a provider (peers leave out providers without addresses).
    pub fn set_listen_addrs(&mut self, addrs: Vec<Multiaddr>) {
        self.listen_addrs = addrs;
        self.listen_addrs.truncate(self.config.max_addrs_per_peer);
    }

    // ---- inputs from the host -------------------------------------------------------------

    /// A peer known to run the DHT in server mode, at `addrs` (a bootstrap peer, or a peer
    /// whose identify lists `/ipfs/kad/1.0.0`): it enters the routing table, or refreshes its
    /// entry. The first peer ever added schedules a bootstrap right away.
    pub fn add_peer(&mut self, peer: PeerId, addrs: &[Multiaddr], now: Instant) -> InsertOutcome {
        let was_empty = self.table.is_empty();
        let outcome = self.table.insert(peer, addrs, now);
        match &outcome {
            InsertOutcome::Inserted => {
                self.push_event(Event::RoutingUpdated {
                    peer,
                    evicted: None,
                });
                if was_empty && self.config.bootstrap_interval.is_some() {
                    self.next_bootstrap = Some(now);
                }
            }
            InsertOutcome::Pending { check } => {
                let addrs = self
                    .table
                    .get(check)
                    .map(|e| e.addrs.clone())
                    .unwrap_or_default();
                self.actions.push_back(Action::CheckLiveness {
                    peer: *check,
                    addrs,
                });
            }
            _ => {}
        }
        outcome
    }

    /// What identify told us about `peer`: its listen addresses and whether it lists
    /// `/ipfs/kad/1.0.0` (server mode). A server enters the table; a client leaves it.
    pub fn on_identify(
        &mut self,
        peer: PeerId,
        listen_addrs: &[Multiaddr],
        supports_kad: bool,
        now: Instant,
    ) {
        if supports_kad {
            self.add_peer(peer, listen_addrs, now);
        } else {
            self.table.remove(&peer);
        }
    }

    /// A connection to `peer` opened (`true`) or the last one closed (`false`); only what we
    /// tell others about it in answers depends on it.
    pub fn on_connection(&mut self, peer: &PeerId, connected: bool) {
        self.table.set_connected(peer, connected);
    }

    /// The answer to an [`Action::CheckLiveness`].
    pub fn on_liveness(&mut self, peer: &PeerId, alive: bool, now: Instant) {
        if let Some(outcome) = self.table.liveness_result(peer, alive, now) {
            if let Some(inserted) = outcome.inserted {
                self.push_event(Event::RoutingUpdated {
                    peer: inserted,
                    evicted: outcome.evicted,
                });
            }
        }
    }

    /// Removes `peer` from the routing table (it is unreachable, or no longer a server).
    pub fn remove_peer(&mut self, peer: &PeerId) {
        self.table.remove(peer);
    }

    /// An inbound request from `from` (read with
    /// [`decode_frame`](crate::proto::decode_frame), at most
    /// [`Config::max_message_size`]): the message to write back, `None` when the protocol
    /// has no answer (ADD_PROVIDER), or an error, on which the host resets the stream. Junk
    /// costs the sender its stream only; it is not added to the routing table either way (a
    /// requester may be a client).
    pub fn handle_request(
        &mut self,
        from: &PeerId,
        message: ProtoMessage,
        now: Instant,
    ) -> Result<Option<ProtoMessage>, InboundError> {
        if self.config.mode == Mode::Client {
            return Err(InboundError::ClientMode);
        }
        let request = Request::from_proto(message, self.config.peer_limits())?;
        let k = self.config.k();
        let (key, response) = match request {
            Request::FindNode { key } => {
                let closer = self.closest_infos(&Key::new(key.clone()), k, Some(from));
                (key, Response::FindNode { closer })
            }
            Request::GetValue { key } => {
                let record = self.store.get(&key, now).map(|r| WireRecord {
                    key: r.key,
                    value: r.value,
                });
                let closer = self.closest_infos(&Key::new(key.clone()), k, Some(from));
                (key, Response::GetValue { record, closer })
            }
            Request::PutValue { record } => {
                self.validator.validate(&record.key, &record.value)?;
                // A record of our own (which we republish) gives way only to a value the
                // validator prefers; a stranger's record is simply replaced.
                let ours = self
                    .store
                    .get(&record.key, now)
                    .filter(|r| r.publisher == Some(self.local));
                if let Some(ours) = ours {
                    if ours.value == record.value {
                        return Ok(Some(Response::PutValue { record }.to_proto(&ours.key)));
                    }
                    let values = [ours.value.as_slice(), record.value.as_slice()];
                    if self.validator.select(&record.key, &values) == 0 {
                        return Err(RecordRejected::Outdated.into());
                    }
                }
                self.store.put(
                    Record {
                        key: record.key.clone(),
                        value: record.value.clone(),
                        publisher: None,
                        expires: Some(now + self.config.record_ttl),
                    },
                    None,
                )?;
                (record.key.clone(), Response::PutValue { record })
            }
            Request::GetProviders { key } => {
                let providers = self.provider_infos(&key, now);
                let closer = self.closest_infos(&Key::new(key.clone()), k, Some(from));
                (key, Response::GetProviders { providers, closer })
            }
            Request::AddProvider { key, providers } => {
                for p in providers.into_iter().filter(|p| p.id == *from) {
                    self.store.add_provider(
                        ProviderRecord {
                            key: key.clone(),
                            provider: *from,
                            addrs: p.addrs,
                            expires: Some(now + self.config.provider_ttl),
                        },
                        None,
                    )?;
                }
                return Ok(None);
            }
            Request::Ping => (Vec::new(), Response::Ping),
        };
        Ok(Some(response.to_proto(&key)))
    }

    /// The response to request `id` (read with
    /// [`decode_frame`](crate::proto::decode_frame)). A response that does not fit the
    /// request counts as the peer's failure.
    pub fn on_response(&mut self, id: RequestId, message: ProtoMessage, now: Instant) {
        let Some(out) = self.requests.remove(&id) else {
            return;
        };
        match Response::from_proto(message, out.expected, self.config.peer_limits()) {
            Ok(response) => self.request_succeeded(out, Some(response), now),
            Err(DecodeError::UnexpectedType { .. }) | Err(_) => self.request_failed(out, now),
        }
    }

    /// Request `id`, which expects no response (ADD_PROVIDER), was written out.
    pub fn on_sent(&mut self, id: RequestId, now: Instant) {
        if let Some(out) = self.requests.remove(&id) {
            self.request_succeeded(out, None, now);
        }
    }

    /// Request `id` failed: the dial, the stream, the read, or the message. `fault` says
    /// whose fault; every class counts the same for the lookup (the peer is set aside).
    pub fn on_request_failed(&mut self, id: RequestId, fault: Fault, now: Instant) {
        let _ = fault;
        if let Some(out) = self.requests.remove(&id) {
            self.request_failed(out, now);
        }
    }

    /// Runs what is due at `now`: request and query deadlines, unanswered liveness checks,
    /// the periodic bootstrap, expiry and republishing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(out) = self.requests.remove(&id) {
                self.request_failed(out, now);
            }
        }
        let late: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.time_out(id, now);
        }
        for peer in self.table.expired_checks(now) {
            self.on_liveness(&peer, false, now);
        }
        if self.next_bootstrap.is_some_and(|t| t <= now) {
            self.next_bootstrap = self.config.bootstrap_interval.map(|i| now + i);
            if self.bootstrap_running.is_none() && !self.table.is_empty() {
                // A full query table skips this round; the next comes after the interval.
                let _ = self.bootstrap(now);
            }
        }
        if self.next_maintenance <= now {
            self.next_maintenance = now + self.config.maintenance_interval;
            self.store.expire(now);
            self.republish(now);
        }
    }

    /// When [`handle_timeout`](Kad::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let requests = self.requests.values().map(|o| o.deadline);
        let queries = self.queries.values().map(|q| q.deadline);
        requests
            .chain(queries)
            .chain(self.table.next_check_deadline())
            .chain(self.next_bootstrap)
            .chain(Some(self.next_maintenance))
            .min()
    }

    /// The next thing the host must do on the network.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if matches!(event, Event::QueryFinished { .. }) {
            self.queued_results -= 1;
        }
        Some(event)
    }

    // ---- operations -----------------------------------------------------------------------

    /// Looks up the peers closest to `peer`.
    pub fn find_node(&mut self, peer: &PeerId, now: Instant) -> Result<QueryId, StartError> {
        self.find_closest(peer.to_bytes(), now)
    }

    /// Looks up the peers closest to any key.
    pub fn find_closest(&mut self, key: Vec<u8>, now: Instant) -> Result<QueryId, StartError> {
        self.start(Key::new(key), Kind::FindNode, now)
    }

    /// Looks up the providers of `key`; with `limit`, the query finishes as soon as that
    /// many are found (ours count).
    pub fn get_providers(
        &mut self,
        key: Vec<u8>,
        limit: Option<usize>,
        now: Instant,
    ) -> Result<QueryId, StartError> {
        let found = self.provider_infos(&key, now);
        let target = Key::new(key.clone());
        self.start(target, Kind::GetProviders { key, found, limit }, now)
    }

    /// Looks up the record under `key`, until `quorum` valid copies are found (a copy in our
    /// own store counts for one).
    pub fn get_value(
        &mut self,
        key: Vec<u8>,
        quorum: usize,
        now: Instant,
    ) -> Result<QueryId, StartError> {
        let local = self.store.get(&key, now).map(|r| r.value);
        let found = usize::from(local.is_some());
        let target = Key::new(key.clone());
        self.start(
            target,
            Kind::GetValue {
                key,
                quorum: quorum.max(1),
                best: local,
                found,
                holders: Vec::new(),
                stale: Vec::new(),
            },
            now,
        )
    }

    /// Stores a record of ours: validated, kept in our store (and republished every
    /// [`Config::record_republish_interval`]), and sent to the `k` peers closest to its key;
    /// the query succeeds when `quorum` of them stored it.
    pub fn put_value(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        quorum: usize,
        now: Instant,
    ) -> Result<QueryId, StartError> {
        self.validator.validate(&key, &value)?;
        self.check_capacity()?;
        self.store.put(
            Record {
                key: key.clone(),
                value: value.clone(),
                publisher: Some(self.local),
                expires: None,
            },
            Some(now + self.config.record_republish_interval),
        )?;
        self.start_put(WireRecord { key, value }, quorum, now)
    }

    fn start_put(
        &mut self,
        record: WireRecord,
        quorum: usize,
        now: Instant,
    ) -> Result<QueryId, StartError> {
        let target = Key::new(record.key.clone());
        let quorum = quorum.clamp(1, self.config.k());
        self.start(target, Kind::PutValue { record, quorum }, now)
    }

    /// Announces us as a provider of `key`: kept in our store (and republished every
    /// [`Config::provider_republish_interval`] until [`stop_providing`](Kad::stop_providing)),
    /// and sent with our listen addresses to the `k` peers closest to the key.
    pub fn start_providing(&mut self, key: Vec<u8>, now: Instant) -> Result<QueryId, StartError> {
        if self.listen_addrs.is_empty() {
            return Err(StartError::NoListenAddress);
        }
        self.check_capacity()?;
        self.store.add_provider(
            ProviderRecord {
                key: key.clone(),
                provider: self.local,
                addrs: Vec::new(),
                expires: None,
            },
            Some(now + self.config.provider_republish_interval),
        )?;
        self.start(Key::new(key.clone()), Kind::AddProvider { key }, now)
    }

    /// Stops providing `key` (our record goes; those on other peers expire).
    pub fn stop_providing(&mut self, key: &[u8]) {
        let local = self.local;
        self.store.remove_provider(key, &local);
    }

    /// Bootstraps: a lookup of our own id, then of a random key in each non-empty bucket, one
    /// after the other. Also runs by itself every [`Config::bootstrap_interval`].
    pub fn bootstrap(&mut self, now: Instant) -> Result<QueryId, StartError> {
        let id = self.start(
            self.table.local_key().clone(),
            Kind::Bootstrap { remaining: None },
            now,
        )?;
        if self.queries.contains_key(&id) {
            self.bootstrap_running = Some(id);
        }
        Ok(id)
    }

    /// Ends a query without a result event; its requests in flight are forgotten (their
    /// reports are ignored).
    pub fn cancel(&mut self, id: QueryId) {
        if self.queries.remove(&id).is_some() {
            self.requests.retain(|_, o| o.query != id);
            if self.bootstrap_running == Some(id) {
                self.bootstrap_running = None;
            }
        }
    }

    // ---- internals ------------------------------------------------------------------------

    fn check_capacity(&self) -> Result<(), StartError> {
        if self.queries.len() + self.queued_results >= self.config.max_queries {
            return Err(StartError::TooManyQueries {
                max: self.config.max_queries,
            });
        }
        Ok(())
    }

    fn start(&mut self, target: Key, kind: Kind, now: Instant) -> Result<QueryId, StartError> {
        self.check_capacity()?;
        let id = QueryId(self.next_query);
        self.next_query += 1;
        let lookup = new_lookup(&self.table, &self.config, &self.local, target);
        let seeded = !self.table.is_empty();
        // What our own store already holds was found without a hop.
        let found_at_hop = match &kind {
            Kind::GetProviders { found, .. } if !found.is_empty() => Some(0),
            Kind::GetValue { found, .. } if *found > 0 => Some(0),
            _ => None,
        };
        self.queries.insert(
            id,
            Query {
                kind,
                lookup,
                phase: Phase::Lookup,
                seeded,
                deadline: now + self.config.query_timeout,
                stats: QueryStats {
                    requests: 0,
                    successes: 0,
                    failures: 0,
                    hops: 0,
                    found_at_hop,
                    started: now,
                    finished: now,
                },
            },
        );
        self.drive(id, now);
        Ok(id)
    }

    fn closest_infos(&self, target: &Key, n: usize, exclude: Option<&PeerId>) -> Vec<PeerInfo> {
        self.table
            .closest(target, n, exclude)
            .into_iter()
            .map(|e| PeerInfo {
                id: e.peer,
                addrs: e.addrs.clone(),
                connection: if e.connected {
                    ConnectionType::Connected
                } else {
                    ConnectionType::NotConnected
                },
            })
            .collect()
    }

    /// The providers of `key` we know, with addresses; those we have no address for are left
    /// out, as rust-libp2p does (a requester could not reach them).
    fn provider_infos(&self, key: &[u8], now: Instant) -> Vec<PeerInfo> {
        self.store
            .providers(key, now)
            .into_iter()
            .filter_map(|p| {
                let addrs = if p.provider == self.local {
                    self.listen_addrs.clone()
                } else if !p.addrs.is_empty() {
                    p.addrs
                } else {
                    self.table
                        .get(&p.provider)
                        .map(|e| e.addrs.clone())
                        .unwrap_or_default()
                };
                (!addrs.is_empty()).then_some(PeerInfo {
                    id: p.provider,
                    addrs,
                    connection: ConnectionType::NotConnected,
                })
            })
            .collect()
    }

    fn push_event(&mut self, event: Event) {
        if matches!(event, Event::RoutingUpdated { .. })
            && self.events.len() >= self.config.max_queued_events
        {
            return;
        }
        self.events.push_back(event);
    }

    fn send(
        &mut self,
        query: QueryId,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Request,
        now: Instant,
    ) {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let deadline = now + self.config.request_timeout;
        let expects_response = request.expects_response();
        self.requests.insert(
            id,
            Outstanding {
                query,
                peer,
                addrs: addrs.clone(),
                expected: request.message_type(),
                deadline,
            },
        );
        if let Some(q) = self.queries.get_mut(&query) {
            q.stats.requests += 1;
        }
        self.actions.push_back(Action::SendRequest {
            id,
            peer,
            addrs,
            message: request.to_proto(),
            expects_response,
            deadline,
        });
    }

    fn lookup_request(kind: &Kind, target: &Key) -> Request {
        match kind {
            Kind::GetProviders { key, .. } => Request::GetProviders { key: key.clone() },
            Kind::GetValue { key, .. } => Request::GetValue { key: key.clone() },
            _ => Request::FindNode {
                key: target.preimage().to_vec(),
            },
        }
    }

    /// Sends what the query's lookup wants, and finishes what is done.
    fn drive(&mut self, id: QueryId, now: Instant) {
        loop {
            let Some(q) = self.queries.get_mut(&id) else {
                return;
            };
            if let Phase::Storing {
                outstanding,
                stored,
            } = q.phase
            {
                if outstanding == 0 {
                    self.finish_storing(id, stored, now);
                }
                return;
            }
            if Self::satisfied(&q.kind) {
                self.finish_lookup(id, now);
                return;
            }
            match q.lookup.next_step() {
                LookupStep::Contact { peer, addrs, .. } => {
                    let request = Self::lookup_request(&q.kind, q.lookup.target());
                    self.send(id, peer, addrs, request, now);
                }
                LookupStep::Waiting => return,
                LookupStep::Finished => {
                    self.finish_lookup(id, now);
                    // A bootstrap may go on with its next target; storing goes on with sends.
                    if !self.queries.get(&id).is_some_and(|q| {
                        matches!(q.phase, Phase::Lookup) && matches!(q.kind, Kind::Bootstrap { .. })
                    }) {
                        return;
                    }
                }
            }
        }
    }

    /// Whether a query has what it looked for before its lookup ends.
    fn satisfied(kind: &Kind) -> bool {
        match kind {
            Kind::GetProviders {
                found,
                limit: Some(limit),
                ..
            } => found.len() >= *limit,
            Kind::GetValue { quorum, found, .. } => found >= quorum,
            _ => false,
        }
    }

    fn finish_lookup(&mut self, id: QueryId, now: Instant) {
        let k = self.config.k();
        let local = self.local;
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        let seeded = q.seeded;
        let mut corrections = None;
        let result = match &mut q.kind {
            Kind::FindNode => {
                let closest = q.lookup.closest_succeeded(k);
                QueryResult::FindNode(if closest.is_empty() && !seeded {
                    Err(FindNodeError::NoKnownPeers)
                } else {
                    Ok(closest
                        .into_iter()
                        .map(|(id, addrs)| PeerInfo {
                            id,
                            addrs,
                            connection: ConnectionType::NotConnected,
                        })
                        .collect())
                })
            }
            Kind::GetProviders { found, .. } => {
                QueryResult::GetProviders(if found.is_empty() && !seeded {
                    Err(GetProvidersError::NoKnownPeers)
                } else {
                    Ok(std::mem::take(found))
                })
            }
            Kind::GetValue {
                key,
                quorum,
                best,
                found,
                stale,
                ..
            } => QueryResult::GetValue(if *found >= *quorum {
                let value = best.take().unwrap_or_default();
                let record = WireRecord {
                    key: key.clone(),
                    value: value.clone(),
                };
                corrections = Some((std::mem::take(stale), record));
                Ok(value)
            } else if !seeded && best.is_none() {
                Err(GetValueError::NoKnownPeers)
            } else if *found == 0 {
                Err(GetValueError::NotFound)
            } else {
                // Short of the quorum, the best value found still corrects the others.
                if let Some(value) = best.as_ref() {
                    let record = WireRecord {
                        key: key.clone(),
                        value: value.clone(),
                    };
                    corrections = Some((std::mem::take(stale), record));
                }
                Err(GetValueError::QuorumFailed {
                    best: best.take(),
                    found: *found,
                    quorum: *quorum,
                })
            }),
            Kind::PutValue { record, .. } => {
                let targets = q.lookup.closest_succeeded(k);
                if targets.is_empty() {
                    QueryResult::PutValue(Err(PutValueError::NoKnownPeers))
                } else {
                    let request = Request::PutValue {
                        record: record.clone(),
                    };
                    self.start_storing(id, targets, request, now);
                    return;
                }
            }
            Kind::AddProvider { key } => {
                let targets = q.lookup.closest_succeeded(k);
                if targets.is_empty() {
                    QueryResult::AddProvider(Err(AddProviderError::NoKnownPeers))
                } else {
                    let request = Request::AddProvider {
                        key: key.clone(),
                        providers: vec![PeerInfo {
                            id: local,
                            addrs: self.listen_addrs.clone(),
                            connection: ConnectionType::Connected,
                        }],
                    };
                    self.start_storing(id, targets, request, now);
                    return;
                }
            }
            Kind::Bootstrap { remaining } => {
                if !seeded && self.table.is_empty() {
                    QueryResult::Bootstrap(Err(BootstrapError::NoKnownPeers))
                } else {
                    // After the lookup of our own id, one random key per non-empty bucket.
                    let targets = remaining.get_or_insert_with(|| {
                        let mut targets = Vec::new();
                        for i in self.table.non_empty_buckets() {
                            self.random_counter += 1;
                            let key = self.table.local_key();
                            targets.push(refresh_target(&local, key, i, self.random_counter));
                        }
                        targets
                    });
                    match targets.pop() {
                        Some(target) => {
                            q.lookup = new_lookup(&self.table, &self.config, &local, target);
                            return;
                        }
                        None => QueryResult::Bootstrap(Ok(self.table.len())),
                    }
                }
            }
        };
        self.finish(id, result, now);
        // Entry correction: fire and forget, outside the finished query (reports about
        // these requests find no query and only refresh the routing table).
        if let Some((stale, record)) = corrections {
            for (peer, addrs) in stale {
                let request = Request::PutValue {
                    record: record.clone(),
                };
                self.send(id, peer, addrs, request, now);
            }
        }
    }

    /// Sends `request` to each of `targets`; the query finishes when all have reported.
    fn start_storing(
        &mut self,
        id: QueryId,
        targets: Vec<(PeerId, Vec<Multiaddr>)>,
        request: Request,
        now: Instant,
    ) {
        if let Some(q) = self.queries.get_mut(&id) {
            q.phase = Phase::Storing {
                outstanding: targets.len(),
                stored: 0,
            };
        }
        for (peer, addrs) in targets {
            self.send(id, peer, addrs, request.clone(), now);
        }
    }

    fn finish_storing(&mut self, id: QueryId, stored: usize, now: Instant) {
        let Some(q) = self.queries.get(&id) else {
            return;
        };
        let result = match &q.kind {
            Kind::PutValue { quorum, .. } => QueryResult::PutValue(if stored >= *quorum {
                Ok(stored)
            } else {
                Err(PutValueError::QuorumFailed {
                    stored,
                    quorum: *quorum,
                })
            }),
            Kind::AddProvider { .. } => QueryResult::AddProvider(if stored > 0 {
                Ok(stored)
            } else {
                Err(AddProviderError::NotSent)
            }),
            _ => return,
        };
        self.finish(id, result, now);
    }

    fn finish(&mut self, id: QueryId, result: QueryResult, now: Instant) {
        let Some(mut q) = self.queries.remove(&id) else {
            return;
        };
        self.requests.retain(|_, o| o.query != id);
        if self.bootstrap_running == Some(id) {
            self.bootstrap_running = None;
        }
        q.stats.finished = now;
        self.queued_results += 1;
        self.events.push_back(Event::QueryFinished {
            id,
            result,
            stats: q.stats,
        });
    }

    fn time_out(&mut self, id: QueryId, now: Instant) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        let result = match (&mut q.kind, &q.phase) {
            (Kind::FindNode, _) => QueryResult::FindNode(Err(FindNodeError::Timeout {
                closest: q
                    .lookup
                    .closest_succeeded(self.config.k())
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect(),
            })),
            (Kind::GetProviders { found, .. }, _) => {
                if found.is_empty() {
                    QueryResult::GetProviders(Err(GetProvidersError::Timeout))
                } else {
                    QueryResult::GetProviders(Ok(std::mem::take(found)))
                }
            }
            (Kind::GetValue { best, .. }, _) => {
                QueryResult::GetValue(Err(GetValueError::Timeout { best: best.take() }))
            }
            (Kind::PutValue { quorum, .. }, phase) => {
                let stored = match phase {
                    Phase::Storing { stored, .. } => *stored,
                    Phase::Lookup => 0,
                };
                QueryResult::PutValue(if stored >= *quorum {
                    Ok(stored)
                } else {
                    Err(PutValueError::Timeout { stored })
                })
            }
            (Kind::AddProvider { .. }, phase) => match phase {
                Phase::Storing { stored, .. } if *stored > 0 => {
                    QueryResult::AddProvider(Ok(*stored))
                }
                _ => QueryResult::AddProvider(Err(AddProviderError::Timeout)),
            },
            (Kind::Bootstrap { .. }, _) => QueryResult::Bootstrap(Err(BootstrapError::Timeout)),
        };
        self.finish(id, result, now);
    }

    fn request_succeeded(&mut self, out: Outstanding, response: Option<Response>, now: Instant) {
        // A peer that answered a DHT request is a live server: it enters (or refreshes in)
        // our table.
        if response.is_some() {
            self.add_peer(out.peer, &out.addrs, now);
        }
        let validator = &self.validator;
        let Some(q) = self.queries.get_mut(&out.query) else {
            return;
        };
        q.stats.successes += 1;
        if let Phase::Storing {
            outstanding,
            stored,
        } = &mut q.phase
        {
            *outstanding = outstanding.saturating_sub(1);
            let ok = match (&q.kind, &response) {
                (Kind::PutValue { record, .. }, Some(Response::PutValue { record: echo })) => {
                    echo.key == record.key
                }
                (Kind::AddProvider { .. }, None) => true,
                _ => false,
            };
            if ok {
                *stored += 1;
            }
            self.drive(out.query, now);
            return;
        }
        let max_found = self.config.max_peers_per_message;
        let hop = q.lookup.hop(&out.peer).unwrap_or(0);
        let closer = match response {
            Some(Response::FindNode { closer }) => closer,
            Some(Response::GetProviders { providers, closer }) => {
                if let Kind::GetProviders { found, .. } = &mut q.kind {
                    let mut new = false;
                    for p in providers {
                        if found.len() >= max_found {
                            break;
                        }
                        if let Some(known) = found.iter_mut().find(|f| f.id == p.id) {
                            if known.addrs.is_empty() {
                                known.addrs = p.addrs;
                            }
                        } else {
                            found.push(p);
                            new = true;
                        }
                    }
                    if new && q.stats.found_at_hop.is_none() {
                        q.stats.found_at_hop = Some(hop);
                    }
                }
                closer
            }
            Some(Response::GetValue { record, closer }) => {
                if let Kind::GetValue {
                    key,
                    best,
                    found,
                    holders,
                    stale,
                    ..
                } = &mut q.kind
                {
                    let from = (out.peer, out.addrs.clone());
                    let valid = record
                        .filter(|r| r.key == *key && validator.validate(key, &r.value).is_ok());
                    if valid.is_some() {
                        // Every valid copy counts towards the quorum, the best one wins.
                        *found += 1;
                        if q.stats.found_at_hop.is_none() {
                            q.stats.found_at_hop = Some(hop);
                        }
                    }
                    match (valid, best.as_ref()) {
                        (None, _) => stale.push(from),
                        (Some(r), None) => {
                            *best = Some(r.value);
                            holders.push(from);
                        }
                        (Some(r), Some(b)) if r.value == *b => holders.push(from),
                        (Some(r), Some(b)) => {
                            if validator.select(key, &[b, &r.value]) == 1 {
                                *best = Some(r.value);
                                stale.append(holders);
                                holders.push(from);
                            } else {
                                stale.push(from);
                            }
                        }
                    }
                    stale.truncate(self.config.replication_factor.max(1));
                }
                closer
            }
            _ => Vec::new(),
        };
        if let Some(hop) = q.lookup.on_success(&out.peer, closer) {
            q.stats.hops = q.stats.hops.max(hop);
        }
        self.drive(out.query, now);
    }

    fn request_failed(&mut self, out: Outstanding, now: Instant) {
        let Some(q) = self.queries.get_mut(&out.query) else {
            return;
        };
        q.stats.failures += 1;
        match &mut q.phase {
            Phase::Storing { outstanding, .. } => *outstanding = outstanding.saturating_sub(1),
            Phase::Lookup => {
                q.lookup.on_failure(&out.peer);
            }
        }
        self.drive(out.query, now);
    }

    fn republish(&mut self, now: Instant) {
        for due in self.store.due(now, self.config.max_republish_per_sweep) {
            if self.check_capacity().is_err() {
                // The rest waits for the next sweep.
                return;
            }
            match &due {
                Due::Record(key) => {
                    let Some(record) = self.store.get(key, now) else {
                        continue;
                    };
                    let wire = WireRecord {
                        key: record.key,
                        value: record.value,
                    };
                    let _ = self.start_put(wire, 1, now);
                    self.store
                        .set_republished(&due, now + self.config.record_republish_interval);
                }
                Due::Provider(key) => {
                    if self.listen_addrs.is_empty() {
                        continue;
                    }
                    let _ = self.start(
                        Key::new(key.clone()),
                        Kind::AddProvider { key: key.clone() },
                        now,
                    );
                    self.store
                        .set_republished(&due, now + self.config.provider_republish_interval);
                }
            }
        }
    }
}

/// A lookup of `target` seeded with the `k` closest peers of `table`.
fn new_lookup(table: &RoutingTable, config: &Config, local: &PeerId, target: Key) -> Lookup {
    let k = config.k();
    let seeds: Vec<(PeerId, Vec<Multiaddr>)> = table
        .closest(&target, k, None)
        .into_iter()
        .map(|e| (e.peer, e.addrs.clone()))
        .collect();
    Lookup::new(
        target,
        seeds,
        k,
        config.alpha(),
        config.max_lookup_peers,
        Some(*local),
    )
    .with_max_addrs(config.max_addrs_per_peer)
}

/// A random-looking peer id whose key falls in bucket `bucket` of `local_key`, if one turns up
/// in 16 tries (buckets near us are too small to hit by chance; their last try is used).
/// Refresh targets need no secrecy, so the "randomness" is sha2-256 over our id and a counter:
/// no RNG and no clock in the state machine, and different on every node.
fn refresh_target(local: &PeerId, local_key: &Key, bucket: usize, counter: u64) -> Key {
    let mut last = None;
    for attempt in 0..16u64 {
        let mut h = Sha256::new();
        h.update(local.to_bytes());
        h.update(counter.to_le_bytes());
        h.update(attempt.to_le_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let mut mh = vec![0x12, 0x20];
        mh.extend_from_slice(&digest);
        let key = Key::new(mh);
        if local_key.distance(&key).bucket_index() == Some(bucket) {
            return key;
        }
        last = Some(key);
    }
    last.expect("16 tries")
}
