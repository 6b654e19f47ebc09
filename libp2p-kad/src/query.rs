//! The iterative lookup: a plain state machine over the candidates closest to a target.
//!
//! Candidates are kept in XOR order. At most `alpha` requests are in flight; only the `k`
//! closest candidates that have not failed are ever contacted, and the lookup is finished
//! when all of those have answered (or when every candidate has answered or failed). A peer
//! that fails or times out is set aside and the next closest moves into the window.

use std::collections::BTreeMap;

use libp2p_core::{Multiaddr, PeerId};

use crate::key::{Distance, Key};
use crate::proto::PeerInfo;

/// Where a candidate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Known, not asked yet.
    NotContacted,
    /// Asked, no answer yet.
    Waiting,
    /// Answered.
    Succeeded,
    /// Failed, timed out, or answered junk.
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    state: PeerState,
    /// 1 for the peers we started from, n + 1 for peers learned from a hop-n answer.
    hop: u32,
}

/// What a lookup wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupStep {
    /// Send the request to this peer (it is now marked as waiting).
    Contact {
        /// The peer.
        peer: PeerId,
        /// Its addresses, as learned.
        addrs: Vec<Multiaddr>,
        /// Its hop count: 1 for a peer of our own table.
        hop: u32,
    },
    /// `alpha` requests are in flight, or the window holds only peers in flight: wait for
    /// answers.
    Waiting,
    /// The `k` closest live candidates have all answered, or nobody is left to ask.
    Finished,
}

/// The state of one iterative lookup.
#[derive(Clone, Debug)]
pub struct Lookup {
    target: Key,
    candidates: BTreeMap<Distance, Candidate>,
    k: usize,
    alpha: usize,
    max_candidates: usize,
    max_addrs: usize,
    in_flight: usize,
    exclude: Option<PeerId>,
}

impl Lookup {
    /// A lookup of `target` seeded with `seeds` (our table's closest), with window `k`,
    /// `alpha` requests in flight and at most `max_candidates` remembered. `exclude` (our
    /// own id) is never added as a candidate.
    pub fn new(
        target: Key,
        seeds: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>,
        k: usize,
        alpha: usize,
        max_candidates: usize,
        exclude: Option<PeerId>,
    ) -> Lookup {
        let mut lookup = Lookup {
            target,
            candidates: BTreeMap::new(),
            k: k.max(1),
            alpha: alpha.max(1),
            max_candidates: max_candidates.max(k.max(1)),
            max_addrs: usize::MAX,
            in_flight: 0,
            exclude,
        };
        for (peer, addrs) in seeds {
            lookup.add(peer, addrs, 1);
        }
        lookup
    }

    /// Caps the addresses remembered per candidate (merged from several answers) at `max`;
    /// unbounded by default.
    pub fn with_max_addrs(mut self, max: usize) -> Lookup {
        self.max_addrs = max.max(1);
        self
    }

    /// The target's key.
    pub fn target(&self) -> &Key {
        &self.target
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn add(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, hop: u32) {
        if Some(peer) == self.exclude {
            return;
        }
        let d = Key::from_peer(&peer).distance(&self.target);
        if let Some(c) = self.candidates.get_mut(&d) {
            c.hop = c.hop.min(hop);
            if c.state == PeerState::NotContacted {
                for a in addrs {
                    if c.addrs.len() >= self.max_addrs {
                        break;
                    }
                    if !c.addrs.contains(&a) {
                        c.addrs.push(a);
                    }
                }
            }
            return;
        }
        if self.candidates.len() >= self.max_candidates {
            // Forget the farthest not yet contacted, if it is farther than the newcomer.
            let far = self
                .candidates
                .iter()
                .rev()
                .find(|(_, c)| c.state == PeerState::NotContacted)
                .map(|(d, _)| *d);
            match far {
                Some(far) if far > d => {
                    self.candidates.remove(&far);
                }
                _ => return,
            }
        }
        self.candidates.insert(
            d,
            Candidate {
                peer,
                addrs: {
                    let mut addrs = addrs;
                    addrs.truncate(self.max_addrs);
                    addrs
                },
                state: PeerState::NotContacted,
                hop,
            },
        );
    }

    /// The next thing to do.
    pub fn next_step(&mut self) -> LookupStep {
        let mut live = 0;
        let mut waiting = false;
        let mut pick = None;
        for (d, c) in self.candidates.iter() {
            if live == self.k {
                break;
            }
            match c.state {
                PeerState::Failed => continue,
                PeerState::Succeeded => {}
                PeerState::Waiting => waiting = true,
                PeerState::NotContacted => {
                    if pick.is_none() && self.in_flight < self.alpha {
                        pick = Some(*d);
                    }
                    waiting = true;
                }
            }
            live += 1;
        }
        if let Some(d) = pick {
            let c = self.candidates.get_mut(&d).expect("picked from the map");
            c.state = PeerState::Waiting;
            self.in_flight += 1;
            return LookupStep::Contact {
                peer: c.peer,
                addrs: c.addrs.clone(),
                hop: c.hop,
            };
        }
        if waiting {
            LookupStep::Waiting
        } else {
            LookupStep::Finished
        }
    }

    fn find(&mut self, peer: &PeerId) -> Option<&mut Candidate> {
        let d = Key::from_peer(peer).distance(&self.target);
        self.candidates.get_mut(&d)
    }

    /// `peer` answered with `closer`; returns its hop count, or `None` if it was not waited on.
    pub fn on_success(&mut self, peer: &PeerId, closer: Vec<PeerInfo>) -> Option<u32> {
        let c = self.find(peer)?;
        if c.state != PeerState::Waiting {
            return None;
        }
        c.state = PeerState::Succeeded;
        let hop = c.hop;
        self.in_flight -= 1;
        for p in closer {
            // Without an address a peer cannot be asked.
            if !p.addrs.is_empty() {
                self.add(p.id, p.addrs, hop + 1);
            }
        }
        Some(hop)
    }

    /// `peer` failed (error, timeout, junk); returns whether it was waited on.
    pub fn on_failure(&mut self, peer: &PeerId) -> bool {
        let Some(c) = self.find(peer) else {
            return false;
        };
        if c.state != PeerState::Waiting {
            return false;
        }
        c.state = PeerState::Failed;
        self.in_flight -= 1;
        true
    }

    /// The state of `peer` in this lookup.
    pub fn state(&self, peer: &PeerId) -> Option<PeerState> {
        let d = Key::from_peer(peer).distance(&self.target);
        self.candidates.get(&d).map(|c| c.state)
    }

    /// The hop count of `peer` in this lookup.
    pub fn hop(&self, peer: &PeerId) -> Option<u32> {
        let d = Key::from_peer(peer).distance(&self.target);
        self.candidates.get(&d).map(|c| c.hop)
    }

    /// The `n` closest peers that answered, closest first.
    pub fn closest_succeeded(&self, n: usize) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.candidates
            .values()
            .filter(|c| c.state == PeerState::Succeeded)
            .take(n)
            .map(|c| (c.peer, c.addrs.clone()))
            .collect()
    }

