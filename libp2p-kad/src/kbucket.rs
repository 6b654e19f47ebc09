//! The routing table: 256 k-buckets by shared prefix length with our own key, each in least
//! recently seen order.
//!
//! A full bucket does not evict anybody blindly. When its least recently seen entry is known
//! to be alive (connected now, or heard from within [`Config::recently_seen`]), the newcomer
//! is dropped at once: the Kademlia paper's rule of not pinging peers seen recently, which
//! spares a busy server one dial for nearly every peer that contacts it. Otherwise the
//! newcomer waits in the bucket's one pending slot while the caller checks the liveness of
//! that entry (the host does so with `/ipfs/ping/1.0.0`). A live entry stays and the newcomer
//! goes; a dead one is evicted and the newcomer takes its place. Old, long-lived peers are
//! thus preferred, as in the Kademlia paper.

use std::time::{Duration, Instant};

use libp2p_core::{Multiaddr, PeerId};

use crate::config::Config;
use crate::key::{Distance, Key};

/// The number of buckets: one per bit of the key space.
pub const NUM_BUCKETS: usize = 256;

/// A peer in the routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The peer.
    pub peer: PeerId,
    /// Its key (the sha2-256 of its id).
    pub key: Key,
    /// Its known addresses, most recently learned last, capped.
    pub addrs: Vec<Multiaddr>,
    /// Whether the host reports a live connection to it.
    pub connected: bool,
    /// When it was last heard from: added or refreshed (it answered, identified, or was
    /// given again), or passed a liveness check.
    pub last_seen: Instant,
}

/// A newcomer waiting on a full bucket while its least recently seen entry is checked.
#[derive(Clone, Debug)]
struct Pending {
    entry: Entry,
    /// The peer whose liveness decides.
    checking: PeerId,
    /// When the check counts as failed if it has not been answered.
    deadline: Instant,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    /// Boxed: most buckets never have one, and 256 inline slots would cost every table
    /// tens of KiB.
    pending: Option<Box<Pending>>,
}

/// What [`RoutingTable::insert`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The peer was new and its bucket had room.
    Inserted,
    /// The peer was known: it moved to the most recently seen end, its addresses merged.
    Updated,
    /// The bucket is full: the peer waits, and the caller must check the liveness of
    /// `check`, then report it with [`RoutingTable::liveness_result`].
    Pending {
        /// The least recently seen peer of the bucket.
        check: PeerId,
    },
    /// The bucket is full and its least recently seen entry is known to be alive (connected,
    /// or seen recently), or another newcomer already waits (its addresses were refreshed if
    /// it is the same peer): the peer was not added and nothing changed.
    Full,
    /// The peer is ourselves, or came with no address.
    Ignored,
}

/// What a finished liveness check did to the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The peer that was evicted (the checked one, when it failed).
    pub evicted: Option<PeerId>,
    /// The peer that took its place.
    pub inserted: Option<PeerId>,
}

/// The routing table.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local: Key,
    buckets: Vec<Bucket>,
    k: usize,
    max_addrs: usize,
    check_timeout: Duration,
    recently_seen: Duration,
    len: usize,
}

fn merge_addrs(into: &mut Vec<Multiaddr>, new: &[Multiaddr], max: usize) {
    for a in new {
        if let Some(pos) = into.iter().position(|x| x == a) {
            into.remove(pos);
        }
        into.push(a.clone());
    }
    if into.len() > max {
        let extra = into.len() - max;
        into.drain(..extra);
    }
}

impl RoutingTable {
    /// An empty table around `local`, with the bucket size, addresses per entry and liveness
    /// rules of `config` ([`replication_factor`](Config::replication_factor),
    /// [`max_addrs_per_peer`](Config::max_addrs_per_peer),
    /// [`liveness_timeout`](Config::liveness_timeout),
    /// [`recently_seen`](Config::recently_seen)).
    pub fn new(local: Key, config: &Config) -> RoutingTable {
        RoutingTable {
            local,
            buckets: vec![Bucket::default(); NUM_BUCKETS],
            k: config.k(),
            max_addrs: config.max_addrs_per_peer.max(1),
            check_timeout: config.liveness_timeout,
            recently_seen: config.recently_seen,
            len: 0,
        }
    }

