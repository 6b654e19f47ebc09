//! A chat between two terminals.
//!
//! ```sh
//! # terminal 1: listen (prints the command for terminal 2)
//! cargo run --release -p examples --bin chat
//! # terminal 2: dial the address printed by terminal 1
//! cargo run --release -p examples --bin chat -- --dial /ip4/192.168.1.5/tcp/40123/p2p/12D3KooW...
//! ```
//!
//! Lines typed on either side appear on the other, after the sender's short peer id.
//! End with Ctrl-D (or Ctrl-C). Options: `--listen ADDR` (default `/ip4/0.0.0.0/tcp/0`),
//! `--dial ADDR/p2p/ID`. `RUST_LOG=debug` shows the stack's log on stderr.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use libp2p_core::{split_peer_id, Multiaddr};
use libp2p_host::{HandlerResult, Host, Keypair, PeerId, Stream};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, WriteHalf};
use tokio::sync::Mutex;

const CHAT: &str = "/chat/1.0.0";

/// Where typed lines go: the write half of the current chat stream, if any.
type Outbox = Arc<Mutex<Option<WriteHalf<Stream>>>>;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let (listen, dial) = parse_args()?;

    let host = Host::builder(Keypair::generate_ed25519())
        .listen_on(listen)
        .build()
        .await?;
    let outbox = Outbox::default();

    // Someone opened a chat with us.
    let inbox = outbox.clone();
    host.set_stream_handler(CHAT, move |stream| chat_session(stream, inbox.clone()));

    let session = match dial {
        // We open a chat with someone.
        Some(addr) => {
            let (addr, peer) = split_peer_id(&addr);
            let peer = peer.ok_or("the address to dial must end with /p2p/<peer id>")?;
            host.connect(peer, vec![addr]).await?;
            let stream = host.new_stream(peer, &[CHAT]).await?;
            println!("* connected to {peer}; type away");
            tokio::spawn(chat_session(stream, outbox.clone()))
        }
        None => {
            // The listener reports the interface addresses right after the first one.
            tokio::time::sleep(Duration::from_millis(100)).await;
            println!("* I am {}, listening on:", host.peer_id());
            for addr in host.listen_addrs() {
                println!("*   {addr}");
            }
            if let Some(addr) = host.listen_addrs().first() {
                println!("* chat with me from another terminal:");
                println!(
                    "    cargo run --release -p examples --bin chat -- --dial {addr}/p2p/{}",
                    host.peer_id()
                );
            }
            tokio::spawn(futures::future::pending())
        }
    };

    // Send what we type, until stdin ends or (when we dialed) the other side leaves.
    let typing = async {
        let mut stdin = stdin_lines();
        while let Some(line) = stdin.recv().await {
            match outbox.lock().await.as_mut() {
                Some(writer) => {
                    writer.write_all(format!("{line}\n").as_bytes()).await?;
                    writer.flush().await?;
                }
                None => println!("* nobody to talk to yet"),
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::select! {
        typed = typing => typed?,
        _ = session => {}
    }
    if let Some(mut writer) = outbox.lock().await.take() {
        let _ = writer.shutdown().await;
    }
    host.close().await;
    Ok(())
}

/// Prints what `stream`'s peer says; meanwhile what we type goes to it.
async fn chat_session(stream: Stream, outbox: Outbox) -> HandlerResult {
    let peer = short(&stream.remote_peer());
    println!("* {peer} joined");
    let (reader, writer) = tokio::io::split(stream);
    *outbox.lock().await = Some(writer);
    let mut lines = BufReader::new(reader).lines();
    while let Some(line) = lines.next_line().await? {
        println!("{peer}> {line}");
    }
    println!("* {peer} left");
    outbox.lock().await.take();
    Ok(())
}

/// The lines typed on stdin, read on a thread of their own. (This is what `tokio::io::stdin`
/// does too; it needs tokio's `io-std` feature, which this crate does not enable.)
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The last characters of a peer id, enough to tell peers apart on screen.
fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    s[s.len() - 6..].to_string()
}

fn parse_args() -> Result<(Multiaddr, Option<Multiaddr>), String> {
    let mut listen = "/ip4/0.0.0.0/tcp/0".to_string();
    let mut dial = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--dial" => dial = Some(args.next().ok_or("--dial needs an address")?),
            _ => {
                return Err(format!(
                    "usage: chat [--listen ADDR] [--dial ADDR/p2p/ID], not {arg}"
                ))
            }
        }
    }
    let parse = |s: &str| s.parse::<Multiaddr>().map_err(|e| format!("{s}: {e}"));
    Ok((parse(&listen)?, dial.as_deref().map(parse).transpose()?))
}