    /// Peers that were asked and have not answered yet (to forget their requests).
    pub fn waiting(&self) -> Vec<PeerId> {
        self.candidates
            .values()
            .filter(|c| c.state == PeerState::Waiting)
            .map(|c| c.peer)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Vec<Multiaddr> {
        vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()]
    }

    #[test]
    fn keeps_alpha_in_flight_and_finishes_on_the_k_closest() {
        let target = Key::new(b"target".to_vec());
        let peers: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        let mut l = Lookup::new(
            target.clone(),
            peers.iter().map(|p| (*p, addr())),
            4,
            2,
            100,
            None,
        );
        let mut sorted = peers.clone();
        sorted.sort_by_key(|p| Key::from_peer(p).distance(&target));
        let LookupStep::Contact { peer: a, hop, .. } = l.next_step() else {
            panic!()
        };
        assert_eq!((a, hop), (sorted[0], 1));
        let LookupStep::Contact { peer: b, .. } = l.next_step() else {
            panic!()
        };
        assert_eq!(b, sorted[1]);
        assert_eq!(l.next_step(), LookupStep::Waiting);
        // The closest fails: the fifth closest enters the window of four.
        assert!(l.on_failure(&a));
        assert!(!l.on_failure(&a));
        let LookupStep::Contact { peer: c, .. } = l.next_step() else {
            panic!()
        };
        assert_eq!(c, sorted[2]);
        assert_eq!(l.on_success(&b, vec![]), Some(1));
        assert_eq!(l.on_success(&b, vec![]), None);
        let LookupStep::Contact { peer: d, .. } = l.next_step() else {
            panic!()
        };
        assert_eq!(d, sorted[3]);
        l.on_success(&c, vec![]);
        let LookupStep::Contact { peer: e, .. } = l.next_step() else {
            panic!()
        };
        assert_eq!(e, sorted[4]);
        l.on_success(&d, vec![]);
        assert_eq!(l.next_step(), LookupStep::Waiting);
        l.on_success(&e, vec![]);
        assert_eq!(l.next_step(), LookupStep::Finished);
        let best: Vec<PeerId> = l
            .closest_succeeded(10)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(best, sorted[1..5].to_vec());
    }

    #[test]
    fn learned_peers_get_the_next_hop_and_the_candidate_list_is_capped() {
        let target = Key::new(b"t".to_vec());
        let seed = PeerId::random();
        let mut l = Lookup::new(target, [(seed, addr())], 20, 3, 20, None);
        assert!(matches!(l.next_step(), LookupStep::Contact { .. }));
        let learned: Vec<PeerInfo> = (0..50)
            .map(|_| PeerInfo {
                id: PeerId::random(),
                addrs: addr(),
                connection: Default::default(),
            })
            .collect();
        l.on_success(&seed, learned);
        assert!(l.candidates.len() <= 20);
        match l.next_step() {
            LookupStep::Contact { hop, .. } => assert_eq!(hop, 2),
            other => panic!("{other:?}"),
        }
    }
}
