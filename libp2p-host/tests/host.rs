//! The Host API end to end, over the memory transport and over TCP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use libp2p_core::{MemoryTransport, Multiaddr, TransportExt};
use libp2p_host::{CloseCause, Config, DialError, Event, Host, Keypair, NewStreamError, PingError};
use libp2p_mplex::Mplex;
use libp2p_noise::Noise;
use libp2p_plaintext::Plaintext;
use libp2p_secio::Secio;
use libp2p_transport_tcp::TcpTransport;
use libp2p_yamux::Yamux;

const CHAT: &str = "/chat/1.0.0";

/// The default config, changed by `f`.
fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    f(&mut config);
    config
}

async fn memory_host(config: Config) -> Host {
    let key = Keypair::generate_ed25519();
    let transport = MemoryTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(key.clone()))
        .multiplex(Yamux::default());
    libp2p_host::testkit::memory_host_over(key, config, transport).await
}

/// Two memory hosts of the default configuration.
async fn two_memory_hosts() -> (Host, Host) {
    (
        memory_host(Config::default()).await,
        memory_host(Config::default()).await,
    )
}

/// B answers every chat line with "re: <line>".
fn serve_chat(host: &Host) {
    host.set_stream_handler(CHAT, |stream| async move {
        let (reader, mut writer) = stream.into_futures().split();
        let mut lines = BufReader::new(reader).lines();
        while let Some(line) = lines.next().await {
            writer
                .write_all(format!("re: {}\n", line?).as_bytes())
                .await?;
            writer.flush().await?;
        }
        writer.close().await?;
        Ok(())
    })
    .unwrap();
}

async fn chat(a: &Host, b: &Host) {
    let stream = a
        .new_stream(b.peer_id(), &[CHAT])
        .await
        .expect("new_stream");
    assert_eq!(stream.protocol(), CHAT);
    assert_eq!(stream.remote_peer(), b.peer_id());
    let (reader, mut writer) = stream.into_futures().split();
    let mut lines = BufReader::new(reader).lines();
    for msg in ["hello", "second message", "bye"] {
        writer
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
        writer.flush().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), lines.next())
            .await
            .expect("answer in time")
            .expect("a line")
            .expect("read");
        assert_eq!(answer, format!("re: {msg}"));
    }
    writer.close().await.unwrap();
    assert!(lines.next().await.is_none(), "B closes after A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_both_ways_over_memory() {
    let (a, b) = two_memory_hosts().await;
    serve_chat(&a);
    serve_chat(&b);
    a.connect(b.peer_id(), b.listen_addrs())
        .await
        .expect("connect");
    chat(&a, &b).await;
    // B reuses the connection A made: it knows no address of A, so only reuse can work.
    chat(&b, &a).await;
    a.close().await;
    b.close().await;
}

async fn tcp_pair<F>(make: F) -> (Host, Host)
where
    F: Fn(Keypair) -> futures::future::BoxFuture<'static, Host>,
{
    (
        make(Keypair::generate_ed25519()).await,
        make(Keypair::generate_ed25519()).await,
    )
}

macro_rules! tcp_stack_test {
    ($name:ident, $security:expr, $muxer:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (a, b) = tcp_pair(|key: Keypair| {
                Box::pin(async move {
                    let transport = TcpTransport::new()
                        .upgrade()
                        .authenticate($security(key.clone()))
                        .multiplex($muxer);
                    Host::builder(key)
                        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
                        .build_with_transport(transport)
                        .await
                        .expect("host")
                })
            })
            .await;
            serve_chat(&a);
            serve_chat(&b);
            a.connect(b.peer_id(), b.listen_addrs())
                .await
                .expect("connect");
            chat(&a, &b).await;
            chat(&b, &a).await;
            let rtt = a.ping(b.peer_id()).await.expect("ping");
            assert!(rtt < Duration::from_secs(5));
            a.close().await;
            b.close().await;
        }
    };
}

