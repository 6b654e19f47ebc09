//! The host of the modular libp2p: what users touch.
//!
//! A [`Host`] listens, dials, keeps one connection per peer, and runs a handler per inbound
//! stream for the protocol agreed on it. It serves identify and ping from the first moment of
//! every connection, and learns about peers into its [`Peerstore`].
//!
//! ```no_run
//! use futures::{AsyncBufReadExt, AsyncWriteExt, io::BufReader};
//! use libp2p_host::{Host, Keypair};
//!
//! # async fn run(peer_id: libp2p_host::PeerId, addr: libp2p_host::Multiaddr) -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::builder(Keypair::generate_ed25519())
//!     .listen_on("/ip4/0.0.0.0/tcp/0".parse()?)
//!     .build()
//!     .await?;
//! host.set_stream_handler("/chat/1.0.0", |mut stream| async move {
//!     let mut line = String::new();
//!     BufReader::new(&mut stream).read_line(&mut line).await?;
//!     println!("{} says {line}", stream.remote_peer());
//!     Ok(())
//! });
//! host.connect(peer_id, vec![addr]).await?;
//! let mut stream = host.new_stream(peer_id, &["/chat/1.0.0"]).await?;
//! stream.write_all(b"hello\n").await?;
//! # Ok(()) }
//! ```
//!
//! The standard protocols are also usable on their own, over any stream on which they have
//! been agreed: [`identify`], [`ping`], [`perf`].
//!
//! Throughput: every connection is driven by a task the host spawns. Code that moves a lot of
//! data over a stream should run in a spawned task too, not directly in `Runtime::block_on`:
//! from the blocking thread, every frame wakes the connection's task on another thread (a
//! futex call each); measured on a 256 MiB transfer, that cost about a third of the
//! throughput. For the same reason, when a process has fewer cores to itself than tokio has
//! workers (both ends of a transfer on one 2-core machine, say), fewer workers can be faster:
//! the stream's task and the connection's task then hand frames over on one thread. In
//! `bench/run` (noise+yamux, 1 GiB each way), one worker per process gave about 1.1-1.3 GiB/s
//! against 0.8-0.9 GiB/s with a worker per core.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod erased;
mod error;
mod host;
pub mod identify;
pub mod peerstore;
pub mod perf;
pub mod ping;
mod stream;

pub use config::HostConfig;
pub use error::HostError;
pub use host::{Direction, HandlerResult, Host, HostBuilder, HostEvent};
pub use libp2p_core::{Keypair, Multiaddr, PeerId};
pub use peerstore::Peerstore;
pub use stream::Stream;
