//! Dials a foreign peer (by default the rust-libp2p peer of `interop/rust-peer`) over
//! TCP + Noise + Yamux, negotiates `/echo/1.0.0` on a stream and echoes bytes through it.
//!
//! ```text
//! cargo run -p libp2p-noise --example interop_dial                      # spawns the rust-peer
//! cargo run -p libp2p-noise --example interop_dial -- /ip4/…/tcp/…/p2p/… [bytes] [key]
//! ```
//!
//! With no address (or `-`) it starts `$RUST_PEER` (default
//! `interop/rust-peer/target/release/rust-peer`) with
//! `--listen /ip4/127.0.0.1/tcp/0 --security noise --muxer yamux` and dials the address of
//! its `LISTEN` line. `bytes` defaults to 1 MiB; `key` (our identity) is one of ed25519
//! (default), secp256k1, ecdsa, rsa. Prints `OK <peer> <bytes> <seconds>` or `FAIL <reason>`.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::multistream::{dialer_select, Config, Version};
use libp2p_core::testkit::pattern;
use libp2p_core::{Keypair, Multiaddr, StreamMuxer, Transport, TransportExt};
use libp2p_noise::Noise;
use libp2p_transport_tcp::TcpTransport;
use libp2p_yamux::Yamux;

/// Kills the spawned peer when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_rust_peer() -> Result<(Peer, Multiaddr), String> {
    let path = std::env::var("RUST_PEER").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../interop/rust-peer/target/release/rust-peer"
        )
        .to_string()
    });
    let mut child = Command::new(&path)
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--security",
            "noise",
            "--muxer",
            "yamux",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {path}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let peer = Peer(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the peer's stdout: {e}"))?;
    let addr = line
        .trim()
        .strip_prefix("LISTEN ")
        .ok_or_else(|| format!("unexpected first line {line:?}"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    Ok((peer, addr))
}

fn identity(kind: &str) -> Result<Keypair, String> {
    Ok(match kind {
        "ed25519" => Keypair::generate_ed25519(),
        "secp256k1" => Keypair::generate_secp256k1(),
        "ecdsa" => Keypair::generate_ecdsa(),
        "rsa" => {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/keys/rsa-2048.pk8");
            let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            match Keypair::rsa_from_pkcs8(&mut bytes.clone()) {
                Ok(k) => k,
                Err(_) => libp2p_core::identity::rsa::Keypair::try_decode_pkcs1(&mut bytes.clone())
                    .map_err(|e| format!("{path}: {e}"))?
                    .into(),
            }
        }
        other => return Err(format!("unknown key type {other}")),
    })
}

async fn run(addr: Multiaddr, bytes: usize, key: Keypair) -> Result<String, String> {
    let transport = TcpTransport::new()
        .upgrade()
        .authenticate(Noise::new(key))
        .multiplex(Yamux::default());
    let start = Instant::now();
    let (peer, muxer) = transport
        .dial(addr)
        .await
        .map_err(|e| format!("dial: {e}"))?;
    let stream = muxer.open().await.map_err(|e| format!("open: {e}"))?;
    let (_, stream) = dialer_select(stream, ["/echo/1.0.0"], Version::V1, &Config::default())
        .await
        .map_err(|e| format!("negotiating /echo/1.0.0: {e}"))?;

    let data = pattern(42, bytes);
    let (mut reader, mut writer) = stream.split();
    let write = async {
        for chunk in data.chunks(10_000) {
            writer.write_all(chunk).await?;
        }
        writer.flush().await?;
        writer.close().await
    };
    let read = async {
        let mut back = Vec::with_capacity(bytes);
        reader.read_to_end(&mut back).await.map(|_| back)
    };
    let (written, back) = futures::join!(write, read);
    written.map_err(|e| format!("write: {e}"))?;
    let back = back.map_err(|e| format!("read: {e}"))?;
    if back != data {
        return Err(format!(
            "echo differs: sent {} bytes, got {}",
            data.len(),
            back.len()
        ));
    }
    let _ = muxer.close().await;
    Ok(format!(
        "OK {peer} {bytes} {:.3}",
        start.elapsed().as_secs_f64()
    ))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = async {
        let (_peer, addr) = match args.first().filter(|a| a.as_str() != "-") {
            Some(addr) => (None, addr.parse().map_err(|e| format!("bad address: {e}"))?),
            None => {
                let (peer, addr) = spawn_rust_peer()?;
                eprintln!("rust-peer listening on {addr}");
                (Some(peer), addr)
            }
        };
        let bytes = match args.get(1) {
            Some(n) => n.parse().map_err(|e| format!("bad byte count: {e}"))?,
            None => 1 << 20,
        };
        let key = identity(args.get(2).map(String::as_str).unwrap_or("ed25519"))?;
        tokio::time::timeout(Duration::from_secs(60), run(addr, bytes, key))
            .await
            .map_err(|_| "timeout".to_string())?
    }
    .await;
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            println!("FAIL {e}");
            std::process::exit(1);
        }
    }
}
