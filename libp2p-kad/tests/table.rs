//! The routing table: insertion, LRU order, eviction through liveness checks, closest peers.

use std::time::{Duration, Instant};

use libp2p_core::{Multiaddr, PeerId};
use libp2p_kad::kbucket::{CheckOutcome, InsertOutcome, RoutingTable};
use libp2p_kad::{Action, Config, Event, Kad, Key};

fn addr(i: usize) -> Vec<Multiaddr> {
    vec![format!("/ip4/10.0.0.1/tcp/{}", 1000 + i).parse().unwrap()]
}

/// A table of buckets of `k` entries, otherwise as configured by default.
fn table(local: &Key, k: usize) -> RoutingTable {
    RoutingTable::new(local.clone(), &Config::default().with_replication_factor(k))
}

/// A time when entries seen at `t` no longer count as alive without a check.
fn stale(t: Instant) -> Instant {
    t + Config::default().recently_seen + Duration::from_secs(1)
}

/// `n` peers that all fall into bucket 255 (the far half of the key space) of `local`.
fn far_peers(local: &Key, n: usize) -> Vec<PeerId> {
    std::iter::repeat_with(PeerId::random)
        .filter(|p| local.distance(&Key::from_peer(p)).bucket_index() == Some(255))
        .take(n)
        .collect()
}

#[test]
fn a_full_bucket_asks_for_a_liveness_check_and_keeps_a_live_peer() {
    let now = Instant::now();
    let local = Key::from_peer(&PeerId::random());
    let mut table = table(&local, 20);
    let peers = far_peers(&local, 23);
    for (i, p) in peers[..20].iter().enumerate() {
        assert_eq!(table.insert(*p, &addr(i), now), InsertOutcome::Inserted);
    }
    assert_eq!(table.len(), 20);
    // Seen again: moves to the most recently seen end, so peers[1] is now the oldest.
    assert_eq!(
        table.insert(peers[0], &addr(50), now),
        InsertOutcome::Updated
    );
    assert_eq!(table.bucket(255)[19].peer, peers[0]);
    assert_eq!(table.bucket(255)[19].addrs.len(), 2);
    // Full, and the oldest was seen just now: it counts as alive, the newcomer is dropped
    // without a check.
    assert_eq!(table.insert(peers[20], &addr(20), now), InsertOutcome::Full);
    assert!(table.get(&peers[20]).is_none());
    // Nothing heard from it for a while: the newcomer waits and the oldest is to be checked.
    let later = stale(now);
    assert_eq!(
        table.insert(peers[20], &addr(20), later),
        InsertOutcome::Pending { check: peers[1] }
    );
    // One newcomer at a time.
    assert_eq!(
        table.insert(peers[21], &addr(21), later),
        InsertOutcome::Full
    );
    assert!(table.get(&peers[20]).is_none());
    // A report about a peer nobody checks changes nothing.
    assert_eq!(table.liveness_result(&peers[5], false, later), None);
    // Alive: it stays (now most recently seen), the newcomer is dropped.
    assert_eq!(
        table.liveness_result(&peers[1], true, later),
        Some(CheckOutcome {
            evicted: None,
            inserted: None
        })
    );
    assert!(table.get(&peers[1]).is_some());
    assert!(table.get(&peers[20]).is_none());
    assert_eq!(table.bucket(255)[19].peer, peers[1]);
    assert_eq!(table.bucket(255)[19].last_seen, later);
    assert_eq!(table.len(), 20);
}

#[test]
fn a_connected_oldest_entry_is_not_checked() {
    let now = Instant::now();
    let local = Key::from_peer(&PeerId::random());
    let mut table = table(&local, 2);
    let peers = far_peers(&local, 3);
    table.insert(peers[0], &addr(0), now);
    table.insert(peers[1], &addr(1), now);
    let later = stale(now);
    // The host keeps connected peers alive or disconnects them: no check, whatever its age.
    table.set_connected(&peers[0], true);
    assert_eq!(table.insert(peers[2], &addr(2), later), InsertOutcome::Full);
    assert_eq!(table.next_check_deadline(), None);
    // Disconnected and not heard from since: checked before the newcomer is turned away.
    table.set_connected(&peers[0], false);
    assert_eq!(
        table.insert(peers[2], &addr(2), later),
        InsertOutcome::Pending { check: peers[0] }
    );
}

