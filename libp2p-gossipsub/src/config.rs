//! Every knob of the router and of peer scoring, each with its default and the reason for it.
//!
//! The defaults follow the gossipsub v1.1 spec's recommendations and, where the spec leaves the
//! choice open, go-libp2p's (the reference implementation) or rust-libp2p's; each field says
//! which and why.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::message::{spec_message_id, MessageIdFn};
use crate::types::{TopicHash, ValidationMode};

/// The smallest [`Config::rpc_pack_size`] accepted: room for a control item with a few
/// message ids (the splitter never makes an RPC with nothing in it).
pub const MIN_RPC_PACK_SIZE: usize = 512;

/// The router's configuration.
#[derive(Clone)]
pub struct Config {
    /// D: the mesh degree the heartbeat aims for. Default 6 (the spec's).
    pub mesh_n: usize,
    /// D_lo: below this many mesh peers the heartbeat grafts up to D. Default 5 (the spec's
    /// v1.1 value; rust-libp2p uses 5, go-libp2p 5).
    pub mesh_n_low: usize,
    /// D_hi: above this many mesh peers the heartbeat prunes down to D. Default 12 (the spec's).
    pub mesh_n_high: usize,
    /// D_out: the outbound peers (connections we dialed) a mesh keeps, so that an attacker who
    /// dials us many times cannot fill it. Default 2 (the spec's); must be below D_lo and at
    /// most D / 2.
    pub mesh_outbound_min: usize,
    /// D_score: how many of the best-scoring peers survive a prune for oversubscription; the
    /// rest to D are chosen at random. Default 4 (the spec's).
    pub retain_scores: usize,
    /// D_lazy: the minimum number of peers each heartbeat sends IHAVE gossip to per topic.
    /// Default 6 (the spec's).
    pub gossip_lazy: usize,
    /// The share of the eligible non-mesh peers gossip goes to when that is more than D_lazy.
    /// Default 0.25 (the spec's).
    pub gossip_factor: f64,
    /// The heartbeat interval. Default 1 s (the spec's; py-libp2p's 120 s forms meshes far too
    /// slowly).
    pub heartbeat_interval: Duration,
    /// The delay of the first heartbeat after the router starts. Default 100 ms (go-libp2p's):
    /// peers that connect at start-up get a mesh at once.
    pub heartbeat_initial_delay: Duration,
    /// mcache_len: the heartbeats a message stays in the cache, answering IWANT. Default 5 (the
    /// spec's).
    pub history_length: usize,
    /// mcache_gossip: the most recent heartbeats whose messages go into IHAVE. Default 3 (the
    /// spec's).
    pub history_gossip: usize,
    /// How long a fanout (the peers we publish to on a topic we are not subscribed to) lives
    /// after our last publication to it. Default 60 s (the spec's).
    pub fanout_ttl: Duration,
    /// How long a message id stays in the seen-cache, dropping later copies. Default 120 s
    /// (go-libp2p's; rust-libp2p uses 60 s): longer than any path through the mesh plus gossip.
    pub seen_ttl: Duration,
    /// The largest RPC frame accepted, and the largest message we publish or forward, in bytes
    /// (the length prefix not counted). Default 1 MiB, go-libp2p's limit
    /// (`DefaultMaxMessageSize = 1 << 20`): we accept every message a go peer may send on
    /// its defaults. rust-libp2p's default is 64 KiB (`max_transmit_size = 65536`), so a
    /// message over about 64 KiB reaches go peers and ours but not rust-libp2p ones whatever
    /// we do; what we *pack* is bounded separately, by [`Config::rpc_pack_size`].
    pub max_rpc_size: usize,
    /// The size our outgoing RPCs are packed to, in bytes: the router splits what it sends to
    /// a peer (forwards, IWANT answers, IHAVE and IWANT id lists, subscriptions) into RPCs of
    /// at most this many bytes each; a single message larger than this goes alone, in an RPC
    /// of its own (up to [`Config::max_rpc_size`]). Default 64 KiB, the smallest limit among
    /// the implementations we meet (rust-libp2p's `max_transmit_size`): packing small
    /// messages together must never make an RPC that a rust-libp2p peer rejects whole, losing
    /// every message in it. Must be at most `max_rpc_size`.
    pub rpc_pack_size: usize,
    /// What received messages must carry. Default [`ValidationMode::Strict`] (the spec's
    /// default: author, sequence number and signature required).
    pub validation_mode: ValidationMode,
    /// Whether the application validates each message before it is forwarded (it answers each
    /// [`Action::Deliver`](crate::Action::Deliver) with
    /// [`Gossipsub::report_validation`](crate::Gossipsub::report_validation)). Default false:
    /// messages that pass the signature check are forwarded at once.
    pub validate_messages: bool,
    /// How message ids are made. Default [`spec_message_id`]: the author's peer id bytes and
    /// the 8-byte big-endian sequence number, as the spec and go-libp2p do. rust-libp2p peers
    /// use [`rust_libp2p_message_id`](crate::rust_libp2p_message_id) and py-libp2p peers
    /// [`py_libp2p_message_id`](crate::py_libp2p_message_id); IHAVE / IWANT only match between
    /// peers with the same function (duplicates are still dropped, each peer by its own ids).
    pub message_id_fn: MessageIdFn,
    /// Whether our own messages go to every subscribed peer above the publish threshold rather
    /// than to the mesh only. Default true (the spec's v1.1 recommendation: an eclipse of our
    /// mesh does not silence us).
    pub flood_publish: bool,
    /// Whether our PRUNEs carry peer exchange. Default false (the spec: only bootstrap and
    /// well-connected nodes should offer it; go-libp2p and rust-libp2p default to off too).
    pub do_px: bool,
    /// How many peers a PRUNE with peer exchange names at most, and how many we take from one
    /// we receive. Default 16 (go-libp2p's).
    pub prune_peers: usize,
    /// The backoff a PRUNE asks for, and the one we keep after pruning or being pruned when
    /// the PRUNE gives none. Default 60 s (the spec's).
    pub prune_backoff: Duration,
    /// The backoff after we leave a topic (v1.1 lets it be shorter: we may come back soon).
    /// Default 10 s (go-libp2p's and rust-libp2p's).
    pub unsubscribe_backoff: Duration,
    /// Heartbeats added to every backoff before we graft again, so that clock skew does not
    /// make our GRAFT arrive a moment early. Default 1 (go-libp2p's).
    pub backoff_slack: u32,
    /// A GRAFT this soon after the backoff began costs an extra behaviour penalty (the peer
    /// ignored our PRUNE outright). Default 10 s (go-libp2p's).
    pub graft_flood_threshold: Duration,
    /// Every this many heartbeats, a mesh whose median score is below
    /// [`Thresholds::opportunistic_graft`] grafts better peers. Default 60 (the spec's).
    pub opportunistic_graft_ticks: u64,
    /// How many peers one opportunistic graft adds. Default 2 (the spec's).
    pub opportunistic_graft_peers: usize,
    /// How often one peer may ask (IWANT) for the same message before we stop answering.
    /// Default 3 (go-libp2p's): bounds the amplification of an IWANT flood.
    pub gossip_retransmission: u32,
    /// The most message ids we announce to one peer in one heartbeat (IHAVE), and the most we
    /// ask one peer for per heartbeat (IWANT). Default 5000 (the spec's).
    pub max_ihave_length: usize,
    /// The most IHAVE messages we take from one peer per heartbeat; further ones are ignored.
    /// Default 10 (the spec's).
    pub max_ihave_messages: usize,
    /// The most message ids we answer one peer's IWANTs with per heartbeat. Default 5000 (as
    /// many as we would ask of it).
    pub max_iwant_replies: usize,
    /// How long a peer has to deliver a message it announced and we asked for, before the
    /// broken promise costs it a behaviour penalty. Default 3 s (the spec's).
    pub iwant_followup_time: Duration,
    /// Messages over this many bytes (payload) make us send IDONTWANT to our v1.2 mesh peers.
    /// Default 1000 (rust-libp2p's): for small messages the IDONTWANT costs about as much as
    /// the duplicate it saves.
    pub idontwant_message_size_threshold: usize,
    /// How long we honour a peer's IDONTWANT. Default 3 s (rust-libp2p's): by then the
    /// message has passed through the mesh.
    pub idontwant_ttl: Duration,
    /// The most IDONTWANT ids we keep per peer; when full, the oldest go first. Default 10,000
    /// (rust-libp2p's).
    pub max_idontwant_per_peer: usize,
    /// The most messages we take from one RPC; the rest are dropped. Default 1000: each costs
    /// a signature check, and 1000 is still far more than honest peers put into one RPC.
    pub max_messages_per_rpc: usize,
    /// The most topics one peer may be subscribed to in our view; further SUBSCRIBEs are
    /// ignored. Default 1000.
    pub max_topics_per_peer: usize,
    /// The most topics we subscribe to, and the most fanout topics we keep (publishing to
    /// further unsubscribed topics floods without a fanout). Default 1000.
    pub max_subscribed_topics: usize,
    /// The most connected peers the router tracks; further ones are refused. Default 5000:
    /// above any sane connection limit of the host.
    pub max_peers: usize,
    /// The most message ids in the seen-cache; when full the oldest go early. Default 250,000
    /// (some 30 MB; two minutes at 2000 messages a second).
    pub max_seen_messages: usize,
    /// The most messages in the message cache; when full, new messages are still delivered
    /// and forwarded but not kept for gossip. Default 10,000 (five heartbeats at 2000 a
    /// second; at the 1 MiB maximum message size the cache is then bounded by 10 GiB, so
    /// networks with large messages should lower it).
    pub max_cached_messages: usize,
    /// The most messages awaiting the application's validation; further ones are ignored
    /// (dropped without penalty). Default 10,000.
    pub max_pending_validation: usize,
    /// The most actions queued for the caller to pull; further ones are dropped and counted
    /// in [`Stats::dropped_actions`](crate::Stats::dropped_actions). Default 100,000: a host
    /// that drains after each call never comes near it.
    pub max_pending_actions: usize,
    /// Peer scoring (parameters and thresholds), `None` to turn it off. Default on, with
    /// [`ScoreParams::default`] (no topic parameters: P5, P6 and P7 only until topics are
    /// configured) and [`Thresholds::default`].
    pub score: Option<(ScoreParams, Thresholds)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mesh_n: 6,
            mesh_n_low: 5,
            mesh_n_high: 12,
            mesh_outbound_min: 2,
            retain_scores: 4,
            gossip_lazy: 6,
            gossip_factor: 0.25,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_initial_delay: Duration::from_millis(100),
            history_length: 5,
            history_gossip: 3,
            fanout_ttl: Duration::from_secs(60),
            seen_ttl: Duration::from_secs(120),
            max_rpc_size: 1024 * 1024,
            rpc_pack_size: 64 * 1024,
            validation_mode: ValidationMode::Strict,
            validate_messages: false,
            message_id_fn: Arc::new(spec_message_id),
            flood_publish: true,
            do_px: false,
            prune_peers: 16,
            prune_backoff: Duration::from_secs(60),
            unsubscribe_backoff: Duration::from_secs(10),
            backoff_slack: 1,
            graft_flood_threshold: Duration::from_secs(10),
            opportunistic_graft_ticks: 60,
            opportunistic_graft_peers: 2,
            gossip_retransmission: 3,
            max_ihave_length: 5000,
            max_ihave_messages: 10,
            max_iwant_replies: 5000,
            iwant_followup_time: Duration::from_secs(3),
            idontwant_message_size_threshold: 1000,
            idontwant_ttl: Duration::from_secs(3),
            max_idontwant_per_peer: 10_000,
            max_messages_per_rpc: 1000,
            max_topics_per_peer: 1000,
            max_subscribed_topics: 1000,
            max_peers: 5000,
            max_seen_messages: 250_000,
            max_cached_messages: 10_000,
            max_pending_validation: 10_000,
            max_pending_actions: 100_000,
            score: Some((ScoreParams::default(), Thresholds::default())),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mesh_n", &self.mesh_n)
            .field("mesh_n_low", &self.mesh_n_low)
            .field("mesh_n_high", &self.mesh_n_high)
            .field("gossip_lazy", &self.gossip_lazy)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("validation_mode", &self.validation_mode)
            .field("max_rpc_size", &self.max_rpc_size)
            .field("rpc_pack_size", &self.rpc_pack_size)
            .field("flood_publish", &self.flood_publish)
            .field("score", &self.score)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Checks that the values fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.mesh_n_low <= self.mesh_n
            && self.mesh_n <= self.mesh_n_high
            && (self.mesh_outbound_min < self.mesh_n_low || self.mesh_outbound_min == 0)
            && self.mesh_outbound_min <= self.mesh_n / 2)
        {
            return Err(ConfigError::MeshDegrees {
                low: self.mesh_n_low,
                n: self.mesh_n,
                high: self.mesh_n_high,
                outbound: self.mesh_outbound_min,
            });
        }
        if self.history_length == 0 || self.history_gossip > self.history_length {
            return Err(ConfigError::History {
                gossip: self.history_gossip,
                length: self.history_length,
            });
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::HeartbeatInterval);
        }
        if self.rpc_pack_size > self.max_rpc_size || self.rpc_pack_size < MIN_RPC_PACK_SIZE {
            return Err(ConfigError::RpcPackSize {
                pack: self.rpc_pack_size,
                max: self.max_rpc_size,
            });
        }
        if let Some((params, thresholds)) = &self.score {
            params.validate()?;
            thresholds.validate()?;
        }
        Ok(())
    }
}

