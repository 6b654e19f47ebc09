//! The router's decisions, one router under test and fake peers spoken for by hand.

mod common;

use std::time::Duration;
use std::time::Instant;

use common::*;
use libp2p_core::{Keypair, PeerId};
use libp2p_gossipsub::proto::{self, Rpc};
use libp2p_gossipsub::{
    Acceptance, Action, Config, MessageError, MessageId, PeerKind, ScoreParams, Thresholds,
    TopicScoreParams,
};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

#[test]
fn mesh_grows_back_to_d_below_d_lo_and_not_at_d_lo() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 1, now);
    fake_peers(&mut r, 20, true, &t, now);
    drain(&mut r);
    r.subscribe(t.clone(), now).unwrap();
    let a = drain(&mut r);
    assert_eq!(grafted(&a).len(), 6, "subscribe grafts D peers");
    let mesh: Vec<PeerId> = r.mesh_peers(&t).copied().collect();
    assert_eq!(mesh.len(), 6);

    // One peer leaves: 5 = D_lo, nothing to do.
    r.remove_peer(&mesh[0], now);
    r.handle_timeout(now + 200 * MS);
    assert!(grafted(&drain(&mut r)).is_empty());
    assert_eq!(r.mesh_peers(&t).count(), 5);

    // Another leaves: 4 < D_lo, the heartbeat grafts back up to D = 6.
    r.remove_peer(&mesh[1], now);
    r.handle_timeout(now + 1200 * MS);
    let g = grafted(&drain(&mut r));
    assert_eq!(g.len(), 2);
    assert!(g.iter().all(|p| !mesh.contains(p)));
    assert_eq!(r.mesh_peers(&t).count(), 6);
}

#[test]
fn mesh_above_d_hi_pruned_to_d_keeping_best_scores_and_outbound() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 2, now);
    r.subscribe(t.clone(), now).unwrap();
    let inbound = fake_peers(&mut r, 12, false, &t, now);
    let outbound = fake_peers(&mut r, 3, true, &t, now);
    for p in inbound.iter().chain(&outbound) {
        r.handle_rpc(*p, graft(&t), now);
    }
    // Inbound GRAFTs stop at D_hi; outbound ones are taken beyond it.
    assert_eq!(r.mesh_peers(&t).count(), 15);
    let best = &inbound[..4];
    for p in best {
        assert!(r.set_application_score(p, 1.0));
    }
    drain(&mut r);
    r.handle_timeout(now + 200 * MS);
    let a = drain(&mut r);
    let mesh: Vec<PeerId> = r.mesh_peers(&t).copied().collect();
    assert_eq!(mesh.len(), 6);
    assert!(best.iter().all(|p| mesh.contains(p)), "D_score best kept");
    assert!(
        mesh.iter().filter(|p| outbound.contains(p)).count() >= 2,
        "D_out kept"
    );
    let pruned = pruned(&a);
    assert_eq!(pruned.len(), 9);
    for p in &pruned {
        let prune = &control(&sent_to(&a, p)).prune[0];
        assert_eq!(prune.backoff, Some(60));
        assert!(prune.peers.is_empty(), "no PX by default");
        assert!(r.is_backed_off(&t, p, now + 200 * MS));
    }
}

#[test]
fn inbound_graft_refused_at_d_hi() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 3, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 13, false, &t, now);
    drain(&mut r);
    for p in &peers {
        r.handle_rpc(*p, graft(&t), now);
    }
    assert_eq!(r.mesh_peers(&t).count(), 12);
    let a = drain(&mut r);
    assert_eq!(pruned(&a).len(), 1);
}

