//! The connection manager over real sockets: trimming to the low watermark (protected peers
//! and busy connections kept), the grace period, the idle timeout, the bound on dials in
//! progress. Durations are configured short; every wait is bounded by a timeout.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p_host::testkit::{quiet, tcp_host};
use libp2p_host::{CloseCause, DialError, Event, Events, Host, Keypair, Multiaddr, PeerId, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(10);

async fn dialer() -> Host {
    Host::builder(Keypair::generate_ed25519())
        .config(quiet(|_| {}))
        .build()
        .await
        .expect("host")
}

async fn connect(from: &Host, to: &Host) {
    let addr = to.p2p_addrs()[0].clone();
    tokio::time::timeout(BOUND, from.dial(addr))
        .await
        .expect("dial in time")
        .expect("dial");
}

/// The next `ConnectionClosed` on `events`: (peer, cause).
async fn next_close(events: &mut Events) -> (PeerId, CloseCause) {
    tokio::time::timeout(BOUND, async {
        loop {
            match events.next().await {
                Some(Event::ConnectionClosed { peer, cause, .. }) => return (peer, cause),
                Some(_) => continue,
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("a close in time")
}

/// Opens a stream from `from` to `to` on `/hold/1.0.0` and returns both ends.
async fn hold(from: &Host, to: &Host, accepted: &mut libp2p_host::Incoming) -> (Stream, Stream) {
    let outbound = tokio::time::timeout(BOUND, from.new_stream(to.peer_id(), &["/hold/1.0.0"]))
        .await
        .expect("open in time")
        .expect("open");
    let inbound = tokio::time::timeout(BOUND, accepted.next())
        .await
        .expect("accept in time")
        .expect("a stream");
    (outbound, inbound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trims_to_low_watermark_keeping_protected_and_busy_peers() {
    let a = tcp_host(quiet(|c| {
        c.connection_manager.low_watermark = 2;
        c.connection_manager.high_watermark = 3;
        c.connection_manager.grace_period = Duration::ZERO;
        c.connection_manager.silence_period = Duration::from_millis(50);
    }))
    .await;
    let mut accepted = a.accept("/hold/1.0.0").unwrap();
    let mut events = a.events();
    let b: Vec<Host> = futures::future::join_all((0..4).map(|_| dialer())).await;
    a.protect(b[0].peer_id(), "test");
    a.protect(b[0].peer_id(), "other");
    assert!(a.unprotect(b[0].peer_id(), "other"));
    assert!(a.is_protected(&b[0].peer_id()));
    connect(&b[0], &a).await;
    connect(&b[1], &a).await;
    // b[1]'s connection holds an open stream: more valuable than the idle ones.
    let _held = hold(&b[1], &a, &mut accepted).await;
    connect(&b[2], &a).await;
    tokio::time::timeout(BOUND, async {
        while a.connected_peers().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("three connections at a");
    // The fourth connection crosses the high watermark: two idle, unprotected connections
    // go (b[2] and b[3]), leaving the low watermark.
    connect(&b[3], &a).await;
    let mut trimmed = Vec::new();
    for _ in 0..2 {
        let (peer, cause) = next_close(&mut events).await;
        assert!(matches!(cause, CloseCause::Trimmed), "{cause:?}");
        trimmed.push(peer);
    }
    trimmed.sort();
    let mut expected = vec![b[2].peer_id(), b[3].peer_id()];
    expected.sort();
    assert_eq!(trimmed, expected);
    let mut kept = a.connected_peers();
    kept.sort();
    let mut expected = vec![b[0].peer_id(), b[1].peer_id()];
    expected.sort();
    assert_eq!(kept, expected);
    // The trimmed side sees its connection end too.
    tokio::time::timeout(BOUND, async {
        while b[2].is_connected(&a.peer_id()) || b[3].is_connected(&a.peer_id()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the trimmed peers see the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_in_their_grace_period_are_not_trimmed() {
    let grace = Duration::from_millis(1_500);
    let a = tcp_host(quiet(|c| {
        c.connection_manager.low_watermark = 1;
        c.connection_manager.high_watermark = 1;
        c.connection_manager.grace_period = grace;
        c.connection_manager.silence_period = Duration::from_millis(100);
    }))
    .await;
    let mut events = a.events();
    let b1 = dialer().await;
    let b2 = dialer().await;
    let start = Instant::now();
    connect(&b1, &a).await;
    connect(&b2, &a).await;
    // Over the high watermark, but both are young: nothing is trimmed before the grace
    // period ends.
    let (_, cause) = next_close(&mut events).await;
    assert!(matches!(cause, CloseCause::Trimmed), "{cause:?}");
    assert!(
        start.elapsed() >= grace,
        "trimmed after {:?}",
        start.elapsed()
    );
    assert_eq!(a.connected_peers().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_idle_connections_and_keeps_active_ones() {
    let a = tcp_host(quiet(|c| {
        c.connection_manager.idle_timeout = Some(Duration::from_millis(300));
        c.connection_manager.silence_period = Duration::from_millis(50);
    }))
    .await;
    let mut accepted = a.accept("/hold/1.0.0").unwrap();
    let mut events = a.events();
    let busy = dialer().await;
    let idle = dialer().await;
    connect(&busy, &a).await;
    let (mut out, mut inb) = hold(&busy, &a, &mut accepted).await;
    connect(&idle, &a).await;
    let (peer, cause) = next_close(&mut events).await;
    assert_eq!(peer, idle.peer_id());
    assert!(matches!(cause, CloseCause::IdleTimeout), "{cause:?}");
    // Twice the timeout later the busy connection is still there, and its stream works.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(a.is_connected(&busy.peer_id()));
    out.write_all(b"ping").await.unwrap();
    out.flush().await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(BOUND, inb.read_exact(&mut buf))
        .await
        .expect("read in time")
        .unwrap();
    assert_eq!(&buf, b"ping");
    // Once its stream ends, it is idle too.
    drop((out, inb));
    let (peer, cause) = next_close(&mut events).await;
    assert_eq!(peer, busy.peer_id());
    assert!(matches!(cause, CloseCause::IdleTimeout), "{cause:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_peers_outlive_the_idle_timeout() {
    let a = tcp_host(quiet(|c| {
        c.connection_manager.idle_timeout = Some(Duration::from_millis(200));
        c.connection_manager.silence_period = Duration::from_millis(50);
    }))
    .await;
    let mut events = a.events();
    let kept = dialer().await;
    let dropped = dialer().await;
    a.protect(kept.peer_id(), "mesh");
    connect(&kept, &a).await;
    connect(&dropped, &a).await;
    let (peer, _) = next_close(&mut events).await;
    assert_eq!(peer, dropped.peer_id());
    assert!(a.is_connected(&kept.peer_id()));
    // Unprotected, it goes the same way.
    assert!(!a.unprotect(kept.peer_id(), "mesh"));
    let (peer, cause) = next_close(&mut events).await;
    assert_eq!(peer, kept.peer_id());
    assert!(matches!(cause, CloseCause::IdleTimeout), "{cause:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_in_progress_are_capped() {
    // A listener that accepts TCP and never answers: the dial stays in its upgrade.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let b = Host::builder(Keypair::generate_ed25519())
        .config(quiet(|c| {
            c.connection_manager.max_pending_outgoing = 1;
            c.handshake_timeout = Duration::from_secs(2);
        }))
        .build()
        .await
        .unwrap();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let first = tokio::spawn({
        let (b, addr) = (b.clone(), addr.clone());
        async move { b.dial(addr).await }
    });
    let (_socket, _) = tokio::time::timeout(BOUND, silent.accept())
        .await
        .expect("the first dial arrives")
        .unwrap();
    let second = tokio::time::timeout(BOUND, b.dial(addr))
        .await
        .expect("refused at once");
    assert!(
        matches!(second, Err(DialError::PendingLimit { limit: 1 })),
        "{second:?}"
    );
    // The first one ends with the handshake timeout and frees its place.
    let first = tokio::time::timeout(BOUND, first).await.unwrap().unwrap();
    assert!(first.is_err());
    let a = tcp_host(quiet(|_| {})).await;
    connect(&b, &a).await;
}

/// Closes by the manager and refusals by the resource manager are counted.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_closes_and_resource_refusals_are_counted() {
    use libp2p_host::metrics::{Metrics, Registry};
    use libp2p_host::ScopeLimits;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let a = Host::builder(Keypair::generate_ed25519())
        .config(quiet(|c| {
            c.connection_manager.idle_timeout = Some(Duration::from_millis(300));
            c.connection_manager.silence_period = Duration::from_millis(50);
            c.resources
                .protocols
                .insert("/hold/1.0.0".into(), ScopeLimits::new(0, 0, 0, 0));
        }))
        .metrics(metrics)
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .build()
        .await
        .unwrap();
    let _accepted = a.accept("/hold/1.0.0").unwrap();
    let mut events = a.events();
    let b = dialer().await;
    connect(&b, &a).await;
    let _ = b.new_stream(a.peer_id(), &["/hold/1.0.0"]).await;
    let (_, cause) = next_close(&mut events).await;
    assert!(matches!(cause, CloseCause::IdleTimeout), "{cause:?}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let sample = |name: &str, label: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        sample("libp2p_connections_closed_total", "cause=\"idle_timeout\""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample("libp2p_resource_refused_total", "scope=\"protocol\""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample("libp2p_refused_total", "reason=\"resource_limit\""),
        Some(1.0),
        "{text}"
    );
}
