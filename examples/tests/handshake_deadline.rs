//! One deadline for every handshake, the upgrade pipeline's: the security protocols keep no
//! timer of their own. A peer that agrees on a security protocol and then says nothing is cut
//! off by the pipeline's timeout, for every security protocol and in both roles.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p_core::multistream::{self, Version};
use libp2p_core::{
    Keypair, ListenerEvent, Multiaddr, Negotiated, Protocol, SecurityUpgrade, Transport,
    TransportError, TransportExt, UpgradeInfo,
};
use libp2p_noise::Noise;
use libp2p_plaintext::Plaintext;
use libp2p_secio::Secio;
use libp2p_tls::Tls;
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::TokioAsyncReadCompatExt;

/// The pipeline's bound in these tests.
const LIMIT: Duration = Duration::from_millis(400);
/// How late past [`LIMIT`] the failure may come on a loaded machine.
const SLACK: Duration = Duration::from_secs(3);
/// How long the silent peer holds its socket: longer than the limit and the slack.
const HOLD: Duration = Duration::from_secs(10);

fn name_of(security: &impl UpgradeInfo) -> &'static str {
    security
        .protocol_names()
        .next()
        .expect("a security upgrade names its protocol")
}

fn expect_cut_off<T: std::fmt::Debug>(
    name: &str,
    role: &str,
    result: Result<T, TransportError>,
    elapsed: Duration,
) {
    assert!(
        matches!(result, Err(TransportError::Timeout(limit)) if limit == LIMIT),
        "{name} as {role}: {result:?}"
    );
    assert!(
        elapsed >= LIMIT && elapsed < LIMIT + SLACK,
        "{name} as {role}: cut off after {elapsed:?}"
    );
}

/// We dial; the listener agrees on the security protocol and then stays silent.
async fn dialer_is_cut_off<S: SecurityUpgrade<Negotiated<TcpSocket>>>(security: S) {
    let name = name_of(&security);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let agreed = multistream::listener_select(
            socket.compat(),
            &[name][..],
            &multistream::Config::default(),
        )
        .await;
        let (protocol, socket) = agreed.expect("the dialer proposes our protocol");
        assert_eq!(protocol, name);
        tokio::time::sleep(HOLD).await;
        drop(socket);
    });
    let transport = TcpTransport::new()
        .upgrade()
        .timeout(LIMIT)
        .authenticate(security);
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let start = Instant::now();
    let result = transport.dial(addr).await;
    expect_cut_off(
        name,
        "dialer",
        result.map(|(peer, _)| peer),
        start.elapsed(),
    );
    silent.abort();
}

/// We listen; the dialer agrees on the security protocol and then stays silent.
async fn listener_is_cut_off<S: SecurityUpgrade<Negotiated<TcpSocket>>>(security: S) {
    let name = name_of(&security);
    let transport = TcpTransport::new()
        .upgrade()
        .timeout(LIMIT)
        .authenticate(security);
    let mut listener = transport
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = match listener.next().await {
        Some(ListenerEvent::NewAddress(addr)) => addr,
        _ => panic!("expected the bound address first"),
    };
    let port = addr
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP address");
    let silent = tokio::spawn(async move {
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let agreed = multistream::dialer_select(
            socket.compat(),
            [name],
            Version::V1,
            &multistream::Config::default(),
        )
        .await;
        let (protocol, socket) = agreed.expect("the listener accepts its own protocol");
        assert_eq!(protocol, name);
        tokio::time::sleep(HOLD).await;
        drop(socket);
    });
    let pending = loop {
        match listener.next().await {
            Some(ListenerEvent::Incoming { pending, .. }) => break pending,
            Some(_) => continue,
            None => panic!("the listener ended"),
        }
    };
    let start = Instant::now();
    let result = transport.accept(pending).await;
    expect_cut_off(
        name,
        "listener",
        result.map(|(peer, _)| peer),
        start.elapsed(),
    );
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_security_handshake_is_bounded_by_the_pipeline() {
    let key = Keypair::generate_ed25519();
    dialer_is_cut_off(Plaintext::new(key.clone())).await;
    listener_is_cut_off(Plaintext::new(key.clone())).await;
    dialer_is_cut_off(Secio::new(key.clone())).await;
    listener_is_cut_off(Secio::new(key.clone())).await;
    dialer_is_cut_off(Noise::new(key.clone())).await;
    listener_is_cut_off(Noise::new(key.clone())).await;
    dialer_is_cut_off(Tls::new(key.clone())).await;
    listener_is_cut_off(Tls::new(key)).await;
}
