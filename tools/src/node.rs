//! The node logic of the `peer` program, on the Host: what a listener serves (echo and perf;
//! the host's own services answer identify and ping) and the checks a dialer runs.

use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_host::{perf, Host, PeerId};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The echo test protocol.
pub const ECHO: &str = "/echo/1.0.0";
/// The agent string sent in identify.
pub const AGENT: &str = concat!("libp2p-modular-peer/", env!("CARGO_PKG_VERSION"));

/// The request-response test protocol with JSON bodies (see interop/PEER-CLI.md).
pub const REQ_JSON: &str = "/reqresp-json/1.0.0";
/// The request-response test protocol with CBOR bodies.
pub const REQ_CBOR: &str = "/reqresp-cbor/1.0.0";

/// A test request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestRequest {
    /// Some text.
    pub message: String,
    /// A number.
    pub n: u64,
}

/// The answer to a [`TestRequest`]: the message upper-cased, the number plus one.
pub type TestResponse = TestRequest;

fn answer(request: &TestRequest) -> TestResponse {
    TestRequest {
        message: request.message.to_uppercase(),
        n: request.n + 1,
    }
}

/// Serves [`REQ_JSON`] and [`REQ_CBOR`] on `host`.
pub fn serve_requests(host: &Host) -> Result<(), String> {
    for protocol in [REQ_JSON, REQ_CBOR] {
        let mut requests = host.serve_requests(protocol).map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                tokio::spawn(async move {
                    let result = if request.protocol() == REQ_JSON {
                        match request.json::<TestRequest>() {
                            Ok(r) => request.respond_json(&answer(&r)).await,
                            Err(e) => Err(e),
                        }
                    } else {
                        match request.cbor::<TestRequest>() {
                            Ok(r) => request.respond_cbor(&answer(&r)).await,
                            Err(e) => Err(e),
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "request failed");
                    }
                });
            }
        });
    }
    Ok(())
}

/// Sends 5 test requests one after another with `codec` (`json` or `cbor`), checking each
/// answer; returns the average round trip.
pub async fn request_peer(host: &Host, peer: PeerId, codec: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    for i in 1..=5u64 {
        let request = TestRequest {
            message: format!("hello-{i}"),
            n: i,
        };
        let start = Instant::now();
        let response: TestResponse = match codec {
            "json" => host.request_json(peer, REQ_JSON, &request).await,
            "cbor" => host.request_cbor(peer, REQ_CBOR, &request).await,
            other => return Err(format!("unsupported: request codec {other}")),
        }
        .map_err(|e| format!("request {i}: {e}"))?;
        total += start.elapsed();
        if response != answer(&request) {
            return Err(format!("request {i}: wrong answer {response:?}"));
        }
    }
    Ok(total / 5)
}

/// Serves `/echo/1.0.0` (every byte back until the remote closes its write side, then close)
/// and `/perf/1.0.0` on `host`.
pub fn serve(host: &Host) -> Result<(), String> {
    host.set_stream_handler(ECHO, |mut stream| async move {
        // Read a chunk, write it back: no split halves (and their lock) on the hot path.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).await?;
        }
        stream.shutdown().await?;
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    host.set_stream_handler(perf::PROTOCOL, |stream| async move {
        perf::serve(stream.into_futures()).await?;
        Ok(())
    })
    .map_err(|e| e.to_string())
}

/// Sends `len` bytes on a new echo stream while reading the echo; checks every byte.
pub async fn echo(host: &Host, peer: PeerId, len: usize, seed: u64) -> Result<(), String> {
    let stream = host
        .new_stream(peer, &[ECHO])
        .await
        .map_err(|e| format!("open echo stream: {e}"))?;
    let data = libp2p_core::testkit::pattern(seed, len);
    let (mut reader, mut writer) = stream.into_futures().split();
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
pub async fn echo_streams(
    host: &Host,
    peer: PeerId,
    count: usize,
    len: usize,
) -> Result<Duration, String> {
    let start = Instant::now();
    let runs = (0..count).map(|i| echo(host, peer, len, i as u64 + 1));
    futures::future::try_join_all(runs).await?;
    Ok(start.elapsed())
}

/// Pings `count` times (the host reuses one stream); returns the average round-trip time.
pub async fn ping_peer(host: &Host, peer: PeerId, count: u32) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    for _ in 0..count {
        total += host.ping(peer).await.map_err(|e| e.to_string())?;
    }
    Ok(total / count.max(1))
}

/// Runs `/perf/1.0.0` once.
pub async fn perf_peer(
    host: &Host,
    peer: PeerId,
    upload: u64,
    download: u64,
) -> Result<perf::PerfResult, String> {
    let stream = host
        .new_stream(peer, &[perf::PROTOCOL])
        .await
        .map_err(|e| format!("open perf stream: {e}"))?;
    perf::run(stream.into_futures(), upload, download)
        .await
        .map_err(|e| format!("perf: {e}"))
}
