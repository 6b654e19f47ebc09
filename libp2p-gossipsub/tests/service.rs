//! The gossipsub service on real hosts: a chain over TCP, unsubscribe, reconnects, a raw peer
//! that sends an oversized RPC, and 20 hosts over the muxed memory transport.
#![cfg(feature = "service")]

#[path = "common/service.rs"]
mod service_common;

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use libp2p_core::MuxedMemoryTransport;
use libp2p_gossipsub::{service, PeerEvent, PeerEvents, Pubsub, ServiceConfig, Subscription};
use libp2p_host::{Host, Keypair, PeerId};
use service_common::{next_message, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "chain";

struct Node {
    host: Host,
    pubsub: Pubsub,
}

fn config() -> ServiceConfig {
    let mut config = ServiceConfig::default();
    // A quicker heartbeat than the spec's second: meshes form in a fraction of the time.
    config.router.heartbeat_interval = Duration::from_millis(200);
    // And a short backoff after unsubscribing, so that coming back is quick.
    config.router.unsubscribe_backoff = Duration::from_secs(1);
    config
}

async fn tcp_node() -> Node {
    tcp_node_with(config()).await
}

async fn tcp_node_with(config: ServiceConfig) -> Node {
    let key = Keypair::generate_ed25519();
    let (gossipsub, pubsub) = service(config, key.clone()).unwrap();
    let host = Host::builder(key)
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .service(gossipsub)
        .build()
        .await
        .unwrap();
    Node { host, pubsub }
}

async fn memory_node() -> Node {
    let key = Keypair::generate_ed25519();
    let (gossipsub, pubsub) = service(config(), key.clone()).unwrap();
    let transport = MuxedMemoryTransport::new(key.public().to_peer_id());
    let host = Host::builder(key)
        .listen_on("/memory/0".parse().unwrap())
        .service(gossipsub)
        .build_with_transport(transport)
        .await
        .unwrap();
    Node { host, pubsub }
}

async fn connect(from: &Node, to: &Node) {
    from.host
        .dial(to.host.p2p_addrs()[0].clone())
        .await
        .unwrap();
}

/// Waits until `node`'s mesh for `topic` holds exactly `peers`.
async fn wait_mesh(node: &Node, topic: &str, peers: &[PeerId]) {
    let want: HashSet<PeerId> = peers.iter().copied().collect();
    tokio::time::timeout(WAIT, async {
        loop {
            let mesh: HashSet<PeerId> = node
                .pubsub
                .mesh_peers(topic)
                .await
                .unwrap()
                .into_iter()
                .collect();
            if mesh == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("mesh of {} is not {want:?}", node.host.peer_id()));
}

async fn next_event(events: &mut PeerEvents, f: impl Fn(&PeerEvent) -> bool) -> PeerEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.next().await.expect("events go on");
            if f(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the event in time")
}

/// A - B - C over TCP, each subscribed, meshes formed.
async fn chain() -> (Node, Node, Node, [Subscription; 3]) {
    let (a, b, c) = (tcp_node().await, tcp_node().await, tcp_node().await);
    let subs = [
        a.pubsub.subscribe(TOPIC).await.unwrap(),
        b.pubsub.subscribe(TOPIC).await.unwrap(),
        c.pubsub.subscribe(TOPIC).await.unwrap(),
    ];
    connect(&a, &b).await;
    connect(&c, &b).await;
    let (pa, pb, pc) = (a.host.peer_id(), b.host.peer_id(), c.host.peer_id());
    wait_mesh(&a, TOPIC, &[pb]).await;
    wait_mesh(&b, TOPIC, &[pa, pc]).await;
    wait_mesh(&c, TOPIC, &[pb]).await;
    (a, b, c, subs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_crosses_a_chain_exactly_once() {
    let (a, b, c, [_sa, mut sb, mut sc]) = chain().await;
    let id = a.pubsub.publish(TOPIC, "one").await.unwrap();
    a.pubsub.publish(TOPIC, "two").await.unwrap();
    for (sub, via) in [(&mut sb, a.host.peer_id()), (&mut sc, b.host.peer_id())] {
        let first = next_message(sub).await;
        assert_eq!(first.id, id);
        assert_eq!(first.data, b"one");
        assert_eq!(first.author, Some(a.host.peer_id()));
        assert_eq!(first.topic.as_str(), TOPIC);
        assert_eq!(first.propagation_source, via);
        // The next one is the second message, not a copy of the first.
        assert_eq!(next_message(sub).await.data, b"two");
    }
    let stats = c.pubsub.stats().await.unwrap();
    assert_eq!(stats.router.delivered, 2);
    assert_eq!(
        stats.peers, 1,
        "C speaks to B only: the chain stays a chain"
    );
    assert!(!c.host.is_connected(&a.host.peer_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let (a, b, c, [_sa, mut sb, mut sc]) = chain().await;
    let mut b_events = b.pubsub.peer_events();
    let pc = c.host.peer_id();
    assert!(c.pubsub.unsubscribe(TOPIC).await.unwrap());
    // C's subscription ends, and B hears that C left.
    let end = tokio::time::timeout(WAIT, sc.next())
        .await
        .expect("the end in time");
    assert!(end.is_none(), "the subscription ends");
    next_event(
        &mut b_events,
        |e| matches!(e, PeerEvent::Unsubscribed { peer, .. } if *peer == pc),
    )
    .await;
    wait_mesh(&b, TOPIC, &[a.host.peer_id()]).await;
    a.pubsub.publish(TOPIC, "while away").await.unwrap();
    assert_eq!(next_message(&mut sb).await.data, b"while away");
    assert_eq!(c.pubsub.stats().await.unwrap().router.delivered, 0);
    // Back in: what is published from now on arrives (and what B still caches may come by
    // gossip, once).
    let mut sc = c.pubsub.subscribe(TOPIC).await.unwrap();
    wait_mesh(&c, TOPIC, &[b.host.peer_id()]).await;
    wait_mesh(&b, TOPIC, &[a.host.peer_id(), pc]).await;
    a.pubsub.publish(TOPIC, "back").await.unwrap();
    let mut got = vec![next_message(&mut sc).await.data];
    if got[0] == b"while away" {
        got.push(next_message(&mut sc).await.data);
    }
    assert_eq!(got.last().unwrap(), b"back", "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_reconnects_gets_messages_again() {
    let (a, b, c, [_sa, _sb, mut sc]) = chain().await;
    let (pb, pc) = (b.host.peer_id(), c.host.peer_id());
    let mut b_events = b.pubsub.peer_events();
    a.pubsub.publish(TOPIC, "before").await.unwrap();
    assert_eq!(next_message(&mut sc).await.data, b"before");
    // Several rounds: each side must forget the other when the connection goes, even if
    // it reads the close only after the new connection's streams (a reconnect race).
    for round in 0..3 {
        c.host.disconnect(pb).await;
        next_event(
            &mut b_events,
            |e| matches!(e, PeerEvent::Disconnected { peer } if *peer == pc),
        )
        .await;
        wait_mesh(&b, TOPIC, &[a.host.peer_id()]).await;
        connect(&c, &b).await;
        next_event(
            &mut b_events,
            |e| matches!(e, PeerEvent::Connected { peer, .. } if *peer == pc),
        )
        .await;
        // Both ends of the graft (B forwards only to its mesh).
        wait_mesh(&c, TOPIC, &[pb]).await;
        wait_mesh(&b, TOPIC, &[a.host.peer_id(), pc]).await;
        let text = format!("after {round}");
        a.pubsub.publish(TOPIC, text.clone()).await.unwrap();
        assert_eq!(next_message(&mut sc).await.data, text.as_bytes());
    }
}

/// A raw peer: a host without gossipsub, that writes its RPCs by hand.
async fn raw_host() -> Host {
    Host::builder(Keypair::generate_ed25519())
        .build()
        .await
        .unwrap()
}

/// `raw` dials `b` and opens a stream of `protocol` to it.
async fn raw_stream(raw: &Host, b: &Node, protocol: &str) -> libp2p_host::Stream {
    raw.dial(b.host.p2p_addrs()[0].clone()).await.unwrap();
    raw.new_stream(b.host.peer_id(), &[protocol]).await.unwrap()
}

/// Writes, by hand, an RPC that subscribes to [`TOPIC`].
async fn subscribe_by_hand(stream: &mut libp2p_host::Stream) {
    use libp2p_gossipsub::proto::{Rpc, SubOpts};
    let rpc = Rpc {
        subscriptions: vec![SubOpts {
            subscribe: Some(true),
            topic_id: Some(TOPIC.into()),
        }],
        ..Default::default()
    };
    let mut bytes = Vec::new();
    libp2p_gossipsub::Codec::new(1024)
        .encode(&rpc, &mut bytes)
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    stream.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_rpc_costs_only_its_stream() {
    let (a, b, _c, [_sa, _sb, mut sc]) = chain().await;
    // A raw peer: a host without gossipsub that agrees /meshsub/1.1.0 and writes by hand.
    let raw = raw_host().await;
    let mut stream = raw_stream(&raw, &b, "/meshsub/1.1.0").await;
    // A uvarint of 2 MiB (over the 1 MiB limit), then the start of a body.
    // (B may drop the stream as soon as it has the prefix, so the write may fail.)
    let mut bytes = vec![0x80, 0x80, 0x80, 0x01];
    bytes.extend_from_slice(&[0x0a; 64]);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.flush().await;
    // B drops the stream: the raw peer reads its end (or a reset).
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("B ends the stream in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The others go on.
    a.pubsub.publish(TOPIC, "still here").await.unwrap();
    assert_eq!(next_message(&mut sc).await.data, b"still here");
    assert_eq!(b.pubsub.stats().await.unwrap().bad_streams, 1);
    // Once B has also failed to open a stream of its own to it, the raw peer is no
    // gossipsub peer of B.
    tokio::time::timeout(WAIT, async {
        while b.pubsub.stats().await.unwrap().peers != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the raw peer forgotten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hosts_over_memory_each_get_twenty_messages_once() {
    const N: usize = 20;
    let mut nodes = Vec::new();
    for _ in 0..N {
        nodes.push(memory_node().await);
    }
    let mut subs = Vec::new();
    for node in &nodes {
        subs.push(node.pubsub.subscribe("sim").await.unwrap());
    }
    // A ring with chords: every host has four neighbours, the network is connected.
    for i in 0..N {
        for step in [1, 5] {
            connect(&nodes[i], &nodes[(i + step) % N]).await;
        }
    }
    for node in &nodes {
        tokio::time::timeout(WAIT, async {
            while node.host.connected_peers().len() < 4 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("four neighbours");
        let peers = node.host.connected_peers();
        wait_mesh(node, "sim", &peers).await;
    }
    // Twenty messages from twenty publishers.
    for (i, node) in nodes.iter().enumerate() {
        node.pubsub.publish("sim", format!("m{i}")).await.unwrap();
    }
    let want: HashSet<String> = (0..N).map(|i| format!("m{i}")).collect();
    for (i, sub) in subs.iter_mut().enumerate() {
        let mut got = Vec::new();
        // Each host receives the nineteen others' messages (its own is not delivered back).
        while got.len() < N - 1 {
            got.push(String::from_utf8(next_message(sub).await.data).unwrap());
        }
        let distinct: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(distinct.len(), N - 1, "host {i} got a duplicate: {got:?}");
        let mut expected = want.clone();
        expected.remove(&format!("m{i}"));
        assert_eq!(distinct, expected, "host {i}");
    }
    for node in &nodes {
        assert_eq!(
            node.pubsub.stats().await.unwrap().router.delivered,
            N as u64 - 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_told_what_it_missed_and_holds_nobody_up() {
    let a = tcp_node().await;
    let mut small = config();
    small.subscription_buffer = 4;
    let b = tcp_node_with(small).await;
    let mut _sa = a.pubsub.subscribe(TOPIC).await.unwrap();
    let mut slow = b.pubsub.subscribe(TOPIC).await.unwrap();
    connect(&a, &b).await;
    wait_mesh(&a, TOPIC, &[b.host.peer_id()]).await;
    for i in 0..20 {
        a.pubsub.publish(TOPIC, format!("m{i}")).await.unwrap();
    }
    // The router delivered all twenty without waiting for the reader.
    tokio::time::timeout(WAIT, async {
        while b.pubsub.stats().await.unwrap().router.delivered < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("all delivered");
    let lagged = tokio::time::timeout(WAIT, slow.next())
        .await
        .unwrap()
        .unwrap()
        .expect_err("a lag notice first");
    assert_eq!(lagged.missed, 16);
    assert_eq!(slow.missed(), 16);
    // Then the newest four.
    for i in 16..20 {
        assert_eq!(
            next_message(&mut slow).await.data,
            format!("m{i}").as_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_meshsub_1_0_subscription_is_understood() {
    use libp2p_gossipsub::PeerKind;
    let b = tcp_node().await;
    let mut b_events = b.pubsub.peer_events();
    let raw = raw_host().await;
    let pr = raw.peer_id();
    let mut stream = raw_stream(&raw, &b, "/meshsub/1.0.0").await;
    subscribe_by_hand(&mut stream).await;
    let connected = next_event(&mut b_events, |e| matches!(e, PeerEvent::Connected { .. })).await;
    assert_eq!(
        connected,
        PeerEvent::Connected {
            peer: pr,
            kind: PeerKind::Gossipsub1_0
        }
    );
    let subscribed = next_event(&mut b_events, |e| matches!(e, PeerEvent::Subscribed { .. })).await;
    assert_eq!(
        subscribed,
        PeerEvent::Subscribed {
            peer: pr,
            topic: TOPIC.into()
        }
    );
    assert_eq!(b.pubsub.topic_peers(TOPIC).await.unwrap(), vec![pr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_trips_the_write_deadline() {
    let a = tcp_node().await;
    let mut quick = config();
    quick.write_timeout = Duration::from_secs(1);
    let b = tcp_node_with(quick).await;
    let mut sa = a.pubsub.subscribe(TOPIC).await.unwrap();
    let _sb = b.pubsub.subscribe(TOPIC).await.unwrap();
    connect(&a, &b).await;
    wait_mesh(&b, TOPIC, &[a.host.peer_id()]).await;
    // A raw peer subscribes by hand and takes B's stream, but never reads it.
    let raw = raw_host().await;
    let mut held = raw.accept("/meshsub/1.1.0").unwrap();
    let mut stream = raw_stream(&raw, &b, "/meshsub/1.1.0").await;
    subscribe_by_hand(&mut stream).await;
    let _unread = tokio::time::timeout(WAIT, held.next())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while b.pubsub.topic_peers(TOPIC).await.unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the raw peer subscribed");
    // Far more than the stream's window: B's writes to the raw peer stall.
    let (count, size) = (64, 32 * 1024);
    for i in 0..count {
        let mut data = vec![b'x'; size];
        data[..4].copy_from_slice(&(i as u32).to_be_bytes());
        b.pubsub.publish(TOPIC, data).await.unwrap();
    }
    tokio::time::timeout(WAIT, async {
        while b.pubsub.stats().await.unwrap().stalled_writes == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the stalled write given up");
    // A, which reads, got everything.
    for i in 0..count {
        assert_eq!(
            next_message(&mut sa).await.data[..4],
            (i as u32).to_be_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_subscription_leaves_the_topic_and_a_closed_host_says_so() {
    let (_a, b, c, [_sa, _sb, sc]) = chain().await;
    let mut b_events = b.pubsub.peer_events();
    let pc = c.host.peer_id();
    drop(sc);
    next_event(
        &mut b_events,
        |e| matches!(e, PeerEvent::Unsubscribed { peer, .. } if *peer == pc),
    )
    .await;
    c.host.close().await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match c.pubsub.publish(TOPIC, "late").await {
                Err(libp2p_gossipsub::service::PublishError::Closed(_)) => return,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the handle fails with Closed once the host is closed"
    );
}