#[test]
fn a_failed_or_unanswered_check_evicts_the_oldest() {
    let now = Instant::now();
    let local = Key::from_peer(&PeerId::random());
    let mut table = table(&local, 20);
    let peers = far_peers(&local, 22);
    for (i, p) in peers[..20].iter().enumerate() {
        table.insert(*p, &addr(i), now);
    }
    let later = stale(now);
    let deadline = later + Config::default().liveness_timeout;
    assert_eq!(
        table.insert(peers[20], &addr(20), later),
        InsertOutcome::Pending { check: peers[0] }
    );
    assert_eq!(
        table.liveness_result(&peers[0], false, later),
        Some(CheckOutcome {
            evicted: Some(peers[0]),
            inserted: Some(peers[20])
        })
    );
    assert!(table.get(&peers[0]).is_none());
    assert_eq!(table.get(&peers[20]).unwrap().addrs, addr(20));
    assert_eq!(table.len(), 20);

    // Nobody answers the next check: past its deadline it counts as failed.
    assert_eq!(
        table.insert(peers[21], &addr(21), later),
        InsertOutcome::Pending { check: peers[1] }
    );
    assert_eq!(table.next_check_deadline(), Some(deadline));
    assert!(table
        .expired_checks(deadline - Duration::from_secs(1))
        .is_empty());
    assert_eq!(table.expired_checks(deadline), vec![peers[1]]);
}

#[test]
fn removal_lets_the_waiting_peer_in_and_ourselves_never_enter() {
    let now = Instant::now();
    let me = PeerId::random();
    let local = Key::from_peer(&me);
    let mut table = table(&local, 2);
    let peers = far_peers(&local, 3);
    table.insert(peers[0], &addr(0), now);
    table.insert(peers[1], &addr(1), now);
    assert!(matches!(
        table.insert(peers[2], &addr(2), stale(now)),
        InsertOutcome::Pending { .. }
    ));
    assert!(table.remove(&peers[1]).is_some());
    assert!(table.get(&peers[2]).is_some());
    assert_eq!(table.len(), 2);
    assert_eq!(table.insert(me, &addr(9), now), InsertOutcome::Ignored);
    // A peer without an address cannot be reached: not added.
    let other = far_peers(&local, 1)[0];
    assert_eq!(table.insert(other, &[], now), InsertOutcome::Ignored);
}

#[test]
fn closest_matches_a_brute_force_sort() {
    let now = Instant::now();
    let local = Key::from_peer(&PeerId::random());
    let mut table = table(&local, 20);
    let peers: Vec<PeerId> = (0..300).map(|_| PeerId::random()).collect();
    for (i, p) in peers.iter().enumerate() {
        table.insert(*p, &addr(i), now);
    }
    let in_table: Vec<PeerId> = table.iter().map(|e| e.peer).collect();
    // Buckets far from us are full (20), near ones sparse: not all 300 fit.
    assert!(
        in_table.len() < 300 && in_table.len() > 60,
        "{}",
        in_table.len()
    );
    for t in 0..20 {
        let target = Key::new(format!("target-{t}").into_bytes());
        let mut expected = in_table.clone();
        expected.sort_by_key(|p| Key::from_peer(p).distance(&target));
        let got: Vec<PeerId> = table
            .closest(&target, 20, None)
            .into_iter()
            .map(|e| e.peer)
            .collect();
        assert_eq!(got, expected[..20]);
        let without: Vec<PeerId> = table
            .closest(&target, 5, Some(&expected[0]))
            .into_iter()
            .map(|e| e.peer)
            .collect();
        assert_eq!(without, expected[1..6]);
    }
}

#[test]
fn the_node_asks_the_host_to_check_liveness_and_evicts_on_failure() {
    let now = Instant::now();
    let me = PeerId::random();
    let mut kad = Kad::new(me, Config::default().with_bootstrap_interval(None), now);
    let peers = far_peers(&Key::from_peer(&me), 21);
    for (i, p) in peers[..20].iter().enumerate() {
        assert_eq!(kad.add_peer(*p, &addr(i), now), InsertOutcome::Inserted);
    }
    while kad.poll_event().is_some() {}
    // Seen just now, the oldest counts as alive: no check.
    kad.add_peer(peers[20], &addr(20), now);
    assert_eq!(kad.poll_action(), None);
    let now = stale(now);
    kad.add_peer(peers[20], &addr(20), now);
    assert_eq!(
        kad.poll_action(),
        Some(Action::CheckLiveness {
            peer: peers[0],
            addrs: addr(0)
        })
    );
    assert_eq!(kad.poll_action(), None);
    // The host never answers: after the liveness timeout the check counts as failed.
    let later = now + Config::default().liveness_timeout;
    assert!(kad.poll_timeout().unwrap() <= later);
    kad.handle_timeout(later);
    assert_eq!(
        kad.poll_event(),
        Some(Event::RoutingUpdated {
            peer: peers[20],
            evicted: Some(peers[0])
        })
    );
    assert!(kad.routing_table().get(&peers[0]).is_none());
    // identify says a peer is a client after all: it leaves the table.
    kad.on_identify(peers[5], &addr(5), false, later);
    assert!(kad.routing_table().get(&peers[5]).is_none());
}