#[test]
fn graft_during_backoff_penalised_and_refused() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 4, now);
    r.subscribe(t.clone(), now).unwrap();
    let p = fake_peers(&mut r, 1, false, &t, now)[0];
    assert_eq!(
        r.mesh_peers(&t).count(),
        1,
        "a thin mesh takes a new subscriber at once"
    );
    // It prunes us, asking for a 60 s backoff, then grafts again a second later.
    r.handle_rpc(p, prune(&t, Some(60), &[]), now);
    assert_eq!(r.mesh_peers(&t).count(), 0);
    drain(&mut r);
    r.handle_rpc(p, graft(&t), now + S);
    let a = drain(&mut r);
    assert_eq!(pruned(&a), vec![p], "answered with PRUNE");
    assert_eq!(r.mesh_peers(&t).count(), 0);
    assert_eq!(r.stats().grafts_during_backoff, 1);
    // Within the graft flood threshold (10 s): two penalties, P7 = 2^2 * -10.
    assert_eq!(r.peer_score(&p, now + S), Some(-40.0));
    // Later, but still backed off: one more penalty (decay aside).
    r.handle_rpc(p, graft(&t), now + 20 * S);
    assert_eq!(r.stats().grafts_during_backoff, 2);
    assert_eq!(r.peer_score(&p, now + 20 * S), Some(-90.0));
    // Below the graylist threshold (-80): whatever it sends now is dropped unread.
    r.handle_rpc(p, sub(&t, false), now + 20 * S);
    assert_eq!(r.stats().graylisted_rpcs, 1);
    assert_eq!(
        r.topic_peers(&t).count(),
        1,
        "its unsubscribe was not even read"
    );
}

#[test]
fn remote_backoff_honoured_by_heartbeat() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 5, now);
    r.subscribe(t.clone(), now).unwrap();
    let q = fake_peers(&mut r, 1, true, &t, now)[0];
    r.handle_rpc(q, prune(&t, Some(30), &[]), now);
    drain(&mut r);
    // Heartbeats every second: no GRAFT until 30 s plus one heartbeat of slack have passed.
    let mut at = now;
    let mut grafted_at = None;
    for _ in 0..40 {
        at += S;
        r.handle_timeout(at);
        if grafted(&drain(&mut r)).contains(&q) {
            grafted_at = Some(at - now);
            break;
        }
    }
    let when = grafted_at.expect("grafted after the backoff");
    assert!(when >= 31 * S && when <= 32 * S, "grafted after {when:?}");
}

fn scored_config(p: TopicScoreParams) -> Config {
    let mut params = ScoreParams::default();
    params.topics.insert(topic(), p);
    Config {
        score: Some((params, Thresholds::default())),
        ..Config::default()
    }
}

#[test]
fn score_arithmetic_through_the_router() {
    let now = Instant::now();
    let t = topic();
    let cfg = scored_config(TopicScoreParams {
        topic_weight: 0.5,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.5,
        invalid_message_deliveries_weight: -1.0,
        invalid_message_deliveries_decay: 0.3,
        ..Default::default()
    });
    let (mut r, _) = router(cfg, 6, now);
    r.subscribe(t.clone(), now).unwrap();
    let p = fake_peers(&mut r, 1, true, &t, now)[0];
    let author = Keypair::generate_ed25519();
    for n in 0..3 {
        r.handle_rpc(p, publish(signed(&author, n, &t, b"ok")), now);
    }
    // P2: 3 first deliveries * 1 * topic weight 0.5.
    assert_eq!(r.peer_score(&p, now), Some(1.5));
    // Two bad signatures: P4 = -(2^2) * 0.5.
    for n in 10..12 {
        let mut m = signed(&author, n, &t, b"ok");
        m.data = Some(b"changed".to_vec());
        r.handle_rpc(p, publish(m), now);
    }
    assert_eq!(r.peer_score(&p, now), Some(1.5 - 2.0));
    // One decay (the first heartbeat after the 1 s decay interval): P2 3 * 0.5 = 1.5 -> 0.75;
    // P4 2 * 0.3 = 0.6 -> -(0.36) * 0.5 = -0.18.
    r.handle_timeout(now + 1100 * MS);
    let score = r.peer_score(&p, now + 1100 * MS).unwrap();
    assert!((score - (0.75 - 0.18)).abs() < 1e-9, "{score}");
}

#[test]
fn bad_signature_rejected_penalised_not_forwarded() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(scored_config(TopicScoreParams::default()), 7, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 3, true, &t, now);
    drain(&mut r);
    let author = Keypair::generate_ed25519();
    let mut forged = signed(&author, 1, &t, b"real");
    forged.data = Some(b"forged".to_vec());
    r.handle_rpc(peers[0], publish(forged), now);
    let a = drain(&mut r);
    assert!(delivered(&a).is_empty());
    assert!(
        a.iter().all(|x| !matches!(x, Action::SendRpc { .. })),
        "not forwarded"
    );
    assert!(a.iter().any(|x| matches!(
        x,
        Action::InvalidMessage { error: MessageError::InvalidSignature, peer, .. } if *peer == peers[0]
    )));
    // P4 with the default topic parameters: -(1^2) * 1 * 0.5.
    assert_eq!(r.peer_score(&peers[0], now), Some(-0.5));
    // Unsigned messages are refused in strict mode.
    let mut unsigned = signed(&author, 2, &t, b"x");
    unsigned.signature = None;
    r.handle_rpc(peers[1], publish(unsigned), now);
    assert!(drain(&mut r).iter().any(|x| matches!(
        x,
        Action::InvalidMessage {
            error: MessageError::MissingSignature,
            ..
        }
    )));
}