/// Peer score parameters (gossipsub v1.1, "Peer Scoring"): the global ones and one
/// [`TopicScoreParams`] per scored topic.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreParams {
    /// The scored topics. Default none: P1 to P4 count only on topics configured here, each
    /// with parameters that suit its message rate.
    pub topics: BTreeMap<TopicHash, TopicScoreParams>,
    /// The cap on the sum of the positive topic scores, so that good behaviour on many topics
    /// cannot buy immunity from P5 to P7. Default 3600 (rust-libp2p's).
    pub topic_score_cap: f64,
    /// The weight of the application's score (P5). Default 10 (rust-libp2p's).
    pub app_specific_weight: f64,
    /// The weight of the IP colocation factor (P6), negative. Default -5 (rust-libp2p's).
    pub ip_colocation_factor_weight: f64,
    /// How many peers may share an IP before P6 counts the surplus (squared). Default 10
    /// (rust-libp2p's).
    pub ip_colocation_factor_threshold: f64,
    /// IPs P6 never counts (say, a local test network or a known NAT). Default none.
    pub ip_colocation_factor_whitelist: BTreeSet<IpAddr>,
    /// The weight of the behaviour penalty (P7: GRAFT during backoff, broken IWANT promises),
    /// negative. Default -10 (rust-libp2p's).
    pub behaviour_penalty_weight: f64,
    /// Penalties up to this count are free; P7 counts the excess (squared). Default 0.
    pub behaviour_penalty_threshold: f64,
    /// The factor the behaviour penalty is multiplied with at each decay. Default 0.2
    /// (rust-libp2p's: a penalty fades within seconds unless repeated).
    pub behaviour_penalty_decay: f64,
    /// How often counters decay. Default 1 s (the spec's; the heartbeat applies it).
    pub decay_interval: Duration,
    /// A decayed counter below this is set to zero. Default 0.01 (the spec's).
    pub decay_to_zero: f64,
    /// How long a disconnected peer's (non-positive) score is kept, so that reconnecting does
    /// not wash it. Default 1 hour (rust-libp2p's and go-libp2p's).
    pub retain_score: Duration,
    /// The most disconnected peers whose score is retained; when full the one that would
    /// expire first goes. Default 10,000.
    pub max_retained_peers: usize,
}

