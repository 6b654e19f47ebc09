//! The Kademlia service end to end: three hosts over TCP (providers, find-peer, values), a
//! peer sending junk on a raw stream, client mode, and a 50-host network over the memory
//! transport.

use std::time::Duration;

use futures::StreamExt;
use libp2p_core::MuxedMemoryTransport;
use libp2p_host::{Host, Keypair, Multiaddr, NewStreamError, PeerId};
use libp2p_kad::proto::{self, MessageType, ProtoMessage};
use libp2p_kad::{
    sha256_multihash, Config, FindPeerError, KadHandle, KadService, Mode, ServiceConfig, PROTOCOL,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The bound on every operation of these tests; each takes milliseconds.
const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("in time")
}

fn kad_config() -> Config {
    // No automatic bootstrap: the tests bootstrap by hand, so that each step is theirs.
    Config::default().with_bootstrap_interval(None)
}

async fn tcp_host(config: Config) -> (Host, KadHandle) {
    let (service, handle) = KadService::new(config, ServiceConfig::default());
    let host = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .service(service)
        .build()
        .await
        .expect("host");
    (host, handle)
}

async fn memory_host() -> (Host, KadHandle) {
    // The host closes no idle connection, and a node of a large network ends up connected
    // to most of the others it ever asked: room for all of them.
    let mut config = libp2p_host::Config::default();
    config.max_connections = 100_000;
    memory_host_with(config).await
}

/// A kad host over the muxed memory transport with the host configuration `config`.
async fn memory_host_with(config: libp2p_host::Config) -> (Host, KadHandle) {
    let key = Keypair::generate_ed25519();
    let transport = MuxedMemoryTransport::new(key.public().to_peer_id());
    let (service, handle) = KadService::new(kad_config(), ServiceConfig::default());
    let host = Host::builder(key)
        .config(config)
        .listen_on("/memory/0".parse().unwrap())
        .service(service)
        .build_with_transport(transport)
        .await
        .expect("host");
    (host, handle)
}

async fn join(handle: &KadHandle, to: &Host) -> usize {
    handle.add_peer(to.peer_id(), to.listen_addrs()).await;
    within(handle.bootstrap()).await.expect("bootstrap")
}

/// A line of three: A provides and stores, C (who knows only B) finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_over_tcp() {
    let (a, ka) = tcp_host(kad_config()).await;
    let (b, kb) = tcp_host(kad_config()).await;
    let (c, kc) = tcp_host(kad_config()).await;
    assert!(join(&kb, &a).await >= 1);
    assert!(join(&ka, &b).await >= 1);
    assert!(join(&kc, &b).await >= 1);
    assert!(kc.routing_table_size() >= 1);

    // Providers.
    let key = sha256_multihash(b"the key");
    let told = within(ka.start_providing(key.clone()))
        .await
        .expect("provide");
    assert!(told >= 1, "told {told}");
    let providers = within(kc.get_providers(key, Some(1)))
        .await
        .expect("providers");
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0].id, a.peer_id());
    assert!(!providers[0].addrs.is_empty());
    assert!(!c.peerstore().addrs(&a.peer_id()).is_empty());

    // A peer by id.
    let addrs = within(kc.find_peer(a.peer_id())).await.expect("find peer");
    assert!(
        addrs.iter().any(|x| a.listen_addrs().contains(x)),
        "{addrs:?}"
    );
    let nobody = PeerId::random();
    assert!(within(kc.find_peer(nobody)).await.is_err());

    // Values, with a quorum.
    let stored = within(ka.put_value(b"name".to_vec(), b"value".to_vec(), 2))
        .await
        .expect("put");
    assert!(stored >= 2, "stored on {stored}");
    let value = within(kc.get_value(b"name".to_vec(), 2))
        .await
        .expect("get");
    assert_eq!(value, b"value");
    assert!(within(kc.get_value(b"missing".to_vec(), 1)).await.is_err());
}

