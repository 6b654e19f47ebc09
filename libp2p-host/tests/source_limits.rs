//! Per-source limits on inbound connections: a source over its limits is refused (an event
//! says which limit) while another source is served. The attacker binds 127.0.0.2 (all of
//! 127/8 is loopback).

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use libp2p_host::{Config, ConnectionRefusedReason, Event, Host, Keypair, Protocol};

async fn host(f: impl FnOnce(&mut Config)) -> (Host, u16) {
    let mut config = Config::default();
    f(&mut config);
    let host = Host::builder(Keypair::generate_ed25519())
        .config(config)
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .build()
        .await
        .expect("host");
    let port = match host.listen_addrs()[0].iter().nth(1) {
        Some(Protocol::Tcp(port)) => port,
        other => panic!("{other:?}"),
    };
    (host, port)
}

async fn connect_from(ip: [u8; 4], port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((ip, 0))).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

async fn next_refusal(events: &mut libp2p_host::Events) -> (String, ConnectionRefusedReason) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Event::InboundConnectionRefused {
                remote_addr,
                reason,
            }) = events.next().await
            {
                return (remote_addr.to_string(), reason);
            }
        }
    })
    .await
    .expect("a refusal event")
}

/// A dial from `b` to `a` works (and then ends).
async fn dial_works(b: &Host, port: u16) {
    let addr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let peer = tokio::time::timeout(Duration::from_secs(5), b.dial(addr))
        .await
        .expect("dial in time")
        .expect("dial");
    b.disconnect(peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_upgrades_are_capped_per_source() {
    let (a, port) = host(|c| {
        c.max_pending_incoming_per_ip = 2;
        c.handshake_timeout = Duration::from_secs(10);
    })
    .await;
    let mut events = a.events();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from([127, 0, 0, 2], port).await);
    }
    let _third = connect_from([127, 0, 0, 2], port).await;
    let (from, reason) = next_refusal(&mut events).await;
    assert!(from.starts_with("/ip4/127.0.0.2/tcp/"), "{from}");
    assert_eq!(reason, ConnectionRefusedReason::PendingPerIp { limit: 2 });
    // Another source still gets in while 127.0.0.2 holds its two.
    let (b, _) = host(|_| {}).await;
    dial_works(&b, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_second_are_capped_per_source() {
    let (a, port) = host(|c| c.max_incoming_per_ip_per_second = 3).await;
    let mut events = a.events();
    for _ in 0..4 {
        drop(connect_from([127, 0, 0, 2], port).await);
    }
    let (from, reason) = next_refusal(&mut events).await;
    assert!(from.starts_with("/ip4/127.0.0.2/tcp/"), "{from}");
    assert_eq!(reason, ConnectionRefusedReason::RatePerIp { limit: 3 });
    let (b, _) = host(|_| {}).await;
    dial_works(&b, port).await;
}
