//! The gossipsub service on real hosts in one process, over the muxed memory transport: N
//! hosts (100 and 1,000 by default) on a random connected topology, one publisher at a steady
//! rate; then again with 10% of the hosts killed half way through the run. Prints, per run,
//! the delivery ratio, latency p50 / p99 (in ms and in heartbeats), duplicates per delivered
//! message and bytes sent per message per host. interop/rust-peer's `gossip-sim` runs the
//! same scenario on rust-libp2p 0.57's gossipsub and prints the same line.
//!
//! Duplicates are the routers' own count of copies already seen; bytes are those our
//! writers put on the streams (RPC frames and their length prefixes: the memory transport
//! adds no framing of its own).
//!
//! Knobs (environment): GS_HOSTS (comma-separated sizes, default "100,1000"), GS_LINKS (random
//! links each host dials besides the one that keeps the graph connected, default 3), GS_RATE
//! (messages a second, default 5), GS_MESSAGES (per run, default 30), GS_SIZE (payload bytes,
//! default 256), GS_HEARTBEAT_MS (default 1000), GS_SEED (default 1). A run ends five
//! heartbeats after its last publication, or later while deliveries still arrive (at most a
//! minute more).
//!
//! `cargo bench -p libp2p-gossipsub --bench hosts`

#[path = "../tests/common/lcg.rs"]
mod lcg;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lcg::Lcg;
use libp2p_core::MuxedMemoryTransport;
use libp2p_gossipsub::{service, Pubsub, ServiceConfig};
use libp2p_host::{Host, Keypair};

const TOPIC: &str = "sim";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    links: usize,
    rate: u64,
    messages: u32,
    size: usize,
    heartbeat: Duration,
    seed: u64,
}

/// Deliveries: host, message index, latency.
type Deliveries = Arc<Mutex<Vec<(usize, u32, Duration)>>>;

struct Node {
    host: Host,
    pubsub: Pubsub,
    reader: tokio::task::JoinHandle<()>,
}

async fn node(i: usize, knobs: &Knobs, start: Instant, deliveries: Deliveries) -> Node {
    let key = Keypair::generate_ed25519();
    let mut config = ServiceConfig::default();
    config.router.heartbeat_interval = knobs.heartbeat;
    let (gossipsub, pubsub) = service(config, key.clone()).expect("a valid config");
    let host = Host::builder(key.clone())
        .listen_on("/memory/0".parse().expect("an address"))
        .service(gossipsub)
        .build_with_transport(MuxedMemoryTransport::new(key.public().to_peer_id()))
        .await
        .expect("a host");
    let mut sub = pubsub.subscribe(TOPIC).await.expect("subscribed");
    let reader = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let Ok(m) = m else { continue };
            if m.data.len() >= 12 {
                let index = u32::from_be_bytes(m.data[..4].try_into().expect("4 bytes"));
                let micros = u64::from_be_bytes(m.data[4..12].try_into().expect("8 bytes"));
                let latency = start
                    .elapsed()
                    .saturating_sub(Duration::from_micros(micros));
                deliveries.lock().unwrap().push((i, index, latency));
            }
        }
    });
    Node {
        host,
        pubsub,
        reader,
    }
}

