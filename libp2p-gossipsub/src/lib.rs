//! Gossipsub (`/meshsub/1.1.0`, `/meshsub/1.0.0`, `/meshsub/1.2.0`'s IDONTWANT; floodsub
//! peers too): the protocol core as a plain state machine, with no sockets, no async and no
//! clock.
//!
//! [`Gossipsub`] takes its inputs as method calls, each carrying `now`: a peer connected
//! ([`Gossipsub::add_peer`]) or went away ([`Gossipsub::remove_peer`]), an RPC arrived
//! ([`Gossipsub::handle_rpc`], decoded by the bounded [`Codec`]), the application subscribes
//! or publishes, the heartbeat is due ([`Gossipsub::poll_timeout`],
//! [`Gossipsub::handle_timeout`]). Its outputs are [`Action`]s pulled with
//! [`Gossipsub::poll_action`]: RPCs to send, messages to deliver, peers that joined topics,
//! peers offered by peer exchange.
//!
//! Inside: topic meshes kept between D_lo and D_hi by the heartbeat (GRAFT, PRUNE with backoff
//! and peer exchange), IHAVE / IWANT gossip from the message cache, fanout for topics we
//! publish to without subscribing, a seen-cache that drops duplicates, flood publishing,
//! strict signing and verification, the v1.1 peer score (P1 to P7 with decay and the four
//! thresholds) and an optional validation step by the application. Every table and queue is
//! capped by a [`Config`] field that gives its default and the reason.
//!
//! With the cargo feature `service` (on by default), [`service()`] wraps the core in a Host
//! service that speaks it over the host's streams, and gives the application a [`Pubsub`]
//! handle: `subscribe(topic)` (a stream of [`Received`] messages), `publish(topic, data)`,
//! `unsubscribe(topic)`, the mesh and topic peers, and [`PeerEvent`]s. See [`service`](mod@service).
//!
//! Message ids: the default is the spec's ([`spec_message_id`]: author peer id bytes and the
//! 8-byte big-endian sequence number, as go-libp2p); [`rust_libp2p_message_id`] and
//! [`py_libp2p_message_id`] match those implementations' defaults. IHAVE / IWANT only work
//! between peers whose ids agree.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use libp2p_core::Keypair;
//! use libp2p_gossipsub::{Action, Authenticity, Config, Gossipsub, PeerKind, TopicHash};
//!
//! let now = Instant::now();
//! let mut a = Gossipsub::new(Config::default(), Authenticity::Signed(Keypair::generate_ed25519()), 1, now).unwrap();
//! let mut b = Gossipsub::new(Config::default(), Authenticity::Signed(Keypair::generate_ed25519()), 2, now).unwrap();
//! let (pa, pb) = (a.local_peer_id().unwrap(), b.local_peer_id().unwrap());
//! let topic = TopicHash::new("chat");
//! a.add_peer(pb, PeerKind::Gossipsub1_1, true, None);
//! b.add_peer(pa, PeerKind::Gossipsub1_1, false, None);
//! a.subscribe(topic.clone(), now).unwrap();
//! b.subscribe(topic.clone(), now).unwrap();
//!
//! // The driver's loop: move each SendRpc to the other side (over the wire, in real life).
//! let mut deliver = |from: &mut Gossipsub, to: &mut Gossipsub, from_id| {
//!     let mut got = Vec::new();
//!     while let Some(action) = from.poll_action() {
//!         match action {
//!             Action::SendRpc { rpc, .. } => to.handle_rpc(from_id, rpc, now),
//!             Action::Deliver { message, .. } => got.push(message.data),
//!             _ => {}
//!         }
//!     }
//!     got
//! };
//! deliver(&mut a, &mut b, pa);
//! deliver(&mut b, &mut a, pb);
//! a.publish(topic, b"hello".to_vec(), now).unwrap();
//! deliver(&mut a, &mut b, pa);
//! assert_eq!(deliver(&mut b, &mut a, pb), vec![b"hello".to_vec()]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
pub mod config;
pub mod error;
pub mod message;
pub mod proto;
mod router;
pub mod score;
#[cfg(feature = "service")]
pub mod service;
pub mod types;

pub use config::{Config, ScoreParams, Thresholds, TopicScoreParams, MIN_RPC_PACK_SIZE};
pub use error::{
    ConfigError, DecodeError, EncodeError, MessageError, PublishError, ReportError, SubscribeError,
};
pub use message::{py_libp2p_message_id, rust_libp2p_message_id, spec_message_id, MessageIdFn};
pub use proto::Codec;
pub use router::{Action, Gossipsub, Stats};
#[cfg(feature = "service")]
pub use service::{
    service, GossipsubService, Lagged, PeerEvent, PeerEvents, Pubsub, Received, ServiceConfig,
    ServiceStats, Subscription,
};
pub use types::{
    Acceptance, Authenticity, Message, MessageId, PeerKind, TopicHash, ValidationMode,
    FLOODSUB_PROTOCOL, GOSSIPSUB_1_0_PROTOCOL, GOSSIPSUB_1_1_PROTOCOL, GOSSIPSUB_1_2_PROTOCOL,
};
