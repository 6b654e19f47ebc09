//! `/perf/1.0.0`, as the libp2p perf spec defines it: the dialer sends the 8-byte big-endian
//! count of bytes it wants back, then its upload, then closes its write side; the listener
//! reads everything, then sends the requested bytes and closes.

use std::io;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::PERF_CHUNK;

/// The protocol name.
pub const PROTOCOL: &str = "/perf/1.0.0";

/// What a perf run measured.
#[derive(Debug, Clone, Copy)]
pub struct PerfResult {
    /// Bytes sent to the listener.
    pub uploaded: u64,
    /// Time from the first byte written until our write side was closed.
    pub upload_time: Duration,
    /// Bytes received back.
    pub downloaded: u64,
    /// Time from our close until the listener's last byte arrived.
    pub download_time: Duration,
}

impl PerfResult {
    /// Upload rate in MiB/s.
    pub fn upload_mib_s(&self) -> f64 {
        mib_per_s(self.uploaded, self.upload_time)
    }

    /// Download rate in MiB/s.
    pub fn download_mib_s(&self) -> f64 {
        mib_per_s(self.downloaded, self.download_time)
    }
}

fn mib_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / time.as_secs_f64().max(1e-9)
}

async fn send_zeros<S: AsyncWrite + Unpin>(stream: &mut S, mut count: u64) -> io::Result<()> {
    let buf = vec![0u8; PERF_CHUNK];
    while count > 0 {
        let n = count.min(PERF_CHUNK as u64) as usize;
        stream.write_all(&buf[..n]).await?;
        count -= n as u64;
    }
    Ok(())
}

async fn drain<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<u64> {
    let mut buf = vec![0u8; PERF_CHUNK];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Serves one perf stream; returns (bytes received, bytes sent).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<(u64, u64)> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let wanted = u64::from_be_bytes(header);
    let received = drain(&mut stream).await?;
    send_zeros(&mut stream, wanted).await?;
    stream.close().await?;
    Ok((received, wanted))
}

/// Runs perf as the dialer on a stream where `/perf/1.0.0` has been agreed.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    upload: u64,
    download: u64,
) -> io::Result<PerfResult> {
    let start = Instant::now();
    stream.write_all(&download.to_be_bytes()).await?;
    send_zeros(&mut stream, upload).await?;
    stream.close().await?;
    let upload_time = start.elapsed();
    let downloaded = drain(&mut stream).await?;
    let download_time = start.elapsed() - upload_time;
    if downloaded != download {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("perf: asked for {download} bytes, received {downloaded}"),
        ));
    }
    Ok(PerfResult {
        uploaded: upload,
        upload_time,
        downloaded,
        download_time,
    })
}
