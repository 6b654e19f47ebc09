//! `peer`: our side of every interop check, and the benchmark tool.
//!
//! Its command line is a fixed contract shared with the foreign test peers (see
//! `interop/PEER-CLI.md`):
//!
//! ```text
//! peer --listen /ip4/127.0.0.1/tcp/0 [--listen /ip4/127.0.0.1/udp/0/quic-v1 ...]
//!      [--listen /ip4/127.0.0.1/tcp/0/ws ...]
//!      [--security S] [--muxer M] (noise, yamux unless given) [--key K] [--seed N]
//! peer --dial /ip4/127.0.0.1/tcp/4001/p2p/<id> [--bytes N] [--streams K] [--ping]
//!      [--perf-upload N --perf-download M] [--connections N] [--hold N] [--timeout SECS]
//!      [--request json|cbor]
//! peer --listen ... --serve-requests
//! ```
//!
//! `--serve-requests` and `--request` are a project extension (request-response, see the
//! interop contract):
//!
//! ```text
//! ```
//!
//! Version 2 (`../shared/PEER-CLI-v2.md`) adds discovery: `--kad`, `--bootstrap ADDR`
//! (repeatable), `--provide KEY`, `--find-providers KEY`, `--find-peer ID` (see
//! `libp2p_tools::kad`) and `--mdns` (see `libp2p_tools::mdns`); with them neither `--listen` nor
//! `--dial` is needed for a dial-mode node; and gossipsub: `--gossip TOPIC`, `--publish MSG`,
//! `--count N`, `--publish-wait SECS` (see `libp2p_tools::gossip`; without a Kademlia option,
//! `--bootstrap` only connects).
//!
//! `--connections N` and `--hold N` are benchmark additions (see `bench/run`): set-up rate of N
//! short connections one after another, and N idle connections held open.
//!
//! Bounds for tests (the hostile-peer suite sets them small), from the environment; each is
//! optional, and without it the value is the one below:
//!
//! | variable | sets | default here |
//! |---|---|---|
//! | `PEER_HANDSHAKE_TIMEOUT` | `libp2p_host::Config::handshake_timeout` (seconds, `0.5` allowed) | 20 s |
//! | `PEER_NEGOTIATION_TIMEOUT` | `libp2p_host::Config::negotiation_timeout` | 10 s |
//! | `PEER_WRITE_TIMEOUT` | the muxer's `write_timeout` (mplex and yamux) | 60 s |
//! | `PEER_FRAME_TIMEOUT` | `libp2p_mplex::Config::frame_timeout` | 30 s |
//! | `PEER_MAX_PENDING_PER_IP` | `libp2p_host::Config::max_pending_incoming_per_ip` | 1,024 |
//! | `PEER_MAX_INCOMING_PER_IP_PER_SECOND` | `libp2p_host::Config::max_incoming_per_ip_per_second` | 1,000,000 |
//!
//! (The per-source limits are high here because the benchmarks dial thousands of
//! connections from one address.)
//!
//! It runs on the Host, like any application: the listener's echo and perf are stream
//! handlers, identify and ping are the host's own services, so the interop matrix exercises
//! the host's pool, dispatch and services against foreign peers.
#![forbid(unsafe_code)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p_core::{IntoConnection, Negotiated, SecurityUpgrade, Transport, TransportExt};
use libp2p_host::{split_peer_id, Host, Keypair, Multiaddr, PeerId, Protocol};
use libp2p_kad::KadHandle;
use libp2p_mplex::Mplex;
use libp2p_noise::Noise;
use libp2p_plaintext::Plaintext;
use libp2p_secio::Secio;
use libp2p_tls::Tls;
use libp2p_tools::node;
use libp2p_tools::{make_key, KeyType};
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_websocket::{WsSocket, WsTransport};
use libp2p_yamux::{Config as YamuxConfig, Yamux};

#[derive(Debug)]
enum Mode {
    /// Every `--listen` address, in the order given.
    Listen(Vec<Multiaddr>),
    Dial(Multiaddr),
    /// Neither `--listen` nor `--dial`: a v2 dial-mode node (`--bootstrap`, `--mdns`).
    Discover,
}

