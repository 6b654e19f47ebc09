//! A host whose Prometheus metrics are served over HTTP:
//! `metrics [--listen ADDR] [--metrics IP:PORT] [--dial ADDR]`. It prints `LISTEN <addr>` and
//! `METRICS http://IP:PORT/metrics`; with `--dial` it pings that peer every second, so the
//! connection, stream, byte and round-trip metrics move.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use libp2p_host::metrics::{Metrics, Registry};
use libp2p_host::{Host, Keypair, Multiaddr};
use prometheus_client::encoding::text::encode;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(examples::log_filter())
        .init();
    let mut listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;
    let mut http: SocketAddr = "127.0.0.1:9090".parse()?;
    let mut dial: Option<Multiaddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value.parse()?,
            "--metrics" => http = value.parse()?,
            "--dial" => dial = Some(value.parse()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let host = Host::builder(Keypair::generate_ed25519())
        .metrics(metrics)
        .listen_on(listen)
        .build()
        .await?;
    for addr in host.p2p_addrs() {
        println!("LISTEN {addr}");
    }

    let server = tokio::net::TcpListener::bind(http).await?;
    println!("METRICS http://{}/metrics", server.local_addr()?);
    let registry = Arc::new(Mutex::new(registry));
    tokio::spawn(serve(server, registry));

    if let Some(addr) = dial {
        let peer = host.dial(addr).await?;
        loop {
            match host.ping(peer).await {
                Ok(rtt) => tracing::info!(?rtt, "ping"),
                Err(e) => tracing::warn!(error = %e, "ping failed"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Answers every request on `server` with the registry in the Prometheus text format.
async fn serve(server: tokio::net::TcpListener, registry: Arc<Mutex<Registry>>) {
    loop {
        let Ok((socket, _)) = server.accept().await else {
            // Out of descriptors, say: wait for some to close rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let registry = registry.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                let status = if request.uri().path() == "/metrics" {
                    encode(&mut body, &registry.lock().expect("lock"))
                        .map(|_| 200)
                        .unwrap_or(500)
                } else {
                    404
                };
                Response::builder()
                    .status(status)
                    .header(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .body(Full::new(Bytes::from(body)))
            }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection failed");
            }
        });
    }
}
