//! What the host knows about other peers: addresses (each with an expiry), public keys,
//! protocols and agent strings learned from identify.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Multiaddr, PeerId, PublicKey};

/// Most addresses kept per peer; the ones expiring first are dropped beyond it, so that a
/// peer announcing thousands of addresses cannot grow our memory.
pub const MAX_ADDRS_PER_PEER: usize = 64;
/// Most protocols kept per peer, for the same reason.
pub const MAX_PROTOCOLS_PER_PEER: usize = 256;
/// Most peers a [`Peerstore::default`] keeps a record of. 4,096: several times the peers a
/// node talks to in an hour (a DHT server of a large network hears from a few thousand), at
/// about a KiB a record; without a bound, every peer a DHT response names would stay for
/// good, and a remote naming made-up peers could grow the store without end.
pub const DEFAULT_MAX_PEERS: usize = 4096;
/// Most distinct protocol names the store shares between records. Peers of one network
/// announce the same handful of names, so each is kept once however many peers speak it;
/// past this many, further names are kept per record (still within
/// [`MAX_PROTOCOLS_PER_PEER`]), so that peers announcing made-up names cannot grow the
/// shared set.
const MAX_SHARED_PROTOCOLS: usize = 1024;

#[derive(Debug, Default, Clone)]
struct Record {
    addrs: HashMap<Multiaddr, Instant>,
    /// Protobuf-encoded (36 bytes for ed25519), decoded when asked for: the decoded key is
    /// several times larger, and few records are ever asked for theirs.
    public_key: Option<Box<[u8]>>,
    protocols: Vec<Arc<str>>,
    agent_version: Option<String>,
    /// When the record was last written, on the store's own clock of writes.
    touched: u64,
}

#[derive(Debug)]
struct Records {
    map: HashMap<PeerId, Record>,
    max: usize,
    /// The protocol names records share.
    names: HashSet<Arc<str>>,
    /// Counts writes; a record's `touched` is this at its last write.
    clock: u64,
}

impl Records {
    /// The record of `peer` for writing, made (room first, at the bound) if there is none,
    /// and marked as written now.
    fn write(&mut self, peer: &PeerId) -> &mut Record {
        if self.map.len() >= self.max && !self.map.contains_key(peer) {
            self.evict();
        }
        self.clock += 1;
        let tick = self.clock;
        let record = self.map.entry(*peer).or_default();
        record.touched = tick;
        record
    }

    /// `name` as a shared string: the one already kept, or a new one (shared if there is
    /// room).
    fn intern(&mut self, name: String) -> Arc<str> {
        if let Some(shared) = self.names.get(name.as_str()) {
            return shared.clone();
        }
        let name: Arc<str> = name.into();
        if self.names.len() < MAX_SHARED_PROTOCOLS {
            self.names.insert(name.clone());
        }
        name
    }

    /// Makes room for one more record: the least recently written eighth of the records
    /// (at least one) goes, so that a store at its bound sorts itself once per `max / 8` new
    /// peers rather than at each.
    fn evict(&mut self) {
        let n = (self.max / 8).clamp(1, self.map.len());
        let mut ticks: Vec<u64> = self.map.values().map(|r| r.touched).collect();
        let (_, cut, _) = ticks.select_nth_unstable(n - 1);
        let cut = *cut;
        self.map.retain(|_, r| r.touched > cut);
    }
}

/// The peerstore, holding at most a bounded number of peers' records (the least recently
/// written go first). Cheap to share: all methods take `&self`.
#[derive(Debug)]
pub struct Peerstore {
    records: Mutex<Records>,
}

impl Default for Peerstore {
    fn default() -> Self {
        Peerstore::with_max_peers(DEFAULT_MAX_PEERS)
    }
}

