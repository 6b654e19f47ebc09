//! N full Hosts in one process over libp2p_core's `MuxedMemoryTransport`, each running the
//! Kademlia service (and the host's identify and ping), on one tokio runtime: every host
//! bootstraps from three earlier ones, some keys are provided, and each is looked up from
//! other hosts. Prints the hops and messages of each kind of lookup (median, p99), whether
//! every provider record was found, the connections and tasks per host and the resident
//! memory per host. It is a bench, not a test (the CI runs the 50-host test in
//! `tests/service.rs`); `bench/kad-sim` runs it for N = 100, 1,000 and 10,000.
//!
//! ```text
//! cargo run -p libp2p-kad --release --example hosts -- 1000 [--keys 20] [--lookups 20]
//!     [--find-peer 200] [--parallel 8] [--seed 42] [--event-buffer K] [--peerstore K] [--rounds 2]
//!     [--low 32] [--high 96] [--grace 2] [--silence 1]
//! ```
//!
//! The hosts are set up as a deployment would set them, not with the limits lifted:
//! `max_connections` stays at the host's default (256), and each host's own connection
//! manager (`libp2p_host::Config::connection_manager`) runs with kubo's marks: above `--high` (96)
//! connections it trims to `--low` (32), sparing connections younger than `--grace`
//! and peers the kad service protects, at most once per `--silence`. Without it a
//! host of a large network ends up connected to most of the peers it ever asked, and the
//! 256 connections fill up. The output counts the connections the managers closed.
//!
//! The periods (seconds, fractions allowed) are kubo's 20 s and 10 s scaled to the bench's
//! pace: it compresses a deployment's arrivals, a thousand hosts joining in seconds rather
//! than over hours, so with kubo's 20 s grace every connection of the run would still be
//! young when the 256 fill up, no trim could run, and hosts would refuse each other.
//!
//! `--rounds` is the number of bootstrap rounds (default 2: in the first each host joins
//! through its three, in the second every host bootstraps again, so that the early ones learn
//! of the later ones, as a deployment's periodic refresh does). `--parallel` bounds the bootstraps and lookups run at once (8: more measure the
//! scheduler of a small machine rather than the DHT). `--event-buffer K` sets the hosts'
//! `libp2p_host::Config::event_buffer` (default 1,024), a ring each host allocates whole, to show how
//! much of the idle host's memory it is. `--peerstore K` sets
//! `libp2p_host::Config::max_peerstore_peers` (default 4,096), to show what the peerstore holds.
//!
//! The output ends with `SIM OK` when every record was found (`SIM FAIL` otherwise, and a
//! non-zero exit status).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p_core::MuxedMemoryTransport;
use libp2p_host::{Event, Host, Keypair};
use libp2p_kad::{sha256_multihash, Config, KadHandle, KadService, ServiceConfig};

/// The bound on every operation of the bench; a lookup here takes milliseconds, a bootstrap
/// well under a second.
const LIMIT: Duration = Duration::from_secs(120);

/// The connection manager's defaults here (kubo's marks, its periods scaled to the bench's
/// pace): above `HIGH` connections a host is trimmed to `LOW`, sparing connections younger
/// than `GRACE`, at most once per `SILENCE`.
const LOW: usize = 32;
const HIGH: usize = 96;
const GRACE: Duration = Duration::from_secs(2);
const SILENCE: Duration = Duration::from_secs(1);

struct Args {
    hosts: usize,
    keys: usize,
    lookups: usize,
    find_peer: usize,
    parallel: usize,
    seed: u64,
    event_buffer: Option<usize>,
    peerstore: Option<usize>,
    rounds: usize,
    low: usize,
    high: usize,
    grace: Duration,
    silence: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        hosts: 1000,
        keys: 20,
        lookups: 20,
        find_peer: 200,
        parallel: 8,
        seed: 42,
        event_buffer: None,
        peerstore: None,
        rounds: 2,
        low: LOW,
        high: HIGH,
        grace: GRACE,
        silence: SILENCE,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if !a.starts_with("--") {
            args.hosts = a.parse().map_err(|_| format!("unknown argument {a}"))?;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        let number =
            || -> Result<u64, String> { v.parse().map_err(|_| format!("{a} needs a number")) };
        let seconds = || -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| format!("{a} needs a number of seconds"))
        };
        match a.as_str() {
            "--keys" => args.keys = number()? as usize,
            "--lookups" => args.lookups = number()? as usize,
            "--find-peer" => args.find_peer = number()? as usize,
            "--parallel" => args.parallel = (number()? as usize).max(1),
            "--seed" => args.seed = number()?,
            "--grace" => args.grace = seconds()?,
            "--silence" => args.silence = seconds()?,
            "--low" => args.low = number()? as usize,
            "--high" => args.high = number()? as usize,
            "--rounds" => args.rounds = (number()? as usize).max(1),
            "--event-buffer" => args.event_buffer = Some(number()? as usize),
            "--peerstore" => args.peerstore = Some(number()? as usize),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if args.hosts < 4 {
        return Err("at least 4 hosts".into());
    }
    Ok(args)
}

