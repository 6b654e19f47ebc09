//! The memory transport passes the transport kit, and the pipeline's limits hold over it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p_core::testkit::{transport_kit, Refusing};
use libp2p_core::{
    ListenerEvent, MemoryTransport, Multiaddr, Stage, Transport, TransportError, TransportExt,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    transport_kit(
        MemoryTransport::new(),
        "/memory/0".parse().unwrap(),
        "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
    )
    .await;
}

#[tokio::test]
async fn fixed_ports_and_address_in_use() {
    let t = MemoryTransport::new();
    let addr: Multiaddr = "/memory/424242".parse().unwrap();
    let mut listener = t.listen(addr.clone()).unwrap();
    assert!(matches!(
        t.listen(addr.clone()),
        Err(TransportError::AddressInUse(_))
    ));
    match listener.next().await {
        Some(ListenerEvent::NewAddress(a)) => assert_eq!(a, addr),
        _ => panic!("expected the fixed address"),
    }
    drop(listener);
    // The port is free again.
    let _again = t.listen(addr).unwrap();
}

/// A security upgrade that is never reached: the remote never answers multistream.
const UNREACHED: Refusing = Refusing("/unreached/1.0.0");

#[tokio::test]
async fn a_silent_remote_hits_the_upgrade_timeout() {
    let raw = MemoryTransport::new();
    let mut listener = raw.listen("/memory/0".parse().unwrap()).unwrap();
    let addr = match listener.next().await {
        Some(ListenerEvent::NewAddress(a)) => a,
        _ => panic!(),
    };
    // Accept the socket and keep it open, saying nothing.
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(ListenerEvent::Incoming { pending, .. }) = listener.next().await {
            held.push(pending);
        }
    });
    let client = raw
        .upgrade()
        .timeout(Duration::from_millis(300))
        .authenticate(UNREACHED);
    let start = Instant::now();
    match client.dial(addr).await {
        Err(TransportError::Timeout(t)) => assert_eq!(t, Duration::from_millis(300)),
        Err(e) => panic!("expected a timeout, got {e}"),
        Ok(_) => panic!("must not connect"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    hold.abort();
}

#[tokio::test]
async fn a_refused_protocol_is_a_negotiation_error_at_the_security_stage() {
    let raw = MemoryTransport::new();
    let server = raw.clone().upgrade().authenticate(UNREACHED);
    let mut listener = server.listen("/memory/0".parse().unwrap()).unwrap();
    let addr = match listener.next().await {
        Some(ListenerEvent::NewAddress(a)) => a,
        _ => panic!(),
    };
    // The server speaks only /unreached/1.0.0; the client offers something else.
    let acceptor = tokio::spawn(async move {
        if let Some(ListenerEvent::Incoming { pending, .. }) = listener.next().await {
            let result = server.accept(pending).await;
            assert!(matches!(
                result,
                Err(TransportError::Negotiation {
                    stage: Stage::Security,
                    ..
                })
            ));
        }
    });
    let client = raw.upgrade().authenticate(Refusing("/other/1.0.0"));
    match client.dial(addr).await {
        Err(TransportError::Negotiation { stage, .. }) => assert_eq!(stage, Stage::Security),
        Err(e) => panic!("expected a negotiation error, got {e}"),
        Ok(_) => panic!("must not connect"),
    }
    acceptor.await.unwrap();
}

#[tokio::test]
async fn an_upgrade_future_is_one_pointer() {
    // The upgrade's state lives on the heap and is freed when it ends: a task that awaits
    // an upgrade and then serves the connection must not carry the upgrade's (several KiB)
    // state for the connection's life.
    let raw = MemoryTransport::new();
    let mut listener = raw.listen("/memory/0".parse().unwrap()).unwrap();
    let addr = match listener.next().await {
        Some(ListenerEvent::NewAddress(a)) => a,
        _ => panic!(),
    };
    let upgraded = raw.upgrade().authenticate(UNREACHED);
    let dial = upgraded.dial(addr);
    assert!(std::mem::size_of_val(&dial) <= 2 * std::mem::size_of::<usize>());
    let pending = match listener.next().await {
        Some(ListenerEvent::Incoming { pending, .. }) => pending,
        _ => panic!("expected the dial"),
    };
    let accept = upgraded.accept(pending);
    assert!(std::mem::size_of_val(&accept) <= 2 * std::mem::size_of::<usize>());
}
