//! `peer`: our side of every interop check, and the benchmark tool.
//!
//! Its command line is a fixed contract shared with the foreign test peers (see
//! `interop/PEER-CLI.md`):
//!
//! ```text
//! peer --listen /ip4/127.0.0.1/tcp/0 [--security S] [--muxer M] [--key K] [--seed N]
//! peer --dial /ip4/127.0.0.1/tcp/4001/p2p/<id> [--bytes N] [--streams K] [--ping]
//!      [--perf-upload N --perf-download M] [--connections N] [--hold N] [--timeout SECS]
//! ```
//!
//! `--connections N` and `--hold N` are benchmark additions (see `bench/run`): set-up rate of N
//! short connections one after another, and N idle connections held open.
#![forbid(unsafe_code)]

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::node::{self, Identity};
use examples::{make_key, KeyType};
use futures::StreamExt;
use libp2p_core::{
    Keypair, ListenerEvent, Multiaddr, Negotiated, Protocol, SecurityUpgrade, StreamMuxer,
    Transport, TransportExt,
};
use libp2p_mplex::Mplex;
use libp2p_noise::Noise;
use libp2p_plaintext::Plaintext;
use libp2p_secio::Secio;
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_yamux::Yamux;

#[derive(Debug)]
enum Mode {
    Listen(Multiaddr),
    Dial(Multiaddr),
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
}