    /// Our own key.
    pub fn local_key(&self) -> &Key {
        &self.local
    }

    /// The peers in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn index(&self, key: &Key) -> Option<usize> {
        self.local.distance(key).bucket_index()
    }

    /// The entry of `peer`, if it is in the table.
    pub fn get(&self, peer: &PeerId) -> Option<&Entry> {
        let key = Key::from_peer(peer);
        let i = self.index(&key)?;
        self.buckets[i].entries.iter().find(|e| &e.peer == peer)
    }

    /// Adds `peer` or, if it is known, marks it as seen at `now` and merges `addrs` into its
    /// addresses. On a full bucket whose least recently seen entry is not known to be alive,
    /// the peer waits and the outcome names the entry to check; the check fails by itself
    /// [`liveness_timeout`](Config::liveness_timeout) after `now` if nobody answers it.
    pub fn insert(&mut self, peer: PeerId, addrs: &[Multiaddr], now: Instant) -> InsertOutcome {
        let key = Key::from_peer(&peer);
        let Some(i) = self.index(&key) else {
            return InsertOutcome::Ignored;
        };
        let (k, max_addrs) = (self.k, self.max_addrs);
        let bucket = &mut self.buckets[i];
        if let Some(pos) = bucket.entries.iter().position(|e| e.peer == peer) {
            let mut entry = bucket.entries.remove(pos);
            merge_addrs(&mut entry.addrs, addrs, max_addrs);
            entry.last_seen = now;
            bucket.entries.push(entry);
            return InsertOutcome::Updated;
        }
        if addrs.is_empty() {
            return InsertOutcome::Ignored;
        }
        let mut entry = Entry {
            peer,
            key,
            addrs: Vec::new(),
            connected: false,
            last_seen: now,
        };
        merge_addrs(&mut entry.addrs, addrs, max_addrs);
        if bucket.entries.len() < k {
            bucket.entries.push(entry);
            self.len += 1;
            return InsertOutcome::Inserted;
        }
        if let Some(pending) = &mut bucket.pending {
            if pending.entry.peer == peer {
                merge_addrs(&mut pending.entry.addrs, addrs, max_addrs);
            }
            return InsertOutcome::Full;
        }
        let oldest = &bucket.entries[0];
        if oldest.connected || now.saturating_duration_since(oldest.last_seen) < self.recently_seen
        {
            return InsertOutcome::Full;
        }
        let check = oldest.peer;
        bucket.pending = Some(Box::new(Pending {
            entry,
            checking: check,
            deadline: now + self.check_timeout,
        }));
        InsertOutcome::Pending { check }
    }

    /// Reports the liveness check of `peer`, answered at `now`: alive, it moves to the most
    /// recently seen end and the waiting newcomer is dropped; dead, it is evicted and the
    /// newcomer takes its place. `None` if no check of `peer` was pending.
    pub fn liveness_result(
        &mut self,
        peer: &PeerId,
        alive: bool,
        now: Instant,
    ) -> Option<CheckOutcome> {
        let key = Key::from_peer(peer);
        let i = self.index(&key)?;
        let bucket = &mut self.buckets[i];
        if bucket.pending.as_ref()?.checking != *peer {
            return None;
        }
        let pending = bucket.pending.take()?;
        let pos = bucket.entries.iter().position(|e| e.peer == *peer);
        if alive {
            if let Some(pos) = pos {
                let mut e = bucket.entries.remove(pos);
                e.last_seen = now;
                bucket.entries.push(e);
            }
            return Some(CheckOutcome {
                evicted: None,
                inserted: None,
            });
        }
        let evicted = pos.map(|pos| bucket.entries.remove(pos).peer);
        if evicted.is_some() {
            self.len -= 1;
        }
        let inserted = if bucket.entries.len() < self.k {
            let p = pending.entry.peer;
            bucket.entries.push(pending.entry);
            self.len += 1;
            Some(p)
        } else {
            None
        };
        Some(CheckOutcome { evicted, inserted })
    }

    /// The peers whose pending liveness check is past its deadline at `now`: each such check
    /// counts as failed (use [`liveness_result`](RoutingTable::liveness_result) with `false`).
    pub fn expired_checks(&self, now: Instant) -> Vec<PeerId> {
        self.buckets
            .iter()
            .filter_map(|b| b.pending.as_ref())
            .filter(|p| p.deadline <= now)
            .map(|p| p.checking)
            .collect()
    }

    /// The earliest deadline of a pending liveness check.
    pub fn next_check_deadline(&self) -> Option<Instant> {
        self.buckets
            .iter()
            .filter_map(|b| b.pending.as_ref())
            .map(|p| p.deadline)
            .min()
    }

    /// Removes `peer` (e.g. it is unreachable, or turned out to be in client mode). A
    /// newcomer waiting on its bucket takes the free place.
    pub fn remove(&mut self, peer: &PeerId) -> Option<Entry> {
        let key = Key::from_peer(peer);
        let i = self.index(&key)?;
        let bucket = &mut self.buckets[i];
        if bucket
            .pending
            .as_ref()
            .is_some_and(|p| p.entry.peer == *peer)
        {
            bucket.pending = None;
            return None;
        }
        let pos = bucket.entries.iter().position(|e| e.peer == *peer)?;
        let removed = bucket.entries.remove(pos);
        self.len -= 1;
        if let Some(pending) = bucket.pending.take() {
            bucket.entries.push(pending.entry);
            self.len += 1;
        }
        Some(removed)
    }

    /// Records whether the host has a live connection to `peer` (reported in answers).
    pub fn set_connected(&mut self, peer: &PeerId, connected: bool) {
        let key = Key::from_peer(peer);
        if let Some(i) = self.index(&key) {
            if let Some(e) = self.buckets[i].entries.iter_mut().find(|e| e.peer == *peer) {
                e.connected = connected;
            }
        }
    }

    /// The `n` entries closest to `target`, closest first, leaving out `exclude`.
    pub fn closest(&self, target: &Key, n: usize, exclude: Option<&PeerId>) -> Vec<&Entry> {
        let mut all: Vec<(Distance, &Entry)> = Vec::with_capacity(self.len);
        for e in self.buckets.iter().flat_map(|b| b.entries.iter()) {
            if exclude.is_none_or(|x| *x != e.peer) {
                all.push((e.key.distance(target), e));
            }
        }
        if all.len() > n {
            all.select_nth_unstable_by_key(n, |(d, _)| *d);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, e)| e).collect()
    }

    /// All entries, bucket by bucket (closest bucket first), least recently seen first.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// The entries of bucket `index`, least recently seen first.
    pub fn bucket(&self, index: usize) -> &[Entry] {
        self.buckets.get(index).map_or(&[], |b| &b.entries)
    }

    /// The indexes of the buckets that hold at least one entry, closest first.
    pub fn non_empty_buckets(&self) -> Vec<usize> {
        (0..NUM_BUCKETS)
            .filter(|&i| !self.buckets[i].entries.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_merge_dedup_and_cap() {
        let a = |i: u16| -> Multiaddr { format!("/ip4/1.1.1.1/tcp/{i}").parse().unwrap() };
        let mut v = vec![a(1), a(2)];
        merge_addrs(&mut v, &[a(1), a(3), a(4)], 3);
        assert_eq!(v, vec![a(1), a(3), a(4)]);
    }
}
