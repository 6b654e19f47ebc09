//! The demo: two hosts, A and B, in one process on loopback TCP. B serves `/chat/1.0.0`;
//! A dials it, the connection is secured and multiplexed, A opens a chat stream and they
//! exchange a few messages; then A pings B and shows what identify taught its peerstore.
//!
//! It runs twice: first on the stack of the original design (TCP + secio + mplex, given to
//! `build_with_transport`), then on the default stack of `Host::builder(key).build()`
//! (TCP + [noise, secio] + [yamux, mplex], where noise and yamux get chosen). Every step is
//! printed; the exit status is 0 only if everything worked within 30 seconds.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_core::{Multiaddr, Protocol, TransportExt};
use libp2p_host::{Host, HostEvent, Keypair, PeerId};
use libp2p_mplex::Mplex;
use libp2p_secio::Secio;
use libp2p_transport_tcp::TcpTransport;
use tokio::sync::broadcast;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CHAT: &str = "/chat/1.0.0";
const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    let agreed = Agreed::default();
    agreed.install_tracing();
    match tokio::time::timeout(TIMEOUT, run(&agreed)).await {
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

async fn run(agreed: &Agreed) -> Result<(), Error> {
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
    agreed.clear();
    conversation(&a, &b).await?;
    agreed.expect("/secio/1.0.0", "/mplex/6.7.0")?;
    a.close().await;
    b.close().await;

    println!("\n=== stack 2: the default stack of build(): TCP + [noise, secio] + [yamux, mplex]");
    let a = Host::builder(key_a)
        .listen_on(loopback.clone())
        .build()
        .await?;
    let b = Host::builder(key_b).listen_on(loopback).build().await?;
    agreed.clear();
    conversation(&a, &b).await?;
    agreed.expect("/noise", "/yamux/1.0.0")?;
    a.close().await;
    b.close().await;
    Ok(())
}

/// One round of the story between two fresh hosts: A dials B, chats, pings, identifies.
async fn conversation(a: &Host, b: &Host) -> Result<(), Error> {
    let mut events_a = a.events();
    let mut events_b = b.events();

    // B answers every chat line.
    b.set_stream_handler(CHAT, |stream| async move {
        println!(
            "[B] protocol {} agreed, the chat handler runs",
            stream.protocol()
        );
        let (reader, mut writer) = stream.split();
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
    });
    let b_addr = b
        .listen_addrs()
        .first()
        .cloned()
        .ok_or("B listens nowhere")?;
    println!("[B] listening on {b_addr}");

    // A dials B by address and peer id.
    println!(
        "[A] dialing {}",
        b_addr.clone().with(Protocol::P2p(b.peer_id()))
    );
    a.connect(b.peer_id(), vec![b_addr]).await?;
    let connected = |e: &HostEvent| matches!(e, HostEvent::Connected { .. });
    if let HostEvent::Connected {
        addr, direction, ..
    } = next_event(&mut events_a, connected).await?
    {
        println!("[A] connected to B at {addr} ({direction:?})");
    }
    if let HostEvent::Connected {
        peer,
        addr,
        direction,
    } = next_event(&mut events_b, connected).await?
    {
        println!(
            "[B] connection from {} at {addr} ({direction:?})",
            short(&peer)
        );
    }

    // The chat.
    let stream = a.new_stream(b.peer_id(), &[CHAT]).await?;
    println!("[A] protocol {} agreed with B", stream.protocol());
    let (reader, mut writer) = stream.split();
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
    let identified = |e: &HostEvent| matches!(e, HostEvent::Identified { .. });
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

/// The next event that `wanted` accepts, within 10 seconds.
async fn next_event(
    events: &mut broadcast::Receiver<HostEvent>,
    wanted: impl Fn(&HostEvent) -> bool,
) -> Result<HostEvent, Error> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return Ok(event),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Err("the host closed"),
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

/// The security protocol and muxer each side agreed on.
///
/// The host does not expose them, but the upgrade pipeline of libp2p-core logs them (at debug
/// level, inside a `dial` or `accept` span): this tracing layer watches for those two events,
/// prints them and remembers them, so that the demo shows (and checks) what was negotiated.
#[derive(Clone, Default)]
struct Agreed(Arc<Mutex<Vec<(&'static str, String)>>>);

impl Agreed {
    fn install_tracing(&self) {
        use tracing_subscriber::prelude::*;
        // RUST_LOG=debug shows the stack's own log on stderr as well.
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::from_default_env());
        tracing_subscriber::registry()
            .with(log)
            .with(self.clone())
            .init();
    }

    fn clear(&self) {
        self.0.lock().expect("lock").clear();
    }

    /// Checks that both sides agreed on `security` and `muxer`.
    fn expect(&self, security: &str, muxer: &str) -> Result<(), Error> {
        let seen = self.0.lock().expect("lock").clone();
        for side in ["A", "B"] {
            for wanted in [security, muxer] {
                if !seen.iter().any(|(s, p)| *s == side && p == wanted) {
                    return Err(format!("{side} did not agree on {wanted} (saw {seen:?})").into());
                }
            }
        }
        Ok(())
    }
}

impl<S> tracing_subscriber::Layer<S> for Agreed
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            message: String,
            protocol: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.message = format!("{value:?}"),
                    "protocol" => self.protocol = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let stage = match fields.message.as_str() {
            "security protocol agreed" => "security",
            "muxer agreed" => "muxer",
            _ => return,
        };
        // A dials, B accepts.
        let accepting = ctx
            .event_scope(event)
            .is_some_and(|mut scope| scope.any(|span| span.name() == "accept"));
        let side = if accepting { "B" } else { "A" };
        println!("[{side}] {stage} agreed: {}", fields.protocol);
        self.0.lock().expect("lock").push((side, fields.protocol));
    }
}
