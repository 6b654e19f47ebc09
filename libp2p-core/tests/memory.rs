//! The memory transport passes the transport kit, and the pipeline's limits hold over it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p_core::testkit::transport_kit;
use libp2p_core::{
    ListenerEvent, MemoryTransport, Multiaddr, PeerId, Role, SecurityUpgrade, Socket, Stage,
    Transport, TransportError, TransportExt, UpgradeInfo,
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
#[derive(Clone)]
struct Unreached;

#[derive(Debug, thiserror::Error)]
#[error("unreached")]
struct Never;

impl libp2p_core::Classify for Never {
    fn fault(&self) -> libp2p_core::Fault {
        libp2p_core::Fault::Local
    }
}

impl UpgradeInfo for Unreached {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once("/unreached/1.0.0")
    }
}

impl<C: Socket> SecurityUpgrade<C> for Unreached {
    type Output = C;
    type Error = Never;
    fn secure(
        &self,
        _: C,
        _: Role,
        _: Option<PeerId>,
        _: &str,
    ) -> impl std::future::Future<Output = Result<(PeerId, C), Never>> + Send + 'static {
        futures::future::ready(Err(Never))
    }
}

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
        .authenticate(Unreached);
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
    let server = raw.clone().upgrade().authenticate(Unreached);
    let mut listener = server.listen("/memory/0".parse().unwrap()).unwrap();
    let addr = match listener.next().await {
        Some(ListenerEvent::NewAddress(a)) => a,
        _ => panic!(),
    };
    // The server speaks only /unreached/1.0.0; the client offers something else.
    #[derive(Clone)]
    struct Other;
    impl UpgradeInfo for Other {
        fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
            std::iter::once("/other/1.0.0")
        }
    }
    impl<C: Socket> SecurityUpgrade<C> for Other {
        type Output = C;
        type Error = Never;
        fn secure(
            &self,
            _: C,
            _: Role,
            _: Option<PeerId>,
            _: &str,
        ) -> impl std::future::Future<Output = Result<(PeerId, C), Never>> + Send + 'static
        {
            futures::future::ready(Err(Never))
        }
    }
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
    let client = raw.upgrade().authenticate(Other);
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
    let upgraded = raw.upgrade().authenticate(Unreached);
    let dial = upgraded.dial(addr);
    assert!(std::mem::size_of_val(&dial) <= 2 * std::mem::size_of::<usize>());
    let pending = match listener.next().await {
        Some(ListenerEvent::Incoming { pending, .. }) => pending,
        _ => panic!("expected the dial"),
    };
    let accept = upgraded.accept(pending);
    assert!(std::mem::size_of_val(&accept) <= 2 * std::mem::size_of::<usize>());
}
