//! Listens on TCP + Noise + Yamux and serves `/echo/1.0.0`, for a foreign peer to dial: the
//! responder side of the interop check.
//!
//! ```text
//! cargo run -p libp2p-noise --example interop_listen [-- /ip4/127.0.0.1/tcp/0]
//! interop/rust-peer/target/release/rust-peer --dial <the LISTEN address> \
//!     --security noise --muxer yamux --bytes 1048576
//! ```
//!
//! Prints `LISTEN <address>/p2p/<id>` and serves until killed (or for 120 s).

use std::time::Duration;

use futures::StreamExt;
use libp2p_core::multistream::{listener_select, Config};
use libp2p_core::testkit::serve_echo;
use libp2p_core::{
    Keypair, ListenerEvent, Multiaddr, Protocol, StreamMuxer, Transport, TransportExt,
};
use libp2p_noise::Noise;
use libp2p_transport_tcp::TcpTransport;
use libp2p_yamux::Yamux;

#[tokio::main]
async fn main() {
    let addr: Multiaddr = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("a multiaddr"),
        None => "/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr"),
    };
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let transport = TcpTransport::new()
        .upgrade()
        .authenticate(Noise::new(key))
        .multiplex(Yamux::default());
    let mut listener = transport.listen(addr).expect("listen");
    let serve = async {
        while let Some(event) = listener.next().await {
            match event {
                ListenerEvent::NewAddress(a) => {
                    println!("LISTEN {}", a.with(Protocol::P2p(id)));
                }
                ListenerEvent::Incoming { pending, .. } => {
                    let accept = transport.accept(pending);
                    tokio::spawn(async move {
                        let libp2p_core::Connection { peer, muxer, .. } = match accept.await {
                            Ok(c) => c,
                            Err(e) => return eprintln!("accept failed: {e}"),
                        };
                        eprintln!("connection from {peer}");
                        while let Ok(stream) = muxer.accept().await {
                            tokio::spawn(async move {
                                let config = Config::default();
                                match listener_select(stream, &["/echo/1.0.0"][..], &config).await {
                                    Ok((_, stream)) => match serve_echo(stream).await {
                                        Ok(n) => eprintln!("echoed {n} bytes for {peer}"),
                                        Err(e) => eprintln!("echo failed: {e}"),
                                    },
                                    Err(e) => eprintln!("stream not negotiated: {e}"),
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