/// When the lookup gives no address of the peer but the host's peerstore has some,
/// `find_peer` returns those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_peer_falls_back_to_the_peerstore() {
    let (a, ka) = tcp_host(kad_config()).await;
    let (b, _kb) = tcp_host(kad_config()).await;
    let (hidden, _kh) = tcp_host(kad_config()).await;
    // A's table holds B only, and B has never heard of `hidden`: the DHT has no path to it.
    assert_eq!(join(&ka, &b).await, 1);
    let nothing = within(ka.find_peer(hidden.peer_id())).await;
    assert!(
        matches!(nothing, Err(FindPeerError::NotFound { .. })),
        "{nothing:?}"
    );
    // The application learned its address some other way.
    a.peerstore()
        .add_addrs(&hidden.peer_id(), hidden.listen_addrs(), LIMIT);
    let addrs = within(ka.find_peer(hidden.peer_id()))
        .await
        .expect("from the peerstore");
    assert!(!addrs.is_empty());
    assert!(
        addrs.iter().all(|x| hidden.listen_addrs().contains(x)),
        "{addrs:?}"
    );
    // And they work: a dial to them reaches the peer.
    a.connect(hidden.peer_id(), addrs).await.expect("dial");
    assert!(a.is_connected(&hidden.peer_id()));
}

/// Garbage, an oversized length and a wrong message on raw streams cost the sender its
/// stream; the server goes on answering, its routing table as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_costs_only_the_stream() {
    let (server, ks) = tcp_host(kad_config()).await;
    let (friend, _kf) = tcp_host(kad_config()).await;
    assert_eq!(join(&ks, &friend).await, 1);
    let raw = Host::builder(Keypair::generate_ed25519())
        .build()
        .await
        .expect("raw host");
    raw.dial(server.p2p_addrs()[0].clone()).await.expect("dial");

    let junk: [&[u8]; 3] = [
        // A length of 2^40 bytes.
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x20],
        // A body that is not protobuf.
        &[5, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A valid message of an unknown type.
        &[2, 0x08, 0x63],
    ];
    for bytes in junk {
        let mut s = raw
            .new_stream(server.peer_id(), &[PROTOCOL])
            .await
            .expect("stream");
        s.write_all(bytes).await.unwrap();
        s.flush().await.unwrap();
        let mut back = Vec::new();
        // Reset or closed without an answer, either way no byte comes back.
        let _ = within(s.read_to_end(&mut back)).await;
        assert!(back.is_empty(), "answered junk with {back:?}");
    }

    // A good request on a fresh stream is still served, twice on one stream.
    let mut s = raw
        .new_stream(server.peer_id(), &[PROTOCOL])
        .await
        .expect("stream");
    for _ in 0..2 {
        let request = ProtoMessage {
            r#type: MessageType::FindNode as i32,
            key: friend.peer_id().to_bytes(),
            ..Default::default()
        };
        let mut frame = Vec::new();
        proto::encode_frame(&request, &mut frame);
        s.write_all(&frame).await.unwrap();
        s.flush().await.unwrap();
        let answer = within(read_frame(&mut s)).await;
        assert_eq!(answer.r#type, MessageType::FindNode as i32);
        let ids: Vec<Vec<u8>> = answer.closer_peers.iter().map(|p| p.id.clone()).collect();
        assert_eq!(ids, vec![friend.peer_id().to_bytes()]);
    }
    assert_eq!(ks.routing_table_size(), 1);
}

async fn read_frame(s: &mut libp2p_host::Stream) -> ProtoMessage {
    let mut buf = Vec::new();
    loop {
        if let Some((m, _)) = proto::decode_frame(&buf, 16 * 1024).expect("a good frame") {
            return m;
        }
        let mut byte = [0u8; 256];
        let n = s.read(&mut byte).await.expect("read");
        assert!(n > 0, "stream ended before the answer");
        buf.extend_from_slice(&byte[..n]);
    }
}

/// A client neither announces nor serves the protocol, but can query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mode_refuses_inbound() {
    let (server, _ks) = tcp_host(kad_config()).await;
    let (client, kc) = tcp_host(kad_config().with_mode(Mode::Client)).await;
    assert!(!client.protocols().iter().any(|p| p == PROTOCOL));
    assert!(server.protocols().iter().any(|p| p == PROTOCOL));
    assert_eq!(join(&kc, &server).await, 1);
    let refused = server
        .new_stream(client.peer_id(), &[PROTOCOL])
        .await
        .expect_err("a client serves no requests");
    assert!(
        matches!(refused, NewStreamError::ProtocolsNotSupported { .. }),
        "{refused}"
    );
}

