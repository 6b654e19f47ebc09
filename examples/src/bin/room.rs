//! A chat room over gossipsub, for any number of terminals: `room` opens it and prints how to
//! join; `room --dial ADDR` joins through anyone in it. Every line typed goes to everyone.
use futures::StreamExt;
use libp2p_gossipsub::{PeerEvent, ServiceConfig};
use libp2p_host::{Host, Keypair};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = Keypair::generate_ed25519();
    let (gossipsub, room) = libp2p_gossipsub::service(ServiceConfig::default(), key.clone())?;
    let host = Host::builder(key)
        .listen_on("/ip4/0.0.0.0/tcp/0".parse()?)
        .service(gossipsub)
        .build()
        .await?;
    let mut said = room.subscribe("room").await?;
    let mut comings = room.peer_events();
    println!(
        "* others join with: room --dial ADDR, one of {:?}",
        host.p2p_addrs()
    );
    if let Some(addr) = std::env::args().nth(2) {
        host.dial(addr.parse()?).await?;
    }
    let short = |id: String| id[id.len() - 6..].to_string();
    let mut ours = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = ours.next_line() => match line? {
                Some(line) => if let Err(e) = room.publish("room", line).await {
                    println!("* not sent: {e}");
                },
                None => break,
            },
            Some(message) = said.next() => match message {
                Ok(m) => println!("{}> {}", short(m.author.map(|a| a.to_string()).unwrap_or_default()),
                    String::from_utf8_lossy(&m.data)),
                Err(lagged) => println!("* {lagged}"),
            },
            Some(event) = comings.next() => match event {
                PeerEvent::Subscribed { peer, .. } => println!("* {} joined", short(peer.to_string())),
                PeerEvent::Unsubscribed { peer, .. } => println!("* {} left", short(peer.to_string())),
                _ => {}
            },
        }
    }
    std::process::exit(0); // without waiting for stdin's reader thread
}