tcp_stack_test!(tcp_plaintext_mplex, Plaintext::new, Mplex::default());
tcp_stack_test!(tcp_plaintext_yamux, Plaintext::new, Yamux::default());
tcp_stack_test!(tcp_secio_mplex, Secio::new, Mplex::default());
tcp_stack_test!(tcp_secio_yamux, Secio::new, Yamux::default());
tcp_stack_test!(tcp_noise_mplex, Noise::new, Mplex::default());
tcp_stack_test!(tcp_noise_yamux, Noise::new, Yamux::default());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_stack_chats() {
    let a = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let b = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .build()
        .await
        .unwrap();
    serve_chat(&b);
    a.connect(b.peer_id(), b.listen_addrs()).await.unwrap();
    chat(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_tell_unsupported_from_unreachable() {
    let (a, b) = two_memory_hosts().await;
    // Unknown peer, no address.
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    match a.new_stream(stranger, &[CHAT]).await {
        Err(NewStreamError::Dial(DialError::NoAddresses { peer })) => assert_eq!(peer, stranger),
        other => panic!("expected NoAddresses, got {other:?}"),
    }
    // Known address where nobody listens.
    let dead: Multiaddr = "/memory/999999999".parse().unwrap();
    match a.connect(stranger, vec![dead]).await {
        Err(DialError::Failed { attempts, .. }) => assert_eq!(attempts.len(), 1),
        other => panic!("expected Failed, got {other:?}"),
    }
    // Reachable, but no handler.
    a.connect(b.peer_id(), b.listen_addrs()).await.unwrap();
    match a
        .new_stream(b.peer_id(), &["/nope/1.0.0", "/nope/2.0.0"])
        .await
    {
        Err(NewStreamError::ProtocolsNotSupported { offered, .. }) => assert_eq!(offered.len(), 2),
        other => panic!("expected ProtocolsNotSupported, got {other:?}"),
    }
    // Removing a handler makes its protocol unsupported.
    serve_chat(&b);
    a.new_stream(b.peer_id(), &[CHAT]).await.expect("served");
    b.remove_stream_handler(CHAT);
    assert!(matches!(
        a.new_stream(b.peer_id(), &[CHAT]).await,
        Err(NewStreamError::ProtocolsNotSupported { .. })
    ));
    assert!(matches!(
        a.new_stream(a.peer_id(), &[CHAT]).await,
        Err(NewStreamError::Dial(DialError::DialSelf))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_new_streams_share_one_dial() {
    let (a, b) = two_memory_hosts().await;
    serve_chat(&b);
    let mut events = a.events();
    a.peerstore()
        .add_addrs(&b.peer_id(), b.listen_addrs(), Duration::from_secs(60));
    let opens = (0..20).map(|_| a.new_stream(b.peer_id(), &[CHAT]));
    let streams = futures::future::join_all(opens).await;
    assert!(streams.iter().all(|s| s.is_ok()));
    let mut connected = 0;
    while let Some(Some(event)) = events.next().now_or_never() {
        if matches!(event, Event::ConnectionEstablished { .. }) {
            connected += 1;
        }
    }
    assert_eq!(connected, 1, "one connection for all concurrent calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_harms_only_its_stream() {
    let (a, b) = two_memory_hosts().await;
    b.set_stream_handler("/boom/1.0.0", |_stream| async move {
        panic!("handler bug");
    })
    .unwrap();
    serve_chat(&b);
    a.connect(b.peer_id(), b.listen_addrs()).await.unwrap();
    let mut boom = a
        .new_stream(b.peer_id(), &["/boom/1.0.0"])
        .await
        .unwrap()
        .into_futures();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), boom.read_to_end(&mut buf))
        .await
        .expect("the panicked stream ends");
    chat(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_fills_the_peerstore_and_push_updates_it() {
    let a = memory_host(Config::default()).await;
    let b = memory_host(config(|c| c.agent_version = "b-agent/1".into())).await;
    serve_chat(&b);
    let mut events = a.events();
    a.connect(b.peer_id(), b.listen_addrs()).await.unwrap();
    let identified = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::Identified { peer, .. }) = events.next().await {
                break peer;
            }
        }
    })
    .await
    .expect("identified in time");
    assert_eq!(identified, b.peer_id());
    let store = a.peerstore();
    assert_eq!(
        store.agent_version(&b.peer_id()).as_deref(),
        Some("b-agent/1")
    );
    assert!(store.protocols(&b.peer_id()).contains(&CHAT.to_string()));
    assert_eq!(
        store.public_key(&b.peer_id()).unwrap().to_peer_id(),
        b.peer_id()
    );
    assert!(!store.addrs(&b.peer_id()).is_empty());

    // B learns a new protocol: push tells A (once B knows, from identifying A, that A
    // takes pushes).
    tokio::time::timeout(Duration::from_secs(10), async {
        while b.peerstore().protocols(&a.peer_id()).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("B identified A");
    b.set_stream_handler("/new/1.0.0", |_s| async move { Ok(()) })
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !a
            .peerstore()
            .protocols(&b.peer_id())
            .contains(&"/new/1.0.0".to_string())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("push reached A");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predicate_handlers_match_versions() {
    let (a, b) = two_memory_hosts().await;
    b.set_stream_handler_matching(
        "/kv/1.0.0",
        |p| p.starts_with("/kv/1."),
        |stream| async move {
            let name = stream.protocol().to_string();
            let mut stream = stream.into_futures();
            stream.write_all(name.as_bytes()).await?;
            stream.close().await?;
            Ok(())
        },
    )
    .unwrap();
    a.connect(b.peer_id(), b.listen_addrs()).await.unwrap();
    let mut s = a
        .new_stream(b.peer_id(), &["/kv/1.3.0"])
        .await
        .unwrap()
        .into_futures();
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "/kv/1.3.0");
    assert!(a.new_stream(b.peer_id(), &["/kv/2.0.0"]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold() {
    let b = memory_host(config(|c| {
        c.max_connections = 1;
        c.max_inbound_streams_per_connection = 2;
    }))
    .await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let (g, s) = (gate.clone(), started.clone());
    b.set_stream_handler("/hold/1.0.0", move |stream| {
        let (g, s) = (g.clone(), s.clone());
        async move {
            // The stream counts against the limit while it is held.
            let _held = stream;
            s.fetch_add(1, Ordering::SeqCst);
            g.notified().await;
            Ok(())
        }
    })
    .unwrap();
    let a = memory_host(config(|c| c.identify = false)).await;
    a.connect(b.peer_id(), b.listen_addrs()).await.unwrap();
    let _s1 = a.new_stream(b.peer_id(), &["/hold/1.0.0"]).await.unwrap();
    let _s2 = a.new_stream(b.peer_id(), &["/hold/1.0.0"]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while started.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    // A third inbound stream is over B's limit: it is reset, so negotiation fails.
    assert!(a.new_stream(b.peer_id(), &["/hold/1.0.0"]).await.is_err());
    // B holds one connection already: a second peer is turned away.
    let c = memory_host(Config::default()).await;
    let refused = async {
        c.connect(b.peer_id(), b.listen_addrs()).await?;
        c.new_stream(b.peer_id(), &["/hold/1.0.0"]).await.map(drop)
    };
    assert!(refused.await.is_err());
    gate.notify_waiters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_listeners_and_connections() {
    let (a, b) = two_memory_hosts().await;
    serve_chat(&b);
    let b_addrs = b.listen_addrs();
    let mut events = a.events();
    a.connect(b.peer_id(), b_addrs.clone()).await.unwrap();
    b.close().await;
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::ConnectionClosed {
                peer,
                cause,
                remaining,
                ..
            }) = events.next().await
            {
                assert!(matches!(cause, CloseCause::Remote), "{cause:?}");
                assert_eq!(remaining, 0);
                break peer;
            }
        }
    })
    .await
    .expect("A sees the disconnection");
    assert_eq!(gone, b.peer_id());
    assert!(!a.is_connected(&b.peer_id()));
    assert!(
        a.connect(b.peer_id(), b_addrs).await.is_err(),
        "B no longer listens"
    );
    assert!(matches!(
        b.new_stream(a.peer_id(), &[CHAT]).await,
        Err(NewStreamError::Dial(DialError::Closed))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_then_reconnect() {
    let (a, b) = two_memory_hosts().await;
    serve_chat(&b);
    a.connect(b.peer_id(), b.listen_addrs()).await.unwrap();
    assert!(a.is_connected(&b.peer_id()));
    a.disconnect(b.peer_id()).await;
    assert!(!a.is_connected(&b.peer_id()));
    chat(&a, &b).await;
}

/// Twenty hosts in a ring: each opens a chat stream to its neighbour and to the one after,
/// all at once, dialing from addresses in its peerstore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_of_twenty_hosts() {
    let mut hosts = Vec::new();
    for _ in 0..20 {
        let host = memory_host(Config::default()).await;
        serve_chat(&host);
        hosts.push(Arc::new(host));
    }
    for (i, host) in hosts.iter().enumerate() {
        for step in [1, 2] {
            let next = &hosts[(i + step) % hosts.len()];
            host.peerstore().add_addrs(
                &next.peer_id(),
                next.listen_addrs(),
                Duration::from_secs(600),
            );
        }
    }
    let mut tasks = Vec::new();
    for i in 0..hosts.len() {
        for step in [1, 2] {
            let a = hosts[i].clone();
            let b = hosts[(i + step) % hosts.len()].clone();
            tasks.push(tokio::spawn(async move { chat(&a, &b).await }));
        }
    }
    tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::try_join_all(tasks),
    )
    .await
    .expect("the ring chats in time")
    .expect("every chat succeeds");
    for (i, host) in hosts.iter().enumerate() {
        for step in [1, 2] {
            let next = &hosts[(i + step) % hosts.len()];
            assert!(host.is_connected(&next.peer_id()), "{i} -> +{step}");
        }
    }
}

/// A peer that goes away and comes back (same key, same address) is reached again: the dead
/// connection is dropped and `new_stream` dials anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reached_again() {
    async fn tcp_host(key: Keypair, addr: Multiaddr) -> Host {
        let transport = TcpTransport::new()
            .upgrade()
            .authenticate(Secio::new(key.clone()))
            .multiplex(Mplex::default());
        Host::builder(key)
            .listen_on(addr)
            .build_with_transport(transport)
            .await
            .expect("host")
    }
    let a = tcp_host(
        Keypair::generate_ed25519(),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
    )
    .await;
    let kb = Keypair::generate_ed25519();
    let b = tcp_host(kb.clone(), "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
    let b_addr = b.listen_addrs()[0].clone();
    serve_chat(&b);
    a.peerstore()
        .add_addrs(&b.peer_id(), vec![b_addr.clone()], Duration::from_secs(600));
    chat(&a, &b).await;
    b.close().await;
    drop(b);
    // Wait until A has noticed that the connection is gone.
    tokio::time::timeout(Duration::from_secs(10), async {
        while a.is_connected(&kb.public().to_peer_id()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("A notices the closed connection");
    let b2 = tcp_host(kb, b_addr).await;
    serve_chat(&b2);
    chat(&a, &b2).await;
    a.close().await;
    b2.close().await;
}

/// A peer that takes the ping stream but never answers: `ping` fails within the negotiation
/// timeout instead of hanging, and the next ping opens a fresh stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_ping_times_out() {
    let a = memory_host(config(|c| {
        c.negotiation_timeout = Duration::from_millis(300)
    }))
    .await;
    let b = memory_host(Config::default()).await;
    b.set_stream_handler("/ipfs/ping/1.0.0", |stream| async move {
        let _held = stream;
        std::future::pending::<()>().await;
        Ok(())
    })
    .unwrap();
    a.connect(b.peer_id(), b.listen_addrs()).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), a.ping(b.peer_id()))
        .await
        .expect("ping returns in time");
    match result {
        Err(PingError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("expected a ping timeout, got {other:?}"),
    }
}
