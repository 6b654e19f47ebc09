//! The router core in a simulated network (no transport: RPCs move through the codec in
//! memory, each link taking a fixed 20 ms). 100 and 1,000 routers on a random connected
//! topology, one publisher at 10 messages a second; then again with 10% of the routers
//! killed. Prints the delivery ratio, latency p50 / p99 (in time and in 1 s heartbeats),
//! duplicates per delivered message and bytes sent per message per router.
//!
//! `cargo bench -p libp2p-gossipsub --bench sim`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::lcg::Lcg;
use common::*;
use libp2p_gossipsub::Config;

fn run(net: &mut Net, publisher: usize, messages: usize, interval: Duration, label: &str) {
    let t = topic();
    let alive: Vec<usize> = (0..net.nodes.len())
        .filter(|i| net.nodes[*i].alive && *i != publisher)
        .collect();
    let before: Vec<usize> = net.nodes.iter().map(|n| n.delivered.len()).collect();
    let dups_before: u64 = net.nodes.iter().map(|n| n.router.stats().duplicates).sum();
    let bytes_before: u64 = net.bytes_sent.iter().sum();
    let started = Instant::now();
    let mut published = Vec::new();
    for k in 0..messages {
        let at = net.now;
        let id = net.publish(publisher, &t, format!("{label} {k}").into_bytes());
        published.push((id, at));
        net.advance(interval);
    }
    for _ in 0..5 {
        net.advance(Duration::from_secs(1));
    }
    let wall = started.elapsed();
    let mut latencies = Vec::new();
    let mut delivered = 0usize;
    for (id, at) in &published {
        for i in &alive {
            let node = &net.nodes[*i];
            for (n, (d, _)) in node.delivered.iter().enumerate().skip(before[*i]) {
                if d == id {
                    delivered += 1;
                    latencies.push(node.delivered_at[n].saturating_duration_since(*at));
                }
            }
        }
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let dups: u64 = net
        .nodes
        .iter()
        .map(|n| n.router.stats().duplicates)
        .sum::<u64>()
        - dups_before;
    let bytes: u64 = net.bytes_sent.iter().sum::<u64>() - bytes_before;
    let expected = published.len() * alive.len();
    println!(
        "{label}: {} routers alive, {} messages: delivery {:.2}% ({delivered}/{expected}), \
         latency p50 {:.0} ms / p99 {:.0} ms ({:.2} / {:.2} heartbeats), \
         {:.2} duplicates per delivery, \
         {:.0} bytes per message per router, {:.1} s wall",
        alive.len() + 1,
        published.len(),
        100.0 * delivered as f64 / expected as f64,
        pct(0.5) * 1000.0,
        pct(0.99) * 1000.0,
        pct(0.5),
        pct(0.99),
        dups as f64 / delivered.max(1) as f64,
        bytes as f64 / published.len() as f64 / (alive.len() + 1) as f64,
        wall.as_secs_f64(),
    );
}

fn scenario(n: usize, links: usize, messages: usize) {
    let mut net = Net::new(n, 5, |_| Config::default());
    net.latency = Duration::from_millis(20);
    let mut rng = Lcg(n as u64);
    for i in 1..n {
        net.connect(i, rng.next(i));
    }
    for i in 0..n {
        for _ in 0..links {
            let j = rng.next(n);
            if j != i {
                net.connect(i, j);
            }
        }
    }
    net.subscribe_all(&topic());
    for _ in 0..5 {
        net.advance(Duration::from_secs(1));
    }
    let interval = Duration::from_millis(100);
    run(&mut net, 0, messages, interval, &format!("n={n}"));
    let mut killed = 0;
    while killed < n / 10 {
        let i = 1 + rng.next(n - 1);
        if net.nodes[i].alive {
            net.kill(i);
            killed += 1;
        }
    }
    run(
        &mut net,
        0,
        messages,
        interval,
        &format!("n={n}, 10% killed"),
    );
}

fn main() {
    scenario(100, 4, 50);
    scenario(1000, 4, 20);
}