/// A small deterministic generator (splitmix64), so that a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| {
                l[name.len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(LIMIT, f)
        .await
        .map_err(|_| format!("no result within {LIMIT:?}"))
}

async fn memory_host(args: &Args) -> (Host, KadHandle) {
    let key = Keypair::generate_ed25519();
    let transport = MuxedMemoryTransport::new(key.public().to_peer_id());
    // No automatic bootstrap: the bench bootstraps each host itself, in order, so that the
    // figures are those of the lookups it asked for.
    let config = Config::default().with_bootstrap_interval(None);
    let (service, handle) = KadService::new(config, ServiceConfig::default());
    // The host's defaults, limits included (max_connections 256), with kubo's connection
    // manager marks (or those of the flags), which keep each host under them.
    // (`--event-buffer` changes one more: the host's event ring, which is allocated whole.)
    let mut host_config = libp2p_host::Config::default();
    if let Some(k) = args.event_buffer {
        host_config.event_buffer = k;
    }
    if let Some(k) = args.peerstore {
        host_config.max_peerstore_peers = k;
    }
    let manager = &mut host_config.connection_manager;
    manager.low_watermark = args.low;
    manager.high_watermark = args.high;
    manager.grace_period = args.grace;
    manager.silence_period = args.silence;
    let host = Host::builder(key)
        .config(host_config)
        .listen_on("/memory/0".parse().expect("a memory address"))
        .service(service)
        .build_with_transport(transport)
        .await
        .expect("a host over the memory transport");
    (host, handle)
}

/// What the hosts' events said, summed over all hosts: connections opened, closed by cause
/// (the connection manager's closes are `Trimmed`), failed dials and refused inbound
/// connections by reason (the name of the error's variant).
#[derive(Default)]
struct Counts(Mutex<BTreeMap<String, u64>>);

impl Counts {
    fn add(&self, what: String) {
        *self.0.lock().expect("counts").entry(what).or_insert(0) += 1;
    }

    fn get(&self, what: &str) -> u64 {
        self.0
            .lock()
            .expect("counts")
            .get(what)
            .copied()
            .unwrap_or(0)
    }

    fn summary(&self) -> String {
        let counts = self.0.lock().expect("counts");
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The name of the variant of a `Debug` value: `ConnectionLimit { limit: 256 }` gives
/// `ConnectionLimit`.
fn variant(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}")
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Counts the events of `host` into `counts` until the host closes.
fn count_events(host: &Host, counts: Arc<Counts>) -> tokio::task::JoinHandle<()> {
    let mut events = host.events();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Event::ConnectionEstablished { .. } => counts.add("established".into()),
                Event::ConnectionClosed { cause, .. } => {
                    counts.add(format!("closed {}", variant(&cause)))
                }
                Event::DialFailed { error, .. } => {
                    counts.add(format!("dial failed {}", variant(&*error)))
                }
                Event::InboundConnectionRefused { reason, .. } => {
                    counts.add(format!("inbound refused {}", variant(&reason)))
                }
                Event::Missed { count } => {
                    *counts
                        .0
                        .lock()
                        .expect("counts")
                        .entry("events missed".into())
                        .or_insert(0) += count
                }
                _ => {}
            }
        }
    })
}

/// How long a lookup took, in milliseconds.
fn millis(stats: &libp2p_kad::QueryStats) -> u32 {
    stats.finished.duration_since(stats.started).as_millis() as u32
}

