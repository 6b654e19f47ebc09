//! Handshake rate and channel throughput of `/tls/1.0.0`, beside `/noise` in the same run.
//!
//! `cargo bench -p libp2p-tls` prints min / median / max over `REPS` repetitions of:
//!
//! 1. sequential Ed25519 handshakes, both sides in one task over an in-memory pipe (so the
//!    rate is what one core does for both ends of each handshake);
//! 2. one-way throughput over `tokio::io::duplex(1 << 20)`, the sender and the receiver each
//!    on a thread and runtime of its own, in 64 KiB writes.
//!
//! Knobs: `TLS_BENCH_HANDSHAKES` (per repetition, default 300), `TLS_BENCH_MIB` (per
//! repetition, default 256), `TLS_BENCH_REPS` (default 5).

use std::time::Instant;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::testkit::Handshake;
use libp2p_core::{Keypair, Role, SecurityUpgrade};
use libp2p_noise::Noise;
use libp2p_tls::Tls;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

type Pipe = Compat<tokio::io::DuplexStream>;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pipe() -> (Pipe, Pipe) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (a.compat(), b.compat())
}

fn summary(what: &str, unit: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{what:<34} min {:>9.1}  median {:>9.1}  max {:>9.1} {unit}",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    );
}

/// A current-thread runtime, and the protocol name `a` offers first.
fn runtime_for<S: SecurityUpgrade<Pipe>>(a: &S) -> (tokio::runtime::Runtime, &'static str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let name = a
        .protocol_names()
        .next()
        .expect("an upgrade names its protocol");
    (rt, name)
}

/// `a` dials `b` over `ca` / `cb`: both handshakes' results.
async fn secure_pair<S: SecurityUpgrade<Pipe>>(
    a: &S,
    b: &S,
    ca: Pipe,
    cb: Pipe,
    name: &str,
) -> (Handshake<S, Pipe>, Handshake<S, Pipe>) {
    futures::join!(
        a.secure(ca, Role::Dialer, None, name),
        b.secure(cb, Role::Listener, None, name)
    )
}

fn handshakes<S: SecurityUpgrade<Pipe>>(a: &S, b: &S, n: usize) -> f64 {
    let (rt, name) = runtime_for(a);
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..n {
            let (ca, cb) = pipe();
            let (x, y) = secure_pair(a, b, ca, cb, name).await;
            x.map_err(|e| e.to_string()).expect("dialer");
            y.map_err(|e| e.to_string()).expect("listener");
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
}

fn throughput<S: SecurityUpgrade<Pipe>>(a: &S, b: &S, mib: usize) -> f64 {
    let (rt, name) = runtime_for(a);
    let (ca, cb) = pipe();
    let (x, y) = rt.block_on(secure_pair(a, b, ca, cb, name));
    let (mut tx, mut rx) = (
        x.map_err(|e| e.to_string()).expect("dialer").1,
        y.map_err(|e| e.to_string()).expect("listener").1,
    );
    let total = mib << 20;
    let start = Instant::now();
    let sender = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..total / chunk.len() {
                tx.write_all(&chunk).await.expect("write");
            }
            tx.close().await.expect("close");
        })
    });
    let got = rt.block_on(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        loop {
            match rx.read(&mut buf).await.expect("read") {
                0 => break got,
                n => got += n,
            }
        }
    });
    sender.join().expect("sender");
    assert_eq!(got, total);
    mib as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let (n, mib, reps) = (
        env("TLS_BENCH_HANDSHAKES", 300),
        env("TLS_BENCH_MIB", 256),
        env("TLS_BENCH_REPS", 5),
    );
    let tls = (
        Tls::new(Keypair::generate_ed25519()),
        Tls::new(Keypair::generate_ed25519()),
    );
    let noise = (
        Noise::new(Keypair::generate_ed25519()),
        Noise::new(Keypair::generate_ed25519()),
    );
    let mut rates = (Vec::new(), Vec::new());
    let mut rates_mib = (Vec::new(), Vec::new());
    for _ in 0..reps {
        rates.0.push(handshakes(&tls.0, &tls.1, n));
        rates.1.push(handshakes(&noise.0, &noise.1, n));
        rates_mib.0.push(throughput(&tls.0, &tls.1, mib));
        rates_mib.1.push(throughput(&noise.0, &noise.1, mib));
    }
    println!("{n} handshakes, {mib} MiB, {reps} repetitions");
    summary("tls handshakes (both ends)", "/s", rates.0);
    summary("noise handshakes (both ends)", "/s", rates.1);
    summary("tls throughput (duplex pipe)", "MiB/s", rates_mib.0);
    summary("noise throughput (duplex pipe)", "MiB/s", rates_mib.1);
}
