//! The host of the modular libp2p: what users touch.
//!
//! A [`Host`] listens and dials on one or more transports, keeps a pool of connections, and
//! hands each inbound stream to whoever accepts its protocol: a pull-style [`Host::accept`]
//! stream, or a handler given to [`Host::set_stream_handler`]. Long-lived protocols run beside
//! it as [`Service`]s; identify and ping are the first two, served from the first moment of
//! every connection. What happens is told as [`Event`]s.
//!
//! Two hosts in one process, one talking to the other (a runnable example):
//!
//! ```
//! use futures::StreamExt;
//! use libp2p_host::{Host, Keypair};
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let b = Host::builder(Keypair::generate_ed25519())
//!     .listen_on("/ip4/127.0.0.1/tcp/0".parse()?)
//!     .build()
//!     .await?;
//! let mut chats = b.accept("/chat/1.0.0")?;
//!
//! let a = Host::builder(Keypair::generate_ed25519()).build().await?;
//! let peer = a.dial(b.p2p_addrs()[0].clone()).await?;
//! let mut stream = a.new_stream(peer, &["/chat/1.0.0"]).await?;
//! stream.write_all(b"hello\n").await?;
//! stream.shutdown().await?;
//!
//! let inbound = chats.next().await.expect("a stream");
//! assert_eq!(inbound.remote_peer(), a.peer_id());
//! let mut line = String::new();
//! BufReader::new(inbound).read_line(&mut line).await?;
//! assert_eq!(line, "hello\n");
//! # Ok(()) }
//! ```
//!
//! A host needs a Tokio runtime (it spawns a task per connection). Its [`Stream`]s implement
//! tokio's `AsyncRead` / `AsyncWrite`: import `tokio::io::{AsyncReadExt, AsyncWriteExt}` (or
//! `AsyncBufReadExt` with a `BufReader`); `Stream::into_futures` gives the `futures` traits
//! instead.
//!
//! The default stack of [`HostBuilder::build`] is TCP, with noise then TLS 1.3 offered and
//! yamux, and QUIC beside it (cargo features `tls` and `quic`, on by default;
//! [`HostBuilder::without_quic`] leaves QUIC out); [`HostBuilder::listen_on_ip`] listens on
//! both with one call. secio and mplex are cargo features (`secio`, `mplex`) and one builder
//! call away ([`HostBuilder::with_secio`], [`HostBuilder::with_mplex`]); any other stack goes
//! to [`HostBuilder::transport`], several side by side.
//!
//! A peer with several addresses is dialed the way go-libp2p dials it: the addresses are
//! ranked ([`dial::rank`]: QUIC before TCP, loopback and private addresses before the
//! slower public ones), started a little apart and raced; the first connection wins, and an
//! address that failed is left alone for a while. [`DialConfig`] holds the delays.
//!
//! Limits: every table and queue is bounded by a field of [`Config`]. Beside the
//! connection limits, a [connection manager](connmgr) keeps the established connections
//! between two watermarks (trimming the least valuable, never a peer given to
//! [`Host::protect`], never one in its grace period) and may close idle ones; a
//! [resource manager](resource) holds stream and memory budgets per connection, peer,
//! protocol and for the host, and resets a stream (or closes a connection) that does not fit,
//! with an [`Event`] naming the scope and the limit.
//!
//! The standard protocols are also usable on their own, over any stream on which they have
//! been agreed: [`identify`], [`ping`], [`perf`].
//!
//! Throughput: every connection is driven by a task the host spawns. Code that moves a lot of
//! data over a stream should run in a spawned task too, not directly in `Runtime::block_on`:
//! from the blocking thread, every frame wakes the connection's task on another thread (a
//! futex call each). For the same reason, when a process has fewer cores to itself than tokio
//! has workers (both ends of a transfer on one small machine, say), fewer workers can be
//! faster: the stream's task and the connection's task then hand frames over on one thread.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
pub mod connmgr;
mod context;
pub mod dial;
mod erased;
mod error;
mod host;
pub mod identify;
mod limits;
pub mod perf;
pub mod ping;
pub mod request_response;
pub mod resource;

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "testkit")]
pub mod testkit;
pub use config::{
    Config, DialConfig, MAX_IDENTIFY_MESSAGES, MAX_IDENTIFY_MESSAGE_LEN, MAX_INBOUND_PINGS_PER_PEER,
};
pub use connmgr::ConnectionManagerConfig;
pub use error::{ListenError, PingError};
pub use host::{HandlerResult, Host, HostBuilder};
pub use libp2p_core::{
    self as core, split_peer_id, AcceptError, Classify, CloseCause, ConnectionId, ConnectionInfo,
    ConnectionRefusedReason, DialAttempt, DialError, Direction, Event, Events, Fault,
    FuturesStream, HostContext, IdentifyInfo, Incoming, Keypair, Multiaddr, NewStreamError, PeerId,
    Peerstore, Protocol, PublicKey, RefusedReason, ResourceKind, ResourceLimitExceeded,
    ResourceScope, Service, ServiceContext, Stream,
};
/// Name resolution for dialed addresses (the `dns` feature): give the host your own
/// [`dns::Resolve`] or limits with [`HostBuilder::dns`].
#[cfg(feature = "dns")]
pub use libp2p_dns as dns;
pub use request_response::{InboundRequest, RequestError, RequestResponseConfig, Requests};
pub use resource::{ResourceLimits, ResourceUsage, ScopeLimits};