/// Fifty hosts over the memory transport, each bootstrapped from one or two earlier ones:
/// every peer is found from another, and a provider record from everywhere. Larger networks
/// (1,000 and 10,000 hosts, with their figures) are the bench `examples/hosts.rs`, run by
/// `bench/kad-sim`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hosts_over_memory() {
    network(50).await;
}

/// Runs `futures`, at most 32 at a time (a thousand lookups at once would measure the
/// scheduler, and blow the per-operation bound, on a small machine).
async fn all<T>(futures: impl Iterator<Item = impl std::future::Future<Output = T>>) -> Vec<T> {
    futures::stream::iter(futures)
        .buffer_unordered(32)
        .collect()
        .await
}

async fn network(n: usize) {
    let started = std::time::Instant::now();
    let mut nodes: Vec<(Host, KadHandle)> = Vec::new();
    for i in 0..n {
        let node = memory_host().await;
        if i > 0 {
            // Deterministic choice of the one or two earlier hosts to bootstrap from.
            let first = (i * 7) % i;
            node.1
                .add_peer(nodes[first].0.peer_id(), nodes[first].0.listen_addrs())
                .await;
            if i > 1 {
                let second = (i * 13 + 1) % i;
                node.1
                    .add_peer(nodes[second].0.peer_id(), nodes[second].0.listen_addrs())
                    .await;
            }
            within(node.1.bootstrap()).await.expect("bootstrap");
        }
        nodes.push(node);
    }
    // A second round of bootstraps lets the early hosts learn of the later ones.
    for r in all(nodes.iter().map(|(_, k)| within(k.bootstrap()))).await {
        r.expect("bootstrap");
    }

    let lookups = (0..n).map(|i| {
        let target = nodes[(i * 17 + 5) % n].0.peer_id();
        let handle = nodes[i].1.clone();
        let own = nodes[i].0.peer_id();
        async move {
            if target == own {
                return None;
            }
            let (addrs, stats) = within(handle.find_peer_with_stats(target))
                .await
                .expect("found");
            let memory: Vec<&Multiaddr> = addrs.iter().collect();
            assert!(!memory.is_empty());
            Some((stats.hops, stats.requests))
        }
    });
    let mut hops: Vec<(u32, u32)> = all(lookups).await.into_iter().flatten().collect();
    hops.sort();
    let mut requests: Vec<u32> = hops.iter().map(|h| h.1).collect();
    requests.sort();
    eprintln!(
        "{n} hosts, {} lookups: hops median {} max {}, requests median {} max {}",
        hops.len(),
        hops[hops.len() / 2].0,
        hops[hops.len() - 1].0,
        requests[requests.len() / 2],
        requests[requests.len() - 1]
    );

    let key = sha256_multihash(b"fifty");
    let lookups_done = started.elapsed();
    within(nodes[n - 1].1.start_providing(key.clone()))
        .await
        .expect("provide");
    let provider = nodes[n - 1].0.peer_id();
    let finds = nodes[..n - 1].iter().map(|(_, k)| {
        let key = key.clone();
        async move {
            let found = within(k.get_providers(key, Some(1))).await.expect("found");
            assert_eq!(found[0].id, provider);
        }
    });
    all(finds).await;
    // The process's resident memory (Linux), for a rough figure per host.
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_owned())
        })
        .unwrap_or_default();
    eprintln!(
        "{n} hosts: built, bootstrapped and looked up in {lookups_done:?}, all in {:?}; rss {rss}",
        started.elapsed()
    );
}

/// A server whose handles are all gone goes on serving the DHT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_without_handles() {
    let (server, ks) = tcp_host(kad_config()).await;
    let (friend, _kf) = tcp_host(kad_config()).await;
    assert_eq!(join(&ks, &friend).await, 1);
    drop(ks);
    let (_client, kc) = tcp_host(kad_config()).await;
    // The server answers with the friend, who answers too.
    assert_eq!(join(&kc, &server).await, 2);
}

