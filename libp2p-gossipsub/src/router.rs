//! The router: subscriptions, meshes, fanout, gossip, the caches and the score, as one plain
//! state machine. Inputs are method calls that carry `now`; outputs are [`Action`]s pulled
//! with [`Gossipsub::poll_action`]. No sockets, no clock, no task.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p_core::PeerId;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::cache::{MessageCache, SeenCache};
use crate::config::{Config, Thresholds, TopicScoreParams};
use crate::error::{ConfigError, MessageError, PublishError, ReportError, SubscribeError};
use crate::message;
use crate::proto::{self, field_len, Codec};
use crate::score::PeerScore;
use crate::types::{Acceptance, Authenticity, Message, MessageId, PeerKind, TopicHash};

/// Something the router wants done, pulled with [`Gossipsub::poll_action`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Send this RPC to the peer (on its long-lived outbound stream). Each RPC fits
    /// `Config::max_rpc_size`.
    SendRpc {
        /// The peer.
        peer: PeerId,
        /// The RPC.
        rpc: proto::Rpc,
    },
    /// A message for the application, on a topic we are subscribed to. With
    /// `Config::validate_messages`, it waits for [`Gossipsub::report_validation`] before it
    /// is forwarded; otherwise it has been forwarded already.
    Deliver {
        /// Its id.
        id: MessageId,
        /// The message.
        message: Message,
        /// The peer it came from (not necessarily its author).
        propagation_source: PeerId,
    },
    /// A peer joined a topic.
    PeerSubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: TopicHash,
    },
    /// A peer left a topic.
    PeerUnsubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: TopicHash,
    },
    /// A PRUNE from a well-scored peer named other peers of the topic: connect to them if
    /// their addresses are known (peer ids only, until signed peer records exist).
    PeerExchange {
        /// The topic.
        topic: TopicHash,
        /// The peers, ones we are connected to already left out.
        peers: Vec<PeerId>,
    },
    /// A received message failed its checks (the sender is penalised); for logs.
    InvalidMessage {
        /// The peer that sent it.
        peer: PeerId,
        /// Its topic.
        topic: TopicHash,
        /// What was wrong.
        error: MessageError,
    },
}

/// Counters, for tests, logs and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages delivered to the application.
    pub delivered: u64,
    /// Copies of messages we had already seen.
    pub duplicates: u64,
    /// Messages that failed their checks or the application's validation.
    pub invalid: u64,
    /// RPCs dropped because their sender is below the graylist threshold.
    pub graylisted_rpcs: u64,
    /// GRAFTs received while the sender was backed off.
    pub grafts_during_backoff: u64,
    /// IHAVEs ignored (score, per-heartbeat limits).
    pub ignored_ihaves: u64,
    /// IWANT promises not kept in time.
    pub broken_promises: u64,
    /// Messages dropped by a limit (per RPC, pending validation).
    pub dropped_messages: u64,
    /// Actions dropped because the action queue was full.
    pub dropped_actions: u64,
}

#[derive(Debug)]
struct PeerState {
    kind: PeerKind,
    outbound: bool,
    topics: BTreeSet<TopicHash>,
    /// IHAVEs received this heartbeat.
    ihaves: usize,
    /// Message ids we asked of it this heartbeat.
    asked: usize,
    /// Message ids we answered its IWANTs with this heartbeat.
    served: usize,
    /// Its IDONTWANTs, with their expiry.
    dont_send: HashMap<MessageId, Instant>,
    dont_send_order: VecDeque<(Instant, MessageId)>,
}

/// The gossipsub router.
pub struct Gossipsub {
    config: Config,
    authenticity: Authenticity,
    local_peer: Option<PeerId>,
    codec: Codec,
    rng: StdRng,
    next_seqno: u64,
    peers: BTreeMap<PeerId, PeerState>,
    topic_peers: BTreeMap<TopicHash, BTreeSet<PeerId>>,
    /// Our subscriptions, each with its mesh.
    mesh: BTreeMap<TopicHash, BTreeSet<PeerId>>,
    fanout: BTreeMap<TopicHash, BTreeSet<PeerId>>,
    fanout_last_pub: BTreeMap<TopicHash, Instant>,
    /// When each (topic, peer) backoff ends.
    backoff: BTreeMap<(TopicHash, PeerId), Instant>,
    mcache: MessageCache,
    seen: SeenCache,
    score: Option<(PeerScore, Thresholds)>,
    /// IWANT promises: for each message id asked for, who promised it and by when.
    promises: HashMap<MessageId, BTreeMap<PeerId, Instant>>,
    /// Messages awaiting the application's verdict, with the peer they came from.
    pending: HashMap<MessageId, PeerId>,
    /// RPCs being put together during the current call, flushed into actions at its end.
    outbox: BTreeMap<PeerId, proto::Rpc>,
    actions: VecDeque<Action>,
    next_heartbeat: Instant,
    next_decay: Instant,
    ticks: u64,
    stats: Stats,
}

