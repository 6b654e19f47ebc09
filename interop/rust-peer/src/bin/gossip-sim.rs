//! The gossipsub benchmark of libp2p-gossipsub (benches/hosts.rs there), run on rust-libp2p
//! 0.57's gossipsub for a side-by-side figure: N hosts in one process over rust-libp2p's
//! MemoryTransport (plaintext and yamux on top), a random connected topology, one publisher
//! at a steady rate; then again with 10% of the hosts killed half way through.
//!
//! It prints the same line as our bench: delivery ratio, latency p50 / p99 (ms and
//! heartbeats), duplicates per delivered message, bytes per message per host. Duplicates are
//! counted by a data transform (rust-libp2p runs it on every received copy, before its
//! duplicate check); bytes are those written on the memory channels, so they include the
//! plaintext handshake and yamux's frame headers and window updates (our bench counts
//! gossipsub's frames only, its memory transport having no framing of its own).
//!
//! Knobs (environment): GS_HOSTS (comma-separated sizes, default "100,1000"), GS_LINKS (random
//! links each host dials besides the one that keeps the graph connected, default 3), GS_RATE
//! (messages a second, default 5), GS_MESSAGES (per phase, default 30), GS_SIZE (payload
//! bytes, default 256), GS_HEARTBEAT_MS (default 1000), GS_SEED (default 1). A run ends five heartbeats
//! after its last publication, or later while deliveries still arrive (at most a minute more).
//!
//! `cargo run --release --locked --bin gossip-sim` (in interop/rust-peer; interop/build.sh
//! builds the `rust-peer` binary only)

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite, StreamExt};
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, DataTransform, IdentTopic, RawMessage, TopicHash};
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{plaintext, yamux, Multiaddr, PeerId, Swarm, Transport};
use tokio::sync::mpsc;

const TOPIC: &str = "sim";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator for the topology and the victims.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// The counters the hosts share with the driver.
#[derive(Default)]
struct Shared {
    /// Bytes written on every memory channel.
    bytes: AtomicU64,
    /// Message copies received by gossipsub (first copies and duplicates).
    received: AtomicU64,
    /// Deliveries: host, message index, latency.
    deliveries: Mutex<Vec<(usize, u32, Duration)>>,
}

/// Counts every message gossipsub receives, then passes it on unchanged.
#[derive(Clone)]
struct Counting(Arc<Shared>);

impl DataTransform for Counting {
    fn inbound_transform(&self, raw: RawMessage) -> Result<gossipsub::Message, io::Error> {
        self.0.received.fetch_add(1, Ordering::Relaxed);
        Ok(gossipsub::Message {
            source: raw.source,
            data: raw.data,
            sequence_number: raw.sequence_number,
            topic: raw.topic,
        })
    }

    fn outbound_transform(&self, _topic: &TopicHash, data: Vec<u8>) -> Result<Vec<u8>, io::Error> {
        Ok(data)
    }
}

/// A memory channel that counts the bytes written on it.
struct Metered<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.shared.bytes.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

enum Command {
    Dial(Multiaddr),
    Publish(Vec<u8>),
}

struct Host {
    peer: PeerId,
    addr: Multiaddr,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
    peers: Arc<AtomicU64>,
    /// Its mesh's size for the topic, as of its last event.
    mesh: Arc<AtomicU64>,
}

type Behaviour = gossipsub::Behaviour<Counting>;

fn swarm(key: Keypair, shared: Arc<Shared>, heartbeat: Duration) -> Swarm<Behaviour> {
    let peer = key.public().to_peer_id();
    let metered = shared.clone();
    let transport = MemoryTransport::default()
        .map(move |channel, _| Metered {
            inner: channel,
            shared: metered.clone(),
        })
        .upgrade(Version::V1)
        .authenticate(plaintext::Config::new(&key))
        .multiplex(yamux::Config::default())
        .boxed();
    // The library's defaults (D 6, D_lo 5, D_hi 12, D_lazy 6, flood publishing, strict
    // signing), the heartbeat as asked, its first one after a second rather than five.
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(heartbeat)
        .heartbeat_initial_delay(Duration::from_secs(1))
        .build()
        .expect("a valid gossipsub config");
    let behaviour = gossipsub::Behaviour::new_with_transform(
        gossipsub::MessageAuthenticity::Signed(key),
        config,
        Counting(shared),
    )
    .expect("a valid behaviour");
    Swarm::new(
        transport,
        behaviour,
        peer,
        libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(Duration::from_secs(3600)),
    )
}