#[derive(Debug)]
struct Args {
    mode: Mode,
    security: String,
    muxer: String,
    key: KeyType,
    seed: Option<u64>,
    timeout: u64,
    bytes: usize,
    streams: usize,
    ping: bool,
    perf: Option<(u64, u64)>,
    connections: Option<usize>,
    hold: Option<usize>,
    serve_requests: bool,
    request: Option<String>,
    bootstrap: Vec<Multiaddr>,
    kad: libp2p_tools::kad::KadOptions,
    mdns: bool,
    gossip: libp2p_tools::gossip::GossipArgs,
}

/// Set once `--hold` has printed `HOLD OK`: the timeout then ends the process quietly.
static HELD: AtomicBool = AtomicBool::new(false);

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut mode = None;
    let (mut security, mut muxer) = ("noise".to_string(), "yamux".to_string());
    let (mut key, mut seed, mut timeout) = (KeyType::Ed25519, None, 60);
    let (mut bytes, mut streams, mut ping) = (1024, 1, false);
    let (mut upload, mut download) = (None, None);
    let (mut connections, mut hold) = (None, None);
    let (mut serve_requests, mut request) = (false, None);
    let (mut bootstrap, mut kad, mut mdns) =
        (Vec::new(), libp2p_tools::kad::KadOptions::default(), false);
    let mut gossip = libp2p_tools::gossip::GossipArgs::default();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--listen" => add_listen(&mut mode, value()?.parse().map_err(|e| format!("{e}"))?),
            "--dial" => mode = Some(Mode::Dial(value()?.parse().map_err(|e| format!("{e}"))?)),
            "--security" => security = value()?,
            "--muxer" => muxer = value()?,
            "--key" => key = value()?.parse()?,
            "--seed" => seed = Some(number(value()?)?),
            "--timeout" => timeout = number(value()?)?,
            "--bytes" => bytes = number(value()?)? as usize,
            "--streams" => streams = number(value()?)? as usize,
            "--ping" => ping = true,
            "--perf-upload" => upload = Some(number(value()?)?),
            "--perf-download" => download = Some(number(value()?)?),
            "--connections" => connections = Some(number(value()?)? as usize),
            "--hold" => hold = Some(number(value()?)? as usize),
            "--serve-requests" => serve_requests = true,
            "--request" => request = Some(value()?),
            "--bootstrap" => bootstrap.push(value()?.parse().map_err(|e| format!("{e}"))?),
            "--mdns" => mdns = true,
            other if kad.parse(other, &mut value)? => {}
            other if gossip.take(other, &mut value)? => {}
            other => return Err(format!("unsupported: option {other}")),
        }
    }
    if let Some(codec) = &request {
        if codec != "json" && codec != "cbor" {
            return Err(format!("unsupported: request codec {codec}"));
        }
    }
    let perf = match (upload, download) {
        (None, None) => None,
        (u, d) => Some((u.unwrap_or(0), d.unwrap_or(0))),
    };
    let discover = !bootstrap.is_empty() || kad.enabled() || mdns || gossip.enabled();
    let mode = mode
        .or(discover.then_some(Mode::Discover))
        .ok_or("one of --listen or --dial is required")?;
    kad.check(matches!(mode, Mode::Listen(_)))?;
    Ok(Args {
        mode,
        security,
        muxer,
        key,
        seed,
        timeout,
        bytes,
        streams: streams.max(1),
        ping,
        perf,
        connections,
        hold,
        serve_requests,
        request,
        bootstrap,
        kad,
        mdns,
        gossip,
    })
}

fn main() {
    let code = match parse_args() {
        Ok(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async {
                let timeout = Duration::from_secs(args.timeout);
                // Run on a worker thread, not on the thread that blocks on the runtime: the
                // connection drivers are spawned tasks, and a client on the blocking thread
                // would wake them across threads (a futex call) for every frame.
                let work = tokio::spawn(tokio::time::timeout(timeout, run(args)));
                let outcome = work
                    .await
                    .unwrap_or_else(|e| Ok(Err(format!("panicked: {e}"))));
                match outcome {
                    Ok(Ok(line)) => {
                        println!("{line}");
                        0
                    }
                    Ok(Err(reason)) => {
                        println!("FAIL {reason}");
                        if reason.starts_with("unsupported") {
                            2
                        } else {
                            1
                        }
                    }
                    Err(_) if HELD.load(Ordering::SeqCst) || libp2p_tools::gossip::serving() => 0,
                    Err(_) => {
                        println!("FAIL timeout");
                        1
                    }
                }
            })
        }
        Err(reason) => {
            println!("FAIL {reason}");
            2
        }
    };
    let _ = std::io::stdout().flush();
    // Exit at once: a listener's tasks must not keep the process alive.
    std::process::exit(code);
}

