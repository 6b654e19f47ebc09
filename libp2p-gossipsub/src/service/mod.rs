//! Gossipsub as a Host service, and the application's handle on it (cargo feature `service`,
//! on by default).
//!
//! [`service`] makes the pair: a [`GossipsubService`] to give to the host
//! (`HostBuilder::service`) and a [`Pubsub`] handle for the application. The service speaks
//! `/meshsub/1.2.0`, `/meshsub/1.1.0` and `/meshsub/1.0.0` (the first the peer agrees to
//! names its [`PeerKind`](crate::PeerKind)). As the spec has it, each side opens one
//! long-lived outbound stream to the other and writes its RPCs there, and reads the other's
//! stream; we open ours once identify says the peer speaks gossipsub (or after
//! [`ServiceConfig::identify_wait`] without an answer, or at once when the peer opened its
//! stream to us first).
//!
//! Every RPC is a uvarint-length-prefixed protobuf read with the core's bounded
//! [`Codec`](crate::Codec): a peer that sends an oversized or malformed one loses its stream
//! (logged at debug level) and the router carries on. Writes have a deadline
//! ([`ServiceConfig::write_timeout`]); each peer's outbound queue is bounded
//! ([`ServiceConfig::outbound_queue`], the newest RPC dropped when full). The heartbeat and
//! every other timer of the core run off its `poll_timeout` on a tokio timer. A peer whose
//! last connection closes leaves the core; when it reconnects it is added back.
//!
//! Messages are signed by the key given to [`service`] and received messages are verified
//! strictly (the core's defaults). The message id function is the router's
//! [`Config::message_id_fn`](crate::Config::message_id_fn): by default the spec's (author peer
//! id bytes and the 8-byte big-endian sequence number, as go-libp2p), because it is the one
//! the spec names; set [`rust_libp2p_message_id`](crate::rust_libp2p_message_id) to share
//! IHAVE / IWANT gossip with rust-libp2p peers on their default. Delivery and duplicate
//! suppression work whatever each side picks.
//!
//! ```no_run
//! use futures::StreamExt;
//! use libp2p_core::Keypair;
//! use libp2p_gossipsub::ServiceConfig;
//! use libp2p_host::Host;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = Keypair::generate_ed25519();
//! let (gossipsub, pubsub) = libp2p_gossipsub::service(ServiceConfig::default(), key.clone())?;
//! let host = Host::builder(key)
//!     .listen_on("/ip4/0.0.0.0/tcp/0".parse()?)
//!     .service(gossipsub)
//!     .build()
//!     .await?;
//! host.dial("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo".parse()?).await?;
//!
//! let mut room = pubsub.subscribe("room").await?;
//! pubsub.publish("room", "hello").await?;
//! while let Some(message) = room.next().await {
//!     match message {
//!         Ok(m) => println!("{:?}: {}", m.author, String::from_utf8_lossy(&m.data)),
//!         Err(lagged) => println!("(missed {} messages)", lagged.missed),
//!     }
//! }
//! # Ok(()) }
//! ```

mod config;
pub mod error;
mod handle;
mod io;
mod task;

use std::time::Instant;

use futures::future::BoxFuture;
use futures::FutureExt;
use libp2p_core::{Keypair, Service, ServiceContext};
use tokio::sync::{broadcast, mpsc};

use crate::error::ConfigError;
use crate::router::Gossipsub;
use crate::types::Authenticity;

pub use config::ServiceConfig;
pub use error::{
    Closed, Lagged, OpenError, PublishError, ReadError, ReportError, SubscribeError, WriteError,
};
pub use handle::{PeerEvent, PeerEvents, Pubsub, Received, ServiceStats, Subscription};

/// The gossipsub service for `HostBuilder::service`, and the handle to it. Messages we
/// publish are signed by `keypair` (normally the host's own); the router is checked and built
/// here, so a bad [`Config`](crate::Config) fails now rather than in the host.
pub fn service(
    config: impl Into<ServiceConfig>,
    keypair: Keypair,
) -> Result<(GossipsubService, Pubsub), ConfigError> {
    let config = config.into();
    let local_peer = keypair.public().to_peer_id();
    let core = Gossipsub::new(
        config.router.clone(),
        Authenticity::Signed(keypair),
        rand::random(),
        Instant::now(),
    )?;
    let (commands_tx, commands) = mpsc::channel(config.command_queue.max(1));
    let (events, _) = broadcast::channel(config.event_buffer.max(1));
    let pubsub = Pubsub::new(commands_tx, &events, local_peer);
    let service = GossipsubService {
        core,
        config,
        events,
        commands,
    };
    Ok((service, pubsub))
}

/// The gossipsub router as a Host service (made by [`service`]; give it to
/// `HostBuilder::service`). It stops when the host closes; the [`Pubsub`] handles then fail
/// with [`Closed`].
pub struct GossipsubService {
    core: Gossipsub,
    config: ServiceConfig,
    events: broadcast::Sender<handle::PeerEvent>,
    commands: mpsc::Receiver<handle::Command>,
}

impl std::fmt::Debug for GossipsubService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipsubService")
            .field("core", &self.core)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Service for GossipsubService {
    fn name(&self) -> &'static str {
        "gossipsub"
    }

    fn protocols(&self) -> Vec<String> {
        task::PROTOCOLS.iter().map(|p| p.to_string()).collect()
    }

    fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, ()> {
        let GossipsubService {
            core,
            config,
            events,
            commands,
        } = *self;
        if core.local_peer_id() != Some(ctx.host.local_peer_id()) {
            tracing::debug!("gossipsub: messages are signed by another key than the host's");
        }
        task::Task::run(core, config, events, commands, ctx).boxed()
    }
}
