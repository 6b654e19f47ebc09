//! The metrics example serves the host's metrics over HTTP: a scrape after a peer connected
//! and pinged shows the connection, the ping stream, its bytes and the round trips.

use std::process::Stdio;
use std::time::Duration;

use libp2p_host::{Host, Keypair, Multiaddr};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

async fn scrape(url: &str) -> String {
    let authority = url
        .strip_prefix("http://")
        .and_then(|s| s.strip_suffix("/metrics"))
        .expect("a metrics url");
    let mut socket = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample whose line starts with `prefix`.
fn value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_scrape_shows_the_connection_the_pings_and_their_bytes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metrics"))
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the metrics example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut listen, mut url) = (None, None);
    while listen.is_none() || url.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the example starts")
            .unwrap()
            .expect("a line");
        if let Some(a) = line.strip_prefix("LISTEN ") {
            listen = Some(a.parse::<Multiaddr>().unwrap());
        } else if let Some(u) = line.strip_prefix("METRICS ") {
            url = Some(u.to_string());
        }
    }
    let (listen, url) = (listen.unwrap(), url.unwrap());

    let before = scrape(&url).await;
    assert!(
        value(
            &before,
            "libp2p_connections_opened_total{direction=\"inbound\""
        )
        .is_none(),
        "{before}"
    );

    let host = Host::builder(Keypair::generate_ed25519())
        .build()
        .await
        .unwrap();
    let peer = host.dial(listen).await.unwrap();
    for _ in 0..3 {
        host.ping(peer).await.unwrap();
    }

    let after = scrape(&url).await;
    let opened = "libp2p_connections_opened_total{direction=\"inbound\",transport=\"tcp\",security=\"/noise\",muxer=\"/yamux/1.0.0\"}";
    assert_eq!(value(&after, opened), Some(1.0), "{after}");
    let open = "libp2p_connections{direction=\"inbound\",transport=\"tcp\",security=\"/noise\",muxer=\"/yamux/1.0.0\"}";
    assert_eq!(value(&after, open), Some(1.0), "{after}");
    let pings = "libp2p_streams_total{protocol=\"/ipfs/ping/1.0.0\",direction=\"inbound\"}";
    assert_eq!(value(&after, pings), Some(1.0), "{after}");
    // Three pings of 32 bytes each, echoed.
    let read = "libp2p_stream_bytes_total{protocol=\"/ipfs/ping/1.0.0\",direction=\"in\"}";
    assert_eq!(value(&after, read), Some(96.0), "{after}");
    let written = "libp2p_stream_bytes_total{protocol=\"/ipfs/ping/1.0.0\",direction=\"out\"}";
    assert_eq!(value(&after, written), Some(96.0), "{after}");
    child.kill().await.unwrap();
}