async fn run(mut args: Args) -> Result<String, String> {
    tracing_subscriber::fmt()
        .with_env_filter(libp2p_tools::log_filter())
        .with_writer(std::io::stderr)
        .init();
    let key = make_key(args.key, args.seed)?;
    // `--bootstrap` is connected by the discovery step (kad or not), before gossip runs.
    args.gossip.prepare(&key)?;
    let (kad_service, kad) = args.kad.service().unzip();
    let (mdns_service, mdns) = args.mdns.then(libp2p_tools::mdns::service).unzip();
    let s = libp2p_tools::Services {
        kad: kad_service,
        mdns: mdns_service,
    };
    let host = match args.security.as_str() {
        "plaintext" => with_security(Plaintext::new(key.clone()), key, &args, s).await?,
        "secio" => with_security(Secio::new(key.clone()), key, &args, s).await?,
        "noise" => with_security(Noise::new(key.clone()), key, &args, s).await?,
        "tls" => with_security(Tls::new(key.clone()), key, &args, s).await?,
        other => return Err(format!("unsupported: security {other}")),
    };
    if let Some(discoveries) = mdns {
        libp2p_tools::mdns::spawn_reporter(&host, discoveries);
    }
    node::serve(&host)?;
    if args.serve_requests {
        node::serve_requests(&host)?;
    }
    run_host(host, args, kad).await
}

async fn with_security<S>(
    security: S,
    key: Keypair,
    args: &Args,
    services: libp2p_tools::Services,
) -> Result<Host, String>
where
    S: SecurityUpgrade<Negotiated<TcpSocket>> + SecurityUpgrade<Negotiated<WsSocket<TcpSocket>>>,
{
    let secured = TcpTransport::new().upgrade().authenticate(security.clone());
    // `/tcp/P/ws`: the same security and muxer over WebSocket.
    let ws = WsTransport::new(TcpTransport::new())
        .upgrade()
        .authenticate(security);
    let mut mplex = libp2p_mplex::Config::default();
    let mut yamux = YamuxConfig::default();
    if let Some(t) = env_secs("PEER_WRITE_TIMEOUT")? {
        mplex.write_timeout = t;
        yamux.write_timeout = t;
    }
    if let Some(t) = env_secs("PEER_FRAME_TIMEOUT")? {
        mplex.frame_timeout = t;
    }
    match args.muxer.as_str() {
        "mplex" => {
            let ws = ws.multiplex(Mplex::with_config(mplex.clone()));
            build(
                secured.multiplex(Mplex::with_config(mplex)),
                ws,
                key,
                services,
            )
            .await
        }
        "yamux" => {
            let ws = ws.multiplex(Yamux::with_config(yamux.clone()));
            build(
                secured.multiplex(Yamux::with_config(yamux)),
                ws,
                key,
                services,
            )
            .await
        }
        other => Err(format!("unsupported: muxer {other}")),
    }
}