#[test]
fn duplicates_dropped_and_forwarded_once() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 8, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 4, true, &t, now);
    drain(&mut r);
    let author = Keypair::generate_ed25519();
    let m = signed(&author, 1, &t, b"once");
    r.handle_rpc(peers[0], publish(m.clone()), now);
    r.handle_rpc(peers[1], publish(m.clone()), now);
    let a = drain(&mut r);
    assert_eq!(delivered(&a), vec![b"once".to_vec()]);
    assert_eq!(r.stats().duplicates, 1);
    assert!(
        sent_to(&a, &peers[0]).publish.is_empty(),
        "not back to its source"
    );
    for p in &peers[1..] {
        assert_eq!(sent_to(&a, p).publish.len(), 1, "forwarded once");
    }
}

#[test]
fn mcache_gossip_ihave_iwant_and_retransmission_cap() {
    let now = Instant::now();
    let t = topic();
    let cfg = Config {
        flood_publish: false,
        ..Config::default()
    };
    let (mut r, _) = router(cfg, 9, now);
    let peers = fake_peers(&mut r, 10, true, &t, now);
    r.subscribe(t.clone(), now).unwrap();
    drain(&mut r);
    let mesh: Vec<PeerId> = r.mesh_peers(&t).copied().collect();
    assert_eq!(mesh.len(), 6);
    let outside: Vec<PeerId> = peers
        .iter()
        .filter(|p| !mesh.contains(p))
        .copied()
        .collect();
    let id = r.publish(t.clone(), b"gossip me".to_vec(), now).unwrap();
    let a = drain(&mut r);
    for p in &mesh {
        assert_eq!(sent_to(&a, p).publish.len(), 1);
    }
    for p in &outside {
        assert!(sent_to(&a, p).publish.is_empty(), "not flooded");
    }
    // Three heartbeats (history_gossip) announce it to the peers outside the mesh.
    for beat in 1..=4u32 {
        r.handle_timeout(now + beat * S);
        let a = drain(&mut r);
        for p in &outside {
            let ids: Vec<Vec<u8>> = control(&sent_to(&a, p))
                .ihave
                .into_iter()
                .flat_map(|i| i.message_ids)
                .collect();
            if beat <= 3 {
                assert_eq!(ids, vec![id.0.clone()], "heartbeat {beat}");
            } else {
                assert!(ids.is_empty(), "out of the gossip windows");
            }
        }
        for p in &mesh {
            assert!(
                control(&sent_to(&a, p)).ihave.is_empty(),
                "no gossip to the mesh"
            );
        }
    }
    // IWANT is answered from the cache, three times per peer at most.
    let asker = outside[0];
    for n in 0..4 {
        r.handle_rpc(asker, iwant(std::slice::from_ref(&id.0)), now + 4 * S);
        let got = sent_to(&drain(&mut r), &asker).publish.len();
        assert_eq!(got, usize::from(n < 3), "ask {n}");
    }
    // After history_length heartbeats it is gone.
    r.handle_timeout(now + 5 * S);
    drain(&mut r);
    r.handle_rpc(outside[1], iwant(std::slice::from_ref(&id.0)), now + 5 * S);
    assert!(sent_to(&drain(&mut r), &outside[1]).publish.is_empty());
}

