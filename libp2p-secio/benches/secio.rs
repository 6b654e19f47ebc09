//! Throughput and handshake benchmark of `/secio/1.0.0`.
//!
//! `cargo bench -p libp2p-secio` prints a table of min / median / max over `REPS` repetitions:
//!
//! 1. bare crypto on one core (the calls `stream.rs` makes: `Ctr128BE<Aes*>::apply_keystream`
//!    followed by `ring::hmac::sign` over each 64 KiB message),
//! 2. the SECIO channel over `tokio::io::duplex(1 << 20)`,
//! 3. the SECIO channel over loopback TCP,
//! 4. raw loopback TCP (no crypto) with the same 64 KiB writes,
//! 5. sequential Ed25519 handshakes over an in-memory pipe.
//!
//! In 2.-4. the sender and the receiver each run on a thread and runtime of their own, as two
//! processes would. The channel's rate is set against the bare crypto's (the sender encrypts
//! and MACs every byte on one core while the receiver verifies and decrypts it on the other,
//! so with no overhead at all the channel would match the bare rate). Over TCP the kernel's
//! own work shares the same cores: the summary at the end gives the rate those measured costs
//! allow (`cores / (2 / bare + 1 / raw TCP)`, each per CPU-second) and the channel against it.
//!
//! Environment knobs (for profiling runs, e.g. under callgrind):
//! * `SECIO_BENCH_ONLY=crypto,mem,tcp,raw,hs` — run only the listed parts (default: all);
//! * `SECIO_BENCH_MIB=32` — MiB moved per channel repetition (default 256);
//! * `SECIO_BENCH_REPS=1` — repetitions (default 5);
//! * `SECIO_BENCH_HANDSHAKES=500` — handshakes per repetition (default 500).

use std::hint::black_box;
use std::time::{Duration, Instant};

use ctr::cipher::{KeyIvInit, StreamCipher};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::{Keypair, Role, SecurityUpgrade, Socket};
use libp2p_secio::{Secio, PROTOCOL};
use ring::hmac;
use tokio_util::compat::TokioAsyncReadCompatExt;

const MSG: usize = 64 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

struct Opts {
    only: Option<Vec<String>>,
    mib: usize,
    reps: usize,
    handshakes: usize,
}

impl Opts {
    fn from_env() -> Self {
        let num = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Opts {
            only: std::env::var("SECIO_BENCH_ONLY")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            mib: num("SECIO_BENCH_MIB", 256).max(1),
            reps: num("SECIO_BENCH_REPS", 5).max(1),
            handshakes: num("SECIO_BENCH_HANDSHAKES", 500).max(1),
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p == part))
    }
}

/// min / median / max of a sample.
#[derive(Clone, Copy)]
struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        min: v[0],
        median,
        max: v[n - 1],
    }
}

fn row(name: &str, s: Stats, unit: &str, note: &str) {
    println!(
        "{name:<46} {:>10.1} {:>10.1} {:>10.1}  {unit:<6} {note}",
        s.min, s.median, s.max
    );
}

/// CPU time this process has spent so far (sum of every thread's on-CPU time, from
/// `/proc/self/task/*/schedstat`, nanosecond resolution). `None` off Linux.
fn cpu_time() -> Option<Duration> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

/// On-CPU time of the calling thread.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        text.split_whitespace().next()?.parse().ok()?,
    ))
}

/// Throughput (MiB/s of wall time) and cost (MiB per CPU-second of the whole process).
#[derive(Clone, Copy)]
struct Run {
    wall: f64,
    per_cpu: f64,
}

fn mibps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// 1. Bare crypto.

#[derive(Clone, Copy)]
enum Aes {
    A128,
    A256,
}

enum Ctr {
    A128(Box<ctr::Ctr128BE<aes::Aes128>>),
    A256(Box<ctr::Ctr128BE<aes::Aes256>>),
}

impl Ctr {
    fn new(kind: Aes) -> Self {
        let iv = [7u8; 16];
        match kind {
            Aes::A128 => Ctr::A128(Box::new(
                ctr::Ctr128BE::<aes::Aes128>::new_from_slices(&[1u8; 16], &iv).unwrap(),
            )),
            Aes::A256 => Ctr::A256(Box::new(
                ctr::Ctr128BE::<aes::Aes256>::new_from_slices(&[1u8; 32], &iv).unwrap(),
            )),
        }
    }
    fn apply(&mut self, data: &mut [u8]) {
        match self {
            Ctr::A128(c) => c.apply_keystream(data),
            Ctr::A256(c) => c.apply_keystream(data),
        }
    }
}

