//! A small deterministic network of routers wired in memory: every published message reaches
//! every subscriber once.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use common::lcg::Lcg;
use common::*;
use libp2p_gossipsub::{Config, MessageIdFn};

/// `n` routers: a chain for connectivity plus `extra` random links per node.
fn network(n: usize, extra: usize, seed: u64, config: impl Fn(usize) -> Config) -> Net {
    let mut net = Net::new(n, seed, config);
    let mut rng = Lcg(seed);
    for i in 1..n {
        net.connect(i, i - 1);
    }
    for i in 0..n {
        for _ in 0..extra {
            let j = rng.next(n);
            if j != i {
                net.connect(i, j);
            }
        }
    }
    net
}

/// The live nodes reachable from `from` over live links (as the routers see them).
fn component(net: &Net, from: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::from([from]);
    let mut queue = VecDeque::from([from]);
    while let Some(i) = queue.pop_front() {
        for (j, node) in net.nodes.iter().enumerate() {
            if node.alive && !seen.contains(&j) && net.nodes[i].router.is_connected(&node.id) {
                seen.insert(j);
                queue.push_back(j);
            }
        }
    }
    seen
}

/// Publishes `count` messages from rotating publishers, a heartbeat between each; checks
/// that every live subscriber in the publisher's component delivers each exactly once.
fn publish_and_check(net: &mut Net, count: usize, stride: usize) {
    let t = topic();
    let n = net.nodes.len();
    let before: Vec<usize> = net.nodes.iter().map(|x| x.delivered.len()).collect();
    let mut sent = Vec::new();
    let mut k = 0;
    while sent.len() < count {
        let from = (k * stride) % n;
        k += 1;
        if !net.nodes[from].alive {
            continue;
        }
        let id = net.publish(from, &t, format!("message {k}").into_bytes());
        sent.push((from, id));
        net.advance(Duration::from_millis(250));
    }
    // Let gossip finish anything the mesh missed.
    for _ in 0..4 {
        net.advance(Duration::from_secs(1));
    }
    for (from, id) in &sent {
        let reach = component(net, *from);
        for (i, node) in net.nodes.iter().enumerate() {
            if !node.alive || i == *from || !reach.contains(&i) {
                continue;
            }
            let got = node.delivered[before[i]..]
                .iter()
                .filter(|(d, _)| d == id)
                .count();
            assert_eq!(got, 1, "node {i} delivered {id:?} {got} times");
        }
        assert!(
            net.nodes[*from].delivered[before[*from]..]
                .iter()
                .all(|(d, _)| d != id),
            "the publisher does not deliver its own message"
        );
    }
}

fn warm_up(net: &mut Net) {
    net.subscribe_all(&topic());
    for _ in 0..5 {
        net.advance(Duration::from_secs(1));
    }
}

#[test]
fn thirty_routers_every_message_reaches_every_subscriber_once() {
    let mut net = network(30, 3, 7, |_| Config::default());
    warm_up(&mut net);
    let t = topic();
    for node in &net.nodes {
        let mesh = node.router.mesh_peers(&t).count();
        let peers = node.router.topic_peers(&t).count();
        assert!(mesh <= 12, "mesh of {mesh} over D_hi");
        assert!(mesh >= 5.min(peers), "mesh of {mesh} with {peers} peers");
    }
    publish_and_check(&mut net, 20, 7);
    // Duplicates are dropped, not delivered: count how many arrived.
    let dups: u64 = net.nodes.iter().map(|n| n.router.stats().duplicates).sum();
    let delivered: usize = net.nodes.iter().map(|n| n.delivered.len()).sum();
    assert_eq!(delivered, 20 * 29);
    assert!(
        dups > 0,
        "a mesh of degree > 1 sends some duplicates, which must be dropped"
    );
}

#[test]
fn mesh_only_publishing_with_each_message_id_function() {
    let fns: [MessageIdFn; 3] = [
        Arc::new(libp2p_gossipsub::spec_message_id),
        Arc::new(libp2p_gossipsub::rust_libp2p_message_id),
        Arc::new(libp2p_gossipsub::py_libp2p_message_id),
    ];
    for (n, f) in fns.into_iter().enumerate() {
        let mut net = network(30, 2, 11 + n as u64, |_| Config {
            flood_publish: false,
            message_id_fn: f.clone(),
            ..Config::default()
        });
        warm_up(&mut net);
        publish_and_check(&mut net, 10, 11);
    }
}