#[test]
fn ihave_answered_limited_and_broken_promise_penalised() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 10, now);
    r.subscribe(t.clone(), now).unwrap();
    let p = fake_peers(&mut r, 1, true, &t, now)[0];
    drain(&mut r);
    for n in 0..11u8 {
        r.handle_rpc(p, ihave(&t, &[libp2p_gossipsub::MessageId(vec![n])]), now);
        let wants = control(&sent_to(&drain(&mut r), &p)).iwant;
        assert_eq!(wants.len(), usize::from(n < 10), "IHAVE {n}");
    }
    assert_eq!(r.stats().ignored_ihaves, 1);
    // IHAVE for a topic we are not in: ignored.
    r.handle_rpc(
        p,
        ihave(&"other".into(), &[libp2p_gossipsub::MessageId(vec![99])]),
        now,
    );
    assert!(control(&sent_to(&drain(&mut r), &p)).iwant.is_empty());
    // Nothing delivered: one promise per IWANT broken after 3 s.
    r.handle_timeout(now + 200 * MS);
    assert_eq!(r.stats().broken_promises, 0);
    r.handle_timeout(now + 3200 * MS);
    assert_eq!(r.stats().broken_promises, 10);
    // Decay ran first in that heartbeat, then the penalty of 10: P7 = 10^2 * -10.
    assert_eq!(r.peer_score(&p, now + 3200 * MS), Some(-1000.0));
}

#[test]
fn kept_promise_costs_nothing() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 11, now);
    r.subscribe(t.clone(), now).unwrap();
    let p = fake_peers(&mut r, 1, true, &t, now)[0];
    let author = Keypair::generate_ed25519();
    let m = signed(&author, 5, &t, b"promised");
    let id = libp2p_gossipsub::spec_message_id(&libp2p_gossipsub::Message {
        source: Some(author.public().to_peer_id()),
        data: b"promised".to_vec(),
        sequence_number: Some(5),
        topic: t.clone(),
    });
    r.handle_rpc(p, ihave(&t, std::slice::from_ref(&id)), now);
    let wants = control(&sent_to(&drain(&mut r), &p)).iwant;
    assert_eq!(wants[0].message_ids, vec![id.0.clone()]);
    r.handle_rpc(p, publish(m), now + S);
    assert_eq!(delivered(&drain(&mut r)), vec![b"promised".to_vec()]);
    r.handle_timeout(now + 5 * S);
    assert_eq!(r.stats().broken_promises, 0);
    assert_eq!(r.peer_score(&p, now + 5 * S), Some(0.0));
}

#[test]
fn gossip_ids_follow_the_configured_function() {
    let fns: [(&str, libp2p_gossipsub::MessageIdFn); 3] = [
        (
            "spec",
            std::sync::Arc::new(libp2p_gossipsub::spec_message_id),
        ),
        (
            "rust",
            std::sync::Arc::new(libp2p_gossipsub::rust_libp2p_message_id),
        ),
        (
            "py",
            std::sync::Arc::new(libp2p_gossipsub::py_libp2p_message_id),
        ),
    ];
    for (name, f) in fns {
        let now = Instant::now();
        let t = topic();
        let cfg = Config {
            message_id_fn: f.clone(),
            flood_publish: false,
            mesh_n: 1,
            mesh_n_low: 1,
            mesh_n_high: 2,
            mesh_outbound_min: 0,
            retain_scores: 1,
            ..Config::default()
        };
        let (mut r, key) = router(cfg, 12, now);
        r.subscribe(t.clone(), now).unwrap();
        let peers = fake_peers(&mut r, 2, true, &t, now);
        drain(&mut r);
        let id = r.publish(t.clone(), b"x".to_vec(), now).unwrap();
        drain(&mut r);
        r.handle_timeout(now + S);
        let outside = peers
            .iter()
            .find(|p| r.mesh_peers(&t).all(|m| m != *p))
            .unwrap();
        let announced = control(&sent_to(&drain(&mut r), outside)).ihave[0].message_ids[0].clone();
        assert_eq!(announced, id.0, "{name}");
        // The id is what that implementation computes for the message.
        let msg = libp2p_gossipsub::Message {
            source: Some(key.public().to_peer_id()),
            data: b"x".to_vec(),
            sequence_number: None,
            topic: t.clone(),
        };
        let seqno_of = |n| libp2p_gossipsub::Message {
            sequence_number: Some(n),
            ..msg.clone()
        };
        r.handle_rpc(*outside, iwant(&[announced]), now + S);
        let served = sent_to(&drain(&mut r), outside).publish;
        assert_eq!(served.len(), 1, "{name}");
        let seqno = u64::from_be_bytes(served[0].seqno.clone().unwrap().try_into().unwrap());
        assert_eq!(f(&seqno_of(seqno)), id, "{name}");
    }
}

