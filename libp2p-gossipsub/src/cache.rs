//! The message cache (the last `history_length` heartbeats of messages, for IWANT and for
//! IHAVE gossip) and the seen-cache (every message id of the last `seen_ttl`, for dropping
//! duplicates). Both bounded.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p_core::PeerId;

use crate::proto;
use crate::types::{MessageId, TopicHash};

#[derive(Debug)]
struct Entry {
    message: proto::Message,
    validated: bool,
    /// How often each peer asked for it (IWANT).
    asked: BTreeMap<PeerId, u32>,
}

/// The sliding window of recent messages.
#[derive(Debug)]
pub struct MessageCache {
    entries: HashMap<MessageId, Entry>,
    /// Newest window first; each window lists the ids put in during one heartbeat.
    windows: VecDeque<Vec<(MessageId, TopicHash)>>,
    gossip: usize,
    max: usize,
}

impl MessageCache {
    /// A cache of `history` windows, the newest `gossip` of them gossiped, holding at most
    /// `max` messages.
    pub fn new(history: usize, gossip: usize, max: usize) -> Self {
        let mut windows = VecDeque::with_capacity(history);
        windows.resize_with(history, Vec::new);
        MessageCache {
            entries: HashMap::new(),
            windows,
            gossip,
            max,
        }
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds a message to the current window; false if it is there already or the cache is full.
    pub fn put(&mut self, id: &MessageId, message: proto::Message, validated: bool) -> bool {
        if self.entries.len() >= self.max || self.entries.contains_key(id) {
            return false;
        }
        let topic = TopicHash::new(message.topic.clone());
        self.entries.insert(
            id.clone(),
            Entry {
                message,
                validated,
                asked: BTreeMap::new(),
            },
        );
        self.windows
            .front_mut()
            .expect("history_length is at least 1")
            .push((id.clone(), topic));
        true
    }

    /// The message, if cached.
    #[cfg(test)]
    pub fn get(&self, id: &MessageId) -> Option<&proto::Message> {
        self.entries.get(id).map(|e| &e.message)
    }

    /// Marks a message validated (it may be gossiped and served now) and returns it.
    pub fn validate(&mut self, id: &MessageId) -> Option<proto::Message> {
        let entry = self.entries.get_mut(id)?;
        entry.validated = true;
        Some(entry.message.clone())
    }

    /// Drops a message (rejected or ignored by validation).
    pub fn remove(&mut self, id: &MessageId) -> Option<proto::Message> {
        self.entries.remove(id).map(|e| e.message)
    }

    /// The validated message for `peer`'s IWANT, unless it asked more than `max_asks` times.
    pub fn get_for(
        &mut self,
        id: &MessageId,
        peer: &PeerId,
        max_asks: u32,
    ) -> Option<proto::Message> {
        let entry = self.entries.get_mut(id)?;
        if !entry.validated {
            return None;
        }
        let asked = entry.asked.entry(*peer).or_default();
        *asked += 1;
        if *asked > max_asks {
            return None;
        }
        Some(entry.message.clone())
    }

    /// The validated ids of `topic` in the gossip windows, newest first.
    pub fn gossip_ids(&self, topic: &TopicHash) -> Vec<MessageId> {
        self.windows
            .iter()
            .take(self.gossip)
            .flatten()
            .filter(|(id, t)| t == topic && self.entries.get(id).is_some_and(|e| e.validated))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Starts a new window and drops the oldest; returns the ids dropped.
    pub fn shift(&mut self) -> Vec<MessageId> {
        let mut dropped = Vec::new();
        if let Some(oldest) = self.windows.pop_back() {
            for (id, _) in oldest {
                if self.entries.remove(&id).is_some() {
                    dropped.push(id);
                }
            }
        }
        self.windows.push_front(Vec::new());
        dropped
    }
}

/// The ids seen in the last `ttl`, at most `max` of them (the oldest go first when full).
#[derive(Debug)]
pub struct SeenCache {
    ids: HashSet<MessageId>,
    order: VecDeque<(Instant, MessageId)>,
    ttl: Duration,
    max: usize,
}

impl SeenCache {
    /// An empty cache.
    pub fn new(ttl: Duration, max: usize) -> Self {
        SeenCache {
            ids: HashSet::new(),
            order: VecDeque::new(),
            ttl,
            max: max.max(1),
        }
    }

    /// Records `id`; false if it was seen already.
    pub fn insert(&mut self, id: &MessageId, now: Instant) -> bool {
        self.expire(now);
        if self.ids.contains(id) {
            return false;
        }
        if self.ids.len() >= self.max {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.ids.insert(id.clone());
        self.order.push_back((now + self.ttl, id.clone()));
        true
    }

    /// Whether `id` was seen (and has not expired).
    pub fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains(id)
    }

    /// How many ids it holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Forgets the ids older than the ttl.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            let (_, id) = self.order.pop_front().expect("front exists");
            self.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, n: u8) -> (MessageId, proto::Message) {
        (
            MessageId(vec![n]),
            proto::Message {
                data: Some(vec![n]),
                topic: topic.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn gossip_windows_and_expiry() {
        let mut c = MessageCache::new(5, 3, 100);
        let t = TopicHash::new("a");
        let (id0, m0) = msg("a", 0);
        assert!(c.put(&id0, m0, true));
        for n in 1..=5u8 {
            c.shift();
            let (id, m) = msg("a", n);
            c.put(&id, m, true);
            let (id, m) = msg("b", 100 + n);
            c.put(&id, m, true);
        }
        // Windows now hold 5, 4, 3, 2, 1 (0 dropped at the fifth shift).
        let ids = c.gossip_ids(&t);
        assert_eq!(
            ids,
            vec![MessageId(vec![5]), MessageId(vec![4]), MessageId(vec![3])]
        );
        assert!(c.get(&id0).is_none());
        assert!(c.get(&MessageId(vec![1])).is_some());
        let dropped = c.shift();
        assert_eq!(dropped, vec![MessageId(vec![1]), MessageId(vec![101])]);
    }

    #[test]
    fn unvalidated_not_gossiped_nor_served_and_retransmission_capped() {
        let mut c = MessageCache::new(5, 3, 100);
        let (id, m) = msg("a", 1);
        c.put(&id, m, false);
        let peer = PeerId::random();
        assert!(c.gossip_ids(&TopicHash::new("a")).is_empty());
        assert!(c.get_for(&id, &peer, 3).is_none());
        c.validate(&id);
        for _ in 0..3 {
            assert!(c.get_for(&id, &peer, 3).is_some());
        }
        assert!(c.get_for(&id, &peer, 3).is_none());
        assert!(c.get_for(&id, &PeerId::random(), 3).is_some());
    }

    #[test]
    fn cache_is_capped() {
        let mut c = MessageCache::new(5, 3, 2);
        for n in 0..3 {
            let (id, m) = msg("a", n);
            assert_eq!(c.put(&id, m, true), n < 2);
        }
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn seen_cache_ttl_and_cap() {
        let now = Instant::now();
        let mut s = SeenCache::new(Duration::from_secs(10), 2);
        let id = |n: u8| MessageId(vec![n]);
        assert!(s.insert(&id(1), now));
        assert!(!s.insert(&id(1), now));
        assert!(s.insert(&id(2), now));
        assert!(s.insert(&id(3), now));
        assert!(!s.contains(&id(1)), "oldest evicted when full");
        assert!(s.insert(&id(2), now + Duration::from_secs(10)), "expired");
        assert_eq!(s.len(), 1);
    }
}