impl Default for ScoreParams {
    fn default() -> Self {
        ScoreParams {
            topics: BTreeMap::new(),
            topic_score_cap: 3600.0,
            app_specific_weight: 10.0,
            ip_colocation_factor_weight: -5.0,
            ip_colocation_factor_threshold: 10.0,
            ip_colocation_factor_whitelist: BTreeSet::new(),
            behaviour_penalty_weight: -10.0,
            behaviour_penalty_threshold: 0.0,
            behaviour_penalty_decay: 0.2,
            decay_interval: Duration::from_secs(1),
            decay_to_zero: 0.01,
            retain_score: Duration::from_secs(3600),
            max_retained_peers: 10_000,
        }
    }
}

impl ScoreParams {
    /// Checks signs and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.topic_score_cap < 0.0 {
            return Err(ConfigError::ScoreParam("topic_score_cap"));
        }
        if self.ip_colocation_factor_weight > 0.0 {
            return Err(ConfigError::ScoreParam("ip_colocation_factor_weight"));
        }
        if self.ip_colocation_factor_threshold < 1.0 {
            return Err(ConfigError::ScoreParam("ip_colocation_factor_threshold"));
        }
        if self.behaviour_penalty_weight > 0.0 {
            return Err(ConfigError::ScoreParam("behaviour_penalty_weight"));
        }
        if !(0.0..1.0).contains(&self.behaviour_penalty_decay)
            || self.behaviour_penalty_decay == 0.0
        {
            return Err(ConfigError::ScoreParam("behaviour_penalty_decay"));
        }
        if self.decay_interval.is_zero() {
            return Err(ConfigError::ScoreParam("decay_interval"));
        }
        if !(0.0..1.0).contains(&self.decay_to_zero) {
            return Err(ConfigError::ScoreParam("decay_to_zero"));
        }
        for topic in self.topics.values() {
            topic.validate()?;
        }
        Ok(())
    }
}