/// Set once `--hold` has printed `HOLD OK`: the timeout then ends the process quietly.
static HELD: AtomicBool = AtomicBool::new(false);

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut mode = None;
    let (mut security, mut muxer) = ("secio".to_string(), "mplex".to_string());
    let (mut key, mut seed, mut timeout) = (KeyType::Ed25519, None, 60);
    let (mut bytes, mut streams, mut ping) = (1024, 1, false);
    let (mut upload, mut download) = (None, None);
    let (mut connections, mut hold) = (None, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--listen" => mode = Some(Mode::Listen(value()?.parse().map_err(|e| format!("{e}"))?)),
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
            other => return Err(format!("unknown option {other}")),
        }
    }
    let perf = match (upload, download) {
        (None, None) => None,
        (u, d) => Some((u.unwrap_or(0), d.unwrap_or(0))),
    };
    Ok(Args {
        mode: mode.ok_or("one of --listen or --dial is required")?,
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
                    Err(_) if HELD.load(Ordering::SeqCst) => 0,
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

async fn run(args: Args) -> Result<String, String> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let key = make_key(args.key, args.seed)?;
    match args.security.as_str() {
        "plaintext" => with_security(Plaintext::new(key.clone()), key, args).await,
        "secio" => with_security(Secio::new(key.clone()), key, args).await,
        "noise" => with_security(Noise::new(key.clone()), key, args).await,
        other => Err(format!("unsupported: security {other}")),
    }
}

async fn with_security<S>(security: S, key: Keypair, args: Args) -> Result<String, String>
where
    S: SecurityUpgrade<Negotiated<TcpSocket>>,
{
    let secured = TcpTransport::new().upgrade().authenticate(security);
    match args.muxer.as_str() {
        "mplex" => with_transport(secured.multiplex(Mplex::default()), key, args).await,
        "yamux" => with_transport(secured.multiplex(Yamux::default()), key, args).await,
        other => Err(format!("unsupported: muxer {other}")),
    }
}

async fn with_transport<T, M>(transport: T, key: Keypair, args: Args) -> Result<String, String>
where
    T: Transport<Output = (libp2p_core::PeerId, M)>,
    M: StreamMuxer,
{
    let peer_id = key.public().to_peer_id();
    match &args.mode {
        Mode::Listen(addr) => {
            let mut listener = transport.listen(addr.clone()).map_err(|e| e.to_string())?;
            let mut addrs = Vec::new();
            let mut announced = false;
            let mut me = Arc::new(Identity {
                public_key: key.public(),
                listen_addrs: Vec::new(),
            });
            while let Some(event) = listener.next().await {
                match event {
                    ListenerEvent::NewAddress(a) => {
                        if !announced {
                            println!("LISTEN {}", a.clone().with(Protocol::P2p(peer_id)));
                            let _ = std::io::stdout().flush();
                            announced = true;
                        }
                        addrs.push(a);
                        me = Arc::new(Identity {
                            public_key: key.public(),
                            listen_addrs: addrs.clone(),
                        });
                    }
                    ListenerEvent::Incoming {
                        pending,
                        remote_addr,
                        ..
                    } => {
                        let accept = transport.accept(pending);
                        let me = me.clone();
                        tokio::spawn(async move {
                            match accept.await {
                                Ok((peer, muxer)) => {
                                    tracing::info!(%peer, %remote_addr, "connection");
                                    node::serve_connection(muxer, me, Some(remote_addr)).await
                                }
                                Err(e) => tracing::warn!(error = %e, "inbound upgrade failed"),
                            }
                        });
                    }
                    ListenerEvent::AddressExpired(_) => {}
                    ListenerEvent::Error(e) => tracing::warn!(error = %e, "listener"),
                }
            }
            Err("listener ended".into())
        }
        Mode::Dial(addr) if args.connections.is_some() => {
            let count = args.connections.unwrap_or(0);
            let me = Arc::new(Identity {
                public_key: key.public(),
                listen_addrs: Vec::new(),
            });
            let start = Instant::now();
            for i in 0..count {
                let (_, muxer) = transport
                    .dial(addr.clone())
                    .await
                    .map_err(|e| format!("dial {i}: {e}"))?;
                tokio::spawn(node::serve_connection(
                    muxer.clone(),
                    me.clone(),
                    Some(addr.clone()),
                ));
                node::echo(&muxer, 1, i as u64 + 1)
                    .await
                    .map_err(|e| format!("connection {i}: {e}"))?;
                let _ = muxer.close().await;
            }
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            Ok(format!("CONN OK {:.1}", count as f64 / secs))
        }
        Mode::Dial(addr) if args.hold.is_some() => {
            let count = args.hold.unwrap_or(0);
            let me = Arc::new(Identity {
                public_key: key.public(),
                listen_addrs: Vec::new(),
            });
            // Dials one after another by default (`PEER_HOLD_PARALLEL=K` runs K at once); keep
            // every muxer (and its driver) alive.
            let at_once = std::env::var("PEER_HOLD_PARALLEL")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let mut held = Vec::with_capacity(count);
            let mut dials = futures::stream::iter((0..count).map(|i| {
                let dial = transport.dial(addr.clone());
                async move { dial.await.map_err(|e| format!("dial {i}: {e}")) }
            }))
            .buffer_unordered(at_once);
            while let Some(result) = dials.next().await {
                let (_, muxer) = result?;
                tokio::spawn(node::serve_connection(
                    muxer.clone(),
                    me.clone(),
                    Some(addr.clone()),
                ));
                held.push(muxer);
            }
            println!("HOLD OK {}", held.len());
            let _ = std::io::stdout().flush();
            HELD.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
            drop(held);
            Err("hold ended".into())
        }
        Mode::Dial(addr) => {
            let (peer, muxer) = transport
                .dial(addr.clone())
                .await
                .map_err(|e| format!("dial: {e}"))?;
            // Serve the remote's streams too (identify, ping) while we test.
            let me = Arc::new(Identity {
                public_key: key.public(),
                listen_addrs: Vec::new(),
            });
            tokio::spawn(node::serve_connection(
                muxer.clone(),
                me,
                Some(addr.clone()),
            ));
            let line = if args.ping {
                let rtt = node::ping_peer(&muxer, 5).await?;
                format!("PING OK {:.3}", rtt.as_secs_f64() * 1000.0)
            } else if let Some((up, down)) = args.perf {
                let result = node::perf_peer(&muxer, up, down).await?;
                format!(
                    "PERF upload {:.2} download {:.2}",
                    result.upload_mib_s(),
                    result.download_mib_s()
                )
            } else {
                let elapsed = node::echo_streams(&muxer, args.streams, args.bytes).await?;
                format!(
                    "OK {peer} {} {:.6}",
                    args.bytes * args.streams,
                    elapsed.as_secs_f64()
                )
            };
            let _ = muxer.close().await;
            Ok(line)
        }
    }
}