/// What one bare-crypto measurement does per 64 KiB message.
#[derive(Clone, Copy)]
enum Work {
    Both,
    CtrOnly,
    MacOnly,
}

/// MiB/s of `work` over `total` bytes in 64 KiB messages, on the calling thread.
fn bare_once(aes: Aes, mac: hmac::Algorithm, work: Work, total: usize) -> Run {
    let mut cipher = Ctr::new(aes);
    let key = hmac::Key::new(mac, &[3u8; 20]);
    let mut buf = vec![0x5au8; MSG];
    let msgs = total / MSG;
    let cpu0 = thread_cpu_time();
    let start = Instant::now();
    for _ in 0..msgs {
        match work {
            Work::Both => {
                cipher.apply(&mut buf);
                black_box(hmac::sign(&key, black_box(&buf)));
            }
            Work::CtrOnly => cipher.apply(black_box(&mut buf)),
            Work::MacOnly => {
                black_box(hmac::sign(&key, black_box(&buf)));
            }
        }
    }
    let d = start.elapsed();
    let cpu = thread_cpu_time().zip(cpu0).map(|(b, a)| b - a);
    black_box(&buf);
    Run {
        wall: mibps(msgs * MSG, d),
        per_cpu: cpu.map_or(f64::NAN, |c| mibps(msgs * MSG, c)),
    }
}

/// Wall-clock rate and rate per CPU-second of the measuring thread.
fn bare(aes: Aes, mac: hmac::Algorithm, work: Work, o: &Opts) -> (Stats, Stats) {
    // Warm up (CPU feature detection, caches, frequency).
    bare_once(aes, mac, work, 16 << 20);
    let total = 128 << 20;
    let runs: Vec<Run> = (0..o.reps)
        .map(|_| bare_once(aes, mac, work, total))
        .collect();
    (
        stats(runs.iter().map(|r| r.wall).collect()),
        stats(runs.iter().map(|r| r.per_cpu).collect()),
    )
}

// ---------------------------------------------------------------------------------------------
// 2.–4. Channels.

/// Which socket a channel run uses.
#[derive(Clone, Copy)]
enum Pipe {
    /// `tokio::io::duplex` with a 1 MiB buffer.
    Memory,
    /// Loopback TCP, nodelay.
    Tcp,
}

/// One side's socket, before it is secured.
enum Raw {
    Memory(tokio::io::DuplexStream),
    Tcp(tokio::net::TcpStream),
}

/// Makes one side's socket, on that side's thread (a TCP socket belongs to the runtime that
/// registers it).
type MakeRaw = Box<dyn FnOnce() -> Raw + Send>;

/// A runtime of one thread: each side of a channel runs on its own, like two processes would,
/// so the sender's encryption and the receiver's decryption run in parallel on two cores
/// (on one multi-thread runtime the receiver's task is often woken into the sender's
/// worker and the two halves take turns).
fn side_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `work` with the side's socket, secured with SECIO if `secure`.
async fn with_socket<F, Fut>(
    raw: Raw,
    role: Role,
    secure: Option<(Keypair, Option<libp2p_core::PeerId>)>,
    work: F,
) -> Fut::Output
where
    F: FnOnce(Box<dyn Socket>) -> Fut,
    Fut: std::future::Future,
{
    let socket: Box<dyn Socket> = match raw {
        Raw::Memory(s) => Box::new(s.compat()),
        Raw::Tcp(s) => {
            s.set_nodelay(true).unwrap();
            Box::new(s.compat())
        }
    };
    match secure {
        None => work(socket).await,
        Some((key, expected)) => {
            let (_, secured) = Secio::new(key)
                .secure(socket, role, expected, PROTOCOL)
                .await
                .unwrap();
            work(Box::new(secured)).await
        }
    }
}

