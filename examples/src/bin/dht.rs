//! `dht`: a few hosts in one process form a Kademlia DHT; one provides a key, another finds it.
//!
//! ```text
//! cargo run -p examples --bin dht                      # four hosts on 127.0.0.1
//! cargo run -p examples --bin dht -- /ip4/…/tcp/4001/p2p/<id> …   # also join a real DHT
//! ```
//!
//! Bootstrap addresses given on the command line (the IPFS bootstrap list's `/ip4` and `/ip6`
//! entries, say) are added to the first host before it bootstraps, so the lookups go out
//! into that network too.
#![forbid(unsafe_code)]

use std::time::Duration;

use libp2p_host::{Host, Keypair, Multiaddr, PeerId};
use libp2p_kad::{sha256_multihash, Config, KadHandle, KadService, ServiceConfig};

const HOSTS: usize = 4;

async fn start_host() -> Result<(Host, KadHandle), Box<dyn std::error::Error>> {
    let (service, kad) = KadService::new(Config::default(), ServiceConfig::default());
    let host = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse()?)
        .service(service)
        .build()
        .await?;
    Ok((host, kad))
}

async fn add(kad: &KadHandle, addr: &Multiaddr) -> Result<(), Box<dyn std::error::Error>> {
    let (raw, peer) = libp2p_host::split_peer_id(addr);
    let peer: PeerId = peer.ok_or_else(|| format!("{addr} has no /p2p/<id>"))?;
    kad.add_peer(peer, vec![raw]).await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let external: Vec<Multiaddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;

    let mut nodes = Vec::new();
    for i in 0..HOSTS {
        let (host, kad) = start_host().await?;
        println!("host {i}: {}", host.p2p_addrs()[0]);
        nodes.push((host, kad));
    }

    // Host 0 is everyone's bootstrap peer (and knows the external ones, if any).
    for addr in &external {
        add(&nodes[0].1, addr).await?;
    }
    let first = nodes[0].0.p2p_addrs()[0].clone();
    for (i, (_, kad)) in nodes.iter().enumerate() {
        if i > 0 {
            add(kad, &first).await?;
        }
        if i > 0 || !external.is_empty() {
            let size = kad.bootstrap().await?;
            println!("host {i}: bootstrapped, {size} peers in its routing table");
        }
    }

    let key = sha256_multihash(b"hello dht");
    let provider = &nodes[1];
    let told = provider.1.start_providing(key.clone()).await?;
    println!("host 1: providing the key, announced to {told} peers");

    let (finder, kad) = &nodes[HOSTS - 1];
    let found =
        tokio::time::timeout(Duration::from_secs(30), kad.get_providers(key, Some(1))).await??;
    for p in &found {
        println!("host {}: provider {} at {:?}", HOSTS - 1, p.id, p.addrs);
    }
    let stream_ok = finder
        .connect(found[0].id, found[0].addrs.clone())
        .await
        .is_ok();
    println!("host {}: connected to the provider: {stream_ok}", HOSTS - 1);
    assert_eq!(found[0].id, provider.0.peer_id());

    for (host, _) in &nodes {
        host.close().await;
    }
    Ok(())
}
