//! Ping with the Host API: every host serves `/ipfs/ping/1.0.0` by default.
//!
//! ```sh
//! cargo run --release -p examples --bin ping -- --listen /ip4/127.0.0.1/tcp/4001
//! cargo run --release -p examples --bin ping -- --dial /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... --count 5
//! ```
#![forbid(unsafe_code)]

use std::time::Duration;

use examples::Error;
use libp2p_host::Multiaddr;
use libp2p_host::{Host, Keypair};

const USAGE: &str = "usage: ping --listen ADDR | ping --dial ADDR/p2p/ID [--count N]";

#[tokio::main]
async fn main() {
    examples::sample_main("ping", run).await;
}

async fn run(args: Vec<String>) -> Result<(), Error> {
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--listen", addr] => listen(addr.parse()?).await,
        ["--dial", addr] => dial(addr.parse()?, 4).await,
        ["--dial", addr, "--count", n] | ["--count", n, "--dial", addr] => {
            dial(addr.parse()?, n.parse()?).await
        }
        _ => Err(USAGE.into()),
    }
}

/// Just a host: it answers pings without being asked to.
async fn listen(addr: Multiaddr) -> Result<(), Error> {
    let host = examples::listening_host(addr).await?;
    examples::serve_until_ctrl_c(host).await
}

/// Pings the peer at `addr` `count` times, a second apart, and prints each round trip.
async fn dial(addr: Multiaddr, count: u32) -> Result<(), Error> {
    let host = Host::builder(Keypair::generate_ed25519()).build().await?;
    let peer = host.dial(addr).await?;
    for seq in 1..=count {
        if seq > 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let rtt = host.ping(peer).await?;
        println!(
            "ping {peer}: seq={seq} time={:.3} ms",
            rtt.as_secs_f64() * 1e3
        );
    }
    host.close().await;
    Ok(())
}
