//! The host's metrics move with what it does: connections both ways, dials that fail by
//! fault class, streams and bytes per protocol, ping round trips, refused streams.
#![cfg(feature = "metrics")]

use libp2p_host::metrics::{Metrics, Registry};
use libp2p_host::{Host, Keypair};
use prometheus_client::encoding::text::encode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = "/echo/1.0.0";

async fn host_with_metrics() -> (Host, Registry) {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let host = Host::builder(Keypair::generate_ed25519())
        .metrics(metrics)
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .build()
        .await
        .unwrap();
    (host, registry)
}

fn text(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).unwrap();
    out
}

fn value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (at most 2 s) until the sample `prefix` has `want`: what the other side does reaches
/// us a moment after its call returns.
async fn eventually(registry: &Registry, prefix: &str, want: f64) {
    for _ in 0..100 {
        if value(&text(registry), prefix) == Some(want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let t = text(registry);
    assert_eq!(value(&t, prefix), Some(want), "{t}");
}

#[tokio::test]
async fn metrics_count_connections_streams_bytes_pings_and_refusals() {
    let (a, registry) = host_with_metrics().await;
    let b = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .build()
        .await
        .unwrap();
    b.set_stream_handler(ECHO, |mut s| async move {
        let mut buf = vec![0u8; 1000];
        s.read_exact(&mut buf).await?;
        s.write_all(&buf).await?;
        s.shutdown().await?;
        Ok(())
    })
    .unwrap();

    a.dial(b.p2p_addrs()[0].clone()).await.unwrap();
    let mut s = a.new_stream(b.peer_id(), &[ECHO]).await.unwrap();
    s.write_all(&[7u8; 1000]).await.unwrap();
    s.flush().await.unwrap();
    let mut back = vec![0u8; 1000];
    s.read_exact(&mut back).await.unwrap();
    drop(s);
    a.ping(b.peer_id()).await.unwrap();
    // b proposes a protocol a does not accept: a refuses the stream.
    assert!(b
        .new_stream(a.peer_id(), &["/nothing/1.0.0"])
        .await
        .is_err());
    // A dial to a port where nobody listens fails for the network's reasons.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert!(a
        .dial(format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap())
        .await
        .is_err());

    let t = text(&registry);
    let conn =
        "{direction=\"outbound\",transport=\"tcp\",security=\"/noise\",muxer=\"/yamux/1.0.0\"}";
    assert_eq!(
        value(&t, &format!("libp2p_connections_opened_total{conn}")),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        value(&t, &format!("libp2p_connections{conn}")),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        value(&t, "libp2p_dial_attempts_total{transport=\"tcp\"}"),
        Some(2.0),
        "{t}"
    );
    assert_eq!(
        value(
            &t,
            "libp2p_dial_failures_total{transport=\"tcp\",fault=\"network\"}"
        ),
        Some(1.0),
        "{t}"
    );
    let echo = format!("{{protocol=\"{ECHO}\",direction=");
    assert_eq!(
        value(&t, &format!("libp2p_streams_total{echo}\"outbound\"}}")),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        value(&t, &format!("libp2p_stream_bytes_total{echo}\"out\"}}")),
        Some(1000.0),
        "{t}"
    );
    assert_eq!(
        value(&t, &format!("libp2p_stream_bytes_total{echo}\"in\"}}")),
        Some(1000.0),
        "{t}"
    );
    assert_eq!(value(&t, "libp2p_ping_rtt_seconds_count"), Some(1.0), "{t}");
    eventually(
        &registry,
        "libp2p_refused_total{what=\"stream\",reason=\"not_supported\"}",
        1.0,
    )
    .await;

    b.close().await;
    // The close reaches a: its gauge goes back to zero.
    eventually(&registry, &format!("libp2p_connections{conn}"), 0.0).await;
    let t = text(&registry);
    assert_eq!(
        value(&t, &format!("libp2p_connections{conn}")),
        Some(0.0),
        "{t}"
    );
    assert_eq!(
        value(&t, "libp2p_connections_closed_total{direction=\"outbound\",transport=\"tcp\",cause=\"remote\"}"),
        Some(1.0),
        "{t}"
    );
}