/// The score parameters of one topic (P1 to P4).
#[derive(Clone, Debug, PartialEq)]
pub struct TopicScoreParams {
    /// The weight of the whole topic score. Default 0.5 (rust-libp2p's).
    pub topic_weight: f64,
    /// P1, time in mesh: the weight per quantum, positive. Default 1 (rust-libp2p's).
    pub time_in_mesh_weight: f64,
    /// P1's unit of time. Default 1 s: P1 then counts seconds in the mesh.
    pub time_in_mesh_quantum: Duration,
    /// P1's cap, in quanta. Default 3600 (an hour of seconds).
    pub time_in_mesh_cap: f64,
    /// P2, first deliveries: the weight, positive. Default 1 (rust-libp2p's).
    pub first_message_deliveries_weight: f64,
    /// P2's decay factor. Default 0.5 (rust-libp2p's).
    pub first_message_deliveries_decay: f64,
    /// P2's cap. Default 2000 (rust-libp2p's).
    pub first_message_deliveries_cap: f64,
    /// P3, mesh delivery deficit: the weight, negative. Default 0 (off): the threshold must
    /// suit the topic's rate, and a wrong one prunes an honest quiet mesh; set it with the
    /// threshold (rust-libp2p's default is -1 with a threshold of 20).
    pub mesh_message_deliveries_weight: f64,
    /// P3's decay factor. Default 0.5 (rust-libp2p's).
    pub mesh_message_deliveries_decay: f64,
    /// P3's cap on the counter. Default 100 (rust-libp2p's).
    pub mesh_message_deliveries_cap: f64,
    /// P3's threshold: fewer deliveries than this (decayed) is a deficit. Default 20
    /// (rust-libp2p's).
    pub mesh_message_deliveries_threshold: f64,
    /// How soon after the first delivery a duplicate from a mesh peer still counts for P3.
    /// Default 10 ms (rust-libp2p's).
    pub mesh_message_deliveries_window: Duration,
    /// How long after a GRAFT before P3 counts. Default 5 s (rust-libp2p's).
    pub mesh_message_deliveries_activation: Duration,
    /// P3b, the deficit carried out of the mesh at PRUNE: the weight, negative. Default 0
    /// (off, with P3; rust-libp2p's is -1).
    pub mesh_failure_penalty_weight: f64,
    /// P3b's decay factor. Default 0.5 (rust-libp2p's).
    pub mesh_failure_penalty_decay: f64,
    /// P4, invalid messages: the weight, negative. Default -1 (rust-libp2p's); counted squared.
    pub invalid_message_deliveries_weight: f64,
    /// P4's decay factor. Default 0.3 (rust-libp2p's).
    pub invalid_message_deliveries_decay: f64,
}