impl Peerstore {
    /// A store that keeps the records of at most `max` peers (at least one).
    pub fn with_max_peers(max: usize) -> Self {
        Peerstore {
            records: Mutex::new(Records {
                map: HashMap::new(),
                max: max.max(1),
                names: HashSet::new(),
                clock: 0,
            }),
        }
    }

    /// The number of peers the store has a record of.
    pub fn len(&self) -> usize {
        self.records.lock().expect("peerstore poisoned").map.len()
    }

    /// Whether the store has no record at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with<R>(&self, peer: &PeerId, f: impl FnOnce(&mut Record) -> R) -> R {
        let mut records = self.records.lock().expect("peerstore poisoned");
        f(records.write(peer))
    }

    /// Adds addresses of `peer`, valid for `ttl` (an address already known gets the later
    /// expiry). A trailing `/p2p/<id>` is removed.
    pub fn add_addrs(
        &self,
        peer: &PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
        ttl: Duration,
    ) {
        let expiry = Instant::now() + ttl;
        self.with(peer, |record| {
            for addr in addrs {
                let (addr, _) = crate::split_peer_id(&addr);
                let entry = record.addrs.entry(addr).or_insert(expiry);
                *entry = (*entry).max(expiry);
            }
            let now = Instant::now();
            record.addrs.retain(|_, expiry| *expiry > now);
            if record.addrs.len() > MAX_ADDRS_PER_PEER {
                let mut by_expiry: Vec<_> =
                    record.addrs.iter().map(|(a, e)| (*e, a.clone())).collect();
                by_expiry.sort();
                let excess = record.addrs.len() - MAX_ADDRS_PER_PEER;
                for (_, addr) in by_expiry.into_iter().take(excess) {
                    record.addrs.remove(&addr);
                }
            }
        })
    }

    /// The unexpired addresses of `peer`.
    pub fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let now = Instant::now();
        let records = self.records.lock().expect("peerstore poisoned");
        let mut addrs: Vec<Multiaddr> = records
            .map
            .get(peer)
            .map(|r| {
                r.addrs
                    .iter()
                    .filter(|(_, expiry)| **expiry > now)
                    .map(|(a, _)| a.clone())
                    .collect()
            })
            .unwrap_or_default();
        addrs.sort();
        addrs
    }

    /// Records the public key of `peer`; ignored unless the key gives that peer id.
    pub fn set_public_key(&self, peer: &PeerId, key: PublicKey) -> bool {
        if key.to_peer_id() != *peer {
            return false;
        }
        let encoded = key.encode_protobuf().into_boxed_slice();
        self.with(peer, |record| record.public_key = Some(encoded));
        true
    }

    /// The public key of `peer`, if known.
    pub fn public_key(&self, peer: &PeerId) -> Option<PublicKey> {
        let records = self.records.lock().expect("peerstore poisoned");
        let encoded = records.map.get(peer)?.public_key.as_deref()?;
        PublicKey::try_decode_protobuf(encoded).ok()
    }

    /// Replaces the protocols `peer` speaks (as identify told us).
    pub fn set_protocols(&self, peer: &PeerId, mut protocols: Vec<String>) {
        protocols.truncate(MAX_PROTOCOLS_PER_PEER);
        let mut records = self.records.lock().expect("peerstore poisoned");
        let shared: Vec<Arc<str>> = protocols.into_iter().map(|p| records.intern(p)).collect();
        records.write(peer).protocols = shared;
    }

    /// The protocols `peer` speaks, as far as we know.
    pub fn protocols(&self, peer: &PeerId) -> Vec<String> {
        let records = self.records.lock().expect("peerstore poisoned");
        records
            .map
            .get(peer)
            .map(|r| r.protocols.iter().map(|p| p.to_string()).collect())
            .unwrap_or_default()
    }

    /// Records the agent string of `peer`.
    pub fn set_agent_version(&self, peer: &PeerId, agent: String) {
        self.with(peer, |record| record.agent_version = Some(agent));
    }

    /// The agent string of `peer`, if known.
    pub fn agent_version(&self, peer: &PeerId) -> Option<String> {
        let records = self.records.lock().expect("peerstore poisoned");
        records.map.get(peer).and_then(|r| r.agent_version.clone())
    }

    /// Every peer the store has a record of.
    pub fn peers(&self) -> Vec<PeerId> {
        self.records
            .lock()
            .expect("peerstore poisoned")
            .map
            .keys()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    #[test]
    fn addresses_expire_and_are_bounded() {
        let store = Peerstore::default();
        let peer = PeerId::random();
        let a: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
        store.add_addrs(&peer, [a.clone()], Duration::from_secs(60));
        store.add_addrs(
            &peer,
            ["/ip4/1.2.3.4/tcp/2".parse().unwrap()],
            Duration::ZERO,
        );
        assert_eq!(store.addrs(&peer), vec![a]);
        let many = (0..200u16).map(|p| format!("/ip4/1.1.1.1/tcp/{p}").parse().unwrap());
        store.add_addrs(&peer, many, Duration::from_secs(60));
        assert!(store.addrs(&peer).len() <= MAX_ADDRS_PER_PEER);
    }

    #[test]
    fn keys_must_match_the_peer() {
        let store = Peerstore::default();
        let key = Keypair::generate_ed25519().public();
        let other = PeerId::random();
        assert!(!store.set_public_key(&other, key.clone()));
        assert!(store.public_key(&other).is_none());
        assert!(store.set_public_key(&key.to_peer_id(), key.clone()));
        assert_eq!(store.public_key(&key.to_peer_id()), Some(key));
    }

    #[test]
    fn the_number_of_peers_is_bounded_and_the_least_recently_written_go() {
        let store = Peerstore::with_max_peers(16);
        let a: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
        let ttl = Duration::from_secs(60);
        let peers: Vec<PeerId> = (0..16).map(|_| PeerId::random()).collect();
        for p in &peers {
            store.add_addrs(p, [a.clone()], ttl);
        }
        assert_eq!(store.len(), 16);
        // Written again, the first two are now the most recent.
        store.set_agent_version(&peers[0], "a".into());
        store.set_protocols(&peers[1], vec!["/x".into()]);
        // A new peer at the bound: the least recently written eighth (two) go.
        let new = PeerId::random();
        store.add_addrs(&new, [a.clone()], ttl);
        assert_eq!(store.len(), 15);
        assert!(store.addrs(&peers[2]).is_empty() && store.addrs(&peers[3]).is_empty());
        for p in [&peers[0], &peers[1], &peers[4], &new] {
            assert_eq!(store.addrs(p), vec![a.clone()]);
        }
        assert_eq!(store.agent_version(&peers[0]).as_deref(), Some("a"));
        // A known peer is never a reason to evict.
        store.add_addrs(&new, [a.clone()], ttl);
        store.add_addrs(&PeerId::random(), [a.clone()], ttl);
        assert_eq!(store.len(), 16);
        for _ in 0..1000 {
            store.add_addrs(&PeerId::random(), [a.clone()], ttl);
            assert!(store.len() <= 16);
        }
    }

    #[test]
    fn protocol_names_are_shared_between_peers() {
        let store = Peerstore::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        store.set_protocols(&a, vec!["/ipfs/id/1.0.0".into(), "/x".into()]);
        store.set_protocols(&b, vec!["/ipfs/id/1.0.0".into()]);
        assert_eq!(store.protocols(&a), vec!["/ipfs/id/1.0.0", "/x"]);
        assert_eq!(store.protocols(&b), vec!["/ipfs/id/1.0.0"]);
        let records = store.records.lock().unwrap();
        let (pa, pb) = (&records.map[&a].protocols[0], &records.map[&b].protocols[0]);
        assert!(Arc::ptr_eq(pa, pb));
        assert_eq!(records.names.len(), 2);
    }
}