/// The dialer writes `total` bytes in 64 KiB writes and closes; the listener reads to EOF.
/// Each side sets up (and, with `secure`, handshakes) on its own thread and runtime; the
/// clock starts when both are ready and stops at the last byte read. Returns MiB/s of wall
/// time and MiB per CPU-second of the whole process over the same interval.
fn channel_once(pipe: Pipe, secure: bool, total: usize) -> Run {
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let listener_id = kb.public().to_peer_id();
    let (dial_key, listen_key) = if secure {
        (Some((ka, Some(listener_id))), Some((kb, None)))
    } else {
        (None, None)
    };
    let ready = std::sync::Arc::new(std::sync::Barrier::new(2));
    let done = std::sync::Arc::new(std::sync::Barrier::new(2));
    let (dial_raw, listen_raw): (MakeRaw, MakeRaw) = match pipe {
        Pipe::Memory => {
            let (a, b) = tokio::io::duplex(1 << 20);
            (
                Box::new(move || Raw::Memory(a)),
                Box::new(move || Raw::Memory(b)),
            )
        }
        Pipe::Tcp => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let dial = move || {
                let s = std::net::TcpStream::connect(addr).unwrap();
                s.set_nonblocking(true).unwrap();
                Raw::Tcp(tokio::net::TcpStream::from_std(s).unwrap())
            };
            let accept = move || {
                let (s, _) = listener.accept().unwrap();
                s.set_nonblocking(true).unwrap();
                Raw::Tcp(tokio::net::TcpStream::from_std(s).unwrap())
            };
            (Box::new(dial), Box::new(accept))
        }
    };
    let (ready_w, done_w) = (ready.clone(), done.clone());
    let writer = std::thread::spawn(move || {
        side_runtime().block_on(async move {
            with_socket(dial_raw(), Role::Dialer, dial_key, |mut w| async move {
                let buf = vec![0xa5u8; MSG];
                ready_w.wait();
                let start = Instant::now();
                let cpu0 = cpu_time();
                let mut left = total;
                while left > 0 {
                    let n = left.min(MSG);
                    w.write_all(&buf[..n]).await.unwrap();
                    left -= n;
                }
                w.close().await.unwrap();
                // Stay alive until the reader has read this thread's CPU time.
                done_w.wait();
                (start, cpu0)
            })
            .await
        })
    });
    let reader = std::thread::spawn(move || {
        side_runtime().block_on(async move {
            with_socket(
                listen_raw(),
                Role::Listener,
                listen_key,
                |mut r| async move {
                    let mut buf = vec![0u8; MSG];
                    let mut got = 0usize;
                    ready.wait();
                    loop {
                        let n = r.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    let end = Instant::now();
                    let cpu1 = cpu_time();
                    done.wait();
                    (got, end, cpu1)
                },
            )
            .await
        })
    });
    let (got, end, cpu1) = reader.join().unwrap();
    let (start, cpu0) = writer.join().unwrap();
    assert_eq!(got, total, "listener must read everything");
    let cpu = cpu1.zip(cpu0).map(|(b, a)| b - a);
    Run {
        wall: mibps(total, end - start),
        per_cpu: cpu.map_or(f64::NAN, |c| mibps(total, c)),
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Handshakes.

/// `n` sequential handshakes between two fixed Ed25519 identities over fresh in-memory pipes;
/// each side is its own task. Returns handshakes per second.
async fn handshakes_once(n: usize) -> f64 {
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (dialer_id, listener_id) = (ka.public().to_peer_id(), kb.public().to_peer_id());
    let (a, b) = (Secio::new(ka), Secio::new(kb));
    let start = Instant::now();
    for _ in 0..n {
        let (x, y) = tokio::io::duplex(64 * 1024);
        let (a2, b2) = (a.clone(), b.clone());
        let dial = tokio::spawn(async move {
            a2.secure(x.compat(), Role::Dialer, Some(listener_id), PROTOCOL)
                .await
                .map(|(p, _)| p)
        });
        let listen = tokio::spawn(async move {
            b2.secure(y.compat(), Role::Listener, None, PROTOCOL)
                .await
                .map(|(p, _)| p)
        });
        let (d, l) = (dial.await.unwrap(), listen.await.unwrap());
        assert_eq!(l.unwrap(), dialer_id);
        assert_eq!(d.unwrap(), listener_id);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let o = Opts::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let total = o.mib << 20;

    println!(
        "secio bench: {} repetitions per figure, {} MiB per channel run, {} KiB writes, \
         {} handshakes per run",
        o.reps,
        o.mib,
        MSG / 1024,
        o.handshakes
    );
    println!(
        "{:<46} {:>10} {:>10} {:>10}  {:<6}",
        "", "min", "median", "max", "unit"
    );

    // Which pair two `Secio` instances agree on: both offer "AES-256,AES-128" and
    // "SHA256,SHA512" with no way to change the lists, so it is always AES-256 + SHA256.
    // (wall-clock rate, rate per CPU-second) of that pair.
    let mut default_pair: Option<(Stats, Stats)> = None;
    if o.wants("crypto") {
        println!("-- 1. bare crypto, one core, 64 KiB messages (CTR apply_keystream + hmac::sign)");
        use hmac::{HMAC_SHA256 as S256, HMAC_SHA512 as S512};
        let cases: [(&str, Aes, hmac::Algorithm, Work, &str); 7] = [
            ("AES-128-CTR + HMAC-SHA256", Aes::A128, S256, Work::Both, ""),
            (
                "AES-256-CTR + HMAC-SHA256",
                Aes::A256,
                S256,
                Work::Both,
                "<- the pair two Secio peers agree on",
            ),
            (
                "AES-256-CTR + HMAC-SHA512",
                Aes::A256,
                S512,
                Work::Both,
                "(not selectable between two Secio peers)",
            ),
            ("  AES-128-CTR only", Aes::A128, S256, Work::CtrOnly, ""),
            ("  AES-256-CTR only", Aes::A256, S256, Work::CtrOnly, ""),
            ("  HMAC-SHA256 only", Aes::A256, S256, Work::MacOnly, ""),
            ("  HMAC-SHA512 only", Aes::A256, S512, Work::MacOnly, ""),
        ];
        for (index, (name, aes, mac, work, note)) in cases.into_iter().enumerate() {
            let (wall, cpu) = bare(aes, mac, work, &o);
            let note = format!("[{:.0}/CPU-s] {note}", cpu.median);
            row(name, wall, "MiB/s", &note);
            if index == 1 {
                default_pair = Some((wall, cpu));
            }
        }
    }

    let channel = |part: &str, title: &str, name: &str, f: &dyn Fn(usize) -> Run, crypto: bool| {
        if !o.wants(part) {
            return None;
        }
        println!("{title}");
        f(8 << 20); // warm-up
        let runs: Vec<Run> = (0..o.reps).map(|_| f(total)).collect();
        let wall = stats(runs.iter().map(|r| r.wall).collect());
        let cpu = stats(runs.iter().map(|r| r.per_cpu).collect());
        let (wall_note, cpu_note) = match (crypto, default_pair) {
            (true, Some((bw, bc))) => (
                format!("= {:.0}% of bare", 100.0 * wall.median / bw.median),
                format!(
                    "= {:.0}% of bare/2 per CPU-s (ideal 100%)",
                    200.0 * cpu.median / bc.median
                ),
            ),
            _ => (String::new(), String::new()),
        };
        row(name, wall, "MiB/s", &wall_note);
        row(
            "  bytes per CPU-second (all threads)",
            cpu,
            "MiB/s",
            &cpu_note,
        );
        Some((wall, cpu))
    };
    let _ = channel(
        "mem",
        "-- 2. secio channel, tokio::io::duplex(1 MiB), each side on its own thread",
        "secio over in-memory duplex",
        &|n| channel_once(Pipe::Memory, true, n),
        true,
    );
    let tcp = channel(
        "tcp",
        "-- 3. secio channel, loopback TCP (nodelay), each side on its own thread",
        "secio over loopback TCP",
        &|n| channel_once(Pipe::Tcp, true, n),
        true,
    );
    let raw = channel(
        "raw",
        "-- 4. raw loopback TCP, no crypto",
        "raw TCP over loopback",
        &|n| channel_once(Pipe::Tcp, false, n),
        false,
    );
    if let (Some((tcp_wall, _)), Some((_, raw_cpu)), Some((_, bare_cpu))) = (tcp, raw, default_pair)
    {
        // Per MiB moved over TCP: the bare crypto on each side, plus the kernel's TCP work
        // (raw TCP's CPU per MiB), on the cores the two sides have.
        let cores = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(2) as f64;
        let ceiling = cores / (2.0 / bare_cpu.median + 1.0 / raw_cpu.median);
        println!(
            "-- secio over TCP against what these costs allow on {cores} cores: \
             {cores} / (2 / {:.0} + 1 / {:.0}) = {ceiling:.0} MiB/s; the channel's median \
             {:.0} MiB/s is {:.0}% of it",
            bare_cpu.median,
            raw_cpu.median,
            tcp_wall.median,
            100.0 * tcp_wall.median / ceiling
        );
    }
    if o.wants("hs") {
        println!("-- 5. sequential handshakes, Ed25519 identities, P-256 ECDH, in-memory pipe");
        rt.block_on(handshakes_once(20));
        let v: Vec<f64> = (0..o.reps)
            .map(|_| rt.block_on(handshakes_once(o.handshakes)))
            .collect();
        let per_s = stats(v.clone());
        row("handshakes", per_s, "1/s", "");
        // Time per handshake: min time comes from max rate.
        let us = Stats {
            min: 1e6 / per_s.max,
            median: stats(v.iter().map(|r| 1e6 / r).collect()).median,
            max: 1e6 / per_s.min,
        };
        row("time per handshake", us, "µs", "");
    }
}
