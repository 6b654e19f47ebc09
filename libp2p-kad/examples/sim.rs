//! The protocol cores of N nodes in one process, wired in memory with simulated latency (no
//! host, no transport): every node joins through three others, twenty keys are provided,
//! and each is looked up from twenty other nodes. Prints hops and requests per lookup
//! (median, p99) and the resident memory per node.
//!
//! `cargo run -p libp2p-kad --release --example sim -- 1000`

#[path = "../tests/sim/mod.rs"]
mod sim;

use libp2p_kad::{Config, QueryResult};
use sim::{quantile, Net};

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let started = std::time::Instant::now();
    let rss_before = rss_bytes().unwrap_or(0);
    let mut net = Net::new(n, Config::default().with_bootstrap_interval(None), 42);
    let mut join_requests = Vec::new();
    for i in 1..n {
        for _ in 0..3.min(i) {
            let j = net.rng.below(i);
            net.introduce(i, j);
        }
        let me = net.ids[i];
        let (result, stats) = net.query(i, |k, now| k.find_node(&me, now).unwrap());
        assert!(matches!(result, QueryResult::FindNode(Ok(_))), "{result:?}");
        join_requests.push(stats.requests);
    }
    let join_messages = net.messages;
    let rss_after = rss_bytes().unwrap_or(0);
    let table: Vec<u32> = net
        .nodes
        .iter()
        .map(|k| k.routing_table().len() as u32)
        .collect();

    let mut keys = Vec::new();
    for p in 0..20 {
        let provider = net.rng.below(n);
        let key = format!("key-{p}").into_bytes();
        let (result, _) = net.query(provider, |k, now| {
            k.start_providing(key.clone(), now).unwrap()
        });
        assert!(
            matches!(result, QueryResult::AddProvider(Ok(_))),
            "{result:?}"
        );
        keys.push((key, provider));
    }
    let (mut hops, mut requests, mut found) = (Vec::new(), Vec::new(), 0);
    let lookups = keys.len() * 20;
    for (key, provider) in &keys {
        for _ in 0..20 {
            let from = (provider + 1 + net.rng.below(n - 1)) % n;
            let (result, stats) = net.query(from, |k, now| {
                k.get_providers(key.clone(), Some(1), now).unwrap()
            });
            if let QueryResult::GetProviders(Ok(list)) = result {
                if list.iter().any(|p| p.id == net.ids[*provider]) {
                    found += 1;
                }
            }
            hops.push(stats.found_at_hop.unwrap_or(u32::MAX));
            requests.push(stats.requests);
        }
    }
    let mut table = table;
    println!("N = {n}");
    println!(
        "  join: {join_messages} requests in all, per join median {} p99 {}",
        quantile(&mut join_requests, 0.5),
        quantile(&mut join_requests, 0.99)
    );
    println!(
        "  routing table size: median {} p99 {} max {}",
        quantile(&mut table, 0.5),
        quantile(&mut table, 0.99),
        table.iter().max().unwrap()
    );
    println!("  providers found: {found} of {lookups} lookups");
    println!(
        "  GET_PROVIDERS hops to the first provider: median {} p99 {}",
        quantile(&mut hops, 0.5),
        quantile(&mut hops, 0.99)
    );
    println!(
        "  GET_PROVIDERS requests per lookup: median {} p99 {}",
        quantile(&mut requests, 0.5),
        quantile(&mut requests, 0.99)
    );
    println!(
        "  resident memory per node (cores, store, simulator): {} KiB",
        rss_after.saturating_sub(rss_before) / 1024 / n as u64
    );
    println!("  wall time {:?}", started.elapsed());
}
