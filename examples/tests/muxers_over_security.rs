//! Every muxer passes the core muxer kit over real TCP under every security protocol.

use libp2p_core::testkit::{muxer_kit, MuxerKitConfig};
use libp2p_core::{Keypair, SecurityUpgrade};
use libp2p_mplex::Mplex;
use libp2p_noise::Noise;
use libp2p_plaintext::Plaintext;
use libp2p_secio::Secio;
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_yamux::Yamux;

async fn tcp_pair() -> (TcpSocket, TcpSocket) {
    // TcpTransport sets TCP_NODELAY on both ends.
    libp2p_core::testkit::transport_pair(
        &TcpTransport::new(),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
    )
    .await
}

async fn secured<S: SecurityUpgrade<TcpSocket>>(
    make: impl Fn(Keypair) -> S,
) -> (S::Output, S::Output) {
    libp2p_core::testkit::secured_pair(make, tcp_pair().await).await
}

/// The full kit: 1,000 streams of 64 KiB, 16 MiB each way on one stream, under encryption.
fn config() -> MuxerKitConfig {
    MuxerKitConfig::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mplex_over_plaintext() {
    muxer_kit(Mplex::default(), || secured(Plaintext::new), config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yamux_over_plaintext() {
    muxer_kit(Yamux::default(), || secured(Plaintext::new), config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mplex_over_secio() {
    muxer_kit(Mplex::default(), || secured(Secio::new), config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yamux_over_secio() {
    muxer_kit(Yamux::default(), || secured(Secio::new), config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mplex_over_noise() {
    muxer_kit(Mplex::default(), || secured(Noise::new), config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yamux_over_noise() {
    muxer_kit(Yamux::default(), || secured(Noise::new), config()).await;
}
