//! The demo: two hosts, A and B, in one process on loopback TCP. B serves `/chat/1.0.0`;
//! A dials it, the connection is secured and multiplexed, A opens a chat stream and they
//! exchange a few messages; then A pings B and shows what identify taught its peerstore.
//!
//! It runs twice: first on the stack of the original design (TCP + secio + mplex, given to
//! `build_with_transport`), then on the default stack of `Host::builder(key).build()` (TCP +
//! noise + yamux). Every step is printed, the security protocol and muxer as the hosts'
//! connection events report them; the exit status is 0 only if everything worked within 30
//! seconds.
#![forbid(unsafe_code)]

use std::time::Duration;

use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_core::TransportExt;
use libp2p_host::{ConnectionInfo, Event, Events, Host, Keypair, Multiaddr, PeerId};
use libp2p_mplex::Mplex;
use libp2p_secio::Secio;
use libp2p_transport_tcp::TcpTransport;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CHAT: &str = "/chat/1.0.0";
const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    // RUST_LOG=debug shows the stack's own log on stderr.
    examples::init_logging();
    match tokio::time::timeout(TIMEOUT, run()).await {
        Ok(Ok(())) => println!("\ndone: both stacks worked"),
        Ok(Err(e)) => {
            eprintln!("\nFAILED: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("\nFAILED: the demo did not finish within {TIMEOUT:?}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<(), Error> {
    let key_a = Keypair::generate_ed25519();
    let key_b = Keypair::generate_ed25519();
    println!("host A is {}", key_a.public().to_peer_id());
    println!("host B is {}", key_b.public().to_peer_id());
    let loopback: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;

    println!("\n=== stack 1: TCP + secio + mplex (the original design), via build_with_transport");
    let secio_mplex = |key: &Keypair| {
        TcpTransport::new()
            .upgrade()
            .authenticate(Secio::new(key.clone()))
            .multiplex(Mplex::default())
    };
    let a = Host::builder(key_a.clone())
        .listen_on(loopback.clone())
        .build_with_transport(secio_mplex(&key_a))
        .await?;
    let b = Host::builder(key_b.clone())
        .listen_on(loopback.clone())
        .build_with_transport(secio_mplex(&key_b))
        .await?;
    conversation(&a, &b, ("/secio/1.0.0", "/mplex/6.7.0")).await?;
    a.close().await;
    b.close().await;

    println!("\n=== stack 2: the default stack of build(): TCP + noise + yamux");
    let a = Host::builder(key_a)
        .listen_on(loopback.clone())
        .build()
        .await?;
    let b = Host::builder(key_b).listen_on(loopback).build().await?;
    conversation(&a, &b, ("/noise", "/yamux/1.0.0")).await?;
    a.close().await;
    b.close().await;
    Ok(())
}

/// One round of the story between two fresh hosts: A dials B, chats, pings, identifies.
/// `expected` is the security protocol and muxer both sides must report.
async fn conversation(a: &Host, b: &Host, expected: (&str, &str)) -> Result<(), Error> {
    let mut events_a = a.events();
    let mut events_b = b.events();

    // B answers every chat line.
    b.set_stream_handler(CHAT, |stream| async move {
        println!(
            "[B] protocol {} agreed, the chat handler runs",
            stream.protocol()
        );
        let (reader, mut writer) = stream.into_futures().split();
        let mut lines = BufReader::new(reader).lines();
        while let Some(line) = lines.next().await {
            let line = line?;
            println!("[B] hears: {line}");
            let reply = format!("B got \"{line}\" ({} bytes)", line.len());
            println!("[B] says:  {reply}");
            writer.write_all(format!("{reply}\n").as_bytes()).await?;
            writer.flush().await?;
        }
        println!("[B] A closed the chat");
        writer.close().await?;
        Ok(())
    })?;
    let b_addr: Multiaddr = b.p2p_addrs().first().cloned().ok_or("B listens nowhere")?;
    println!("[B] listening on {b_addr}");

    // A dials B by address and peer id.
    println!("[A] dialing {b_addr}");
    a.dial(b_addr).await?;
    let connected = |e: &Event| matches!(e, Event::ConnectionEstablished { .. });
    for (side, events) in [("A", &mut events_a), ("B", &mut events_b)] {
        if let Event::ConnectionEstablished { peer, info, .. } =
            next_event(events, connected).await?
        {
            report(side, &peer, &info);
            if (info.security.as_str(), info.muxer.as_str()) != expected {
                return Err(format!("{side} agreed on {info:?}, not {expected:?}").into());
            }
        }
    }

    // The chat.
    let stream = a.new_stream(b.peer_id(), &[CHAT]).await?;
    println!("[A] protocol {} agreed with B", stream.protocol());
    let (reader, mut writer) = stream.into_futures().split();
    let mut lines = BufReader::new(reader).lines();
    for message in ["hello B", "how is the weather on your side of the socket?"] {
        println!("[A] says:  {message}");
        writer.write_all(format!("{message}\n").as_bytes()).await?;
        writer.flush().await?;
        let answer = lines.next().await.ok_or("B closed the chat")??;
        println!("[A] hears: {answer}");
    }
    writer.close().await?;
    if lines.next().await.is_some() {
        return Err("B said more than expected".into());
    }

    // Ping (one stream, reused).
    for _ in 0..3 {
        let rtt = a.ping(b.peer_id()).await?;
        println!("[A] ping B: round trip {:.3} ms", rtt.as_secs_f64() * 1e3);
    }

    // Identify runs by itself on every new connection; its result lands in the peerstore.
    let identified = |e: &Event| matches!(e, Event::Identified { .. });
    next_event(&mut events_a, identified).await?;
    let store = a.peerstore();
    let peer = b.peer_id();
    println!("[A] identify told A's peerstore about B:");
    println!(
        "      agent      {}",
        store.agent_version(&peer).unwrap_or_default()
    );
    println!("      protocols  {}", store.protocols(&peer).join(", "));
    let addrs: Vec<String> = store.addrs(&peer).iter().map(|a| a.to_string()).collect();
    println!("      addresses  {}", addrs.join(", "));
    println!(
        "      public key {}",
        if store.public_key(&peer).is_some() {
            "known"
        } else {
            "unknown"
        }
    );
    if !store.protocols(&peer).iter().any(|p| p == CHAT) {
        return Err("identify did not list B's chat protocol".into());
    }
    Ok(())
}

/// Prints a connection event's story.
fn report(side: &str, peer: &PeerId, info: &ConnectionInfo) {
    println!(
        "[{side}] connected to {} at {} ({:?}): security {}, muxer {}",
        short(peer),
        info.remote_addr,
        info.direction,
        info.security,
        info.muxer
    );
}

/// The next event that `wanted` accepts, within 10 seconds.
async fn next_event(events: &mut Events, wanted: impl Fn(&Event) -> bool) -> Result<Event, Error> {
    let wait = async {
        loop {
            match events.next().await {
                Some(event) if wanted(&event) => return Ok(event),
                Some(_) => continue,
                None => return Err("the host closed"),
            }
        }
    };
    Ok(tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| "no such host event within 10 s")??)
}

/// The last characters of a peer id, enough to tell peers apart on screen.
fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    format!("…{}", &s[s.len() - 6..])
}
