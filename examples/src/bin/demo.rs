//! The demo: two nodes in one process on loopback TCP. Node B listens and serves
//! `/chat/1.0.0`; node A dials it, the connection is secured and multiplexed, A opens a chat
//! stream and they exchange a few messages; then A pings B and asks it who it is.
//!
//! It runs the stack of the original design (secio + mplex), then plaintext + yamux, and
//! prints every step.
#![forbid(unsafe_code)]

use std::sync::Arc;

use examples::node::{self, Identity};
use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncWriteExt, StreamExt};
use libp2p_core::multistream;
use libp2p_core::{
    Keypair, ListenerEvent, Multiaddr, PeerId, Protocol, StreamMuxer, Transport, TransportExt,
};
use libp2p_host::identify;
use libp2p_mplex::Mplex;
use libp2p_plaintext::Plaintext;
use libp2p_secio::Secio;
use libp2p_transport_tcp::TcpTransport;
use libp2p_yamux::Yamux;

const CHAT: &str = "/chat/1.0.0";

#[tokio::main]
async fn main() {
    let a = Keypair::generate_ed25519();
    let b = Keypair::generate_ed25519();
    println!("node A is {}", a.public().to_peer_id());
    println!("node B is {}", b.public().to_peer_id());

    println!("\n=== stack 1: TCP + secio + mplex (the original design)");
    let tcp = TcpTransport::new().upgrade();
    let stack_a = tcp.clone().authenticate(Secio::new(a.clone()));
    let stack_b = tcp.clone().authenticate(Secio::new(b.clone()));
    if let Err(e) = conversation(
        stack_a.multiplex(Mplex::default()),
        stack_b.multiplex(Mplex::default()),
        &a,
        &b,
        ["/secio/1.0.0", "/mplex/6.7.0"],
    )
    .await
    {
        println!("FAILED: {e}");
        std::process::exit(1);
    }

    println!("\n=== stack 2: TCP + plaintext + yamux");
    let stack_a = tcp.clone().authenticate(Plaintext::new(a.clone()));
    let stack_b = tcp.authenticate(Plaintext::new(b.clone()));
    if let Err(e) = conversation(
        stack_a.multiplex(Yamux::default()),
        stack_b.multiplex(Yamux::default()),
        &a,
        &b,
        ["/plaintext/2.0.0", "/yamux/1.0.0"],
    )
    .await
    {
        println!("FAILED: {e}");
        std::process::exit(1);
    }
    println!("\ndone");
}

async fn conversation<T, M>(
    node_a: T,
    node_b: T,
    key_a: &Keypair,
    key_b: &Keypair,
    names: [&str; 2],
) -> Result<(), String>
where
    T: Transport<Output = (PeerId, M)>,
    M: StreamMuxer,
{
    // B listens and serves chat plus the standard protocols.
    let mut listener = node_b
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .map_err(|e| e.to_string())?;
    let addr = match listener.next().await {
        Some(ListenerEvent::NewAddress(addr)) => addr,
        _ => return Err("the listener reported no address".to_string()),
    };
    println!("[B] listening on {addr}");
    let me_b = Arc::new(Identity {
        public_key: key_b.public(),
        listen_addrs: vec![addr.clone()],
    });
    let server = tokio::spawn(async move {
        while let Some(event) = listener.next().await {
            if let ListenerEvent::Incoming {
                pending,
                remote_addr,
                ..
            } = event
            {
                let (peer, muxer) = match node_b.accept(pending).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        println!("[B] inbound connection failed: {e}");
                        continue;
                    }
                };
                println!("[B] connection from {peer} at {remote_addr}");
                serve(muxer, me_b.clone(), remote_addr).await;
            }
        }
    });

    // A dials B by address and peer id.
    let target: Multiaddr = addr.with(Protocol::P2p(key_b.public().to_peer_id()));
    println!("[A] dialing {target}");
    let (peer, muxer) = node_a.dial(target).await.map_err(|e| e.to_string())?;
    println!(
        "[A] connected to {peer}: security {} and muxer {} negotiated",
        names[0], names[1]
    );
    let me_a = Arc::new(Identity {
        public_key: key_a.public(),
        listen_addrs: Vec::new(),
    });
    tokio::spawn(node::serve_connection(muxer.clone(), me_a, None));

    // The chat.
    let stream = node::open(&muxer, CHAT).await?;
    println!("[A] protocol {CHAT} agreed");
    let (reader, mut writer) = futures::AsyncReadExt::split(stream);
    let mut lines = BufReader::new(reader).lines();
    for message in ["hello B", "how is the weather on your side of the socket?"] {
        println!("[A] says: {message}");
        writer
            .write_all(format!("{message}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        writer.flush().await.map_err(|e| e.to_string())?;
        let answer = lines
            .next()
            .await
            .ok_or("B closed the chat")?
            .map_err(|e| e.to_string())?;
        println!("[A] hears: {answer}");
    }
    writer.close().await.map_err(|e| e.to_string())?;

    // Ping and identify.
    let rtt = node::ping_peer(&muxer, 3).await?;
    println!("[A] ping round trip: {:.3} ms", rtt.as_secs_f64() * 1e3);
    let id_stream = node::open(&muxer, identify::PROTOCOL).await?;
    let info = identify::receive(id_stream)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "[A] identify: {} agent {:?}, listens on {:?}, speaks {:?}",
        info.public_key.to_peer_id(),
        info.agent_version,
        info.listen_addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        info.protocols
    );
    let _ = muxer.close().await;
    server.abort();
    Ok(())
}

/// B's side: chat on `/chat/1.0.0`, the standard protocols on the others.
async fn serve<M: StreamMuxer>(muxer: M, me: Arc<Identity>, remote: Multiaddr) {
    let mut protocols = node::SERVED.to_vec();
    protocols.push(CHAT);
    while let Ok(stream) = muxer.accept().await {
        let config = multistream::Config::default();
        let (protocol, stream) =
            match multistream::listener_select(stream, &protocols[..], &config).await {
                Ok(agreed) => agreed,
                Err(e) => {
                    println!("[B] negotiation failed: {e}");
                    continue;
                }
            };
        if protocol != CHAT {
            let me = me.clone();
            let remote = remote.clone();
            tokio::spawn(node::serve_negotiated(protocol, stream, me, Some(remote)));
            continue;
        }
        println!("[B] protocol {CHAT} agreed, handing the stream to the chat handler");
        tokio::spawn(async move {
            let (reader, mut writer) = futures::AsyncReadExt::split(stream);
            let mut lines = BufReader::new(reader).lines();
            while let Some(Ok(line)) = lines.next().await {
                println!("[B] hears: {line}");
                let reply = format!("B got \"{line}\" ({} bytes)", line.len());
                println!("[B] says: {reply}");
                if writer
                    .write_all(format!("{reply}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                let _ = writer.flush().await;
            }
            let _ = writer.close().await;
        });
    }
}