impl Default for TopicScoreParams {
    fn default() -> Self {
        TopicScoreParams {
            topic_weight: 0.5,
            time_in_mesh_weight: 1.0,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 3600.0,
            first_message_deliveries_weight: 1.0,
            first_message_deliveries_decay: 0.5,
            first_message_deliveries_cap: 2000.0,
            mesh_message_deliveries_weight: 0.0,
            mesh_message_deliveries_decay: 0.5,
            mesh_message_deliveries_cap: 100.0,
            mesh_message_deliveries_threshold: 20.0,
            mesh_message_deliveries_window: Duration::from_millis(10),
            mesh_message_deliveries_activation: Duration::from_secs(5),
            mesh_failure_penalty_weight: 0.0,
            mesh_failure_penalty_decay: 0.5,
            invalid_message_deliveries_weight: -1.0,
            invalid_message_deliveries_decay: 0.3,
        }
    }
}

impl TopicScoreParams {
    /// Checks signs and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let decay = |d: f64| d > 0.0 && d < 1.0;
        if self.topic_weight < 0.0 {
            return Err(ConfigError::ScoreParam("topic_weight"));
        }
        if self.time_in_mesh_weight < 0.0
            || self.time_in_mesh_quantum.is_zero()
            || self.time_in_mesh_cap < 0.0
        {
            return Err(ConfigError::ScoreParam("time_in_mesh"));
        }
        if self.first_message_deliveries_weight < 0.0
            || !decay(self.first_message_deliveries_decay)
            || self.first_message_deliveries_cap < 0.0
        {
            return Err(ConfigError::ScoreParam("first_message_deliveries"));
        }
        if self.mesh_message_deliveries_weight > 0.0
            || !decay(self.mesh_message_deliveries_decay)
            || self.mesh_message_deliveries_cap < 0.0
            || self.mesh_message_deliveries_threshold < 0.0
        {
            return Err(ConfigError::ScoreParam("mesh_message_deliveries"));
        }
        if self.mesh_failure_penalty_weight > 0.0 || !decay(self.mesh_failure_penalty_decay) {
            return Err(ConfigError::ScoreParam("mesh_failure_penalty"));
        }
        if self.invalid_message_deliveries_weight > 0.0
            || !decay(self.invalid_message_deliveries_decay)
        {
            return Err(ConfigError::ScoreParam("invalid_message_deliveries"));
        }
        Ok(())
    }
}