/// One peer holding its limit of streams gets the next one reset; others are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_slot() {
    let (server, _ks) = tcp_host(kad_config()).await;
    let limit = ServiceConfig::default().max_inbound_streams_per_peer;
    let hog = Host::builder(Keypair::generate_ed25519())
        .build()
        .await
        .expect("host");
    hog.dial(server.p2p_addrs()[0].clone()).await.expect("dial");
    let request = ProtoMessage {
        r#type: MessageType::FindNode as i32,
        key: PeerId::random().to_bytes(),
        ..Default::default()
    };
    let mut frame = Vec::new();
    proto::encode_frame(&request, &mut frame);
    let mut held = Vec::new();
    for _ in 0..limit {
        let mut s = within(hog.new_stream(server.peer_id(), &[PROTOCOL]))
            .await
            .expect("stream");
        // Answered: the server has taken this stream in.
        s.write_all(&frame).await.unwrap();
        s.flush().await.unwrap();
        within(read_frame(&mut s)).await;
        held.push(s);
    }
    let mut extra = within(hog.new_stream(server.peer_id(), &[PROTOCOL]))
        .await
        .expect("stream");
    let _ = extra.write_all(&frame).await;
    let _ = extra.flush().await;
    let mut back = Vec::new();
    let _ = within(extra.read_to_end(&mut back)).await;
    assert!(back.is_empty(), "the stream over the limit was served");

    // Another peer is served; so is the hog, on a stream it already holds.
    let other = Host::builder(Keypair::generate_ed25519())
        .build()
        .await
        .expect("host");
    other
        .dial(server.p2p_addrs()[0].clone())
        .await
        .expect("dial");
    let mut s = within(other.new_stream(server.peer_id(), &[PROTOCOL]))
        .await
        .expect("stream");
    s.write_all(&frame).await.unwrap();
    s.flush().await.unwrap();
    within(read_frame(&mut s)).await;
    held[0].write_all(&frame).await.unwrap();
    held[0].flush().await.unwrap();
    within(read_frame(&mut held[0])).await;
}

/// A host with a tiny connection manager (low 1, high 2, 100 ms grace) keeps the peers of
/// its routing table closest to it (protected under `PROTECT_TAG`) while the connections of
/// peers that do not run kad are trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_manager_spares_kad_peers() {
    let mut config = libp2p_host::Config::default();
    config.connection_manager.low_watermark = 1;
    config.connection_manager.high_watermark = 2;
    config.connection_manager.grace_period = Duration::from_millis(100);
    config.connection_manager.silence_period = Duration::from_millis(50);
    let (host, kad) = memory_host_with(config).await;

    // Two kad servers in its table, and three plain hosts connected to it.
    let mut kad_peers = Vec::new();
    for _ in 0..2 {
        let (server, _handle) = memory_host().await;
        kad.add_peer(server.peer_id(), server.listen_addrs()).await;
        kad_peers.push(server);
    }
    within(kad.bootstrap()).await.expect("bootstrap");
    let mut others = Vec::new();
    for _ in 0..3 {
        let key = Keypair::generate_ed25519();
        let transport = MuxedMemoryTransport::new(key.public().to_peer_id());
        let other = Host::builder(key)
            .listen_on("/memory/0".parse().unwrap())
            .build_with_transport(transport)
            .await
            .expect("host");
        other
            .connect(host.peer_id(), host.listen_addrs())
            .await
            .expect("connect");
        others.push(other);
    }
    for p in &kad_peers {
        assert!(host.is_protected(&p.peer_id()), "kad peer not protected");
    }
    for o in &others {
        assert!(!host.is_protected(&o.peer_id()), "plain peer protected");
    }

    // Past the grace period the manager trims: the plain peers go, the kad peers stay.
    within(async {
        loop {
            let connected = host.connected_peers();
            if others.iter().all(|o| !connected.contains(&o.peer_id())) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let connected = host.connected_peers();
    for p in &kad_peers {
        assert!(connected.contains(&p.peer_id()), "kad peer trimmed");
    }
}