/// The routers' duplicates and the bytes written, summed over the live hosts.
async fn totals(nodes: &[Option<Node>]) -> (u64, u64) {
    let mut dups = 0;
    let mut bytes = 0;
    for n in nodes.iter().flatten() {
        if let Ok(s) = n.pubsub.stats().await {
            dups += s.router.duplicates;
            bytes += s.bytes_sent;
        }
    }
    (dups, bytes)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    label: &str,
    nodes: &mut [Option<Node>],
    deliveries: &Deliveries,
    knobs: &Knobs,
    start: Instant,
    first: u32,
    kill_half_way: Option<&[usize]>,
) {
    deliveries.lock().unwrap().clear();
    let mut meshes = Vec::new();
    for n in nodes.iter().flatten() {
        meshes.push(n.pubsub.mesh_peers(TOPIC).await.map_or(0, |m| m.len()));
    }
    println!(
        "ours {label}: mean mesh {:.1}, {} hosts with an empty mesh",
        meshes.iter().sum::<usize>() as f64 / meshes.len().max(1) as f64,
        meshes.iter().filter(|m| **m == 0).count()
    );
    let (dups0, bytes0) = totals(nodes).await;
    // What the victims had sent and seen before they died still counts.
    let mut dead = (0u64, 0u64);
    let wall = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / knobs.rate.max(1)));
    for k in 0..knobs.messages {
        tick.tick().await;
        if k == knobs.messages / 2 {
            for v in kill_half_way.unwrap_or(&[]) {
                if let Some(n) = nodes[*v].take() {
                    if let Ok(s) = n.pubsub.stats().await {
                        dead.0 += s.router.duplicates;
                        dead.1 += s.bytes_sent;
                    }
                    n.reader.abort();
                    n.host.close().await;
                }
            }
        }
        let mut data = vec![0u8; knobs.size.max(12)];
        data[..4].copy_from_slice(&(first + k).to_be_bytes());
        data[4..12].copy_from_slice(&(start.elapsed().as_micros() as u64).to_be_bytes());
        let publisher = nodes[0].as_ref().expect("the publisher lives");
        if let Err(e) = publisher.pubsub.publish(TOPIC, data).await {
            eprintln!("publish {k}: {e}");
        }
    }
    // Five heartbeats for gossip to finish what the mesh missed; then on while deliveries
    // still come (a loaded machine lags), until two heartbeats pass without one, for at most
    // a minute.
    tokio::time::sleep(knobs.heartbeat * 5).await;
    let draining = Instant::now();
    loop {
        let before = deliveries.lock().unwrap().len();
        tokio::time::sleep(knobs.heartbeat * 2).await;
        if deliveries.lock().unwrap().len() == before
            || draining.elapsed() > Duration::from_secs(60)
        {
            break;
        }
    }
    let (dups1, bytes1) = totals(nodes).await;
    let alive: Vec<usize> = (1..nodes.len()).filter(|i| nodes[*i].is_some()).collect();
    let all = deliveries.lock().unwrap().clone();
    let mut got: HashMap<(usize, u32), Duration> = HashMap::new();
    for (h, m, l) in &all {
        if nodes[*h].is_some() && (first..first + knobs.messages).contains(m) {
            got.entry((*h, *m)).or_insert(*l);
        }
    }
    let mut latencies: Vec<Duration> = got.values().copied().collect();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let expected = alive.len() * knobs.messages as usize;
    // Counters of the dead were read as they died; those before the run are subtracted.
    let dups = (dups1 + dead.0).saturating_sub(dups0);
    let bytes = (bytes1 + dead.1).saturating_sub(bytes0);
    let live_hosts = alive.len() + 1;
    let hb = knobs.heartbeat.as_secs_f64();
    println!(
        "ours {label}: {live_hosts} hosts alive, {} messages: delivery {:.2}% ({}/{expected}), \
         latency p50 {:.1} ms / p99 {:.1} ms ({:.3} / {:.3} heartbeats), \
         {:.2} duplicates per delivery, {:.0} bytes per message per host, {:.1} s wall",
        knobs.messages,
        100.0 * got.len() as f64 / expected.max(1) as f64,
        got.len(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        pct(0.5).as_secs_f64() / hb,
        pct(0.99).as_secs_f64() / hb,
        dups as f64 / all.len().max(1) as f64,
        bytes as f64 / knobs.messages as f64 / live_hosts as f64,
        wall.elapsed().as_secs_f64(),
    );
}

async fn scenario(n: usize, knobs: &Knobs) {
    let deliveries: Deliveries = Arc::default();
    let start = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(Some(node(i, knobs, start, deliveries.clone()).await));
    }
    // A random tree keeps the graph connected; then each host dials GS_LINKS random others.
    let mut rng = Lcg(knobs.seed.wrapping_mul(1000) + n as u64);
    let mut links = Vec::new();
    for i in 1..n {
        links.push((i, rng.next(i)));
    }
    for i in 0..n {
        for _ in 0..knobs.links {
            let j = rng.next(n);
            if j != i {
                links.push((i, j));
            }
        }
    }
    let connecting = Instant::now();
    let dials = links.iter().map(|(a, b)| {
        let from = nodes[*a].as_ref().expect("alive");
        let to = nodes[*b].as_ref().expect("alive").host.p2p_addrs()[0].clone();
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), from.host.dial(to)).await;
        }
    });
    futures::stream::iter(dials)
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let connected = connecting.elapsed();
    // Five heartbeats for the meshes.
    tokio::time::sleep(knobs.heartbeat * 5).await;
    let degree: usize = nodes
        .iter()
        .flatten()
        .map(|n| n.host.connected_peers().len())
        .sum();
    println!(
        "ours n={n}: {} links, mean degree {:.1}, connected in {:.1} s",
        links.len(),
        degree as f64 / n as f64,
        connected.as_secs_f64()
    );
    run(
        &format!("n={n}"),
        &mut nodes,
        &deliveries,
        knobs,
        start,
        0,
        None,
    )
    .await;
    let mut victims = Vec::new();
    while victims.len() < n / 10 {
        let v = 1 + rng.next(n - 1);
        if !victims.contains(&v) {
            victims.push(v);
        }
    }
    run(
        &format!("n={n}, 10% killed"),
        &mut nodes,
        &deliveries,
        knobs,
        start,
        knobs.messages,
        Some(&victims),
    )
    .await;
    for n in nodes.into_iter().flatten() {
        n.reader.abort();
        n.host.close().await;
    }
}

fn main() {
    let knobs = Knobs {
        links: knob("GS_LINKS", 3) as usize,
        rate: knob("GS_RATE", 5),
        messages: knob("GS_MESSAGES", 30) as u32,
        size: knob("GS_SIZE", 256) as usize,
        heartbeat: Duration::from_millis(knob("GS_HEARTBEAT_MS", 1000)),
        seed: knob("GS_SEED", 1),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let sizes = std::env::var("GS_HOSTS").unwrap_or_else(|_| "100,1000".into());
    runtime.block_on(async {
        for n in sizes
            .split(',')
            .filter_map(|s| s.trim().parse::<usize>().ok())
        {
            scenario(n.max(2), &knobs).await;
        }
    });
}
