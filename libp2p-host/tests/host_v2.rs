//! The Host v2 surface end to end: pull-style `accept`, dial by address, several transports,
//! services, typed errors, events and secure defaults, over TCP and the memory transports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use libp2p_core::{MuxedMemoryTransport, TransportExt};
use libp2p_host::testkit::{config, tcp_host};
use libp2p_host::{
    Classify, CloseCause, Config, DialError, Direction, Event, Events, Fault, Host, Keypair,
    Multiaddr, NewStreamError, Protocol, RefusedReason, Service, ServiceContext, Stream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = "/echo/1.0.0";

/// A host on the secured, muxed memory transport (the QUIC stand-in).
async fn muxed_memory_host(config: Config) -> Host {
    let key = Keypair::generate_ed25519();
    let transport = MuxedMemoryTransport::new(key.public().to_peer_id());
    libp2p_host::testkit::memory_host_over(key, config, transport).await
}

async fn echo_back(mut stream: Stream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
    }
    stream.shutdown().await
}

async fn echo_once(a: &Host, b: &Host, seed: u8) {
    let mut s = a.new_stream(b.peer_id(), &[ECHO]).await.expect("stream");
    let data = vec![seed; 1000 + seed as usize];
    s.write_all(&data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, data);
}

/// `a` dials `b` and echoes through 100 concurrent streams to it, within 30 seconds.
async fn hundred_concurrent_echoes(a: &Host, b: &Host) {
    a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    let runs = (0..100u8).map(|i| echo_once(a, b, i));
    tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(runs))
        .await
        .expect("100 streams in time");
}

