//! Muxer throughput and stream rate, beside the raw pipe they run on.
//!
//! `cargo bench -p examples --bench muxers` prints, for mplex and yamux over an in-memory pipe
//! and over loopback TCP with plaintext: one stream's throughput, 100 concurrent streams'
//! total throughput, and the stream open+close rate; with the raw pipe and raw loopback TCP
//! (no muxer, same run) as the baselines. Each figure is the median of `REPS` runs (min and
//! max shown). `BENCH_MIB` scales the transfer size (default 256 MiB per throughput run).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::testkit::transport_pair;
use libp2p_core::{Keypair, MuxerUpgrade, Role, Socket, StreamMuxer, TransportExt};
use libp2p_mplex::Mplex;
use libp2p_plaintext::Plaintext;
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_yamux::Yamux;
use tokio_util::compat::TokioAsyncReadCompatExt;

const REPS: usize = 5;
const CHUNK: usize = 64 * 1024;
const STREAMS: usize = 100;
const OPEN_CLOSE: usize = 2000;

fn total_bytes() -> usize {
    std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(256)
        << 20
}

/// Writes `bytes` in 64 KiB writes and closes.
async fn send_all<W: futures::AsyncWrite + Unpin>(mut w: W, bytes: usize) {
    let chunk = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK);
        w.write_all(&chunk[..n]).await.expect("write");
        left -= n;
    }
    w.close().await.expect("close");
}

/// Reads to the end; returns the count.
async fn recv_all<R: futures::AsyncRead + Unpin>(mut r: R) -> usize {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0;
    loop {
        let k = r.read(&mut buf).await.expect("read");
        if k == 0 {
            return n;
        }
        n += k;
    }
}

async fn raw<C: Socket>(a: C, b: C, bytes: usize) -> f64 {
    let start = Instant::now();
    let recv = tokio::spawn(recv_all(b));
    send_all(a, bytes).await;
    assert_eq!(recv.await.unwrap(), bytes);
    mib_s(bytes, start.elapsed())
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

async fn muxed<U, C>(upgrade: &U, a: C, b: C) -> (U::Muxer, U::Muxer)
where
    U: MuxerUpgrade<C>,
    C: Socket,
{
    let name = upgrade
        .protocol_names()
        .next()
        .expect("an upgrade names its protocol");
    let (x, y) = futures::join!(
        upgrade.upgrade(a, Role::Dialer, name),
        upgrade.upgrade(b, Role::Listener, name)
    );
    let (ma, da) = x.expect("upgrade");
    let (mb, db) = y.expect("upgrade");
    tokio::spawn(da);
    tokio::spawn(db);
    (ma, mb)
}

/// `streams` streams at once, `bytes` in total, dialer to listener.
async fn throughput<M: StreamMuxer>(dialer: M, listener: M, streams: usize, bytes: usize) -> f64 {
    let per = bytes / streams;
    let sink = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let s = listener.accept().await.expect("accept");
            tasks.push(tokio::spawn(recv_all(s)));
        }
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap();
        }
        n
    });
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let s = dialer.open().await.expect("open");
        tasks.push(tokio::spawn(send_all(s, per)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sink.await.unwrap(), per * streams);
    mib_s(per * streams, start.elapsed())
}

/// Streams opened, closed by both sides, one after another; streams per second.
async fn open_close<M: StreamMuxer>(dialer: M, listener: M) -> f64 {
    let server = tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf).await;
            let _ = s.close().await;
        }
    });
    let start = Instant::now();
    for _ in 0..OPEN_CLOSE {
        let mut s = dialer.open().await.expect("open");
        s.close().await.expect("close");
        let mut buf = [0u8; 1];
        assert_eq!(s.read(&mut buf).await.expect("read"), 0);
    }
    let rate = OPEN_CLOSE as f64 / start.elapsed().as_secs_f64();
    server.abort();
    rate
}

struct Row {
    name: String,
    unit: &'static str,
    runs: Vec<f64>,
    baseline: Option<f64>,
}

impl Row {
    fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }
}

