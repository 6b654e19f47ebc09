//! `rawtcp`: the raw-TCP baseline of the benchmark (`bench/run`): the perf protocol's
//! semantics with no security, no muxer and no protocol negotiation.
//!
//! ```text
//! rawtcp --listen 127.0.0.1:0                       # prints `LISTEN <addr>`, serves until killed
//! rawtcp --dial ADDR --upload N --download M        # prints `PERF upload <MiB/s> download <MiB/s>`
//! ```
//!
//! The dialer sends the 8-byte big-endian count M, then N bytes, then shuts its write side; the
//! listener drains the upload to EOF, sends M bytes and closes. Plain tokio TCP, `TCP_NODELAY`,
//! 64 KiB writes. Upload time runs from the first write to the shutdown; download time from
//! there to the listener's last byte (as in `/perf/1.0.0`).
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 64 * 1024;

async fn send_zeros(stream: &mut TcpStream, mut count: u64) -> std::io::Result<()> {
    let buf = vec![0u8; CHUNK];
    while count > 0 {
        let n = count.min(CHUNK as u64) as usize;
        stream.write_all(&buf[..n]).await?;
        count -= n as u64;
    }
    Ok(())
}

async fn drain(stream: &mut TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let wanted = stream.read_u64().await?;
    drain(&mut stream).await?;
    send_zeros(&mut stream, wanted).await?;
    stream.shutdown().await
}

async fn listen(addr: &str) -> Result<String, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("LISTEN {local}");
    let _ = std::io::stdout().flush();
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = serve(stream).await {
                eprintln!("rawtcp: {e}");
            }
        });
    }
}

async fn dial(addr: &str, upload: u64, download: u64) -> Result<String, String> {
    let io = |e: std::io::Error| format!("perf: {e}");
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(io)?;
    let start = Instant::now();
    stream
        .write_all(&download.to_be_bytes())
        .await
        .map_err(io)?;
    send_zeros(&mut stream, upload).await.map_err(io)?;
    stream.shutdown().await.map_err(io)?;
    let upload_time = start.elapsed();
    let got = drain(&mut stream).await.map_err(io)?;
    let download_time = start.elapsed() - upload_time;
    if got != download {
        return Err(format!("perf: asked for {download} bytes, received {got}"));
    }
    let rate =
        |bytes: u64, t: Duration| bytes as f64 / (1024.0 * 1024.0) / t.as_secs_f64().max(1e-9);
    Ok(format!(
        "PERF upload {:.2} download {:.2}",
        rate(upload, upload_time),
        rate(download, download_time)
    ))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut listen_addr, mut dial_addr) = (None, None);
    let (mut upload, mut download, mut timeout) = (0u64, 0u64, 120u64);
    let mut bad = None;
    while let Some(flag) = args.next() {
        let value = args.next();
        let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), &value) {
            ("--listen", Some(v)) => listen_addr = Some(v.clone()),
            ("--dial", Some(v)) => dial_addr = Some(v.clone()),
            ("--upload", v) if number(v).is_some() => upload = number(v).unwrap_or(0),
            ("--download", v) if number(v).is_some() => download = number(v).unwrap_or(0),
            ("--timeout", v) if number(v).is_some() => timeout = number(v).unwrap_or(0),
            _ => {
                bad = Some(format!("usage: bad option {flag}"));
                break;
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match (bad, listen_addr, dial_addr) {
        (Some(b), _, _) => Err(b),
        (None, Some(a), None) => runtime.block_on(listen(&a)),
        (None, None, Some(a)) => runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(timeout), dial(&a, upload, download))
                .await
                .unwrap_or_else(|_| Err("timeout".into()))
        }),
        _ => Err("usage: one of --listen ADDR or --dial ADDR".into()),
    };
    let code = match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(reason) => {
            println!("FAIL {reason}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