/// The score thresholds (gossipsub v1.1, "Score Thresholds").
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Below this, a peer gets no gossip from us and its gossip is ignored. Default -10
    /// (rust-libp2p's).
    pub gossip: f64,
    /// Below this, our own messages are not flood-published to it. Default -50
    /// (rust-libp2p's).
    pub publish: f64,
    /// Below this, every RPC from the peer is dropped. Default -80 (rust-libp2p's).
    pub graylist: f64,
    /// At or above this, peer exchange from the peer is followed. Default 10 (rust-libp2p's):
    /// a peer earns it by being useful for some seconds.
    pub accept_px: f64,
    /// A mesh whose median score is below this grafts better peers opportunistically.
    /// Default 20 (rust-libp2p's).
    pub opportunistic_graft: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            gossip: -10.0,
            publish: -50.0,
            graylist: -80.0,
            accept_px: 10.0,
            opportunistic_graft: 20.0,
        }
    }
}

impl Thresholds {
    /// Checks the order `graylist <= publish <= gossip <= 0 <= accept_px`,
    /// `opportunistic_graft >= 0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.graylist <= self.publish
            && self.publish <= self.gossip
            && self.gossip <= 0.0
            && self.accept_px >= 0.0
            && self.opportunistic_graft >= 0.0
        {
            Ok(())
        } else {
            Err(ConfigError::Thresholds)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent_and_bad_values_refused() {
        Config::default().validate().unwrap();
        let c = Config {
            mesh_n_low: 7,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::MeshDegrees { .. })));
        let c = Config {
            history_gossip: 6,
            ..Config::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::History { .. })));
        let t = Thresholds {
            publish: -5.0,
            ..Thresholds::default()
        };
        assert_eq!(t.validate(), Err(ConfigError::Thresholds));
        let mut p = ScoreParams::default();
        p.topics.insert(
            TopicHash::new("t"),
            TopicScoreParams {
                invalid_message_deliveries_weight: 1.0,
                ..TopicScoreParams::default()
            },
        );
        assert_eq!(
            p.validate(),
            Err(ConfigError::ScoreParam("invalid_message_deliveries"))
        );
    }
}
