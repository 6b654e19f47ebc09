use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_core::testkit::transport_kit;
use libp2p_core::{ListenerEvent, Multiaddr, Protocol, Transport};
use libp2p_transport_tcp::TcpTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_ip4() {
    transport_kit(
        TcpTransport::new(),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
        "/memory/1".parse().unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_ip6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; the ip6 kit run is not possible here");
        return;
    }
    transport_kit(
        TcpTransport::new(),
        "/ip6/::1/tcp/0".parse().unwrap(),
        "/ip4/127.0.0.1/udp/1".parse().unwrap(),
    )
    .await;
}

async fn first_address(listener: &mut <TcpTransport as Transport>::Listener) -> Multiaddr {
    match listener.next().await {
        Some(ListenerEvent::NewAddress(a)) => a,
        other => panic!("expected an address, got {other:?}"),
    }
}

#[tokio::test]
async fn unspecified_listen_reports_concrete_addresses() {
    let tcp = TcpTransport::new();
    let mut listener = tcp.listen("/ip4/0.0.0.0/tcp/0".parse().unwrap()).unwrap();
    let port = listener.local_addr().port();
    assert_ne!(port, 0);
    let addr = first_address(&mut listener).await;
    let mut iter = addr.iter();
    match iter.next() {
        Some(Protocol::Ip4(ip)) => assert!(!ip.is_unspecified(), "{addr}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(iter.next(), Some(Protocol::Tcp(port)));
}

#[tokio::test]
async fn sets_nodelay_and_leaves_names_to_the_resolver() {
    let tcp = TcpTransport::new();
    let mut listener = tcp.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let port = listener.local_addr().port();
    let addr = first_address(&mut listener).await;
    let server = tokio::spawn(async move {
        loop {
            if let Some(ListenerEvent::Incoming { pending, .. }) = listener.next().await {
                let mut socket = TcpTransport::new().accept(pending).await.unwrap();
                assert!(socket.get_ref().nodelay().unwrap());
                socket.write_all(b"hi").await.unwrap();
                socket.close().await.unwrap();
            }
        }
    });
    let mut socket = tcp.dial(addr).await.expect("dial");
    assert!(socket.get_ref().nodelay().unwrap());
    let mut got = Vec::new();
    socket.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hi");
    server.abort();
    let named: Multiaddr = format!("/dns4/localhost/tcp/{port}").parse().unwrap();
    assert!(!tcp.can_dial(&named));
    assert!(matches!(
        tcp.dial(named).await,
        Err(libp2p_core::TransportError::MultiaddrNotSupported(_))
    ));
}

#[tokio::test]
async fn address_in_use_is_typed() {
    let tcp = TcpTransport::new();
    let listener = tcp.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", listener.local_addr().port())
        .parse()
        .unwrap();
    assert!(matches!(
        tcp.listen(addr),
        Err(libp2p_core::TransportError::AddressInUse(_))
    ));
}
