//! The muxer kit over real QUIC connections on loopback.

mod common;

use libp2p_core::testkit::{muxer_kit_pairs, MuxerKitConfig};
use libp2p_quic::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_connections_pass_the_muxer_kit() {
    muxer_kit_pairs(
        || async {
            let (dialed, accepted) = common::connected(Config::default()).await;
            (dialed.muxer, accepted.muxer)
        },
        MuxerKitConfig::default(),
    )
    .await;
}