#[test]
fn validation_hook_accept_reject_ignore() {
    let now = Instant::now();
    let t = topic();
    let mut cfg = scored_config(TopicScoreParams::default());
    cfg.validate_messages = true;
    let (mut r, _) = router(cfg, 13, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 3, true, &t, now);
    drain(&mut r);
    let author = Keypair::generate_ed25519();
    let mut ids = Vec::new();
    for n in 0..3 {
        r.handle_rpc(peers[0], publish(signed(&author, n, &t, b"v")), now);
        let a = drain(&mut r);
        assert!(
            sent_to(&a, &peers[1]).publish.is_empty(),
            "held until validated"
        );
        let id = a
            .iter()
            .find_map(|x| match x {
                Action::Deliver { id, .. } => Some(id.clone()),
                _ => None,
            })
            .unwrap();
        ids.push(id);
    }
    r.report_validation(&ids[0], Acceptance::Accept, now)
        .unwrap();
    let a = drain(&mut r);
    assert_eq!(sent_to(&a, &peers[1]).publish.len(), 1);
    assert_eq!(sent_to(&a, &peers[2]).publish.len(), 1);
    r.report_validation(&ids[1], Acceptance::Ignore, now)
        .unwrap();
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        r.peer_score(&peers[0], now),
        Some(0.5),
        "P2 for the accepted one only"
    );
    r.report_validation(&ids[2], Acceptance::Reject, now)
        .unwrap();
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        r.peer_score(&peers[0], now),
        Some(0.5 - 0.5),
        "P4 for the rejected one"
    );
    assert!(r
        .report_validation(&ids[2], Acceptance::Accept, now)
        .is_err());
}

#[test]
fn invalid_signature_flood_graylists_and_prunes_while_others_still_flow() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(scored_config(TopicScoreParams::default()), 14, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 4, true, &t, now);
    let bad = peers[0];
    drain(&mut r);
    let author = Keypair::generate_ed25519();
    // Each bad signature adds one to P4: score = -(n^2) * 0.5; below -80 at n = 13.
    for n in 0..13 {
        let mut m = signed(&author, n, &t, b"x");
        m.signature = Some(vec![0; 64]);
        r.handle_rpc(bad, publish(m), now);
    }
    assert_eq!(r.peer_score(&bad, now), Some(-84.5));
    // Graylisted: even a valid message from it is dropped unread.
    r.handle_rpc(bad, publish(signed(&author, 100, &t, b"valid")), now);
    assert!(delivered(&drain(&mut r)).is_empty());
    assert_eq!(r.stats().graylisted_rpcs, 1);
    // The heartbeat prunes it; the others keep receiving and forwarding.
    r.handle_timeout(now + 200 * MS);
    assert!(r.mesh_peers(&t).all(|p| *p != bad));
    drain(&mut r);
    r.handle_rpc(
        peers[1],
        publish(signed(&author, 101, &t, b"good")),
        now + 300 * MS,
    );
    let a = drain(&mut r);
    assert_eq!(delivered(&a), vec![b"good".to_vec()]);
    assert_eq!(sent_to(&a, &peers[2]).publish.len(), 1);
    assert!(sent_to(&a, &bad).publish.is_empty());
}

#[test]
fn peer_exchange_only_from_well_scored_peers() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 15, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 2, true, &t, now);
    drain(&mut r);
    let offered = [PeerId::random(), PeerId::random()];
    r.handle_rpc(peers[0], prune(&t, Some(60), &offered), now);
    assert!(!drain(&mut r)
        .iter()
        .any(|a| matches!(a, Action::PeerExchange { .. })));
    // P5 of 1 * 10 reaches accept_px (10).
    assert!(r.set_application_score(&peers[1], 1.0));
    r.handle_rpc(peers[1], prune(&t, Some(60), &offered), now);
    let a = drain(&mut r);
    assert!(a.contains(&Action::PeerExchange {
        topic: t.clone(),
        peers: offered.to_vec()
    }));
}

#[test]
fn px_offered_when_enabled_but_not_to_v1_0_peers() {
    let now = Instant::now();
    let t = topic();
    let cfg = Config {
        do_px: true,
        ..Config::default()
    };
    let (mut r, _) = router(cfg, 16, now);
    r.subscribe(t.clone(), now).unwrap();
    let others = fake_peers(&mut r, 3, true, &t, now);
    let old = PeerId::random();
    r.add_peer(old, PeerKind::Gossipsub1_0, true, None);
    r.handle_rpc(old, sub(&t, true), now);
    drain(&mut r);
    assert!(r.unsubscribe(&t, now));
    let a = drain(&mut r);
    let p = &control(&sent_to(&a, &others[0])).prune[0];
    assert_eq!(p.backoff, Some(10), "unsubscribe backoff");
    assert_eq!(p.peers.len(), 3, "the other topic peers");
    let p = &control(&sent_to(&a, &old)).prune[0];
    assert_eq!((p.backoff, p.peers.len()), (None, 0));
}