#[test]
fn a_tenth_of_the_routers_killed_mid_run() {
    let mut net = network(30, 3, 23, |_| Config::default());
    warm_up(&mut net);
    publish_and_check(&mut net, 5, 7);
    for i in [4, 13, 22] {
        net.kill(i);
    }
    // One heartbeat to repair the meshes, then publish again.
    net.advance(Duration::from_secs(1));
    publish_and_check(&mut net, 10, 7);
}

#[test]
fn unsubscribed_publisher_reaches_everyone_through_fanout() {
    let mut net = network(20, 2, 31, |_| Config {
        flood_publish: false,
        ..Config::default()
    });
    let t = topic();
    let now = net.now;
    for node in net.nodes.iter_mut().skip(1) {
        node.router.subscribe(t.clone(), now).unwrap();
    }
    net.settle();
    for _ in 0..3 {
        net.advance(Duration::from_secs(1));
    }
    let id = net.publish(0, &t, b"from outside".to_vec());
    assert!(net.nodes[0].router.fanout_peers(&t).count() > 0);
    for _ in 0..3 {
        net.advance(Duration::from_secs(1));
    }
    for node in &net.nodes[1..] {
        assert_eq!(node.delivered.iter().filter(|(d, _)| *d == id).count(), 1);
    }
}

/// Up to `count` nodes (not node 0), each left with a gossip source outside the victims.
fn pick_victims(net: &Net, count: usize) -> Vec<usize> {
    let t = topic();
    let index = |p: &libp2p_core::PeerId| net.nodes.iter().position(|x| x.id == *p);
    let outside_mesh = |i: usize| -> BTreeSet<usize> {
        let r = &net.nodes[i].router;
        let mesh: BTreeSet<_> = r.mesh_peers(&t).collect();
        r.topic_peers(&t)
            .filter(|p| !mesh.contains(p))
            .filter_map(index)
            .collect()
    };
    // A source that gossips to every peer outside its mesh at each heartbeat (no more of them
    // than D_lazy), so the test does not hang on the random choice of gossip targets.
    let d_lazy = net.nodes[0].router.config().gossip_lazy;
    let sources = |i: usize| -> BTreeSet<usize> {
        outside_mesh(i)
            .into_iter()
            .filter(|s| outside_mesh(*s).len() <= d_lazy)
            .collect()
    };
    let mut victims: Vec<usize> = Vec::new();
    for i in 1..net.nodes.len() {
        if victims.len() == count {
            break;
        }
        let mut with = victims.clone();
        with.push(i);
        let keeps_source = |v: &usize| sources(*v).iter().any(|s| !with.contains(s));
        if with.iter().all(keeps_source) {
            victims = with;
        }
    }
    victims
}

#[test]
fn messages_lost_on_every_mesh_link_recovered_by_gossip_with_each_id_function() {
    let fns: [MessageIdFn; 3] = [
        Arc::new(libp2p_gossipsub::spec_message_id),
        Arc::new(libp2p_gossipsub::rust_libp2p_message_id),
        Arc::new(libp2p_gossipsub::py_libp2p_message_id),
    ];
    for (n, f) in fns.into_iter().enumerate() {
        let mut net = network(30, 5, 41 + n as u64, |_| Config {
            flood_publish: false,
            message_id_fn: f.clone(),
            ..Config::default()
        });
        warm_up(&mut net);
        let t = topic();
        // Victims: nodes that keep a gossip source, a topic peer outside their mesh that is
        // not a victim itself (it gets the message through the mesh, then gossips it), and
        // not the publisher.
        let victims = pick_victims(&net, 3);
        assert_eq!(victims.len(), 3, "topology leaves room for gossip");
        net.drop_publish_to = victims.iter().copied().collect();
        let at = net.now;
        let id = net.publish(0, &t, b"lost, then gossiped".to_vec());
        for v in &victims {
            assert!(net.nodes[*v].delivered.iter().all(|(d, _)| *d != id));
        }
        net.drop_publish_to.clear();
        for _ in 0..3 {
            net.advance(Duration::from_secs(1));
        }
        for (i, node) in net.nodes.iter().enumerate().skip(1) {
            let got: Vec<usize> = node
                .delivered
                .iter()
                .enumerate()
                .filter(|(_, (d, _))| *d == id)
                .map(|(k, _)| k)
                .collect();
            assert_eq!(got.len(), 1, "node {i}, id function {n}");
            if victims.contains(&i) {
                assert!(
                    node.delivered_at[got[0]] > at,
                    "node {i} got it by IWANT later"
                );
            }
        }
    }
}