impl std::fmt::Debug for Gossipsub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossipsub")
            .field("local_peer", &self.local_peer)
            .field("peers", &self.peers.len())
            .field("mesh", &self.mesh)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Gossipsub {
    /// A router with `config`, publishing as `authenticity`. `seed` seeds its random choices
    /// (peer selection, the first sequence number): give it a random value, or a fixed one
    /// for a reproducible simulation. `now` starts the heartbeat clock.
    pub fn new(
        config: Config,
        authenticity: Authenticity,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let local_peer = match &authenticity {
            Authenticity::Signed(key) => Some(key.public().to_peer_id()),
            Authenticity::Author(peer) => Some(*peer),
            Authenticity::Anonymous => None,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let next_seqno = rng.random::<u64>() >> 1;
        let score = config.score.clone().map(|(params, thresholds)| {
            (
                PeerScore::new(params, config.seen_ttl, config.max_seen_messages),
                thresholds,
            )
        });
        let next_decay = now
            + score
                .as_ref()
                .map_or(Duration::from_secs(1), |(s, _)| s.params().decay_interval);
        Ok(Gossipsub {
            codec: Codec::new(config.max_rpc_size),
            mcache: MessageCache::new(
                config.history_length,
                config.history_gossip,
                config.max_cached_messages,
            ),
            seen: SeenCache::new(config.seen_ttl, config.max_seen_messages),
            next_heartbeat: now + config.heartbeat_initial_delay,
            next_decay,
            config,
            authenticity,
            local_peer,
            rng,
            next_seqno,
            peers: BTreeMap::new(),
            topic_peers: BTreeMap::new(),
            mesh: BTreeMap::new(),
            fanout: BTreeMap::new(),
            fanout_last_pub: BTreeMap::new(),
            backoff: BTreeMap::new(),
            score,
            promises: HashMap::new(),
            pending: HashMap::new(),
            outbox: BTreeMap::new(),
            actions: VecDeque::new(),
            ticks: 0,
            stats: Stats::default(),
        })
    }

    // ---------------------------------------------------------------- queries

    /// Our peer id as author, unless anonymous.
    pub fn local_peer_id(&self) -> Option<PeerId> {
        self.local_peer
    }

    /// The RPC codec with the configured maximum size, for the stream driver.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How many messages the message cache holds.
    pub fn cached_messages(&self) -> usize {
        self.mcache.len()
    }

    /// How many message ids the seen-cache holds.
    pub fn seen_messages(&self) -> usize {
        self.seen.len()
    }

    /// Whether we are subscribed to `topic`.
    pub fn is_subscribed(&self, topic: &TopicHash) -> bool {
        self.mesh.contains_key(topic)
    }

    /// Our subscriptions.
    pub fn topics(&self) -> impl Iterator<Item = &TopicHash> {
        self.mesh.keys()
    }

    /// Our mesh peers for `topic`.
    pub fn mesh_peers(&self, topic: &TopicHash) -> impl Iterator<Item = &PeerId> {
        self.mesh.get(topic).into_iter().flatten()
    }

    /// Our fanout peers for `topic`.
    pub fn fanout_peers(&self, topic: &TopicHash) -> impl Iterator<Item = &PeerId> {
        self.fanout.get(topic).into_iter().flatten()
    }

    /// The connected peers subscribed to `topic`.
    pub fn topic_peers(&self, topic: &TopicHash) -> impl Iterator<Item = &PeerId> {
        self.topic_peers.get(topic).into_iter().flatten()
    }

    /// Whether `peer` is connected (known to the router).
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// The score of `peer` at `now`, `None` when scoring is off.
    pub fn peer_score(&self, peer: &PeerId, now: Instant) -> Option<f64> {
        self.score.as_ref().map(|(s, _)| s.score(peer, now))
    }

    /// Whether we are backed off from grafting `peer` on `topic` at `now`.
    pub fn is_backed_off(&self, topic: &TopicHash, peer: &PeerId, now: Instant) -> bool {
        self.backoff
            .get(&(topic.clone(), *peer))
            .is_some_and(|until| *until > now)
    }

    /// When [`Gossipsub::handle_timeout`] should be called next (the next heartbeat).
    pub fn poll_timeout(&self) -> Instant {
        self.next_heartbeat
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ---------------------------------------------------------------- score knobs

    /// Sets the application's score of `peer` (P5); false if the peer is unknown or
    /// scoring is off.
    pub fn set_application_score(&mut self, peer: &PeerId, score: f64) -> bool {
        self.score
            .as_mut()
            .is_some_and(|(s, _)| s.set_application_score(peer, score))
    }

    /// Sets the score parameters of one topic; false when scoring is off.
    pub fn set_topic_params(&mut self, topic: TopicHash, params: TopicScoreParams) -> bool {
        match self.score.as_mut() {
            Some((s, _)) => {
                s.set_topic_params(topic, params);
                true
            }
            None => false,
        }
    }

    // ---------------------------------------------------------------- peers

    /// A peer is ready: the first of its gossipsub streams (ours to it, or its to us)
    /// negotiated `kind`; call it before handing over the peer's first RPC. `outbound`: the
    /// connection is one we dialed (the mesh keeps `mesh_outbound_min` of those, so that
    /// peers dialing us cannot fill it). `ip` (of the connection) feeds P6. Sends it our
    /// subscriptions. False if it was known already or the peer table is full.
    pub fn add_peer(
        &mut self,
        peer: PeerId,
        kind: PeerKind,
        outbound: bool,
        ip: Option<IpAddr>,
    ) -> bool {
        if self.peers.contains_key(&peer) || self.peers.len() >= self.config.max_peers {
            return false;
        }
        self.peers.insert(
            peer,
            PeerState {
                kind,
                outbound,
                topics: BTreeSet::new(),
                ihaves: 0,
                asked: 0,
                served: 0,
                dont_send: HashMap::new(),
                dont_send_order: VecDeque::new(),
            },
        );
        if let Some((s, _)) = self.score.as_mut() {
            s.add_peer(peer, ip);
        }
        self.send_subscriptions(peer);
        self.flush();
        true
    }

    /// Queues every topic we are subscribed to for `peer` (nothing when we are in none).
    fn send_subscriptions(&mut self, peer: PeerId) {
        if self.mesh.is_empty() {
            return;
        }
        let subs: Vec<proto::SubOpts> = self
            .mesh
            .keys()
            .map(|t| proto::SubOpts {
                subscribe: Some(true),
                topic_id: Some(t.as_str().to_owned()),
            })
            .collect();
        self.out(peer).subscriptions.extend(subs);
    }

    /// A known peer opened a new stream to us: it may have started over (its connection
    /// closed and came back before we saw the close), in which case it has forgotten our
    /// subscriptions and its side of our mesh. Tells it again: our subscriptions, and a GRAFT
    /// for every topic whose mesh holds it. Both are no-ops for a peer that remembers them (a
    /// known subscription and a GRAFT from a mesh member change nothing), and without them a
    /// peer that started over would never send us a GRAFT nor receive ours. False if the peer
    /// is unknown.
    pub fn reannounce(&mut self, peer: &PeerId) -> bool {
        if !self.peers.contains_key(peer) {
            return false;
        }
        self.send_subscriptions(*peer);
        let grafts: Vec<proto::ControlGraft> = self
            .mesh
            .iter()
            .filter(|(_, mesh)| mesh.contains(peer))
            .map(|(t, _)| proto::ControlGraft {
                topic_id: Some(t.as_str().to_owned()),
            })
            .collect();
        if !grafts.is_empty() {
            self.out(*peer).control_mut().graft.extend(grafts);
        }
        self.flush();
        true
    }

    /// A peer disconnected (its last connection closed or its stream ended for good).
    pub fn remove_peer(&mut self, peer: &PeerId, now: Instant) {
        let Some(state) = self.peers.remove(peer) else {
            return;
        };
        for topic in &state.topics {
            if let Some(set) = self.topic_peers.get_mut(topic) {
                set.remove(peer);
                if set.is_empty() {
                    self.topic_peers.remove(topic);
                }
            }
            if let Some(mesh) = self.mesh.get_mut(topic) {
                if mesh.remove(peer) {
                    if let Some((s, _)) = self.score.as_mut() {
                        s.prune(peer, topic);
                    }
                }
            }
            if let Some(fanout) = self.fanout.get_mut(topic) {
                fanout.remove(peer);
            }
        }
        for promised in self.promises.values_mut() {
            promised.remove(peer);
        }
        self.outbox.remove(peer);
        if let Some((s, _)) = self.score.as_mut() {
            s.remove_peer(peer, now);
        }
    }

    // ---------------------------------------------------------------- application

    /// Joins `topic`: tells every peer, and builds a mesh from the fanout and the topic's
    /// peers. `Ok(false)` if subscribed already.
    pub fn subscribe(&mut self, topic: TopicHash, now: Instant) -> Result<bool, SubscribeError> {
        if self.mesh.contains_key(&topic) {
            return Ok(false);
        }
        if self.mesh.len() >= self.config.max_subscribed_topics {
            return Err(SubscribeError::TooManyTopics {
                max: self.config.max_subscribed_topics,
            });
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.out(peer).subscriptions.push(proto::SubOpts {
                subscribe: Some(true),
                topic_id: Some(topic.as_str().to_owned()),
            });
        }
        let mut chosen: Vec<PeerId> = self
            .fanout
            .remove(&topic)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| self.can_graft(&topic, p, now))
            .collect();
        self.fanout_last_pub.remove(&topic);
        if chosen.len() < self.config.mesh_n {
            let more = self.graft_candidates(&topic, &chosen.iter().copied().collect(), now);
            chosen.extend(more.into_iter().take(self.config.mesh_n - chosen.len()));
        }
        chosen.truncate(self.config.mesh_n);
        self.mesh.insert(topic.clone(), BTreeSet::new());
        for peer in chosen {
            self.graft_peer(&topic, peer, now);
        }
        self.flush();
        Ok(true)
    }

    /// Leaves `topic`: tells every peer and prunes the mesh (with the unsubscribe backoff).
    /// False if not subscribed.
    pub fn unsubscribe(&mut self, topic: &TopicHash, now: Instant) -> bool {
        let Some(mesh) = self.mesh.remove(topic) else {
            return false;
        };
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.out(peer).subscriptions.push(proto::SubOpts {
                subscribe: Some(false),
                topic_id: Some(topic.as_str().to_owned()),
            });
        }
        for peer in mesh {
            if let Some((s, _)) = self.score.as_mut() {
                s.prune(&peer, topic);
            }
            let backoff = self.config.unsubscribe_backoff;
            let prune = self.make_prune(topic, &peer, self.config.do_px, backoff, now);
            self.out(peer).control_mut().prune.push(prune);
        }
        self.flush();
        true
    }

    /// Publishes `data` on `topic` (subscribed or not: an unsubscribed topic gets a fanout).
    pub fn publish(
        &mut self,
        topic: TopicHash,
        data: Vec<u8>,
        now: Instant,
    ) -> Result<MessageId, PublishError> {
        let (from, seqno) = match &self.authenticity {
            Authenticity::Signed(_) | Authenticity::Author(_) => {
                let seqno = self.next_seqno;
                self.next_seqno = self.next_seqno.wrapping_add(1);
                (self.local_peer, Some(seqno))
            }
            Authenticity::Anonymous => (None, None),
        };
        let mut raw = proto::Message {
            from: from.map(|p| p.to_bytes()),
            data: Some(data),
            seqno: seqno.map(|s| s.to_be_bytes().to_vec()),
            topic: topic.as_str().to_owned(),
            signature: None,
            key: None,
        };
        if let Authenticity::Signed(key) = &self.authenticity {
            message::sign(&mut raw, key).map_err(PublishError::Signing)?;
        }
        let len = field_len(raw.encoded_len());
        if len > self.config.max_rpc_size {
            return Err(PublishError::MessageTooLarge {
                len,
                max: self.config.max_rpc_size,
            });
        }
        let decoded = Message {
            source: from,
            data: raw.data.clone().unwrap_or_default(),
            sequence_number: seqno,
            topic: topic.clone(),
        };
        let id = (self.config.message_id_fn)(&decoded);
        if self.seen.contains(&id) {
            return Err(PublishError::Duplicate);
        }
        let publish_threshold = self.thresholds().map_or(f64::NEG_INFINITY, |t| t.publish);
        let subscribed = self.mesh.contains_key(&topic);
        let fanout_room = self.fanout.contains_key(&topic)
            || self.fanout.len() < self.config.max_subscribed_topics;
        if !subscribed && fanout_room {
            self.fanout_last_pub.insert(topic.clone(), now);
            let has_fanout = self.fanout.get(&topic).is_some_and(|f| !f.is_empty());
            if !has_fanout {
                let mut candidates: Vec<PeerId> = self
                    .topic_peers(&topic)
                    .filter(|p| {
                        self.peers[*p].kind.is_gossipsub()
                            && self.score_of(p, now) >= publish_threshold
                    })
                    .copied()
                    .collect();
                candidates.shuffle(&mut self.rng);
                candidates.truncate(self.config.mesh_n);
                self.fanout
                    .insert(topic.clone(), candidates.into_iter().collect());
            }
        }
        let recipients: BTreeSet<PeerId> = if self.config.flood_publish {
            self.topic_peers(&topic)
                .filter(|p| self.score_of(p, now) >= publish_threshold)
                .copied()
                .collect()
        } else {
            let mut set: BTreeSet<PeerId> = if subscribed {
                self.mesh[&topic].clone()
            } else {
                self.fanout.get(&topic).cloned().unwrap_or_default()
            };
            set.extend(
                self.topic_peers(&topic)
                    .filter(|p| {
                        self.peers[*p].kind == PeerKind::Floodsub
                            && self.score_of(p, now) >= publish_threshold
                    })
                    .copied(),
            );
            set
        };
        if recipients.is_empty() {
            return Err(PublishError::NoPeers);
        }
        self.seen.insert(&id, now);
        self.mcache.put(&id, raw.clone(), true);
        for peer in recipients {
            self.out(peer).publish.push(raw.clone());
        }
        self.flush();
        Ok(id)
    }

    /// The application's verdict on a message it got in [`Action::Deliver`] (with
    /// `Config::validate_messages`): accepted messages are forwarded, rejected ones cost
    /// every peer that sent them (P4), ignored ones are dropped.
    pub fn report_validation(
        &mut self,
        id: &MessageId,
        acceptance: Acceptance,
        now: Instant,
    ) -> Result<(), ReportError> {
        let source = self.pending.remove(id).ok_or(ReportError::UnknownMessage)?;
        match acceptance {
            Acceptance::Accept => {
                let raw = self
                    .mcache
                    .validate(id)
                    .ok_or(ReportError::UnknownMessage)?;
                if let Some((s, _)) = self.score.as_mut() {
                    s.message_accepted(id, now);
                }
                self.forward(id, &raw, &source);
            }
            Acceptance::Reject | Acceptance::Ignore => {
                self.mcache.remove(id);
                let invalid = acceptance == Acceptance::Reject;
                if invalid {
                    self.stats.invalid += 1;
                }
                if let Some((s, _)) = self.score.as_mut() {
                    s.message_rejected(id, invalid);
                }
            }
        }
        self.flush();
        Ok(())
    }

    // ---------------------------------------------------------------- input from peers

    /// An RPC arrived from `from` (decoded with [`Gossipsub::codec`]). RPCs from peers not
    /// added with [`Gossipsub::add_peer`] are ignored.
    pub fn handle_rpc(&mut self, from: PeerId, rpc: proto::Rpc, now: Instant) {
        let Some(kind) = self.peers.get(&from).map(|p| p.kind) else {
            return;
        };
        if let Some(t) = self.thresholds() {
            if self.score_of(&from, now) < t.graylist {
                self.stats.graylisted_rpcs += 1;
                return;
            }
        }
        for sub in rpc.subscriptions {
            self.handle_subscription(from, sub, now);
        }
        for (n, raw) in rpc.publish.into_iter().enumerate() {
            if n >= self.config.max_messages_per_rpc {
                self.stats.dropped_messages += 1;
                continue;
            }
            self.handle_message(from, raw, now);
        }
        if let Some(control) = rpc.control {
            if kind.is_gossipsub() {
                self.handle_ihave(from, control.ihave, now);
                self.handle_iwant(from, control.iwant, now);
                self.handle_graft(from, control.graft, now);
                self.handle_prune(from, control.prune, now);
                self.handle_idontwant(from, control.idontwant, now);
            }
        }
        self.flush();
    }

    fn handle_subscription(&mut self, from: PeerId, sub: proto::SubOpts, now: Instant) {
        let Some(topic) = sub.topic_id.map(TopicHash::new) else {
            return;
        };
        let Some(state) = self.peers.get_mut(&from) else {
            return;
        };
        if sub.subscribe.unwrap_or(false) {
            if state.topics.len() >= self.config.max_topics_per_peer
                || !state.topics.insert(topic.clone())
            {
                return;
            }
            let kind = state.kind;
            self.topic_peers
                .entry(topic.clone())
                .or_default()
                .insert(from);
            self.push_action(Action::PeerSubscribed {
                peer: from,
                topic: topic.clone(),
            });
            // Fill a thin mesh at once rather than at the next heartbeat.
            let thin = self
                .mesh
                .get(&topic)
                .is_some_and(|m| m.len() < self.config.mesh_n_low);
            if thin && kind.is_gossipsub() && self.can_graft(&topic, &from, now) {
                self.graft_peer(&topic, from, now);
            }
        } else {
            if !state.topics.remove(&topic) {
                return;
            }
            if let Some(set) = self.topic_peers.get_mut(&topic) {
                set.remove(&from);
                if set.is_empty() {
                    self.topic_peers.remove(&topic);
                }
            }
            if let Some(mesh) = self.mesh.get_mut(&topic) {
                if mesh.remove(&from) {
                    if let Some((s, _)) = self.score.as_mut() {
                        s.prune(&from, &topic);
                    }
                }
            }
            if let Some(fanout) = self.fanout.get_mut(&topic) {
                fanout.remove(&from);
            }
            self.push_action(Action::PeerUnsubscribed { peer: from, topic });
        }
    }

    fn handle_message(&mut self, from: PeerId, raw: proto::Message, now: Instant) {
        let topic = TopicHash::new(raw.topic.clone());
        // Not our topic: not worth a signature check (go-libp2p drops these too).
        if !self.mesh.contains_key(&topic) {
            return;
        }
        let reject = |this: &mut Self, error: MessageError| {
            this.stats.invalid += 1;
            if let Some((s, _)) = this.score.as_mut() {
                s.invalid_message(&from, &topic);
            }
            this.push_action(Action::InvalidMessage {
                peer: from,
                topic: topic.clone(),
                error,
            });
        };
        let decoded = match message::decode(&raw) {
            Ok(m) => m,
            Err(error) => return reject(self, error),
        };
        let id = (self.config.message_id_fn)(&decoded);
        // Duplicates are dropped before their signature is checked (the costly part; most
        // copies are duplicates). A forged copy cannot shadow the real message: an id is
        // only marked seen once its message has passed the check.
        if self.seen.contains(&id) {
            self.stats.duplicates += 1;
            if let Some((s, _)) = self.score.as_mut() {
                s.duplicate(&from, &id, now);
            }
            return;
        }
        if let Err(error) = message::check(&raw, &decoded, self.config.validation_mode) {
            return reject(self, error);
        }
        self.seen.insert(&id, now);
        // Whoever promised it is off the hook: it is here.
        self.promises.remove(&id);
        if let Some((s, _)) = self.score.as_mut() {
            s.message_received(&from, &id, &topic, now);
        }
        // v1.2: tell the mesh we have it, so that they do not send it too.
        if raw.data.as_ref().map_or(0, Vec::len) >= self.config.idontwant_message_size_threshold {
            let mesh: Vec<PeerId> = self.mesh[&topic]
                .iter()
                .filter(|p| **p != from && self.peers[*p].kind.supports_idontwant())
                .copied()
                .collect();
            for peer in mesh {
                self.out(peer)
                    .control_mut()
                    .idontwant
                    .push(proto::ControlIDontWant {
                        message_ids: vec![id.0.clone()],
                    });
            }
        }
        if self.config.validate_messages {
            if self.pending.len() >= self.config.max_pending_validation {
                self.stats.dropped_messages += 1;
                return;
            }
            if !self.mcache.put(&id, raw, false) {
                // The cache is full: it could not be forwarded after validation anyway.
                self.stats.dropped_messages += 1;
                return;
            }
            self.pending.insert(id.clone(), from);
            self.stats.delivered += 1;
            self.push_action(Action::Deliver {
                id,
                message: decoded,
                propagation_source: from,
            });
            return;
        }
        if let Some((s, _)) = self.score.as_mut() {
            s.message_accepted(&id, now);
        }
        self.mcache.put(&id, raw.clone(), true);
        self.forward(&id, &raw, &from);
        self.stats.delivered += 1;
        self.push_action(Action::Deliver {
            id,
            message: decoded,
            propagation_source: from,
        });
    }

    /// Sends a validated message on to the mesh (and floodsub peers) of its topic.
    fn forward(&mut self, id: &MessageId, raw: &proto::Message, source: &PeerId) {
        let topic = TopicHash::new(raw.topic.clone());
        let author = raw.from.as_deref().and_then(|b| PeerId::from_bytes(b).ok());
        let mut recipients: BTreeSet<PeerId> = self.mesh.get(&topic).cloned().unwrap_or_default();
        recipients.extend(
            self.topic_peers(&topic)
                .filter(|p| self.peers[*p].kind == PeerKind::Floodsub)
                .copied(),
        );
        for peer in recipients {
            if peer == *source || Some(peer) == author {
                continue;
            }
            if self.peers[&peer].dont_send.contains_key(id) {
                continue;
            }
            self.out(peer).publish.push(raw.clone());
        }
    }

    fn handle_ihave(&mut self, from: PeerId, ihaves: Vec<proto::ControlIHave>, now: Instant) {
        if ihaves.is_empty() {
            return;
        }
        if let Some(t) = self.thresholds() {
            if self.score_of(&from, now) < t.gossip {
                self.stats.ignored_ihaves += 1;
                return;
            }
        }
        let max_length = self.config.max_ihave_length;
        let state = self.peers.get_mut(&from).expect("caller checked");
        state.ihaves += 1;
        if state.ihaves > self.config.max_ihave_messages || state.asked >= max_length {
            self.stats.ignored_ihaves += 1;
            return;
        }
        let room = max_length - state.asked;
        let mut wanted: Vec<MessageId> = Vec::new();
        let mut unique = BTreeSet::new();
        for ihave in ihaves {
            let Some(topic) = ihave.topic_id.map(TopicHash::new) else {
                continue;
            };
            if !self.mesh.contains_key(&topic) {
                continue;
            }
            for id in ihave.message_ids {
                // Never more ids considered than we may ask for, whatever the peer sends.
                if unique.len() >= max_length {
                    break;
                }
                let id = MessageId(id);
                if !self.seen.contains(&id)
                    && !self.promises.contains_key(&id)
                    && unique.insert(id.clone())
                {
                    wanted.push(id);
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        wanted.shuffle(&mut self.rng);
        wanted.truncate(room);
        self.peers.get_mut(&from).expect("caller checked").asked += wanted.len();
        // One promise per IWANT (go-libp2p's rule): a broken one costs one penalty.
        let promised = wanted[self.rng.random_range(0..wanted.len())].clone();
        self.promises
            .entry(promised)
            .or_default()
            .insert(from, now + self.config.iwant_followup_time);
        self.out(from)
            .control_mut()
            .iwant
            .push(proto::ControlIWant {
                message_ids: wanted.into_iter().map(|id| id.0).collect(),
            });
    }

    fn handle_iwant(&mut self, from: PeerId, iwants: Vec<proto::ControlIWant>, now: Instant) {
        if iwants.is_empty() {
            return;
        }
        if let Some(t) = self.thresholds() {
            if self.score_of(&from, now) < t.gossip {
                return;
            }
        }
        let max = self.config.max_iwant_replies;
        let retransmission = self.config.gossip_retransmission;
        let mut served = self.peers[&from].served;
        let mut messages = Vec::new();
        'outer: for iwant in iwants {
            for id in iwant.message_ids {
                if served >= max {
                    break 'outer;
                }
                served += 1;
                if let Some(m) = self.mcache.get_for(&MessageId(id), &from, retransmission) {
                    messages.push(m);
                }
            }
        }
        self.peers.get_mut(&from).expect("caller checked").served = served;
        self.out(from).publish.extend(messages);
    }

    fn handle_graft(&mut self, from: PeerId, grafts: Vec<proto::ControlGraft>, now: Instant) {
        for graft in grafts {
            let Some(topic) = graft.topic_id.map(TopicHash::new) else {
                continue;
            };
            // Grafts for topics we are not in are ignored (go-libp2p's spam hardening).
            let Some(mesh) = self.mesh.get(&topic) else {
                continue;
            };
            if mesh.contains(&from) {
                continue;
            }
            let mesh_len = mesh.len();
            if let Some(until) = self.backoff.get(&(topic.clone(), from)).copied() {
                if now < until {
                    self.stats.grafts_during_backoff += 1;
                    let started = until.checked_sub(self.config.prune_backoff).unwrap_or(now);
                    let flood = now < started + self.config.graft_flood_threshold;
                    if let Some((s, _)) = self.score.as_mut() {
                        s.add_penalty(&from, if flood { 2 } else { 1 });
                    }
                    let prune =
                        self.make_prune(&topic, &from, false, self.config.prune_backoff, now);
                    self.out(from).control_mut().prune.push(prune);
                    continue;
                }
            }
            if self.score_of(&from, now) < 0.0 {
                let prune = self.make_prune(&topic, &from, false, self.config.prune_backoff, now);
                self.out(from).control_mut().prune.push(prune);
                continue;
            }
            if mesh_len >= self.config.mesh_n_high && !self.peers[&from].outbound {
                let prune = self.make_prune(
                    &topic,
                    &from,
                    self.config.do_px,
                    self.config.prune_backoff,
                    now,
                );
                self.out(from).control_mut().prune.push(prune);
                continue;
            }
            self.mesh.get_mut(&topic).expect("checked").insert(from);
            if let Some((s, _)) = self.score.as_mut() {
                s.graft(&from, &topic, now);
            }
        }
    }

    fn handle_prune(&mut self, from: PeerId, prunes: Vec<proto::ControlPrune>, now: Instant) {
        for prune in prunes {
            let Some(topic) = prune.topic_id.map(TopicHash::new) else {
                continue;
            };
            // PRUNEs for topics we are not in are ignored: they would only fill the backoff
            // table.
            let Some(mesh) = self.mesh.get_mut(&topic) else {
                continue;
            };
            if mesh.remove(&from) {
                if let Some((s, _)) = self.score.as_mut() {
                    s.prune(&from, &topic);
                }
            }
            // A day at most: a larger backoff is as good as forever and could overflow.
            let backoff = prune.backoff.map_or(self.config.prune_backoff, |secs| {
                Duration::from_secs(secs.min(86_400))
            });
            self.add_backoff(&topic, &from, backoff, now);
            if prune.peers.is_empty() {
                continue;
            }
            let accept = self
                .thresholds()
                .is_none_or(|t| self.score_of(&from, now) >= t.accept_px);
            if !accept {
                continue;
            }
            let peers: Vec<PeerId> = prune
                .peers
                .iter()
                .take(self.config.prune_peers)
                .filter_map(|info| PeerId::from_bytes(info.peer_id.as_deref()?).ok())
                .filter(|p| Some(*p) != self.local_peer && !self.peers.contains_key(p))
                .collect();
            if !peers.is_empty() {
                self.push_action(Action::PeerExchange { topic, peers });
            }
        }
    }

    fn handle_idontwant(
        &mut self,
        from: PeerId,
        idontwants: Vec<proto::ControlIDontWant>,
        now: Instant,
    ) {
        let ttl = self.config.idontwant_ttl;
        let max = self.config.max_idontwant_per_peer;
        let state = self.peers.get_mut(&from).expect("caller checked");
        if !state.kind.supports_idontwant() {
            return;
        }
        for id in idontwants.into_iter().flat_map(|i| i.message_ids) {
            let id = MessageId(id);
            if state.dont_send.contains_key(&id) {
                continue;
            }
            if state.dont_send.len() >= max {
                if let Some((_, oldest)) = state.dont_send_order.pop_front() {
                    state.dont_send.remove(&oldest);
                }
            }
            state.dont_send.insert(id.clone(), now + ttl);
            state.dont_send_order.push_back((now + ttl, id));
        }
    }

    // ---------------------------------------------------------------- heartbeat

    /// Runs the heartbeat if it is due at `now` (see [`Gossipsub::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_heartbeat {
            return;
        }
        self.heartbeat(now);
        self.next_heartbeat += self.config.heartbeat_interval;
        if self.next_heartbeat <= now {
            self.next_heartbeat = now + self.config.heartbeat_interval;
        }
    }

    fn heartbeat(&mut self, now: Instant) {
        self.ticks += 1;
        if let Some((s, _)) = self.score.as_mut() {
            if now >= self.next_decay {
                s.decay(now);
                self.next_decay = now + s.params().decay_interval;
            }
        }
        let slack = self.config.heartbeat_interval * self.config.backoff_slack;
        self.backoff.retain(|_, until| *until + slack > now);
        self.seen.expire(now);

        // Broken promises: one penalty each.
        let mut broken: BTreeMap<PeerId, usize> = BTreeMap::new();
        self.promises.retain(|_, promised| {
            promised.retain(|peer, deadline| {
                if *deadline <= now {
                    *broken.entry(*peer).or_default() += 1;
                    false
                } else {
                    true
                }
            });
            !promised.is_empty()
        });
        for (peer, count) in broken {
            self.stats.broken_promises += count as u64;
            if let Some((s, _)) = self.score.as_mut() {
                s.add_penalty(&peer, count);
            }
        }
        for state in self.peers.values_mut() {
            state.ihaves = 0;
            state.asked = 0;
            state.served = 0;
            while let Some((at, _)) = state.dont_send_order.front() {
                if *at > now {
                    break;
                }
                let (_, id) = state.dont_send_order.pop_front().expect("front exists");
                state.dont_send.remove(&id);
            }
        }

        let topics: Vec<TopicHash> = self.mesh.keys().cloned().collect();
        for topic in &topics {
            self.maintain_mesh(topic, now);
        }
        self.maintain_fanout(now);
        self.emit_gossip(now);
        for id in self.mcache.shift() {
            self.pending.remove(&id);
        }
        self.flush();
    }

    fn maintain_mesh(&mut self, topic: &TopicHash, now: Instant) {
        let cfg = MeshKnobs::of(&self.config);
        // Peers with a negative score leave.
        let negative: Vec<PeerId> = self.mesh[topic]
            .iter()
            .filter(|p| self.score_of(p, now) < 0.0)
            .copied()
            .collect();
        for peer in negative {
            self.prune_peer(topic, peer, false, now);
        }
        let len = self.mesh[topic].len();
        if len < cfg.mesh_n_low {
            let candidates = self.graft_candidates(topic, &self.mesh[topic].clone(), now);
            for peer in candidates.into_iter().take(cfg.mesh_n - len) {
                self.graft_peer(topic, peer, now);
            }
        } else if len > cfg.mesh_n_high {
            let mut members: Vec<PeerId> = self.mesh[topic].iter().copied().collect();
            members.shuffle(&mut self.rng);
            let scores: BTreeMap<PeerId, f64> = members
                .iter()
                .map(|p| (*p, self.score_of(p, now)))
                .collect();
            members.sort_by(|a, b| scores[b].total_cmp(&scores[a]));
            let (best, rest) = members.split_at_mut(cfg.retain_scores.min(cfg.mesh_n));
            rest.shuffle(&mut self.rng);
            let mut keep: Vec<PeerId> = best.to_vec();
            keep.extend(rest.iter().take(cfg.mesh_n - keep.len()));
            // Keep D_out outbound peers: swap outbound peers in for the last inbound ones.
            let outbound = |p: &PeerId| self.peers[p].outbound;
            let mut have = keep.iter().filter(|p| outbound(p)).count();
            if have < cfg.mesh_outbound_min {
                let spare: Vec<PeerId> = members
                    .iter()
                    .filter(|p| outbound(p) && !keep.contains(p))
                    .copied()
                    .collect();
                for out in spare {
                    if have >= cfg.mesh_outbound_min {
                        break;
                    }
                    if let Some(pos) = keep.iter().rposition(|p| !outbound(p)) {
                        keep[pos] = out;
                        have += 1;
                    }
                }
            }
            let keep: BTreeSet<PeerId> = keep.into_iter().collect();
            let drop: Vec<PeerId> = members.into_iter().filter(|p| !keep.contains(p)).collect();
            for peer in drop {
                self.prune_peer(topic, peer, cfg.do_px, now);
            }
        }
        // Enough outbound peers even when the mesh is full enough.
        let mesh = self.mesh[topic].clone();
        if mesh.len() >= cfg.mesh_n_low {
            let have = mesh.iter().filter(|p| self.peers[*p].outbound).count();
            if have < cfg.mesh_outbound_min {
                let candidates: Vec<PeerId> = self
                    .graft_candidates(topic, &mesh, now)
                    .into_iter()
                    .filter(|p| self.peers[p].outbound)
                    .take(cfg.mesh_outbound_min - have)
                    .collect();
                for peer in candidates {
                    self.graft_peer(topic, peer, now);
                }
            }
        }
        // Opportunistic grafting, when the mesh's median score is poor.
        if let Some(t) = self.thresholds().cloned() {
            let mesh = self.mesh[topic].clone();
            if cfg.opportunistic_graft_ticks > 0
                && self.ticks.is_multiple_of(cfg.opportunistic_graft_ticks)
                && mesh.len() > 1
            {
                let mut scores: Vec<f64> = mesh.iter().map(|p| self.score_of(p, now)).collect();
                scores.sort_by(f64::total_cmp);
                let median = scores[scores.len() / 2];
                if median < t.opportunistic_graft {
                    let better: Vec<PeerId> = self
                        .graft_candidates(topic, &mesh, now)
                        .into_iter()
                        .filter(|p| self.score_of(p, now) > median)
                        .take(cfg.opportunistic_graft_peers)
                        .collect();
                    for peer in better {
                        self.graft_peer(topic, peer, now);
                    }
                }
            }
        }
    }

    fn maintain_fanout(&mut self, now: Instant) {
        let ttl = self.config.fanout_ttl;
        let expired: Vec<TopicHash> = self
            .fanout_last_pub
            .iter()
            .filter(|(_, last)| **last + ttl <= now)
            .map(|(t, _)| t.clone())
            .collect();
        for topic in expired {
            self.fanout_last_pub.remove(&topic);
            self.fanout.remove(&topic);
        }
        let publish = self.thresholds().map_or(f64::NEG_INFINITY, |t| t.publish);
        let topics: Vec<TopicHash> = self.fanout.keys().cloned().collect();
        for topic in topics {
            let current = self.fanout[&topic].clone();
            let mut keep: BTreeSet<PeerId> = current
                .into_iter()
                .filter(|p| {
                    self.topic_peers.get(&topic).is_some_and(|s| s.contains(p))
                        && self.score_of(p, now) >= publish
                })
                .collect();
            if keep.len() < self.config.mesh_n {
                let mut candidates: Vec<PeerId> = self
                    .topic_peers(&topic)
                    .filter(|p| {
                        !keep.contains(*p)
                            && self.peers[*p].kind.is_gossipsub()
                            && self.score_of(p, now) >= publish
                    })
                    .copied()
                    .collect();
                candidates.shuffle(&mut self.rng);
                let need = self.config.mesh_n - keep.len();
                keep.extend(candidates.into_iter().take(need));
            }
            self.fanout.insert(topic, keep);
        }
    }

    fn emit_gossip(&mut self, now: Instant) {
        let gossip = self.thresholds().map_or(f64::NEG_INFINITY, |t| t.gossip);
        let topics: Vec<(TopicHash, BTreeSet<PeerId>)> = self
            .mesh
            .iter()
            .chain(self.fanout.iter())
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        for (topic, exclude) in topics {
            let ids = self.mcache.gossip_ids(&topic);
            if ids.is_empty() {
                continue;
            }
            let mut candidates: Vec<PeerId> = self
                .topic_peers(&topic)
                .filter(|p| {
                    !exclude.contains(*p)
                        && self.peers[*p].kind.is_gossipsub()
                        && self.score_of(p, now) >= gossip
                })
                .copied()
                .collect();
            let n = self
                .config
                .gossip_lazy
                .max((self.config.gossip_factor * candidates.len() as f64) as usize);
            candidates.shuffle(&mut self.rng);
            candidates.truncate(n);
            for peer in candidates {
                let mut ids = ids.clone();
                if ids.len() > self.config.max_ihave_length {
                    ids.shuffle(&mut self.rng);
                    ids.truncate(self.config.max_ihave_length);
                }
                self.out(peer)
                    .control_mut()
                    .ihave
                    .push(proto::ControlIHave {
                        topic_id: Some(topic.as_str().to_owned()),
                        message_ids: ids.into_iter().map(|id| id.0).collect(),
                    });
            }
        }
    }

    // ---------------------------------------------------------------- helpers

    fn thresholds(&self) -> Option<&Thresholds> {
        self.score.as_ref().map(|(_, t)| t)
    }

    fn score_of(&self, peer: &PeerId, now: Instant) -> f64 {
        self.score.as_ref().map_or(0.0, |(s, _)| s.score(peer, now))
    }

    /// Whether we may graft `peer` on `topic` now: a gossipsub peer of the topic, no backoff
    /// (with slack), a score not below zero.
    fn can_graft(&self, topic: &TopicHash, peer: &PeerId, now: Instant) -> bool {
        let Some(state) = self.peers.get(peer) else {
            return false;
        };
        let slack = self.config.heartbeat_interval * self.config.backoff_slack;
        let backed_off = self
            .backoff
            .get(&(topic.clone(), *peer))
            .is_some_and(|until| *until + slack > now);
        state.kind.is_gossipsub()
            && state.topics.contains(topic)
            && !backed_off
            && self.score_of(peer, now) >= 0.0
    }

    /// The topic's peers we could graft, not in `exclude`, in random order.
    fn graft_candidates(
        &mut self,
        topic: &TopicHash,
        exclude: &BTreeSet<PeerId>,
        now: Instant,
    ) -> Vec<PeerId> {
        let mut candidates: Vec<PeerId> = self
            .topic_peers(topic)
            .filter(|p| !exclude.contains(*p) && self.can_graft(topic, p, now))
            .copied()
            .collect();
        candidates.shuffle(&mut self.rng);
        candidates
    }

    fn graft_peer(&mut self, topic: &TopicHash, peer: PeerId, now: Instant) {
        if let Some(mesh) = self.mesh.get_mut(topic) {
            if mesh.insert(peer) {
                if let Some((s, _)) = self.score.as_mut() {
                    s.graft(&peer, topic, now);
                }
                self.out(peer)
                    .control_mut()
                    .graft
                    .push(proto::ControlGraft {
                        topic_id: Some(topic.as_str().to_owned()),
                    });
            }
        }
    }

    fn prune_peer(&mut self, topic: &TopicHash, peer: PeerId, px: bool, now: Instant) {
        if let Some(mesh) = self.mesh.get_mut(topic) {
            if mesh.remove(&peer) {
                if let Some((s, _)) = self.score.as_mut() {
                    s.prune(&peer, topic);
                }
                let prune = self.make_prune(topic, &peer, px, self.config.prune_backoff, now);
                self.out(peer).control_mut().prune.push(prune);
            }
        }
    }

    /// A PRUNE for `peer` (backoff and PX only for v1.1 and later), and our own backoff.
    fn make_prune(
        &mut self,
        topic: &TopicHash,
        peer: &PeerId,
        px: bool,
        backoff: Duration,
        now: Instant,
    ) -> proto::ControlPrune {
        self.add_backoff(topic, peer, backoff, now);
        let kind = self
            .peers
            .get(peer)
            .map_or(PeerKind::Gossipsub1_0, |p| p.kind);
        if !kind.supports_px() {
            return proto::ControlPrune {
                topic_id: Some(topic.as_str().to_owned()),
                peers: Vec::new(),
                backoff: None,
            };
        }
        let mut peers = Vec::new();
        if px {
            let mut candidates: Vec<PeerId> = self
                .topic_peers(topic)
                .filter(|p| *p != peer && self.score_of(p, now) >= 0.0)
                .copied()
                .collect();
            candidates.shuffle(&mut self.rng);
            peers = candidates
                .into_iter()
                .take(self.config.prune_peers)
                .map(|p| proto::PeerInfo {
                    peer_id: Some(p.to_bytes()),
                    signed_peer_record: None,
                })
                .collect();
        }
        proto::ControlPrune {
            topic_id: Some(topic.as_str().to_owned()),
            peers,
            backoff: Some(backoff.as_secs()),
        }
    }

    fn add_backoff(&mut self, topic: &TopicHash, peer: &PeerId, backoff: Duration, now: Instant) {
        let until = now + backoff;
        let entry = self.backoff.entry((topic.clone(), *peer)).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    fn out(&mut self, peer: PeerId) -> &mut proto::Rpc {
        self.outbox.entry(peer).or_default()
    }

    fn push_action(&mut self, action: Action) {
        if self.actions.len() >= self.config.max_pending_actions {
            self.stats.dropped_actions += 1;
            return;
        }
        self.actions.push_back(action);
    }

    /// Turns the RPCs put together during this call into actions, split to fit the limit.
    fn flush(&mut self) {
        let outbox = std::mem::take(&mut self.outbox);
        for (peer, rpc) in outbox {
            if rpc.is_empty() || !self.peers.contains_key(&peer) {
                continue;
            }
            for part in split_rpc(rpc, self.config.rpc_pack_size) {
                self.push_action(Action::SendRpc { peer, rpc: part });
            }
        }
    }
}

/// The mesh degrees and switches the heartbeat reads, copied out of the config.
struct MeshKnobs {
    mesh_n: usize,
    mesh_n_low: usize,
    mesh_n_high: usize,
    mesh_outbound_min: usize,
    retain_scores: usize,
    do_px: bool,
    opportunistic_graft_ticks: u64,
    opportunistic_graft_peers: usize,
}

impl MeshKnobs {
    fn of(c: &Config) -> Self {
        MeshKnobs {
            mesh_n: c.mesh_n,
            mesh_n_low: c.mesh_n_low,
            mesh_n_high: c.mesh_n_high,
            mesh_outbound_min: c.mesh_outbound_min,
            retain_scores: c.retain_scores,
            do_px: c.do_px,
            opportunistic_graft_ticks: c.opportunistic_graft_ticks,
            opportunistic_graft_peers: c.opportunistic_graft_peers,
        }
    }
}

/// The router moves to the host's service task.
const _: fn() = || {
    fn send<T: Send + 'static>() {}
    send::<Gossipsub>();
};

impl proto::Rpc {
    fn control_mut(&mut self) -> &mut proto::ControlMessage {
        self.control.get_or_insert_with(Default::default)
    }
}

/// Splits `rpc` into RPCs of at most `max` bytes each, item by item; an IHAVE or IWANT whose
/// id list alone is larger is cut into several of the same topic. Only a message larger than
/// `max` on its own goes over, alone in its RPC (the publish path bounds it by the RPC limit).
pub(crate) fn split_rpc(rpc: proto::Rpc, max: usize) -> Vec<proto::Rpc> {
    if rpc.encoded_len() <= max {
        return vec![rpc];
    }
    // Room for the control message's own tag and length prefix.
    let budget = max.saturating_sub(16);
    let mut parts = Splitter {
        done: Vec::new(),
        current: proto::Rpc::default(),
        size: 0,
        budget,
    };
    for sub in rpc.subscriptions {
        parts.room(field_len(sub.encoded_len()));
        parts.current.subscriptions.push(sub);
    }
    for m in rpc.publish {
        parts.room(field_len(m.encoded_len()));
        parts.current.publish.push(m);
    }
    if let Some(c) = rpc.control {
        for x in c.ihave {
            for x in split_ids(x, budget, |x| &mut x.message_ids) {
                parts.room(field_len(x.encoded_len()));
                parts.current.control_mut().ihave.push(x);
            }
        }
        for x in c.iwant {
            for x in split_ids(x, budget, |x| &mut x.message_ids) {
                parts.room(field_len(x.encoded_len()));
                parts.current.control_mut().iwant.push(x);
            }
        }
        for x in c.graft {
            parts.room(field_len(x.encoded_len()));
            parts.current.control_mut().graft.push(x);
        }
        for x in c.prune {
            parts.room(field_len(x.encoded_len()));
            parts.current.control_mut().prune.push(x);
        }
        for x in c.idontwant {
            for x in split_ids(x, budget, |x| &mut x.message_ids) {
                parts.room(field_len(x.encoded_len()));
                parts.current.control_mut().idontwant.push(x);
            }
        }
    }
    if !parts.current.is_empty() {
        parts.done.push(parts.current);
    }
    parts.done
}

/// Cuts a control item whose encoding (with its field prefix) exceeds `budget` into items of
/// the same kind (and topic), each within it, by its id list `ids`. Ids are kept in order; an
/// id longer than the budget on its own goes alone.
fn split_ids<T: prost::Message + Clone>(
    mut item: T,
    budget: usize,
    ids: impl Fn(&mut T) -> &mut Vec<Vec<u8>>,
) -> Vec<T> {
    if field_len(item.encoded_len()) <= budget {
        return vec![item];
    }
    let all = std::mem::take(ids(&mut item));
    // What the item costs without ids (its topic), plus its own prefix (and room for that
    // prefix to grow with the ids).
    let base = field_len(item.encoded_len()) + 4;
    let mut out = Vec::new();
    let mut current = item.clone();
    let mut size = base;
    for id in all {
        let len = field_len(id.len());
        if size + len > budget && !ids(&mut current).is_empty() {
            out.push(std::mem::replace(&mut current, item.clone()));
            size = base;
        }
        size += len;
        ids(&mut current).push(id);
    }
    if !ids(&mut current).is_empty() {
        out.push(current);
    }
    out
}

struct Splitter {
    done: Vec<proto::Rpc>,
    current: proto::Rpc,
    size: usize,
    budget: usize,
}

impl Splitter {
    /// Makes room for an item of `len` bytes: starts a new RPC if it does not fit.
    fn room(&mut self, len: usize) {
        if self.size + len > self.budget && !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
            self.size = 0;
        }
        self.size += len;
    }
}
