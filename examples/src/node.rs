//! The node logic of the `peer` program, generic over any muxed connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::multistream::{self, Negotiated};
use libp2p_core::{Multiaddr, PublicKey, StreamMuxer};
use libp2p_host::{identify, perf, ping};

/// The echo test protocol.
pub const ECHO: &str = "/echo/1.0.0";
/// Every protocol the node serves.
pub const SERVED: [&str; 4] = [ECHO, ping::PROTOCOL, identify::PROTOCOL, perf::PROTOCOL];
/// The agent string sent in identify.
pub const AGENT: &str = concat!("libp2p-modular-peer/", env!("CARGO_PKG_VERSION"));

/// What the node says about itself in identify.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Our public key.
    pub public_key: PublicKey,
    /// Where we listen.
    pub listen_addrs: Vec<Multiaddr>,
}

/// Serves every inbound stream of a connection until it closes. `remote_addr` is reported to
/// the remote in identify as the address we see it at.
pub async fn serve_connection<M: StreamMuxer>(
    muxer: M,
    me: Arc<Identity>,
    remote_addr: Option<Multiaddr>,
) {
    while let Ok(stream) = muxer.accept().await {
        let me = me.clone();
        let remote_addr = remote_addr.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_stream(stream, &me, remote_addr).await {
                tracing::debug!(error = %e, "inbound stream failed");
            }
        });
    }
}

async fn serve_stream<S: libp2p_core::Socket>(
    stream: S,
    me: &Identity,
    remote_addr: Option<Multiaddr>,
) -> Result<(), String> {
    let config = multistream::Config::default();
    let (protocol, stream) = multistream::listener_select(stream, &SERVED[..], &config)
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(%protocol, "inbound stream");
    serve_protocol(&protocol, stream, me, remote_addr).await
}

/// Serves one of [`SERVED`] on a stream where it has been agreed.
pub async fn serve_negotiated<S: libp2p_core::Socket>(
    protocol: String,
    stream: S,
    me: Arc<Identity>,
    remote_addr: Option<Multiaddr>,
) {
    if let Err(e) = serve_protocol(&protocol, stream, &me, remote_addr).await {
        tracing::debug!(error = %e, %protocol, "inbound stream failed");
    }
}

async fn serve_protocol<S: libp2p_core::Socket>(
    protocol: &str,
    mut stream: S,
    me: &Identity,
    remote_addr: Option<Multiaddr>,
) -> Result<(), String> {
    match protocol {
        ECHO => {
            // Read a chunk, write it back: no split halves (and their lock) on the hot path.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                stream
                    .write_all(&buf[..n])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            stream.close().await.map_err(|e| e.to_string())
        }
        ping::PROTOCOL => ping::serve(stream)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        identify::PROTOCOL => {
            let info = identify::Info {
                public_key: me.public_key.clone(),
                protocol_version: "/ipfs/0.1.0".into(),
                agent_version: AGENT.into(),
                listen_addrs: me.listen_addrs.clone(),
                protocols: SERVED.iter().map(|p| p.to_string()).collect(),
                observed_addr: remote_addr,
            };
            identify::send(stream, &info)
                .await
                .map_err(|e| e.to_string())
        }
        perf::PROTOCOL => perf::serve(stream)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        other => Err(format!("negotiated unknown protocol {other}")),
    }
}

/// Opens a stream and agrees on `protocol`.
pub async fn open<M: StreamMuxer>(
    muxer: &M,
    protocol: &str,
) -> Result<Negotiated<M::Stream>, String> {
    let stream = muxer
        .open()
        .await
        .map_err(|e| format!("open stream: {e}"))?;
    let config = multistream::Config::default();
    let (_, stream) =
        multistream::dialer_select(stream, [protocol], multistream::Version::V1, &config)
            .await
            .map_err(|e| format!("negotiate {protocol}: {e}"))?;
    Ok(stream)
}

/// Bytes of a deterministic pattern.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Sends `len` bytes on a new echo stream while reading the echo; checks every byte.
pub async fn echo<M: StreamMuxer>(muxer: &M, len: usize, seed: u64) -> Result<(), String> {
    let stream = open(muxer, ECHO).await?;
    let data = pattern(seed, len);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        for chunk in data.chunks(64 * 1024) {
            writer.write_all(chunk).await?;
        }
        writer.flush().await?;
        writer.close().await
    };
    let read = async {
        let mut back = Vec::with_capacity(len);
        reader.read_to_end(&mut back).await.map(|_| back)
    };
    let (written, back) = futures::join!(write, read);
    written.map_err(|e| format!("echo write: {e}"))?;
    let back = back.map_err(|e| format!("echo read: {e}"))?;
    if back.len() != data.len() {
        return Err(format!(
            "echo returned {} bytes, sent {}",
            back.len(),
            data.len()
        ));
    }
    if back != data {
        return Err("echo returned different bytes".into());
    }
    Ok(())
}

/// Runs `count` echo streams of `len` bytes at once; returns the elapsed time.
pub async fn echo_streams<M: StreamMuxer>(
    muxer: &M,
    count: usize,
    len: usize,
) -> Result<Duration, String> {
    let start = Instant::now();
    let runs = (0..count).map(|i| echo(muxer, len, i as u64 + 1));
    futures::future::try_join_all(runs).await?;
    Ok(start.elapsed())
}

/// Pings `count` times on one stream; returns the average round-trip time.
pub async fn ping_peer<M: StreamMuxer>(muxer: &M, count: u32) -> Result<Duration, String> {
    let stream = open(muxer, ping::PROTOCOL).await?;
    let mut pinger = ping::Pinger::new(stream);
    let mut total = Duration::ZERO;
    for _ in 0..count {
        total += pinger.ping().await.map_err(|e| format!("ping: {e}"))?;
    }
    let _ = pinger.close().await;
    Ok(total / count.max(1))
}

/// Runs `/perf/1.0.0` once.
pub async fn perf_peer<M: StreamMuxer>(
    muxer: &M,
    upload: u64,
    download: u64,
) -> Result<perf::PerfResult, String> {
    let stream = open(muxer, perf::PROTOCOL).await?;
    perf::run(stream, upload, download)
        .await
        .map_err(|e| format!("perf: {e}"))
}
