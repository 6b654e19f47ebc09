//! TCP + TLS + Yamux against a foreign peer, by hand: dial one and echo, or listen and serve
//! `/echo/1.0.0`.
//!
//! ```text
//! interop/rust-peer/target/release/rust-peer --listen /ip4/127.0.0.1/tcp/0 --security tls --muxer yamux
//! cargo run -p libp2p-tls --example tls_echo -- dial <the LISTEN address> [BYTES]
//!
//! cargo run -p libp2p-tls --example tls_echo -- listen [/ip4/127.0.0.1/tcp/0]
//! interop/rust-peer/target/release/rust-peer --dial <the LISTEN address> --security tls --muxer yamux
//! ```
//!
//! `dial` prints `OK <peer> <bytes>` once the echo came back whole; `listen` prints
//! `LISTEN <address>/p2p/<id>` and serves for 120 s.

use std::time::Duration;

use futures::StreamExt;
use libp2p_core::multistream::{dialer_select, listener_select, Config, Version};
use libp2p_core::testkit::{echo_roundtrip, pattern, serve_echo};
use libp2p_core::{
    Keypair, ListenerEvent, Multiaddr, Protocol, StreamMuxer, Transport, TransportExt,
};
use libp2p_tls::Tls;
use libp2p_transport_tcp::TcpTransport;
use libp2p_yamux::Yamux;

const ECHO: &str = "/echo/1.0.0";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let transport = TcpTransport::new()
        .upgrade()
        .authenticate(Tls::new(key))
        .multiplex(Yamux::default());
    match args.first().map(String::as_str) {
        Some("dial") => {
            let addr: Multiaddr = args
                .get(1)
                .expect("an address")
                .parse()
                .expect("a multiaddr");
            let bytes: usize = args
                .get(2)
                .map_or(1 << 20, |b| b.parse().expect("a number"));
            let run = async {
                let libp2p_core::Connection { peer, muxer, .. } =
                    transport.dial(addr).await.expect("dial");
                let stream = muxer.open().await.expect("open a stream");
                let (_, stream) = dialer_select(stream, [ECHO], Version::V1, &Config::default())
                    .await
                    .expect("negotiate /echo/1.0.0");
                echo_roundtrip(stream, &pattern(3, bytes)).await;
                println!("OK {peer} {bytes}");
                let _ = muxer.close().await;
            };
            tokio::time::timeout(Duration::from_secs(60), run)
                .await
                .expect("done within 60 s");
        }
        Some("listen") => {
            let addr: Multiaddr = args
                .get(1)
                .map_or("/ip4/127.0.0.1/tcp/0", String::as_str)
                .parse()
                .expect("a multiaddr");
            let mut listener = transport.listen(addr).expect("listen");
            let serve = async {
                while let Some(event) = listener.next().await {
                    match event {
                        ListenerEvent::NewAddress(a) => {
                            println!("LISTEN {}", a.with(Protocol::P2p(id)))
                        }
                        ListenerEvent::Incoming { pending, .. } => {
                            let accept = transport.accept(pending);
                            tokio::spawn(async move {
                                let libp2p_core::Connection { peer, muxer, .. } = match accept.await
                                {
                                    Ok(c) => c,
                                    Err(e) => return eprintln!("accept failed: {e}"),
                                };
                                eprintln!("connection from {peer}");
                                while let Ok(stream) = muxer.accept().await {
                                    tokio::spawn(async move {
                                        let config = Config::default();
                                        match listener_select(stream, &[ECHO][..], &config).await {
                                            Ok((_, s)) => match serve_echo(s).await {
                                                Ok(n) => eprintln!("echoed {n} bytes for {peer}"),
                                                Err(e) => eprintln!("echo failed: {e}"),
                                            },
                                            Err(e) => eprintln!("not negotiated: {e}"),
                                        }
                                    });
                                }
                            });
                        }
                        _ => {}
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(120), serve).await;
        }
        _ => eprintln!("usage: tls_echo dial ADDR/p2p/ID [BYTES] | tls_echo listen [ADDR]"),
    }
}