#[test]
fn fanout_for_unsubscribed_publisher_expires() {
    let now = Instant::now();
    let t = topic();
    let cfg = Config {
        flood_publish: false,
        ..Config::default()
    };
    let (mut r, _) = router(cfg, 17, now);
    let peers = fake_peers(&mut r, 10, true, &t, now);
    drain(&mut r);
    r.publish(t.clone(), b"out".to_vec(), now).unwrap();
    let a = drain(&mut r);
    let fanout: Vec<PeerId> = r.fanout_peers(&t).copied().collect();
    assert_eq!(fanout.len(), 6);
    for p in &peers {
        assert_eq!(
            sent_to(&a, p).publish.len(),
            usize::from(fanout.contains(p))
        );
    }
    // Still there before the TTL, gone after it.
    r.handle_timeout(now + 59 * S);
    assert_eq!(r.fanout_peers(&t).count(), 6);
    r.handle_timeout(now + 61 * S);
    assert_eq!(r.fanout_peers(&t).count(), 0);
    // Flood publishing (the default) reaches every topic peer.
    let (mut r, _) = router(Config::default(), 18, now);
    let peers = fake_peers(&mut r, 10, true, &t, now);
    r.publish(t.clone(), b"flood".to_vec(), now).unwrap();
    let a = drain(&mut r);
    assert!(peers.iter().all(|p| sent_to(&a, p).publish.len() == 1));
    // Nobody to publish to is an error.
    assert!(r.publish("empty".into(), b"x".to_vec(), now).is_err());
}

#[test]
fn idontwant_sent_for_large_messages_and_honoured() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 19, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 3, true, &t, now);
    drain(&mut r);
    let author = Keypair::generate_ed25519();
    let big = signed(&author, 1, &t, &[7; 2000]);
    let id = libp2p_gossipsub::spec_message_id(&libp2p_gossipsub::Message {
        source: Some(author.public().to_peer_id()),
        data: vec![7; 2000],
        sequence_number: Some(1),
        topic: t.clone(),
    });
    // peers[2] says it has it already.
    r.handle_rpc(
        peers[2],
        ctl(proto::ControlMessage {
            idontwant: vec![proto::ControlIDontWant {
                message_ids: vec![id.0.clone()],
            }],
            ..Default::default()
        }),
        now,
    );
    r.handle_rpc(peers[0], publish(big), now);
    let a = drain(&mut r);
    let to1 = sent_to(&a, &peers[1]);
    assert_eq!(to1.publish.len(), 1);
    assert_eq!(control(&to1).idontwant[0].message_ids, vec![id.0.clone()]);
    assert!(
        sent_to(&a, &peers[2]).publish.is_empty(),
        "IDONTWANT honoured"
    );
    assert!(sent_to(&a, &peers[0]).control.is_none());
}

#[test]
fn oversized_rpcs_split_and_too_large_message_refused() {
    let now = Instant::now();
    let t = topic();
    let cfg = Config {
        max_rpc_size: 4096,
        rpc_pack_size: 4096,
        ..Config::default()
    };
    let (mut r, _) = router(cfg, 20, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 2, true, &t, now);
    drain(&mut r);
    let author = Keypair::generate_ed25519();
    let rpc = Rpc {
        publish: (0..6).map(|n| signed(&author, n, &t, &[1; 1000])).collect(),
        ..Default::default()
    };
    r.handle_rpc(peers[0], rpc, now);
    let a = drain(&mut r);
    let parts: Vec<&Rpc> = a
        .iter()
        .filter_map(|x| match x {
            Action::SendRpc { peer, rpc } if *peer == peers[1] => Some(rpc),
            _ => None,
        })
        .collect();
    assert!(parts.len() >= 2);
    let codec = r.codec();
    for part in &parts {
        codec.encode(part, &mut Vec::new()).unwrap();
    }
    assert_eq!(parts.iter().map(|p| p.publish.len()).sum::<usize>(), 6);
    assert!(matches!(
        r.publish(t.clone(), vec![0; 5000], now),
        Err(libp2p_gossipsub::PublishError::MessageTooLarge { .. })
    ));
}