async fn next_matching(events: &mut Events, f: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.next().await.expect("events end");
            if f(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event in time")
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within 10 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_serves_100_concurrent_streams() {
    let a = tcp_host(Config::default()).await;
    let b = tcp_host(Config::default()).await;
    let mut incoming = b.accept(ECHO).unwrap();
    tokio::spawn(async move {
        while let Some(stream) = incoming.next().await {
            tokio::spawn(echo_back(stream));
        }
    });
    hundred_concurrent_echoes(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_serve_100_concurrent_streams() {
    let a = tcp_host(Config::default()).await;
    let b = tcp_host(Config::default()).await;
    b.set_stream_handler(ECHO, |s| async move { Ok(echo_back(s).await?) })
        .unwrap();
    hundred_concurrent_echoes(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_accept_queue_resets_and_says_so() {
    let a = tcp_host(Config::default()).await;
    let b = tcp_host(config(|c| c.accept_queue = 2)).await;
    let mut b_events = b.events();
    let _unread = b.accept(ECHO).unwrap();
    a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        // The stream is agreed (B's listener answers), then queued or refused.
        held.push(a.new_stream(b.peer_id(), &[ECHO]).await.unwrap());
    }
    let refused = next_matching(&mut b_events, |e| {
        matches!(e, Event::InboundStreamRefused { .. })
    })
    .await;
    match refused {
        Event::InboundStreamRefused {
            peer,
            protocol,
            reason,
        } => {
            assert_eq!(peer, a.peer_id());
            assert_eq!(protocol.as_deref(), Some(ECHO));
            assert!(
                matches!(reason, RefusedReason::QueueFull { capacity: 2 }),
                "{reason:?}"
            );
        }
        _ => unreachable!(),
    }
    // A refused stream is reset: reading it ends at once.
    let mut ended = 0;
    for mut s in held {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await
        {
            ended += 1;
        }
    }
    assert_eq!(ended, 2, "two queued, two reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_accept_unregisters_and_identify_push_tells_peers() {
    let a = tcp_host(Config::default()).await;
    let b = tcp_host(Config::default()).await;
    let incoming = b.accept("/temp/1.0.0").unwrap();
    assert!(b.protocols().contains(&"/temp/1.0.0".to_string()));
    let mut a_events = a.events();
    a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    next_matching(&mut a_events, |e| matches!(e, Event::Identified { .. })).await;
    assert!(a
        .peerstore()
        .protocols(&b.peer_id())
        .contains(&"/temp/1.0.0".to_string()));
    // B must know that A takes pushes before it can push.
    eventually("B identified A", || {
        !b.peerstore().protocols(&a.peer_id()).is_empty()
    })
    .await;
    drop(incoming);
    assert!(!b.protocols().contains(&"/temp/1.0.0".to_string()));
    eventually("the push reached A", || {
        !a.peerstore()
            .protocols(&b.peer_id())
            .contains(&"/temp/1.0.0".to_string())
    })
    .await;
    assert!(matches!(
        a.new_stream(b.peer_id(), &["/temp/1.0.0"]).await,
        Err(NewStreamError::ProtocolsNotSupported { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_with_and_without_a_peer_id() {
    let a = tcp_host(Config::default()).await;
    let b = tcp_host(Config::default()).await;
    let with_id = b.p2p_addrs()[0].clone();
    assert!(matches!(with_id.iter().last(), Some(Protocol::P2p(p)) if p == b.peer_id()));
    let bare: Multiaddr = b.listen_addrs()[0].clone();
    assert_eq!(a.dial(bare).await.unwrap(), b.peer_id(), "learned");
    assert_eq!(a.dial(with_id).await.unwrap(), b.peer_id());
    assert_eq!(
        a.connections(&b.peer_id()).len(),
        1,
        "the second dial reused"
    );
    // The wrong peer id at B's address: the remote's fault, and typed.
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let wrong = b.listen_addrs()[0].clone().with(Protocol::P2p(stranger));
    let err = a.dial(wrong).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Remote, "{err}");
    assert!(matches!(err, DialError::Failed { .. }), "{err:?}");
    let unsupported = a.dial("/memory/5".parse().unwrap()).await.unwrap_err();
    assert!(matches!(unsupported, DialError::UnsupportedAddress { .. }));
    assert_eq!(unsupported.fault(), Fault::Local);
    assert!(matches!(
        a.dial(a.p2p_addrs()[0].clone()).await,
        Err(DialError::DialSelf)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_dial_a_failed_dial_and_a_disconnect() {
    let a = tcp_host(Config::default()).await;
    let b = tcp_host(Config::default()).await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    for (events, direction) in [
        (&mut a_events, Direction::Outbound),
        (&mut b_events, Direction::Inbound),
    ] {
        match next_matching(events, |e| matches!(e, Event::ConnectionEstablished { .. })).await {
            Event::ConnectionEstablished {
                info, connections, ..
            } => {
                assert_eq!(info.direction, direction);
                assert_eq!(info.security, "/noise");
                assert_eq!(info.muxer, "/yamux/1.0.0");
                assert!(info.local_addr.is_some());
                assert_eq!(connections, 1);
            }
            _ => unreachable!(),
        }
    }
    // A dial to where nobody listens.
    let dead: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
    let err = a.dial(dead).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Network, "{err}");
    match next_matching(&mut a_events, |e| matches!(e, Event::DialFailed { .. })).await {
        Event::DialFailed { peer, error } => {
            assert_eq!(peer, None);
            assert!(matches!(*error, DialError::Failed { .. }));
        }
        _ => unreachable!(),
    }
    a.disconnect(b.peer_id()).await;
    for (events, local) in [(&mut a_events, true), (&mut b_events, false)] {
        match next_matching(events, |e| matches!(e, Event::ConnectionClosed { .. })).await {
            Event::ConnectionClosed {
                cause, remaining, ..
            } => {
                assert_eq!(remaining, 0);
                assert_eq!(matches!(cause, CloseCause::Local), local, "{cause:?}");
            }
            _ => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_memory_side_by_side() {
    let key = Keypair::generate_ed25519();
    let peer_id = key.public().to_peer_id();
    let both = Host::builder(key)
        .with_tcp()
        .transport(MuxedMemoryTransport::new(peer_id))
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .listen_on("/memory/0".parse().unwrap())
        .build()
        .await
        .unwrap();
    both.set_stream_handler(ECHO, |s| async move { Ok(echo_back(s).await?) })
        .unwrap();
    let addrs = both.p2p_addrs();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let over_tcp = tcp_host(Config::default()).await;
    let over_memory = muxed_memory_host(Config::default()).await;
    for (dialer, kind) in [(&over_tcp, "tcp"), (&over_memory, "memory")] {
        let addr = addrs
            .iter()
            .find(|a| a.iter().any(|p| p.tag() == kind))
            .unwrap()
            .clone();
        assert_eq!(dialer.dial(addr).await.unwrap(), both.peer_id());
        echo_once(dialer, &both, 7).await;
        let (_, info) = dialer.connections(&both.peer_id()).remove(0);
        let expected = if kind == "tcp" {
            "/noise"
        } else {
            libp2p_core::memory_muxed::PROTOCOL
        };
        assert_eq!(info.security, expected);
    }
}

/// A service that counts connections, accepts its own protocol and opens a stream from its
/// own task.
struct Greeter {
    connections: Arc<AtomicUsize>,
}

impl Service for Greeter {
    fn name(&self) -> &'static str {
        "greeter"
    }

    fn protocols(&self) -> Vec<String> {
        vec!["/greet/1.0.0".into()]
    }

    fn run(self: Box<Self>, mut ctx: ServiceContext) -> BoxFuture<'static, ()> {
        async move {
            loop {
                tokio::select! {
                    stream = ctx.inbound.next() => {
                        let Some(mut stream) = stream else { break };
                        tokio::spawn(async move {
                            let _ = stream.write_all(b"hello from the service").await;
                            let _ = stream.shutdown().await;
                        });
                    }
                    event = ctx.events.next() => match event {
                        Some(Event::ConnectionEstablished { peer, .. }) => {
                            self.connections.fetch_add(1, Ordering::SeqCst);
                            // Greet back on the same protocol, from our own task.
                            let host = ctx.host.clone();
                            tokio::spawn(async move {
                                if let Ok(mut s) =
                                    host.new_stream(peer, vec!["/greet/1.0.0".into()]).await
                                {
                                    let mut got = Vec::new();
                                    let _ = s.read_to_end(&mut got).await;
                                }
                            });
                        }
                        None => break,
                        Some(_) => {}
                    },
                }
            }
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_run_beside_the_host_and_are_listed_from_the_first_identify() {
    let connections = Arc::new(AtomicUsize::new(0));
    let b = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .service(Greeter {
            connections: connections.clone(),
        })
        .build()
        .await
        .unwrap();
    let a = tcp_host(Config::default()).await;
    let mut a_events = a.events();
    a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    // Two things reach A, in either order: B's first identify, listing the service's
    // protocol, and the service's own greeting stream, which A refuses (it does not speak
    // the protocol): refused as unsupported, or as a failed negotiation when the greeter's
    // reset of the stream overtakes its reading of our `na`.
    let (mut identified, mut refused) = (false, false);
    while !(identified && refused) {
        match next_matching(&mut a_events, |e| {
            matches!(
                e,
                Event::Identified { .. } | Event::InboundStreamRefused { .. }
            )
        })
        .await
        {
            Event::Identified { info, .. } => {
                assert!(info.protocols.contains(&"/greet/1.0.0".to_string()));
                identified = true;
            }
            Event::InboundStreamRefused {
                protocol, reason, ..
            } => {
                assert_eq!(protocol, None);
                assert!(
                    matches!(
                        reason,
                        RefusedReason::NotSupported | RefusedReason::Negotiation(_)
                    ),
                    "{reason:?}"
                );
                refused = true;
            }
            _ => unreachable!(),
        }
    }
    let mut s = a.new_stream(b.peer_id(), &["/greet/1.0.0"]).await.unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hello from the service");
    eventually("the service saw the connection", || {
        connections.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_stack_offers_no_downgrade_to_secio() {
    let b = tcp_host(Config::default()).await;
    let key = Keypair::generate_ed25519();
    let secio_only = libp2p_transport_tcp::TcpTransport::new()
        .upgrade()
        .authenticate(libp2p_secio::Secio::new(key.clone()))
        .multiplex(libp2p_yamux::Yamux::default());
    let a = Host::builder(key)
        .build_with_transport(secio_only)
        .await
        .unwrap();
    let err = a.dial(b.p2p_addrs()[0].clone()).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Incompatible, "{err}");
}

/// Connects to `host` over TCP and says nothing: whether the host closes the connection
/// within 5 s (its handshake timeout passing).
async fn closes_a_silent_client(host: &Host) -> bool {
    let addr = host.listen_addrs()[0].clone();
    let port = match addr.iter().nth(1) {
        Some(Protocol::Tcp(port)) => port,
        _ => panic!("{addr}"),
    };
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_timeout_applies_to_the_default_stack() {
    let b = tcp_host(config(|c| c.handshake_timeout = Duration::from_millis(300))).await;
    assert!(
        closes_a_silent_client(&b).await,
        "B held a silent connection past its timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_their_fault() {
    let a = muxed_memory_host(Config::default()).await;
    let b = muxed_memory_host(Config::default()).await;
    a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    let err = a
        .new_stream(b.peer_id(), &["/nope/1.0.0"])
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Incompatible);
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let err = a.new_stream(stranger, &[ECHO]).await.unwrap_err();
    assert!(matches!(
        err,
        NewStreamError::Dial(DialError::NoAddresses { .. })
    ));
    assert_eq!(err.fault(), Fault::Local);
    assert!(a.ping(b.peer_id()).await.is_ok());
    let invalid = a.accept("no-slash").unwrap_err();
    assert!(matches!(
        invalid,
        libp2p_host::AcceptError::InvalidProtocol(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_timeout_applies_to_a_stack_given_by_hand() {
    let key = Keypair::generate_ed25519();
    // The stack's own bound is long; the host's config is short, and wins.
    let transport = libp2p_transport_tcp::TcpTransport::new()
        .upgrade()
        .timeout(Duration::from_secs(60))
        .authenticate(libp2p_noise::Noise::new(key.clone()))
        .multiplex(libp2p_yamux::Yamux::default());
    let b = Host::builder(key)
        .config(config(|c| c.handshake_timeout = Duration::from_millis(300)))
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .build_with_transport(transport)
        .await
        .unwrap();
    assert!(
        closes_a_silent_client(&b).await,
        "B held a silent connection past its timeout"
    );
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Question {
    message: String,
    n: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_with_bytes_json_and_cbor_and_its_limits() {
    let a = tcp_host(config(|c| c.request_response.max_response_size = 64)).await;
    let b = tcp_host(Config::default()).await;
    let mut requests = b.serve_requests("/q/1.0.0").unwrap();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            tokio::spawn(async move {
                let data = request.data().to_vec();
                let _ = match data.first() {
                    Some(b'{') => {
                        let q: Question = request.json().unwrap();
                        let answer = Question {
                            message: q.message.to_uppercase(),
                            n: q.n + 1,
                        };
                        request.respond_json(&answer).await
                    }
                    Some(b'b') => request.respond(&[b'x'; 100]).await,
                    Some(b's') => {
                        // Never answers (holds the request).
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        Ok(())
                    }
                    _ => match request.cbor::<Question>() {
                        Ok(q) => {
                            let answer = Question {
                                message: q.message.to_uppercase(),
                                n: q.n + 1,
                            };
                            request.respond_cbor(&answer).await
                        }
                        Err(_) => request.respond(b"echo").await,
                    },
                };
            });
        }
    });
    let peer = a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    let q = Question {
        message: "hi".into(),
        n: 1,
    };
    let json: Question = a.request_json(peer, "/q/1.0.0", &q).await.unwrap();
    assert_eq!(
        json,
        Question {
            message: "HI".into(),
            n: 2
        }
    );
    let cbor: Question = a.request_cbor(peer, "/q/1.0.0", &q).await.unwrap();
    assert_eq!(
        cbor,
        Question {
            message: "HI".into(),
            n: 2
        }
    );
    // A response over A's cap of 64 bytes: the remote's fault.
    let big = a.request(peer, "/q/1.0.0", b"big").await.unwrap_err();
    assert!(
        matches!(big, libp2p_host::RequestError::TooLarge { max: 64, .. }),
        "{big:?}"
    );
    assert_eq!(big.fault(), Fault::Remote);
    // An unknown protocol is the stream's error.
    let none = a.request(peer, "/nope/1.0.0", b"x").await.unwrap_err();
    assert_eq!(none.fault(), Fault::Incompatible);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_answer_times_out() {
    let a = tcp_host(config(|c| {
        c.request_response.request_timeout = Duration::from_millis(300)
    }))
    .await;
    let b = tcp_host(Config::default()).await;
    let mut requests = b.serve_requests("/q/1.0.0").unwrap();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Some(request) = requests.next().await {
            kept.push(request);
        }
    });
    let peer = a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    let err = a.request(peer, "/q/1.0.0", b"s").await.unwrap_err();
    assert_eq!(err.fault(), Fault::Timeout, "{err}");
    held.abort();
}