/// The host of the `peer` program: exactly the stack asked for, limits high enough for the
/// benchmarks (`--hold 10000` holds ten thousand connections from one peer).
async fn build<T, W>(
    transport: T,
    ws: W,
    key: Keypair,
    services: libp2p_tools::Services,
) -> Result<Host, String>
where
    T: Transport,
    T::Output: IntoConnection,
    W: Transport,
    W::Output: IntoConnection,
{
    let mut config = libp2p_host::Config::default();
    config.max_connections = 20_000;
    config.max_connections_per_peer = 20_000;
    config.max_pending_incoming = 1_024;
    config.max_inbound_streams_per_connection = 1_024;
    // The benchmarks hold 10,000 connections and thousands of streams: no trimming, no
    // budgets beyond the limits above.
    config.connection_manager.low_watermark = 20_000;
    config.connection_manager.high_watermark = 20_000;
    config.connection_manager.max_pending_outgoing = 1_024;
    config.resources = libp2p_host::ResourceLimits::unlimited();
    config.accept_queue = 1_024;
    config.agent_version = node::AGENT.into();
    config.max_pending_incoming_per_ip = env_number("PEER_MAX_PENDING_PER_IP")?.unwrap_or(1_024);
    config.max_incoming_per_ip_per_second =
        env_number("PEER_MAX_INCOMING_PER_IP_PER_SECOND")?.unwrap_or(1_000_000);
    if let Some(t) = env_secs("PEER_HANDSHAKE_TIMEOUT")? {
        config.handshake_timeout = t;
    }
    if let Some(t) = env_secs("PEER_NEGOTIATION_TIMEOUT")? {
        config.negotiation_timeout = t;
    }
    let quic = quic_transport(&key, &config);
    let builder = services.add_to(Host::builder(key).config(config));
    libp2p_tools::gossip::install(builder)
        .transport(transport)
        .transport(ws)
        .transport(quic)
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// A duration in seconds from the environment variable `name`, when set.
fn env_secs(name: &str) -> Result<Option<Duration>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(Some)
            .ok_or_else(|| format!("{name}: not a number of seconds: {v}")),
    }
}

/// A number from the environment variable `name`, when set.
fn env_number<N: std::str::FromStr>(name: &str) -> Result<Option<N>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => v
            .parse::<N>()
            .map(Some)
            .map_err(|_| format!("{name}: not a number: {v}")),
    }
}

