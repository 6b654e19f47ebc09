//! Peer scoring v1.1 (gossipsub-v1.1.md, "Peer Scoring"): the counters behind P1 to P7, their
//! decay, and the score they add up to. A plain table with time passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p_core::PeerId;

use crate::config::{ScoreParams, TopicScoreParams};
use crate::types::{MessageId, TopicHash};

/// The per-topic counters of one peer.
#[derive(Debug, Clone, Default)]
struct TopicStats {
    /// When the peer joined our mesh for the topic, while it is in it.
    grafted_at: Option<Instant>,
    /// Whether P3 counts yet (the activation time passed since the graft).
    mesh_deliveries_active: bool,
    first_message_deliveries: f64,
    mesh_message_deliveries: f64,
    mesh_failure_penalty: f64,
    invalid_message_deliveries: f64,
}

#[derive(Debug, Clone, Default)]
struct PeerStats {
    /// `None` while connected, else when the retained score is forgotten.
    expires_at: Option<Instant>,
    topics: BTreeMap<TopicHash, TopicStats>,
    ip: Option<IpAddr>,
    behaviour_penalty: f64,
    application_score: f64,
}

/// Where a message stands in its validation, for the counters of the peers that sent it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    /// Received, not validated yet.
    Pending,
    /// Accepted at this instant.
    Valid(Instant),
    /// Rejected: every peer that sends it is penalised.
    Invalid,
    /// Ignored by the application: no credit, no penalty.
    Ignored,
}

#[derive(Debug, Clone)]
struct Delivery {
    status: Status,
    topic: TopicHash,
    /// The first sender, and every other peer that sent it while it was pending or within
    /// the window after validation.
    first: PeerId,
    others: BTreeSet<PeerId>,
}

/// The score table.
#[derive(Debug)]
pub struct PeerScore {
    params: ScoreParams,
    peers: BTreeMap<PeerId, PeerStats>,
    ips: BTreeMap<IpAddr, BTreeSet<PeerId>>,
    deliveries: HashMap<MessageId, Delivery>,
    /// Delivery records in the order they expire.
    delivery_expiry: VecDeque<(Instant, MessageId)>,
    delivery_ttl: Duration,
    max_deliveries: usize,
    retained: usize,
}