/// With the default 1 MiB limit, what we send is still packed to 64 KiB RPCs (rust-libp2p's
/// limit): many small forwards, and a long IWANT (an IHAVE of 5000 ids answered).
#[test]
fn outgoing_rpcs_are_packed_to_64_kib_under_a_1_mib_limit() {
    let now = Instant::now();
    let t = topic();
    let cfg = Config::default();
    assert_eq!((cfg.max_rpc_size, cfg.rpc_pack_size), (1 << 20, 1 << 16));
    let (mut r, _) = router(cfg, 22, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 2, true, &t, now);
    drain(&mut r);
    let parts_to = |a: &[Action], to: PeerId| -> Vec<Rpc> {
        a.iter()
            .filter_map(|x| match x {
                Action::SendRpc { peer, rpc } if *peer == to => Some(rpc.clone()),
                _ => None,
            })
            .collect()
    };
    let author = Keypair::generate_ed25519();
    // 200 KB of messages in one RPC, within the 1 MiB we accept.
    let rpc = Rpc {
        publish: (0..100)
            .map(|n| signed(&author, n, &t, &[7; 2000]))
            .collect(),
        ..Default::default()
    };
    r.handle_rpc(peers[0], rpc, now);
    let parts = parts_to(&drain(&mut r), peers[1]);
    assert!(parts.len() >= 4, "{} parts", parts.len());
    for part in &parts {
        assert!(prost::Message::encoded_len(part) <= 64 * 1024);
    }
    assert_eq!(parts.iter().map(|p| p.publish.len()).sum::<usize>(), 100);
    // An IHAVE of 5000 unknown ids of 46 bytes each: our IWANT is some 235 KB of ids.
    let ids: Vec<MessageId> = (0..5000u32)
        .map(|n| {
            let mut id = vec![0x55; 42];
            id.extend_from_slice(&n.to_be_bytes());
            MessageId(id)
        })
        .collect();
    r.handle_rpc(peers[1], ihave(&t, &ids), now);
    let parts = parts_to(&drain(&mut r), peers[1]);
    let wanted: usize = parts
        .iter()
        .map(|p| {
            control(p)
                .iwant
                .iter()
                .map(|w| w.message_ids.len())
                .sum::<usize>()
        })
        .sum();
    assert!(wanted > 1500, "{wanted} ids asked for");
    assert!(parts.len() >= 2, "{} parts", parts.len());
    for part in &parts {
        assert!(prost::Message::encoded_len(part) <= 64 * 1024);
    }
}

#[test]
fn floodsub_peers_get_messages_but_no_mesh() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 21, now);
    r.subscribe(t.clone(), now).unwrap();
    let flood = PeerId::random();
    r.add_peer(flood, PeerKind::Floodsub, true, None);
    r.handle_rpc(flood, sub(&t, true), now);
    let g = fake_peers(&mut r, 1, true, &t, now)[0];
    assert!(r.mesh_peers(&t).all(|p| *p != flood));
    drain(&mut r);
    let author = Keypair::generate_ed25519();
    r.handle_rpc(g, publish(signed(&author, 1, &t, b"f")), now);
    let a = drain(&mut r);
    assert_eq!(sent_to(&a, &flood).publish.len(), 1);
}

#[test]
fn forged_copy_first_does_not_shadow_the_real_message() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 22, now);
    r.subscribe(t.clone(), now).unwrap();
    let peers = fake_peers(&mut r, 2, true, &t, now);
    drain(&mut r);
    let author = Keypair::generate_ed25519();
    let real = signed(&author, 9, &t, b"real");
    let mut forged = real.clone();
    forged.data = Some(b"forged".to_vec());
    // Same author and seqno, so the same id; only the real one verifies.
    r.handle_rpc(peers[0], publish(forged), now);
    r.handle_rpc(peers[1], publish(real.clone()), now);
    assert_eq!(delivered(&drain(&mut r)), vec![b"real".to_vec()]);
    assert_eq!(r.stats().invalid, 1);
    // Later copies are duplicates, whatever they carry.
    r.handle_rpc(peers[0], publish(real), now);
    assert!(delivered(&drain(&mut r)).is_empty());
    assert_eq!(r.stats().duplicates, 1);
}