/// Median and 99th percentile of `v` (sorted here).
fn quantiles(v: &mut [u32]) -> (u32, u32) {
    if v.is_empty() {
        return (0, 0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Runs `futures`, at most `k` at a time.
async fn all<T>(
    k: usize,
    futures: impl Iterator<Item = impl std::future::Future<Output = T>>,
) -> Vec<T> {
    futures::stream::iter(futures)
        .buffer_unordered(k)
        .collect()
        .await
}

fn total_connections(hosts: &[Host]) -> usize {
    hosts.iter().map(|h| h.connected_peers().len()).sum()
}

async fn run(args: Args) -> Result<bool, String> {
    let n = args.hosts;
    let mut rng = Rng(args.seed);
    let metrics = tokio::runtime::Handle::current().metrics();
    let (rss_start, _) = memory_kib();
    let tasks_start = metrics.num_alive_tasks();
    let started = Instant::now();

    let mut hosts = Vec::with_capacity(n);
    let mut kads = Vec::with_capacity(n);
    for _ in 0..n {
        let (host, kad) = memory_host(&args).await;
        hosts.push(host);
        kads.push(kad);
    }
    let (rss_built, _) = memory_kib();
    let tasks_built = metrics.num_alive_tasks();
    println!(
        "built {n} hosts in {:.1?}: {:.1} KiB and {:.1} tasks per idle host",
        started.elapsed(),
        rss_built.saturating_sub(rss_start) as f64 / n as f64,
        tasks_built.saturating_sub(tasks_start) as f64 / n as f64
    );

    // Each host knows three earlier ones (fewer for the first few).
    for (i, kad) in kads.iter().enumerate().skip(1) {
        let mut known = Vec::new();
        while known.len() < 3.min(i) {
            let j = rng.below(i);
            if !known.contains(&j) {
                known.push(j);
            }
        }
        for j in known {
            kad.add_peer(hosts[j].peer_id(), hosts[j].listen_addrs())
                .await
                .ok_or("kad stopped")?;
        }
    }

    let counts = Arc::new(Counts::default());
    let counters: Vec<_> = hosts
        .iter()
        .map(|h| count_events(h, counts.clone()))
        .collect();

    // Bootstrap in order (at most `parallel` at a time), then once more all round, so that
    // the early hosts learn of the later ones (a deployment's periodic refresh does it).
    let t = Instant::now();
    for round in 0..args.rounds {
        let done = std::sync::atomic::AtomicUsize::new(0);
        let step = (n / 10).max(1);
        let results = all(
            args.parallel,
            kads.iter()
                .enumerate()
                .skip(usize::from(round == 0))
                .map(|(i, k)| {
                    let (k, done, t, counts) = (k.clone(), &done, &t, &counts);
                    async move {
                        let started = Instant::now();
                        let r = within(k.bootstrap()).await;
                        let took = started.elapsed().as_millis() as u32;
                        let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if d % step == 0 {
                            let (rss, _) = memory_kib();
                            println!(
                                "  round {}: {d} bootstraps in {:.1?}, RSS {} MiB; {}",
                                round + 1,
                                t.elapsed(),
                                rss / 1024,
                                counts.summary()
                            );
                        }
                        (i, r, took)
                    }
                }),
        )
        .await;
        let mut failed = 0;
        let mut times = Vec::new();
        for (i, r, took) in results {
            times.push(took);
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    failed += 1;
                    eprintln!("bootstrap of host {i} (round {round}): {e}");
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("bootstrap of host {i} (round {round}): {e}");
                }
            }
        }
        let mut tables: Vec<u32> = kads.iter().map(|k| k.routing_table_size() as u32).collect();
        let (tm, _) = quantiles(&mut tables);
        let (bm, b99) = quantiles(&mut times);
        println!(
            "bootstrap round {}: {:.1?}, {failed} failed, one bootstrap {bm} ms median, \
             p99 {b99} ms; routing table median {tm} (p1 {}), connections per host {:.1}",
            round + 1,
            t.elapsed(),
            tables[(tables.len() - 1) / 100],
            total_connections(&hosts) as f64 / n as f64,
        );
    }
    let (rss_joined, hwm_joined) = memory_kib();
    let tasks_joined = metrics.num_alive_tasks();
    let conns = total_connections(&hosts);

    // find_peer between random pairs.
    let pairs: Vec<(usize, usize)> = (0..args.find_peer)
        .map(|_| {
            let from = rng.below(n);
            (from, (from + 1 + rng.below(n - 1)) % n)
        })
        .collect();
    let t_fp = Instant::now();
    let results = all(
        args.parallel,
        pairs.iter().map(|&(from, to)| {
            let k = kads[from].clone();
            let target = hosts[to].peer_id();
            async move { within(k.find_peer_with_stats(target)).await }
        }),
    )
    .await;
    let fp_time = t_fp.elapsed();
    let (mut fp_hops, mut fp_msgs, mut fp_ms, mut fp_missed) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut fp_failed = Vec::new();
    for r in results {
        match r {
            Ok(Ok((_, stats))) => {
                fp_hops.push(stats.hops);
                fp_msgs.push(stats.requests);
                fp_failed.push(stats.failures);
                fp_ms.push(millis(&stats));
            }
            Ok(Err(e)) => {
                fp_missed += 1;
                eprintln!("find_peer: {e}");
            }
            Err(e) => {
                fp_missed += 1;
                eprintln!("find_peer: {e}");
            }
        }
    }

    // Provider records: `keys` keys, each provided by a random host and looked up from
    // `lookups` other random hosts.
    let mut keys = Vec::new();
    let mut provide_msgs = Vec::new();
    for p in 0..args.keys {
        let provider = rng.below(n);
        let key = sha256_multihash(format!("sim key {p}").as_bytes());
        let told = within(kads[provider].start_providing(key.clone()))
            .await?
            .map_err(|e| format!("provide: {e}"))?;
        provide_msgs.push(told as u32);
        keys.push((key, provider));
    }
    let mut searches = Vec::new();
    for (key, provider) in &keys {
        for _ in 0..args.lookups {
            let from = (provider + 1 + rng.below(n - 1)) % n;
            searches.push((key.clone(), *provider, from));
        }
    }
    let t_gp = Instant::now();
    let results = all(
        args.parallel,
        searches.iter().map(|(key, provider, from)| {
            let k = kads[*from].clone();
            let want = hosts[*provider].peer_id();
            let key = key.clone();
            async move {
                let r = within(k.get_providers_with_stats(key, Some(1))).await;
                (want, r)
            }
        }),
    )
    .await;
    let gp_time = t_gp.elapsed();
    let mut gp_failed = Vec::new();
    let (mut gp_hops, mut gp_found_at, mut gp_msgs, mut gp_ms, mut found) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    for (want, r) in results {
        match r {
            Ok(Ok((list, stats))) => {
                gp_hops.push(stats.hops);
                gp_msgs.push(stats.requests);
                gp_failed.push(stats.failures);
                gp_ms.push(millis(&stats));
                if let Some(h) = stats.found_at_hop {
                    gp_found_at.push(h);
                }
                if list.iter().any(|p| p.id == want) {
                    found += 1;
                } else {
                    eprintln!("get_providers: {} found, not the provider", list.len());
                }
            }
            Ok(Err(e)) => eprintln!("get_providers: {e}"),
            Err(e) => eprintln!("get_providers: {e}"),
        }
    }
    let (rss_end, hwm_end) = memory_kib();
    for c in &counters {
        c.abort();
    }
    let trimmed = counts.get("closed Trimmed");

    let (fh, fh99) = quantiles(&mut fp_hops);
    let (fm, fm99) = quantiles(&mut fp_msgs);
    let (gh, gh99) = quantiles(&mut gp_hops);
    let (ga, ga99) = quantiles(&mut gp_found_at);
    let (gm, gm99) = quantiles(&mut gp_msgs);
    let (pm, _) = quantiles(&mut provide_msgs);
    let (ft, ft99) = quantiles(&mut fp_ms);
    let (ff, ff99) = quantiles(&mut fp_failed);
    let (gf, gf99) = quantiles(&mut gp_failed);
    let (gt, gt99) = quantiles(&mut gp_ms);
    println!("N = {n}");
    println!(
        "  find_peer: {} of {} found; hops median {fh} p99 {fh99}; messages median {fm} p99 {fm99}; \
         {ft} ms median, p99 {ft99} ms ({fp_time:.1?} for all, {} at a time); failed requests \
         median {ff} p99 {ff99}",
        fp_hops.len(),
        pairs.len(),
        args.parallel,
    );
    println!(
        "  get_providers: {found} of {} records found; hops median {gh} p99 {gh99}; \
         found at hop median {ga} p99 {ga99}; messages median {gm} p99 {gm99} \
         (each key announced to a median of {pm} peers); {gt} ms median, p99 {gt99} ms \
         ({gp_time:.1?} for all); failed requests median {gf} p99 {gf99}",
        searches.len(),
    );
    println!(
        "  connections: {:.1} per host after bootstrap (cap {}, trimmed to {}..{}; \
         {trimmed} closed by the connection managers)",
        conns as f64 / n as f64,
        libp2p_host::Config::default().max_connections,
        args.low,
        args.high,
    );
    println!(
        "  memory: {:.1} KiB per host after bootstrap (RSS {} MiB -> {} MiB, peak {} MiB), \
         {:.1} KiB per host at the end (peak {} MiB)",
        rss_joined.saturating_sub(rss_start) as f64 / n as f64,
        rss_start / 1024,
        rss_joined / 1024,
        hwm_joined / 1024,
        rss_end.saturating_sub(rss_start) as f64 / n as f64,
        hwm_end / 1024,
    );
    println!(
        "  tasks: {:.1} per host after bootstrap ({} alive)",
        tasks_joined.saturating_sub(tasks_start) as f64 / n as f64,
        tasks_joined
    );
    println!("  events (all hosts): {}", counts.summary());
    println!("  time: {:.1?} in all", started.elapsed());
    let ok = found == searches.len() && fp_missed == 0;
    println!("{}", if ok { "SIM OK" } else { "SIM FAIL" });
    for h in &hosts {
        h.close().await;
    }
    Ok(ok)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hosts: {e}");
            std::process::exit(2);
        }
    };
    // One runtime for every host; its workers come from TOKIO_WORKER_THREADS (default 2).
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("hosts: {e}");
            std::process::exit(1);
        }
    }
}