async fn measure<F, Fut>(name: &str, unit: &'static str, mut f: F) -> Row
where
    F: FnMut() -> Fut,
    Fut: Future<Output = f64>,
{
    let mut runs = Vec::new();
    for _ in 0..REPS {
        let run = tokio::time::timeout(Duration::from_secs(120), f())
            .await
            .unwrap_or_else(|_| panic!("{name}: a run took over two minutes"));
        runs.push(run);
    }
    eprintln!("{name}: {runs:.1?} {unit}");
    Row {
        name: name.to_string(),
        unit,
        runs,
        baseline: None,
    }
}

fn memory_pair() -> (
    tokio_util::compat::Compat<tokio::io::DuplexStream>,
    tokio_util::compat::Compat<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (a.compat(), b.compat())
}

async fn tcp_pair() -> (TcpSocket, TcpSocket) {
    // Plain tokio sockets with TCP_NODELAY, connected through TcpTransport.
    libp2p_core::testkit::transport_pair(
        &TcpTransport::new(),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
    )
    .await
}

async fn plaintext_pair() -> (
    libp2p_core::Negotiated<libp2p_transport_tcp::TcpSocket>,
    libp2p_core::Negotiated<libp2p_transport_tcp::TcpSocket>,
) {
    let t = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(Keypair::generate_ed25519()));
    let ((_, a), (_, b)) = transport_pair(&t, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
    (a, b)
}

/// The row of `bytes` sent raw, without a muxer, over each socket pair `pair` makes.
async fn raw_row<C, P, PF>(name: &str, pair: P, bytes: usize) -> Row
where
    C: Socket,
    P: Fn() -> PF,
    PF: Future<Output = (C, C)>,
{
    measure(name, "MiB/s", || async {
        let (a, b) = pair().await;
        raw(a, b, bytes).await
    })
    .await
}

/// The rows of mplex, then yamux, over the socket pairs `pair` makes (`label` names them).
async fn both_muxers<C, P, PF>(
    rows: &mut Vec<Row>,
    label: &str,
    pair: P,
    single_base: f64,
    bytes: usize,
) where
    C: Socket,
    P: Fn() -> PF,
    PF: Future<Output = (C, C)>,
{
    let mplex = format!("mplex, {label}");
    muxer_rows(rows, &mplex, Mplex::default(), &pair, single_base, bytes).await;
    let yamux = format!("yamux, {label}");
    muxer_rows(rows, &yamux, Yamux::default(), &pair, single_base, bytes).await;
}

async fn muxer_rows<U, C, P, PF>(
    rows: &mut Vec<Row>,
    label: &str,
    upgrade: U,
    pair: P,
    single_base: f64,
    bytes: usize,
) where
    U: MuxerUpgrade<C>,
    C: Socket,
    P: Fn() -> PF,
    PF: Future<Output = (C, C)>,
{
    let upgrade = Arc::new(upgrade);
    let mut row = measure(&format!("{label}: 1 stream"), "MiB/s", || {
        let upgrade = upgrade.clone();
        let pair = pair();
        async move {
            let (a, b) = pair.await;
            let (d, l) = muxed(&*upgrade, a, b).await;
            throughput(d, l, 1, bytes).await
        }
    })
    .await;
    row.baseline = Some(single_base);
    rows.push(row);
    let mut row = measure(&format!("{label}: {STREAMS} streams"), "MiB/s", || {
        let upgrade = upgrade.clone();
        let pair = pair();
        async move {
            let (a, b) = pair.await;
            let (d, l) = muxed(&*upgrade, a, b).await;
            throughput(d, l, STREAMS, bytes).await
        }
    })
    .await;
    row.baseline = Some(single_base);
    rows.push(row);
    rows.push(
        measure(&format!("{label}: open+close"), "streams/s", || {
            let upgrade = upgrade.clone();
            let pair = pair();
            async move {
                let (a, b) = pair.await;
                let (d, l) = muxed(&*upgrade, a, b).await;
                open_close(d, l).await
            }
        })
        .await,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bytes = total_bytes();
        let mut rows = Vec::new();

        let mem = raw_row(
            "raw in-memory pipe (baseline)",
            || async { memory_pair() },
            bytes,
        )
        .await;
        let mem_base = mem.median();
        rows.push(mem);
        let tcp = raw_row("raw loopback TCP (baseline)", tcp_pair, bytes).await;
        let tcp_base = tcp.median();
        rows.push(tcp);
        let pt = raw_row("plaintext over TCP, no muxer", plaintext_pair, bytes).await;
        rows.push(Row {
            baseline: Some(tcp_base),
            ..pt
        });

        both_muxers(
            &mut rows,
            "memory",
            || async { memory_pair() },
            mem_base,
            bytes,
        )
        .await;
        both_muxers(&mut rows, "TCP+plaintext", plaintext_pair, tcp_base, bytes).await;

        println!(
            "\n{:<36} {:>10} {:>10} {:>10} {:>10}  {:>8}",
            "figure", "median", "min", "max", "unit", "vs raw"
        );
        for r in &rows {
            let min = r.runs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = r.runs.iter().cloned().fold(0.0, f64::max);
            let ratio = r
                .baseline
                .map(|b| format!("{:.2}", r.median() / b))
                .unwrap_or_default();
            println!(
                "{:<36} {:>10.1} {:>10.1} {:>10.1} {:>10}  {:>8}",
                r.name,
                r.median(),
                min,
                max,
                r.unit,
                ratio
            );
        }
    });
}
