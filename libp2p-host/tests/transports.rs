//! A host with TCP, QUIC and WebSocket: it listens on all three, and a peer dials it by any.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_host::{Host, Keypair};

const ECHO: &str = "/echo/1.0.0";

async fn three_transport_host() -> Host {
    Host::builder(Keypair::generate_ed25519())
        .with_quic()
        .with_websocket()
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap())
        .listen_on("/ip4/127.0.0.1/tcp/0/ws".parse().unwrap())
        .build()
        .await
        .expect("host")
}

/// Echoes once from `a` to `b`; returns the connection's security and remote address.
async fn echo_once(a: &Host, b: &Host) -> (String, String) {
    let stream = tokio::time::timeout(Duration::from_secs(20), a.new_stream(b.peer_id(), &[ECHO]))
        .await
        .expect("in time")
        .expect("new_stream");
    let (_, info) = a
        .connections(&b.peer_id())
        .into_iter()
        .find(|(id, _)| *id == stream.connection_id())
        .expect("the stream's connection");
    let mut io = stream.into_futures();
    io.write_all(b"over which?").await.unwrap();
    io.close().await.unwrap();
    let mut back = Vec::new();
    io.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"over which?");
    (info.security, info.remote_addr.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_quic_and_websocket_host_listens_on_all_and_is_reached_by_any() {
    let b = three_transport_host().await;
    b.set_stream_handler(ECHO, |stream| async move {
        let (mut r, mut w) = stream.into_futures().split();
        futures::io::copy(&mut r, &mut w).await?;
        w.close().await?;
        Ok(())
    })
    .unwrap();
    let addrs = b.listen_addrs();
    let quic: Vec<_> = addrs
        .iter()
        .filter(|a| a.to_string().contains("/quic-v1"))
        .cloned()
        .collect();
    let ws: Vec<_> = addrs
        .iter()
        .filter(|a| a.to_string().ends_with("/ws"))
        .cloned()
        .collect();
    let tcp: Vec<_> = addrs
        .iter()
        .filter(|a| a.to_string().contains("/tcp/") && !a.to_string().ends_with("/ws"))
        .cloned()
        .collect();
    assert_eq!(
        (quic.len(), tcp.len(), ws.len()),
        (1, 1, 1),
        "all reported: {addrs:?}"
    );

    let over_quic = three_transport_host().await;
    over_quic.connect(b.peer_id(), quic).await.unwrap();
    assert_eq!(echo_once(&over_quic, &b).await.0, "/quic-v1");

    let over_tcp = three_transport_host().await;
    over_tcp.connect(b.peer_id(), tcp).await.unwrap();
    let (security, remote) = echo_once(&over_tcp, &b).await;
    assert_ne!(security, "/quic-v1");
    assert!(!remote.ends_with("/ws"));

    let over_ws = three_transport_host().await;
    over_ws.connect(b.peer_id(), ws).await.unwrap();
    let (security, remote) = echo_once(&over_ws, &b).await;
    assert_ne!(security, "/quic-v1");
    assert!(remote.ends_with("/ws"), "{remote}");
    // Identify ran over QUIC as over TCP: b knows the QUIC peer's listen addresses.
    let learned = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if !b.peerstore().addrs(&over_quic.peer_id()).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(learned.is_ok(), "identify over QUIC fills the peerstore");
}
