//! Ranked, concurrent dialing over real sockets, and the default stack (TCP with noise and
//! TLS, QUIC beside it).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use libp2p_core::TransportExt;
use libp2p_host::{Config, DialError, Host, Keypair, Multiaddr, PeerId, Protocol};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Bound on every wait of these tests (none of them should come near it).
const WAIT: Duration = Duration::from_secs(60);

/// A default host listening on TCP and QUIC at 127.0.0.1.
async fn listener() -> Host {
    Host::builder(Keypair::generate_ed25519())
        .listen_on_ip(LOCALHOST, 0)
        .build()
        .await
        .expect("host")
}

/// A default host that waits `tcp_after` before trying TCP behind QUIC on loopback, and
/// gives up on one address only after a long time (so that a test can tell a race from a
/// timeout).
async fn dialer(tcp_after: Duration) -> Host {
    let mut config = Config::default();
    config.dial.loopback_delay = tcp_after;
    config.dial.address_timeout = Duration::from_secs(120);
    Host::builder(Keypair::generate_ed25519())
        .config(config)
        .build()
        .await
        .expect("host")
}

fn of_kind(host: &Host, quic: bool) -> Multiaddr {
    host.listen_addrs()
        .into_iter()
        .find(|a| a.to_string().contains("/quic-v1") == quic)
        .expect("a listen address of that kind")
}

/// The security of `a`'s one connection to `b` ("/quic-v1" for QUIC).
fn security(a: &Host, b: PeerId) -> String {
    let conns = a.connections(&b);
    assert_eq!(conns.len(), 1, "one connection, the others cancelled");
    conns[0].1.security.clone()
}

/// A UDP port on which nobody answers (the socket is kept, so nothing else takes it).
fn silent_udp() -> (std::net::UdpSocket, Multiaddr) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let addr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
        .parse()
        .unwrap();
    (socket, addr)
}

/// A TCP port on which nobody listens any more (connections to it are refused).
fn closed_tcp() -> Multiaddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_host_listens_on_tcp_and_quic_with_one_call() {
    let b = listener().await;
    let addrs = b.listen_addrs();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let quic = of_kind(&b, true);
    let tcp = of_kind(&b, false);
    assert!(tcp.to_string().contains("/tcp/"), "{tcp}");
    assert!(quic.iter().any(|p| matches!(p, Protocol::Udp(_))), "{quic}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_knows_both_reaches_it_over_quic() {
    let b = listener().await;
    let a = dialer(Duration::from_secs(2)).await;
    tokio::time::timeout(WAIT, a.connect(b.peer_id(), b.listen_addrs()))
        .await
        .expect("in time")
        .expect("connected");
    assert_eq!(security(&a, b.peer_id()), "/quic-v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_quic_listener_gone_it_is_reached_over_tcp() {
    let b = listener().await;
    let tcp = of_kind(&b, false);

    // A QUIC address where nobody answers: the QUIC attempt hangs until TCP wins.
    let (_socket, silent) = silent_udp();
    let a = dialer(Duration::from_millis(100)).await;
    tokio::time::timeout(WAIT, a.connect(b.peer_id(), vec![silent, tcp.clone()]))
        .await
        .expect("the TCP attempt won; the QUIC one did not hold the dial")
        .expect("connected");
    assert_eq!(security(&a, b.peer_id()), "/noise");

    // A closed UDP port.
    let closed = {
        let (socket, addr) = silent_udp();
        drop(socket);
        addr
    };
    let a = dialer(Duration::from_millis(100)).await;
    tokio::time::timeout(WAIT, a.connect(b.peer_id(), vec![closed, tcp]))
        .await
        .expect("in time")
        .expect("connected");
    assert_eq!(security(&a, b.peer_id()), "/noise");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raced_at_once_one_connection_is_kept() {
    let b = listener().await;
    // Loopback's default: QUIC and TCP started at once.
    let a = dialer(Duration::ZERO).await;
    tokio::time::timeout(WAIT, a.connect(b.peer_id(), b.listen_addrs()))
        .await
        .expect("in time")
        .expect("connected");
    let kept = security(&a, b.peer_id());
    assert!(kept == "/quic-v1" || kept == "/noise", "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_offers_tls_beside_noise() {
    let b = listener().await;
    let key = Keypair::generate_ed25519();
    let tls_only = libp2p_transport_tcp::TcpTransport::new()
        .upgrade()
        .authenticate(libp2p_tls::Tls::new(key.clone()))
        .multiplex(libp2p_yamux::Yamux::default());
    let a = Host::builder(key)
        .build_with_transport(tls_only)
        .await
        .unwrap();
    let addr = of_kind(&b, false).with(Protocol::P2p(b.peer_id()));
    tokio::time::timeout(WAIT, a.dial(addr))
        .await
        .expect("in time")
        .expect("dialed");
    assert_eq!(security(&a, b.peer_id()), "/tls/1.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_address_is_listed_then_backed_off() {
    let a = dialer(Duration::ZERO).await;
    let peer = Keypair::generate_ed25519().public().to_peer_id();
    let dead = vec![closed_tcp(), closed_tcp()];
    let err = tokio::time::timeout(WAIT, a.connect(peer, dead.clone()))
        .await
        .expect("in time")
        .unwrap_err();
    let DialError::Failed { attempts, .. } = &err else {
        panic!("expected every address to fail: {err:?}");
    };
    let mut tried: Vec<Multiaddr> = attempts.iter().map(|t| t.addr.clone()).collect();
    tried.sort();
    let mut expected: Vec<Multiaddr> = dead
        .iter()
        .map(|a| a.clone().with(Protocol::P2p(peer)))
        .collect();
    expected.sort();
    assert_eq!(tried, expected, "each address with its own error");

    // Right after, both are backed off: not dialed, but listed with the error that put them
    // there.
    let err = a.connect(peer, Vec::new()).await.unwrap_err();
    let DialError::BackedOff { attempts, .. } = &err else {
        panic!("expected a back-off: {err:?}");
    };
    assert_eq!(attempts.len(), 2);

    // An explicit dial of the address tries it all the same.
    let explicit = a.dial(expected[0].clone()).await.unwrap_err();
    assert!(matches!(explicit, DialError::Failed { .. }), "{explicit:?}");

    // A backed-off address does not hold up another that works.
    let b = listener().await;
    let live = of_kind(&b, false);
    let dead_b = closed_tcp();
    a.connect(b.peer_id(), vec![dead_b.clone()])
        .await
        .unwrap_err();
    tokio::time::timeout(WAIT, a.connect(b.peer_id(), vec![live]))
        .await
        .expect("in time")
        .expect("the live address is dialed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_share_one_dial() {
    let b = listener().await;
    let a = dialer(Duration::ZERO).await;
    a.peerstore()
        .add_addrs(&b.peer_id(), b.listen_addrs(), Duration::from_secs(60));
    let (x, y) = tokio::time::timeout(
        WAIT,
        futures::future::join(
            a.new_stream(b.peer_id(), &["/ipfs/id/1.0.0"]),
            a.new_stream(b.peer_id(), &["/ipfs/id/1.0.0"]),
        ),
    )
    .await
    .expect("in time");
    let (x, y) = (x.expect("first"), y.expect("second"));
    assert_eq!(x.connection_id(), y.connection_id(), "one connection");
    assert_eq!(a.connections(&b.peer_id()).len(), 1);
}