#[test]
fn heartbeat_grafts_outbound_peers_up_to_d_out() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 23, now);
    r.subscribe(t.clone(), now).unwrap();
    let inbound = fake_peers(&mut r, 8, false, &t, now);
    for p in &inbound {
        r.handle_rpc(*p, graft(&t), now);
    }
    assert_eq!(r.mesh_peers(&t).count(), 8);
    let outbound = fake_peers(&mut r, 3, true, &t, now);
    assert_eq!(
        r.mesh_peers(&t).count(),
        8,
        "mesh not thin: no graft on subscription"
    );
    drain(&mut r);
    r.handle_timeout(now + 200 * MS);
    let g = grafted(&drain(&mut r));
    assert_eq!(g.len(), 2, "D_out = 2");
    assert!(g.iter().all(|p| outbound.contains(p)));
}

#[test]
fn opportunistic_graft_when_the_mesh_median_is_poor() {
    let now = Instant::now();
    let t = topic();
    let (mut r, _) = router(Config::default(), 24, now);
    let peers = fake_peers(&mut r, 10, true, &t, now);
    r.subscribe(t.clone(), now).unwrap();
    let mesh: Vec<PeerId> = r.mesh_peers(&t).copied().collect();
    let good: Vec<PeerId> = peers
        .iter()
        .filter(|p| !mesh.contains(p))
        .copied()
        .take(3)
        .collect();
    for p in &good {
        // P5: 3 * 10 = 30, above the mesh median of 0.
        assert!(r.set_application_score(p, 3.0));
    }
    drain(&mut r);
    // Heartbeats at 0.1 s, 1.1 s, ...: the 60th (opportunistic_graft_ticks) grafts two.
    for beat in 1..=60u32 {
        let at = now + 100 * MS + (beat - 1) * S;
        r.handle_timeout(at);
        let g = grafted(&drain(&mut r));
        if beat < 60 {
            assert!(g.is_empty(), "heartbeat {beat}");
        } else {
            assert_eq!(g.len(), 2, "opportunistic_graft_peers");
            assert!(g.iter().all(|p| good.contains(p)));
        }
    }
    assert_eq!(r.mesh_peers(&t).count(), 8);
}

/// A peer that started over without our seeing it go (its connection closed and came back
/// while ours overlapped): it forgot our subscriptions and its side of our mesh, while we
/// kept ours, so neither side would graft the other again. Re-announcing on its new stream
/// mends both.
#[test]
fn a_peer_that_started_over_is_told_again() {
    let t = topic();
    let mut net = Net::new(2, 7, |_| Config::default());
    net.subscribe_all(&t);
    net.connect(0, 1);
    net.advance(S);
    let (id0, id1) = (net.nodes[0].id, net.nodes[1].id);
    let in_mesh =
        |net: &Net, i: usize, p: &PeerId| net.nodes[i].router.mesh_peers(&t).any(|q| q == p);
    assert!(in_mesh(&net, 0, &id1) && in_mesh(&net, 1, &id0));
    // Node 1 starts over; node 0 keeps its entry of node 1 (and node 1 in its mesh).
    let now = net.now;
    net.nodes[1].router.remove_peer(&id0, now);
    assert!(net.nodes[1]
        .router
        .add_peer(id0, PeerKind::Gossipsub1_2, false, None));
    net.settle();
    net.advance(3 * S);
    assert!(in_mesh(&net, 0, &id1), "node 0 kept its mesh");
    assert!(
        !in_mesh(&net, 1, &id0),
        "node 1 no longer knows node 0 subscribes: without a re-announce, no graft"
    );
    // Node 1's new stream reaches node 0, which tells it again.
    assert!(net.nodes[0].router.reannounce(&id1));
    net.settle();
    assert!(in_mesh(&net, 1, &id0), "node 1 took node 0's graft");
    net.advance(3 * S);
    assert!(in_mesh(&net, 0, &id1) && in_mesh(&net, 1, &id0));
    // Messages flow both ways again.
    net.publish(0, &t, b"from 0".to_vec());
    net.publish(1, &t, b"from 1".to_vec());
    assert_eq!(
        net.nodes[1].delivered.last().map(|d| d.1.clone()),
        Some(b"from 0".to_vec())
    );
    assert_eq!(
        net.nodes[0].delivered.last().map(|d| d.1.clone()),
        Some(b"from 1".to_vec())
    );
    // An unknown peer is not re-announced to.
    assert!(!net.nodes[0].router.reannounce(&PeerId::random()));
}