async fn spawn_host(
    n: usize,
    i: usize,
    shared: Arc<Shared>,
    start: Instant,
    heartbeat: Duration,
) -> Host {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let mut swarm = swarm(key, shared.clone(), heartbeat);
    // A port range of its own per network size: the last network's listeners may still be
    // shutting down.
    let addr: Multiaddr = format!("/memory/{}", ((n as u64) << 20) + i as u64)
        .parse()
        .expect("a memory address");
    swarm.listen_on(addr.clone()).expect("listening");
    swarm
        .behaviour_mut()
        .subscribe(&IdentTopic::new(TOPIC))
        .expect("subscribed");
    let (commands, mut rx) = mpsc::channel::<Command>(64);
    let peers = Arc::new(AtomicU64::new(0));
    let connected = peers.clone();
    let mesh = Arc::new(AtomicU64::new(0));
    let meshed = mesh.clone();
    let topic = IdentTopic::new(TOPIC).hash();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Command::Dial(a)) => { let _ = swarm.dial(a); }
                    Some(Command::Publish(data)) => {
                        let _ = swarm.behaviour_mut().publish(IdentTopic::new(TOPIC), data);
                    }
                    None => return,
                },
                event = swarm.select_next_some() => {
                    meshed.store(swarm.behaviour().mesh_peers(&topic).count() as u64, Ordering::Relaxed);
                    match event {
                    SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
                        if message.data.len() >= 12 {
                            let index = u32::from_be_bytes(message.data[..4].try_into().unwrap());
                            let micros = u64::from_be_bytes(message.data[4..12].try_into().unwrap());
                            let latency = start.elapsed().saturating_sub(Duration::from_micros(micros));
                            shared.deliveries.lock().unwrap().push((i, index, latency));
                        }
                    }
                    SwarmEvent::ConnectionEstablished { .. } | SwarmEvent::ConnectionClosed { .. } => {
                        connected.store(swarm.connected_peers().count() as u64, Ordering::Relaxed);
                    }
                    _ => {}
                }},
            }
        }
    });
    Host {
        peer,
        addr,
        commands,
        task,
        peers,
        mesh,
    }
}

