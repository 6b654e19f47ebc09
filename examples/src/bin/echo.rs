//! A small sample of the Host API: an echo service on `/echo/1.0.0`.
//!
//! ```sh
//! cargo run --release -p examples --bin echo -- --listen /ip4/127.0.0.1/tcp/4001
//! cargo run --release -p examples --bin echo -- --dial /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... "hello there"
//! ```
#![forbid(unsafe_code)]

use examples::Error;
use libp2p_host::Multiaddr;
use libp2p_host::{Host, Keypair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = "/echo/1.0.0";
const USAGE: &str = "usage: echo --listen ADDR | echo --dial ADDR/p2p/ID [message]";

#[tokio::main]
async fn main() {
    examples::sample_main("echo", run).await;
}

async fn run(args: Vec<String>) -> Result<(), Error> {
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--listen", addr] => listen(addr.parse()?).await,
        ["--dial", addr] => dial(addr.parse()?, "hello").await,
        ["--dial", addr, message] => dial(addr.parse()?, message).await,
        _ => Err(USAGE.into()),
    }
}

/// Serves `/echo/1.0.0`: sends back every byte until the dialer closes its side.
async fn listen(addr: Multiaddr) -> Result<(), Error> {
    let host = examples::listening_host(addr).await?;
    host.set_stream_handler(ECHO, |mut stream| async move {
        let peer = stream.remote_peer();
        let (mut reader, mut writer) = tokio::io::split(&mut stream);
        let n = tokio::io::copy(&mut reader, &mut writer).await?;
        writer.shutdown().await?;
        println!("echoed {n} bytes to {peer}");
        Ok(())
    })?;
    examples::serve_until_ctrl_c(host).await
}

/// Sends `message` on `/echo/1.0.0` and prints the reply.
async fn dial(addr: Multiaddr, message: &str) -> Result<(), Error> {
    let host = Host::builder(Keypair::generate_ed25519()).build().await?;
    let peer = host.dial(addr).await?;
    let mut stream = host.new_stream(peer, &[ECHO]).await?;
    stream.write_all(message.as_bytes()).await?;
    stream.shutdown().await?; // our side is done; the reply can still come
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    println!("{peer} replied: {reply}");
    host.close().await;
    Ok(())
}