impl PeerScore {
    /// A table with `params`, keeping delivery records for `delivery_ttl` (the seen-cache
    /// time) and at most `max_deliveries` of them.
    pub fn new(params: ScoreParams, delivery_ttl: Duration, max_deliveries: usize) -> Self {
        PeerScore {
            params,
            peers: BTreeMap::new(),
            ips: BTreeMap::new(),
            deliveries: HashMap::new(),
            delivery_expiry: VecDeque::new(),
            delivery_ttl,
            max_deliveries,
            retained: 0,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &ScoreParams {
        &self.params
    }

    /// Sets (or replaces) the parameters of one topic.
    pub fn set_topic_params(&mut self, topic: TopicHash, params: TopicScoreParams) {
        self.params.topics.insert(topic, params);
    }

    /// The score of `peer` at `now` (0 for a peer we know nothing of).
    pub fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        let Some(stats) = self.peers.get(peer) else {
            return 0.0;
        };
        let mut score = 0.0;
        for (topic, t) in &stats.topics {
            let Some(p) = self.params.topics.get(topic) else {
                continue;
            };
            let mut topic_score = 0.0;
            // P1: time in mesh.
            if let Some(grafted) = t.grafted_at {
                let quanta = now.saturating_duration_since(grafted).as_secs_f64()
                    / p.time_in_mesh_quantum.as_secs_f64();
                topic_score += quanta.min(p.time_in_mesh_cap) * p.time_in_mesh_weight;
            }
            // P2: first deliveries.
            topic_score += t.first_message_deliveries * p.first_message_deliveries_weight;
            // P3: mesh delivery deficit, squared.
            if t.mesh_deliveries_active
                && t.mesh_message_deliveries < p.mesh_message_deliveries_threshold
            {
                let deficit = p.mesh_message_deliveries_threshold - t.mesh_message_deliveries;
                topic_score += deficit * deficit * p.mesh_message_deliveries_weight;
            }
            // P3b: mesh failure penalty.
            topic_score += t.mesh_failure_penalty * p.mesh_failure_penalty_weight;
            // P4: invalid messages, squared.
            topic_score += t.invalid_message_deliveries
                * t.invalid_message_deliveries
                * p.invalid_message_deliveries_weight;
            score += topic_score * p.topic_weight;
        }
        if score > self.params.topic_score_cap && self.params.topic_score_cap > 0.0 {
            score = self.params.topic_score_cap;
        }
        // P5: the application's score.
        score += stats.application_score * self.params.app_specific_weight;
        // P6: IP colocation, the surplus squared.
        if let Some(ip) = stats.ip {
            if !self.params.ip_colocation_factor_whitelist.contains(&ip) {
                let sharing = self.ips.get(&ip).map_or(0, BTreeSet::len) as f64;
                if sharing > self.params.ip_colocation_factor_threshold {
                    let surplus = sharing - self.params.ip_colocation_factor_threshold;
                    score += surplus * surplus * self.params.ip_colocation_factor_weight;
                }
            }
        }
        // P7: behaviour penalty, the excess squared.
        if stats.behaviour_penalty > self.params.behaviour_penalty_threshold {
            let excess = stats.behaviour_penalty - self.params.behaviour_penalty_threshold;
            score += excess * excess * self.params.behaviour_penalty_weight;
        }
        score
    }

    /// A peer connected (again: a retained score comes back).
    pub fn add_peer(&mut self, peer: PeerId, ip: Option<IpAddr>) {
        let stats = self.peers.entry(peer).or_default();
        if stats.expires_at.take().is_some() {
            self.retained -= 1;
        }
        if stats.ip != ip {
            if let Some(old) = stats.ip.take() {
                remove_ip(&mut self.ips, old, &peer);
            }
            if let Some(ip) = ip {
                stats.ip = Some(ip);
                self.ips.entry(ip).or_default().insert(peer);
            }
        }
    }

    /// A peer disconnected: a positive score is forgotten, any other one kept for
    /// `retain_score` (so that reconnecting does not reset a penalty).
    pub fn remove_peer(&mut self, peer: &PeerId, now: Instant) {
        let positive = self.score(peer, now) > 0.0;
        let Some(stats) = self.peers.get_mut(peer) else {
            return;
        };
        if stats.expires_at.is_some() {
            return;
        }
        if positive {
            let stats = self.peers.remove(peer).expect("just looked up");
            if let Some(ip) = stats.ip {
                remove_ip(&mut self.ips, ip, peer);
            }
            return;
        }
        for (topic, t) in stats.topics.iter_mut() {
            t.first_message_deliveries = 0.0;
            if let Some(p) = self.params.topics.get(topic) {
                leave_mesh(t, p);
            }
            t.grafted_at = None;
        }
        stats.expires_at = Some(now + self.params.retain_score);
        self.retained += 1;
        if self.retained > self.params.max_retained_peers {
            // Forget the retained score that would expire first.
            let oldest = self
                .peers
                .iter()
                .filter_map(|(p, s)| s.expires_at.map(|e| (e, *p)))
                .min();
            if let Some((_, oldest)) = oldest {
                self.forget(&oldest);
            }
        }
    }

    fn forget(&mut self, peer: &PeerId) {
        if let Some(stats) = self.peers.remove(peer) {
            if stats.expires_at.is_some() {
                self.retained -= 1;
            }
            if let Some(ip) = stats.ip {
                remove_ip(&mut self.ips, ip, peer);
            }
        }
    }

    /// `peer` joined our mesh for `topic`.
    pub fn graft(&mut self, peer: &PeerId, topic: &TopicHash, now: Instant) {
        if let Some(stats) = self.peers.get_mut(peer) {
            let t = stats.topics.entry(topic.clone()).or_default();
            t.grafted_at = Some(now);
            t.mesh_deliveries_active = false;
        }
    }

    /// `peer` left our mesh for `topic`: a delivery deficit becomes the mesh failure penalty.
    pub fn prune(&mut self, peer: &PeerId, topic: &TopicHash) {
        let Some(t) = self
            .peers
            .get_mut(peer)
            .and_then(|s| s.topics.get_mut(topic))
        else {
            return;
        };
        if let Some(p) = self.params.topics.get(topic) {
            leave_mesh(t, p);
        }
        t.grafted_at = None;
        t.mesh_deliveries_active = false;
    }

    /// Adds `count` behaviour penalties (P7).
    pub fn add_penalty(&mut self, peer: &PeerId, count: usize) {
        if let Some(stats) = self.peers.get_mut(peer) {
            stats.behaviour_penalty += count as f64;
        }
    }

    /// Sets the application's score of `peer` (P5); false if the peer is unknown.
    pub fn set_application_score(&mut self, peer: &PeerId, score: f64) -> bool {
        match self.peers.get_mut(peer) {
            Some(stats) => {
                stats.application_score = score;
                true
            }
            None => false,
        }
    }

    /// A message that fails before it has an id (a bad signature, say): P4 for the sender.
    pub fn invalid_message(&mut self, peer: &PeerId, topic: &TopicHash) {
        self.mark_invalid(peer, topic);
    }

    /// The first copy of a message arrived from `from` and awaits validation.
    pub fn message_received(
        &mut self,
        from: &PeerId,
        id: &MessageId,
        topic: &TopicHash,
        now: Instant,
    ) {
        self.expire_deliveries(now);
        if self.deliveries.contains_key(id) {
            return;
        }
        if self.deliveries.len() >= self.max_deliveries {
            if let Some((_, oldest)) = self.delivery_expiry.pop_front() {
                self.deliveries.remove(&oldest);
            }
        }
        self.deliveries.insert(
            id.clone(),
            Delivery {
                status: Status::Pending,
                topic: topic.clone(),
                first: *from,
                others: BTreeSet::new(),
            },
        );
        self.delivery_expiry
            .push_back((now + self.delivery_ttl, id.clone()));
    }

    /// The message was accepted: the first sender earns P2 (and P3 if in the mesh), and so do
    /// mesh peers that sent it while it was pending (P3).
    pub fn message_accepted(&mut self, id: &MessageId, now: Instant) {
        let Some(d) = self.deliveries.get_mut(id) else {
            return;
        };
        if d.status != Status::Pending {
            return;
        }
        d.status = Status::Valid(now);
        let (first, topic, others) = (d.first, d.topic.clone(), d.others.clone());
        self.mark_first_delivery(&first, &topic);
        for peer in others {
            self.mark_duplicate_delivery(&peer, &topic);
        }
    }

    /// The message was rejected (`invalid`: P4 for every sender) or ignored (no effect).
    pub fn message_rejected(&mut self, id: &MessageId, invalid: bool) {
        let Some(d) = self.deliveries.get_mut(id) else {
            return;
        };
        if d.status != Status::Pending {
            return;
        }
        if !invalid {
            d.status = Status::Ignored;
            return;
        }
        d.status = Status::Invalid;
        let (first, topic, others) = (d.first, d.topic.clone(), std::mem::take(&mut d.others));
        self.mark_invalid(&first, &topic);
        for peer in others {
            self.mark_invalid(&peer, &topic);
        }
    }

    /// Another copy of a message we have came from `from`.
    pub fn duplicate(&mut self, from: &PeerId, id: &MessageId, now: Instant) {
        let Some(d) = self.deliveries.get_mut(id) else {
            return;
        };
        if d.first == *from || d.others.contains(from) {
            return;
        }
        let topic = d.topic.clone();
        match d.status {
            Status::Pending => {
                d.others.insert(*from);
            }
            Status::Valid(validated) => {
                d.others.insert(*from);
                let window = self
                    .params
                    .topics
                    .get(&topic)
                    .map_or(Duration::ZERO, |p| p.mesh_message_deliveries_window);
                if now.saturating_duration_since(validated) <= window {
                    self.mark_duplicate_delivery(from, &topic);
                }
            }
            Status::Invalid => self.mark_invalid(from, &topic),
            Status::Ignored => {}
        }
    }

    /// Decays every counter one step (call every `decay_interval`), refreshes mesh times and
    /// forgets retained scores that expired.
    pub fn decay(&mut self, now: Instant) {
        let expired: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| s.expires_at.is_some_and(|e| e <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.forget(&peer);
        }
        let zero = self.params.decay_to_zero;
        let decay = |v: &mut f64, factor: f64| {
            *v *= factor;
            if *v < zero {
                *v = 0.0;
            }
        };
        for stats in self.peers.values_mut() {
            for (topic, t) in stats.topics.iter_mut() {
                let Some(p) = self.params.topics.get(topic) else {
                    continue;
                };
                decay(
                    &mut t.first_message_deliveries,
                    p.first_message_deliveries_decay,
                );
                decay(
                    &mut t.mesh_message_deliveries,
                    p.mesh_message_deliveries_decay,
                );
                decay(&mut t.mesh_failure_penalty, p.mesh_failure_penalty_decay);
                decay(
                    &mut t.invalid_message_deliveries,
                    p.invalid_message_deliveries_decay,
                );
                if let Some(grafted) = t.grafted_at {
                    if now.saturating_duration_since(grafted)
                        >= p.mesh_message_deliveries_activation
                    {
                        t.mesh_deliveries_active = true;
                    }
                }
            }
            decay(
                &mut stats.behaviour_penalty,
                self.params.behaviour_penalty_decay,
            );
        }
        self.expire_deliveries(now);
    }

    fn expire_deliveries(&mut self, now: Instant) {
        while let Some((at, _)) = self.delivery_expiry.front() {
            if *at > now {
                break;
            }
            let (_, id) = self.delivery_expiry.pop_front().expect("front exists");
            self.deliveries.remove(&id);
        }
    }

    fn topic_stats(&mut self, peer: &PeerId, topic: &TopicHash) -> Option<&mut TopicStats> {
        if !self.params.topics.contains_key(topic) {
            return None;
        }
        Some(
            self.peers
                .get_mut(peer)?
                .topics
                .entry(topic.clone())
                .or_default(),
        )
    }

    fn mark_first_delivery(&mut self, peer: &PeerId, topic: &TopicHash) {
        let Some(p) = self.params.topics.get(topic).cloned() else {
            return;
        };
        if let Some(t) = self.topic_stats(peer, topic) {
            t.first_message_deliveries =
                (t.first_message_deliveries + 1.0).min(p.first_message_deliveries_cap);
            if t.grafted_at.is_some() {
                t.mesh_message_deliveries =
                    (t.mesh_message_deliveries + 1.0).min(p.mesh_message_deliveries_cap);
            }
        }
    }

    fn mark_duplicate_delivery(&mut self, peer: &PeerId, topic: &TopicHash) {
        let Some(cap) = self
            .params
            .topics
            .get(topic)
            .map(|p| p.mesh_message_deliveries_cap)
        else {
            return;
        };
        if let Some(t) = self.topic_stats(peer, topic) {
            if t.grafted_at.is_some() {
                t.mesh_message_deliveries = (t.mesh_message_deliveries + 1.0).min(cap);
            }
        }
    }

    fn mark_invalid(&mut self, peer: &PeerId, topic: &TopicHash) {
        if let Some(t) = self.topic_stats(peer, topic) {
            t.invalid_message_deliveries += 1.0;
        }
    }
}

fn leave_mesh(t: &mut TopicStats, p: &TopicScoreParams) {
    if t.grafted_at.is_some()
        && t.mesh_deliveries_active
        && t.mesh_message_deliveries < p.mesh_message_deliveries_threshold
    {
        let deficit = p.mesh_message_deliveries_threshold - t.mesh_message_deliveries;
        t.mesh_failure_penalty += deficit * deficit;
    }
}

fn remove_ip(ips: &mut BTreeMap<IpAddr, BTreeSet<PeerId>>, ip: IpAddr, peer: &PeerId) {
    if let Some(set) = ips.get_mut(&ip) {
        set.remove(peer);
        if set.is_empty() {
            ips.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> TopicHash {
        TopicHash::new("t")
    }

    fn table(p: TopicScoreParams) -> PeerScore {
        let mut params = ScoreParams::default();
        params.topics.insert(topic(), p);
        PeerScore::new(params, Duration::from_secs(120), 1000)
    }

    fn id(n: u8) -> MessageId {
        MessageId(vec![n])
    }

    #[test]
    fn p1_time_in_mesh_capped() {
        let now = Instant::now();
        let mut s = table(TopicScoreParams {
            topic_weight: 0.5,
            time_in_mesh_weight: 2.0,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 10.0,
            ..Default::default()
        });
        let peer = PeerId::random();
        s.add_peer(peer, None);
        s.graft(&peer, &topic(), now);
        // 4 s in the mesh: 4 quanta * 2 * 0.5 = 4.
        assert_eq!(s.score(&peer, now + Duration::from_secs(4)), 4.0);
        // Capped at 10 quanta: 10 * 2 * 0.5 = 10.
        assert_eq!(s.score(&peer, now + Duration::from_secs(100)), 10.0);
        s.prune(&peer, &topic());
        assert_eq!(s.score(&peer, now + Duration::from_secs(100)), 0.0);
    }

    #[test]
    fn p2_first_deliveries_with_cap_and_decay() {
        let now = Instant::now();
        let mut s = table(TopicScoreParams {
            topic_weight: 1.0,
            time_in_mesh_weight: 0.0,
            first_message_deliveries_weight: 3.0,
            first_message_deliveries_cap: 2.0,
            first_message_deliveries_decay: 0.5,
            ..Default::default()
        });
        let peer = PeerId::random();
        s.add_peer(peer, None);
        for n in 0..3 {
            s.message_received(&peer, &id(n), &topic(), now);
            s.message_accepted(&id(n), now);
        }
        // Three first deliveries, capped at 2: 2 * 3 = 6.
        assert_eq!(s.score(&peer, now), 6.0);
        s.decay(now);
        // 2 * 0.5 = 1 delivery left: 3.
        assert_eq!(s.score(&peer, now), 3.0);
    }

    #[test]
    fn p3_deficit_after_activation_and_p3b_at_prune() {
        let now = Instant::now();
        let mut s = table(TopicScoreParams {
            topic_weight: 1.0,
            time_in_mesh_weight: 0.0,
            first_message_deliveries_weight: 0.0,
            mesh_message_deliveries_weight: -1.0,
            mesh_message_deliveries_threshold: 4.0,
            mesh_message_deliveries_activation: Duration::from_secs(1),
            mesh_message_deliveries_decay: 0.9,
            mesh_failure_penalty_weight: -2.0,
            mesh_failure_penalty_decay: 0.5,
            ..Default::default()
        });
        let peer = PeerId::random();
        s.add_peer(peer, None);
        s.graft(&peer, &topic(), now);
        s.message_received(&peer, &id(1), &topic(), now);
        s.message_accepted(&id(1), now);
        // Not active yet: no deficit.
        assert_eq!(s.score(&peer, now), 0.0);
        let later = now + Duration::from_secs(2);
        s.decay(later);
        // One delivery decayed to 0.9; deficit 3.1, squared 9.61, weight -1.
        let expected = -(3.1f64 * 3.1);
        assert!((s.score(&peer, later) - expected).abs() < 1e-9);
        s.prune(&peer, &topic());
        // Out of the mesh: P3 off, P3b = 9.61 * -2.
        assert!((s.score(&peer, later) - 2.0 * expected).abs() < 1e-9);
    }

    #[test]
    fn p4_invalid_squared_for_every_sender() {
        let now = Instant::now();
        let mut s = table(TopicScoreParams {
            topic_weight: 0.5,
            time_in_mesh_weight: 0.0,
            invalid_message_deliveries_weight: -4.0,
            ..Default::default()
        });
        let (a, b) = (PeerId::random(), PeerId::random());
        s.add_peer(a, None);
        s.add_peer(b, None);
        s.message_received(&a, &id(1), &topic(), now);
        s.duplicate(&b, &id(1), now);
        s.message_rejected(&id(1), true);
        s.invalid_message(&a, &topic());
        // a: 2 invalid, 2^2 * -4 * 0.5 = -8; b: 1 invalid, -2.
        assert_eq!(s.score(&a, now), -8.0);
        assert_eq!(s.score(&b, now), -2.0);
        // A later copy of a rejected message costs its sender too.
        let c = PeerId::random();
        s.add_peer(c, None);
        s.duplicate(&c, &id(1), now);
        assert_eq!(s.score(&c, now), -2.0);
        // Ignored messages cost nothing.
        s.message_received(&c, &id(2), &topic(), now);
        s.message_rejected(&id(2), false);
        assert_eq!(s.score(&c, now), -2.0);
    }

    #[test]
    fn p5_p6_p7_globals() {
        let now = Instant::now();
        let params = ScoreParams {
            app_specific_weight: 2.0,
            ip_colocation_factor_weight: -3.0,
            ip_colocation_factor_threshold: 2.0,
            behaviour_penalty_weight: -1.5,
            behaviour_penalty_threshold: 1.0,
            behaviour_penalty_decay: 0.5,
            ..Default::default()
        };
        let mut s = PeerScore::new(params, Duration::from_secs(120), 1000);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for p in &peers {
            s.add_peer(*p, Some(ip));
        }
        // 4 on one IP, threshold 2: surplus 2, 2^2 * -3 = -12.
        assert_eq!(s.score(&peers[0], now), -12.0);
        assert!(s.set_application_score(&peers[0], 5.0));
        assert_eq!(s.score(&peers[0], now), 10.0 - 12.0);
        s.add_penalty(&peers[1], 4);
        // Penalty 4 over threshold 1: 3^2 * -1.5 = -13.5, plus P6.
        assert_eq!(s.score(&peers[1], now), -13.5 - 12.0);
        s.decay(now);
        // Penalty 2 after decay: 1^2 * -1.5.
        assert_eq!(s.score(&peers[1], now), -1.5 - 12.0);
    }

    #[test]
    fn negative_score_survives_reconnect_positive_does_not() {
        let now = Instant::now();
        let mut s = table(TopicScoreParams::default());
        let (bad, good) = (PeerId::random(), PeerId::random());
        s.add_peer(bad, None);
        s.add_peer(good, None);
        s.add_penalty(&bad, 2);
        assert!(s.set_application_score(&good, 1.0));
        s.remove_peer(&bad, now);
        s.remove_peer(&good, now);
        s.add_peer(bad, None);
        s.add_peer(good, None);
        assert!(s.score(&bad, now) < 0.0);
        assert_eq!(s.score(&good, now), 0.0);
        // Retention runs out.
        s.remove_peer(&bad, now);
        s.decay(now + Duration::from_secs(3601));
        assert_eq!(s.score(&bad, now), 0.0);
    }
}