struct Knobs {
    links: usize,
    rate: u64,
    messages: u32,
    size: usize,
    heartbeat: Duration,
    seed: u64,
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    label: &str,
    hosts: &mut [Option<Host>],
    shared: &Shared,
    knobs: &Knobs,
    start: Instant,
    first: u32,
    kill_half_way: Option<&[usize]>,
) {
    shared.deliveries.lock().unwrap().clear();
    let meshes: Vec<u64> = hosts
        .iter()
        .flatten()
        .map(|h| h.mesh.load(Ordering::Relaxed))
        .collect();
    println!(
        "rust-libp2p {label}: mean mesh {:.1}, {} hosts with an empty mesh",
        meshes.iter().sum::<u64>() as f64 / meshes.len().max(1) as f64,
        meshes.iter().filter(|m| **m == 0).count()
    );
    let bytes0 = shared.bytes.load(Ordering::Relaxed);
    let received0 = shared.received.load(Ordering::Relaxed);
    let wall = Instant::now();
    let interval = Duration::from_micros(1_000_000 / knobs.rate.max(1));
    let mut tick = tokio::time::interval(interval);
    for k in 0..knobs.messages {
        tick.tick().await;
        if k == knobs.messages / 2 {
            if let Some(victims) = kill_half_way {
                for v in victims {
                    if let Some(h) = hosts[*v].take() {
                        h.task.abort();
                    }
                }
            }
        }
        let mut data = vec![0u8; knobs.size.max(12)];
        data[..4].copy_from_slice(&(first + k).to_be_bytes());
        data[4..12].copy_from_slice(&(start.elapsed().as_micros() as u64).to_be_bytes());
        let publisher = hosts[0].as_ref().expect("the publisher lives");
        let _ = publisher.commands.send(Command::Publish(data)).await;
    }
    // Five heartbeats for gossip to finish what the mesh missed; then on while deliveries
    // still come (a loaded machine lags), until two heartbeats pass without one, for at most
    // a minute.
    tokio::time::sleep(knobs.heartbeat * 5).await;
    let draining = Instant::now();
    loop {
        let before = shared.deliveries.lock().unwrap().len();
        tokio::time::sleep(knobs.heartbeat * 2).await;
        if shared.deliveries.lock().unwrap().len() == before
            || draining.elapsed() > Duration::from_secs(60)
        {
            break;
        }
    }
    let alive: Vec<usize> = (1..hosts.len()).filter(|i| hosts[*i].is_some()).collect();
    let deliveries = shared.deliveries.lock().unwrap().clone();
    let mut got: HashMap<(usize, u32), Duration> = HashMap::new();
    for (h, m, l) in &deliveries {
        if hosts[*h].is_some() && (first..first + knobs.messages).contains(m) {
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
    let received = shared.received.load(Ordering::Relaxed) - received0;
    let dups = received.saturating_sub(deliveries.len() as u64);
    let bytes = shared.bytes.load(Ordering::Relaxed) - bytes0;
    let live_hosts = alive.len() + 1;
    let hb = knobs.heartbeat.as_secs_f64();
    println!(
        "rust-libp2p {label}: {live_hosts} hosts alive, {} messages: delivery {:.2}% ({}/{expected}), \
         latency p50 {:.1} ms / p99 {:.1} ms ({:.3} / {:.3} heartbeats), \
         {:.2} duplicates per delivery, {:.0} bytes per message per host, {:.1} s wall",
        knobs.messages,
        100.0 * got.len() as f64 / expected.max(1) as f64,
        got.len(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        pct(0.5).as_secs_f64() / hb,
        pct(0.99).as_secs_f64() / hb,
        dups as f64 / deliveries.len().max(1) as f64,
        bytes as f64 / knobs.messages as f64 / live_hosts as f64,
        wall.elapsed().as_secs_f64(),
    );
}

async fn scenario(n: usize, knobs: &Knobs) {
    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let mut hosts = Vec::new();
    for i in 0..n {
        hosts.push(Some(
            spawn_host(n, i, shared.clone(), start, knobs.heartbeat).await,
        ));
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
    for (a, b) in &links {
        let to = hosts[*b].as_ref().unwrap();
        let addr = to.addr.clone().with_p2p(to.peer).expect("a plain address");
        let _ = hosts[*a]
            .as_ref()
            .unwrap()
            .commands
            .send(Command::Dial(addr))
            .await;
    }
    // Until every host has a peer (or a minute), then five heartbeats for the meshes.
    let wait = Instant::now();
    while hosts
        .iter()
        .flatten()
        .any(|h| h.peers.load(Ordering::Relaxed) == 0)
        && wait.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = wait.elapsed();
    // Five heartbeats for the meshes.
    tokio::time::sleep(knobs.heartbeat * 5).await;
    let degree: u64 = hosts
        .iter()
        .flatten()
        .map(|h| h.peers.load(Ordering::Relaxed))
        .sum();
    println!(
        "rust-libp2p n={n}: {} links, mean degree {:.1}, connected in {:.1} s",
        links.len(),
        degree as f64 / n as f64,
        connected.as_secs_f64()
    );
    phase(
        &format!("n={n}"),
        &mut hosts,
        &shared,
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
    phase(
        &format!("n={n}, 10% killed"),
        &mut hosts,
        &shared,
        knobs,
        start,
        knobs.messages,
        Some(&victims),
    )
    .await;
    for h in hosts.into_iter().flatten() {
        h.task.abort();
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let knobs = Knobs {
        links: knob("GS_LINKS", 3) as usize,
        rate: knob("GS_RATE", 5),
        messages: knob("GS_MESSAGES", 30) as u32,
        size: knob("GS_SIZE", 256) as usize,
        heartbeat: Duration::from_millis(knob("GS_HEARTBEAT_MS", 1000)),
        seed: knob("GS_SEED", 1),
    };
    let sizes = std::env::var("GS_HOSTS").unwrap_or_else(|_| "100,1000".into());
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        scenario(n.max(2), &knobs).await;
    }
}