async fn run_host(host: Host, args: Args, kad: Option<KadHandle>) -> Result<String, String> {
    let v2 = !args.bootstrap.is_empty() || kad.is_some() || args.mdns;
    let gossip = args.gossip.enabled();
    match &args.mode {
        Mode::Listen(addrs) => {
            listen_all(&host, addrs).await?;
            if v2 {
                libp2p_tools::kad::run(&host, kad.as_ref(), &args.kad, &args.bootstrap, true)
                    .await?;
                HELD.store(true, Ordering::SeqCst);
            }
            if gossip {
                return libp2p_tools::gossip::run(&host, &args.gossip, None).await;
            }
            std::future::pending::<()>().await;
            Err("listener ended".into())
        }
        Mode::Dial(addr) if args.connections.is_some() => {
            let count = args.connections.unwrap_or(0);
            // Without `/p2p/<id>` every dial is a new connection (with it, the host would
            // reuse the live one); the peer is checked here instead.
            let (raw, expected) = split_peer_id(addr);
            let start = Instant::now();
            for i in 0..count {
                let peer = dial_checked(&host, &raw, expected)
                    .await
                    .map_err(|e| format!("dial {i}: {e}"))?;
                node::echo(&host, peer, 1, i as u64 + 1)
                    .await
                    .map_err(|e| format!("connection {i}: {e}"))?;
                host.disconnect(peer).await;
            }
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            Ok(format!("CONN OK {:.1}", count as f64 / secs))
        }
        Mode::Dial(addr) if args.hold.is_some() => {
            let count = args.hold.unwrap_or(0);
            let (raw, expected) = split_peer_id(addr);
            // Dials one after another by default (`PEER_HOLD_PARALLEL=K` runs K at once).
            let at_once = std::env::var("PEER_HOLD_PARALLEL")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let mut dials = futures::stream::iter((0..count).map(|i| {
                let (host, raw) = (host.clone(), raw.clone());
                async move {
                    dial_checked(&host, &raw, expected)
                        .await
                        .map_err(|e| format!("dial {i}: {e}"))
                }
            }))
            .buffer_unordered(at_once);
            let mut held = 0;
            while let Some(result) = dials.next().await {
                result?;
                held += 1;
            }
            println!("HOLD OK {held}");
            let _ = std::io::stdout().flush();
            HELD.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Err("hold ended".into())
        }
        Mode::Dial(_) | Mode::Discover if v2 || gossip => {
            if let Mode::Dial(addr) = &args.mode {
                host.dial(addr.clone())
                    .await
                    .map_err(|e| format!("dial: {e}"))?;
            }
            let line =
                libp2p_tools::kad::run(&host, kad.as_ref(), &args.kad, &args.bootstrap, false);
            let line = line.await?;
            if gossip {
                if let Some(line) = line {
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
                return libp2p_tools::gossip::run(&host, &args.gossip, None).await;
            }
            match line {
                Some(line) if !args.mdns => Ok(line),
                line => {
                    // mDNS keeps reporting until the timeout.
                    if let Some(line) = line {
                        println!("{line}");
                        let _ = std::io::stdout().flush();
                    }
                    HELD.store(true, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    Err("mdns ended".into())
                }
            }
        }
        Mode::Discover => Err("nothing to do".into()),
        Mode::Dial(addr) => {
            let mut events = host.events();
            let peer = host
                .dial(addr.clone())
                .await
                .map_err(|e| format!("dial: {e}"))?;
            if args.ping {
                // As go-libp2p does before it opens streams: let identify finish first, so
                // that the round trips measured are the pings' own.
                wait_identified(&host, &mut events, peer).await;
            }
            let line = if let Some(codec) = &args.request {
                let rtt = node::request_peer(&host, peer, codec).await?;
                format!("REQUEST OK 5 {:.3}", rtt.as_secs_f64() * 1000.0)
            } else if args.ping {
                let rtt = node::ping_peer(&host, peer, 5).await?;
                format!("PING OK {:.3}", rtt.as_secs_f64() * 1000.0)
            } else if let Some((up, down)) = args.perf {
                let result = node::perf_peer(&host, peer, up, down).await?;
                format!(
                    "PERF upload {:.2} download {:.2}",
                    result.upload_mib_s(),
                    result.download_mib_s()
                )
            } else {
                let elapsed = node::echo_streams(&host, peer, args.streams, args.bytes).await?;
                format!(
                    "OK {peer} {} {:.6}",
                    args.bytes * args.streams,
                    elapsed.as_secs_f64()
                )
            };
            host.close().await;
            Ok(line)
        }
    }
}

/// Adds a `--listen` address (the option repeats; `--dial` after it wins, as before).
fn add_listen(mode: &mut Option<Mode>, addr: Multiaddr) {
    match mode {
        Some(Mode::Listen(addrs)) => addrs.push(addr),
        _ => *mode = Some(Mode::Listen(vec![addr])),
    }
}

/// QUIC beside the TCP stack asked for: the address picks the transport (`/udp/P/quic-v1`
/// is QUIC, whose TLS and streams are its own, so `--security` and `--muxer` do not apply).
fn quic_transport(key: &Keypair, config: &libp2p_host::Config) -> libp2p_quic::QuicTransport {
    // QUIC's default stream limit (256) stays: quinn keeps state for every stream the remote
    // may open, so a higher limit costs memory on every idle connection (see `--hold`).
    let quic = libp2p_quic::Config::default()
        .with_handshake_timeout(config.handshake_timeout)
        .with_max_pending_handshakes(u32::try_from(config.max_pending_incoming).unwrap_or(128));
    libp2p_quic::QuicTransport::with_config(key.clone(), quic)
}

/// Listens on every address in order, printing one `LISTEN <addr>/p2p/<id>` line for each
/// (its first reachable address), flushed at once.
async fn listen_all(host: &Host, addrs: &[Multiaddr]) -> Result<(), String> {
    for addr in addrs {
        let first = host
            .listen_on(addr.clone())
            .await
            .map_err(|e| e.to_string())?;
        println!("LISTEN {}", first.with(Protocol::P2p(host.peer_id())));
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// Waits (at most 2 s) until identify has told us about `peer`.
async fn wait_identified(host: &Host, events: &mut libp2p_host::Events, peer: PeerId) {
    let identified = async {
        while host.peerstore().agent_version(&peer).is_none() {
            match events.next().await {
                Some(libp2p_host::Event::Identified { peer: p, .. }) if p == peer => break,
                Some(_) => continue,
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), identified).await;
}

/// Dials `addr` as a new connection and checks that the remote is `expected` (when given).
async fn dial_checked(
    host: &Host,
    addr: &Multiaddr,
    expected: Option<PeerId>,
) -> Result<PeerId, String> {
    let peer = host.dial(addr.clone()).await.map_err(|e| e.to_string())?;
    match expected {
        Some(expected) if expected != peer => {
            Err(format!("dialed {expected}, but the remote is {peer}"))
        }
        _ => Ok(peer),
    }
}
