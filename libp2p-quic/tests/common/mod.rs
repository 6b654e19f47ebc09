//! Helpers shared by the QUIC tests.
#![allow(dead_code)]

use futures::StreamExt;
use libp2p_core::testkit::within;
use libp2p_core::{Connection, Keypair, ListenerEvent, Multiaddr, Transport};
use libp2p_quic::{Config, QuicListener, QuicMuxer, QuicTransport};

/// A transport of a fresh identity.
pub fn transport(config: Config) -> QuicTransport {
    QuicTransport::with_config(Keypair::generate_ed25519(), config)
}

/// Listens on loopback and returns the listener with its address.
pub async fn listen(t: &QuicTransport) -> (QuicListener, Multiaddr) {
    libp2p_core::testkit::listen_on(t, "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()).await
}

/// The next inbound connection of `listener`, accepted.
pub async fn accept_next(t: &QuicTransport, listener: &mut QuicListener) -> Connection<QuicMuxer> {
    loop {
        match within(20, "inbound connection", listener.next()).await {
            Some(ListenerEvent::Incoming { pending, .. }) => {
                return t.accept(pending).await.expect("accept")
            }
            Some(_) => continue,
            None => panic!("listener ended"),
        }
    }
}

/// A connected pair of connections (dialer's, listener's) between two fresh identities.
pub async fn connected(config: Config) -> (Connection<QuicMuxer>, Connection<QuicMuxer>) {
    let (a, b) = (transport(config.clone()), transport(config));
    let (mut listener, addr) = listen(&b).await;
    let addr = addr.with(libp2p_core::Protocol::P2p(b.local_peer_id()));
    let (dialed, accepted) = within(
        20,
        "connect",
        futures::future::join(a.dial(addr), accept_next(&b, &mut listener)),
    )
    .await;
    (dialed.expect("dial"), accepted)
}
