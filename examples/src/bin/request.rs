//! Request-response: `request --listen` answers greetings; `request --dial ADDR NAME` asks one.
//!
//! ```sh
//! cargo run --release -p examples --bin request -- --listen
//! cargo run --release -p examples --bin request -- --dial /ip4/127.0.0.1/tcp/40123/p2p/12D3KooW... Ada
//! ```
//!
//! One request per stream, JSON bodies: the same bytes as rust-libp2p's
//! `request_response::json`, so either side can be a rust-libp2p node.
#![forbid(unsafe_code)]

use futures::StreamExt;
use libp2p_host::{Host, Keypair};
use serde::{Deserialize, Serialize};

const GREET: &str = "/greet/1.0.0";

#[derive(Serialize, Deserialize)]
struct Ask {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Greeting {
    text: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/0.0.0.0/tcp/0".parse()?)
        .build()
        .await?;
    match args.as_slice() {
        [flag] if flag == "--listen" => {
            let mut requests = host.serve_requests(GREET)?;
            for addr in host.p2p_addrs() {
                println!("ask me: request --dial {addr} <your name>");
            }
            while let Some(request) = requests.next().await {
                let ask: Ask = request.json()?;
                println!("{} asks, as {}", request.peer(), ask.name);
                let text = format!("hello, {}", ask.name);
                request.respond_json(&Greeting { text }).await?;
            }
        }
        [flag, addr, name] if flag == "--dial" => {
            let peer = host.dial(addr.parse()?).await?;
            let ask = Ask { name: name.clone() };
            let greeting: Greeting = host.request_json(peer, GREET, &ask).await?;
            println!("{}", greeting.text);
        }
        _ => return Err("usage: request --listen | request --dial ADDR NAME".into()),
    }
    Ok(())
}
