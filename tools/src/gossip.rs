//! The gossipsub part of the `peer` program (PEER-CLI v2): `--gossip TOPIC`, `--publish MSG`,
//! `--count N`, `--publish-wait SECS`, `--bootstrap ADDR` (connect only, without Kademlia).
//!
//! The program's hooks are small: [`GossipArgs::take`] in its option parser,
//! [`GossipArgs::prepare`] once the key is known, [`install`] on the host builder, and [`run`]
//! in place of its listen or dial step.
//!
//! Messages are signed by the node's key and checked strictly (the default everywhere). The
//! message id function is the gossipsub spec's default (author peer id bytes followed by the
//! 8-byte big-endian sequence number, as go-libp2p): the one the spec names, so the one a
//! peer that follows the spec shares with us. Ids only matter for IHAVE / IWANT gossip
//! (delivery and duplicate suppression work whatever each peer uses); `PEER_GOSSIP_MSGID=rust`
//! or `=py` picks rust-libp2p's or py-libp2p's default instead, to share gossip with those.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p_gossipsub::{GossipsubService, Pubsub, ServiceConfig};
use libp2p_host::{Host, HostBuilder, Keypair, Multiaddr};

/// The gossipsub options.
#[derive(Debug, Clone)]
pub struct GossipArgs {
    /// `--gossip TOPIC`.
    pub topic: Option<String>,
    /// `--publish MSG`.
    pub publish: Option<String>,
    /// `--count N` (default 1).
    pub count: u64,
    /// `--publish-wait SECS` (default 10).
    pub publish_wait: Duration,
    /// `--bootstrap ADDR`, repeatable.
    pub bootstrap: Vec<Multiaddr>,
    pubsub: Option<Pubsub>,
}

impl Default for GossipArgs {
    fn default() -> Self {
        GossipArgs {
            topic: None,
            publish: None,
            count: 1,
            publish_wait: Duration::from_secs(10),
            bootstrap: Vec::new(),
            pubsub: None,
        }
    }
}

/// The service made by [`GossipArgs::prepare`], until [`install`] gives it to the host.
static SERVICE: Mutex<Option<GossipsubService>> = Mutex::new(None);
/// Set once the gossip role runs: the program's timeout then ends it quietly (exit 0).
static SERVING: AtomicBool = AtomicBool::new(false);

impl GossipArgs {
    /// Takes `flag` if it is a gossipsub option, reading its value with `value`; false if it
    /// is not one.
    pub fn take(
        &mut self,
        flag: &str,
        mut value: impl FnMut() -> Result<String, String>,
    ) -> Result<bool, String> {
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag {
            "--gossip" => self.topic = Some(value()?),
            "--publish" => self.publish = Some(value()?),
            "--count" => self.count = number(value()?)?,
            "--publish-wait" => self.publish_wait = Duration::from_secs(number(value()?)?),
            "--bootstrap" => self
                .bootstrap
                .push(value()?.parse().map_err(|e| format!("{flag}: {e}"))?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether `--gossip` was given.
    pub fn enabled(&self) -> bool {
        self.topic.is_some()
    }

    /// With `--gossip`: makes the service (signing with `key`), kept for [`install`].
    pub fn prepare(&mut self, key: &Keypair) -> Result<(), String> {
        if !self.enabled() {
            if self.publish.is_some() {
                return Err("--publish needs --gossip".into());
            }
            return Ok(());
        }
        let mut config = ServiceConfig::default();
        match std::env::var("PEER_GOSSIP_MSGID").as_deref() {
            Ok("rust") => {
                config.router.message_id_fn = Arc::new(libp2p_gossipsub::rust_libp2p_message_id)
            }
            Ok("py") => {
                config.router.message_id_fn = Arc::new(libp2p_gossipsub::py_libp2p_message_id)
            }
            _ => {}
        }
        let (service, pubsub) =
            libp2p_gossipsub::service(config, key.clone()).map_err(|e| e.to_string())?;
        *SERVICE.lock().expect("gossip service") = Some(service);
        self.pubsub = Some(pubsub);
        Ok(())
    }
}

/// Adds the service [`GossipArgs::prepare`] made, if any, to `builder`.
pub fn install(builder: HostBuilder) -> HostBuilder {
    match SERVICE.lock().expect("gossip service").take() {
        Some(service) => builder.service(service),
        None => builder,
    }
}

/// Whether the gossip role is running (the program's timeout then exits 0 without `FAIL`).
pub fn serving() -> bool {
    SERVING.load(Ordering::SeqCst)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The gossip role: subscribe, connect to `dial` and the bootstrap peers (printing
/// `BOOTSTRAP OK <peers connected>` when there are any), publish when asked (`PUBLISHED N`),
/// and print `GOSSIP <author> <data>` for every message received, until the program's
/// timeout. Returns only on failure.
pub async fn run(
    host: &Host,
    args: &GossipArgs,
    dial: Option<Multiaddr>,
) -> Result<String, String> {
    let (Some(topic), Some(pubsub)) = (args.topic.clone(), args.pubsub.clone()) else {
        return Err("gossip: not prepared".into());
    };
    SERVING.store(true, Ordering::SeqCst);
    let mut messages = pubsub
        .subscribe(topic.as_str())
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(m) => {
                    let author = m.author.map_or_else(|| "-".to_string(), |p| p.to_string());
                    say(&format!(
                        "GOSSIP {author} {}",
                        String::from_utf8_lossy(&m.data)
                    ));
                }
                Err(lagged) => tracing::warn!("gossip: {lagged}"),
            }
        }
    });
    if let Some(addr) = dial {
        host.dial(addr).await.map_err(|e| format!("dial: {e}"))?;
    }
    if !args.bootstrap.is_empty() {
        let mut errors = Vec::new();
        for addr in &args.bootstrap {
            if let Err(e) = host.dial(addr.clone()).await {
                errors.push(format!("{addr}: {e}"));
            }
        }
        if errors.len() == args.bootstrap.len() {
            return Err(format!("bootstrap: {}", errors.join("; ")));
        }
        say(&format!("BOOTSTRAP OK {}", host.connected_peers().len()));
    }
    if let Some(msg) = &args.publish {
        // Wait (at most --publish-wait) for a mesh peer, then publish whatever the mesh.
        let mesh = async {
            while pubsub
                .mesh_peers(topic.as_str())
                .await
                .unwrap_or_default()
                .is_empty()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let _ = tokio::time::timeout(args.publish_wait, mesh).await;
        for i in 1..=args.count {
            if i > 1 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            pubsub
                .publish(topic.as_str(), format!("{msg}-{i}"))
                .await
                .map_err(|e| format!("publish: {e}"))?;
        }
        say(&format!("PUBLISHED {}", args.count));
    }
    std::future::pending::<()>().await;
    Err("gossip ended".into())
}
