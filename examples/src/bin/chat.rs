//! Chat between two terminals: `chat` listens and prints how to join; `chat --dial ADDR` joins.
use futures::StreamExt;
use libp2p_host::{Host, Keypair, Stream};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/0.0.0.0/tcp/0".parse()?)
        .build()
        .await?;
    let stream = match std::env::args().nth(2) {
        Some(addr) => {
            let peer = host.dial(addr.parse()?).await?;
            host.new_stream(peer, &["/chat/1.0.0"]).await?
        }
        None => {
            let mut chats = host.accept("/chat/1.0.0")?;
            println!("* join: chat --dial ADDR, one of {:?}", host.p2p_addrs());
            chats.next().await.ok_or("host closed")?
        }
    };
    chat(stream).await?;
    std::process::exit(0); // without waiting for stdin's reader thread
}

async fn chat(stream: Stream) -> std::io::Result<()> {
    let peer = stream.remote_peer().to_string();
    println!("* {peer} joined; type away (Ctrl-D leaves)");
    let (theirs, mut to_them) = tokio::io::split(stream);
    let mut theirs = BufReader::new(theirs).lines();
    let mut ours = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = ours.next_line() => match line? {
                Some(line) => to_them.write_all(format!("{line}\n").as_bytes()).await?,
                None => break,
            },
            line = theirs.next_line() => match line? {
                Some(line) => println!("{}> {line}", &peer[peer.len() - 6..]),
                None => break println!("* {peer} left"),
            },
        }
    }
    to_them.shutdown().await
}
