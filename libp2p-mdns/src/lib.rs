//! mDNS local peer discovery, per the libp2p mDNS spec (github libp2p/specs,
//! `discovery/mdns.md`): hosts on one link find each other by asking for `_p2p._udp.local PTR`
//! and answering with TXT records `dnsaddr=<multiaddr>/p2p/<peer id>`.
//!
//! Three layers:
//! - [`proto`]: the DNS messages (through `hickory-proto`), bounded, no I/O; it reads both the
//!   rust-libp2p answer style (bare PTR, TXT in the additional section) and the DNS-SD style
//!   of python-zeroconf / py-libp2p (SRV, A/AAAA, `dnsaddr2=` keys), and answers in a form both
//!   accept;
//! - [`core`]: the protocol as a plain state machine ([`Mdns`]): query schedule, rate-limited
//!   answers, the table of discovered peers with TTL expiry, every table capped;
//! - [`io`]: the tokio driver: one IPv4 and one IPv6 multicast socket per interface, loopback
//!   skipped; it yields [`Event`]s as a stream.
//!
//! ```no_run
//! use futures::StreamExt;
//! use libp2p_core::{Keypair, Multiaddr};
//! use libp2p_mdns::{Config, Event};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key = Keypair::generate_ed25519();
//! let listen: Multiaddr = "/ip4/0.0.0.0/tcp/4001".parse()?; // announced as each link's address
//! let (handle, mut events) = libp2p_mdns::spawn(Config::default(), key.public().to_peer_id(), vec![listen])?;
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Discovered { peer, addrs } => println!("found {peer} at {addrs:?}"),
//!         Event::Expired { peer, addrs } => println!("lost {peer} at {addrs:?}"),
//!     }
//! }
//! drop(handle); // stops the driver
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod core;
pub mod error;
pub mod io;
pub mod proto;

pub use crate::core::{Event, LinkId, Mdns, Stats, Transmit};
pub use config::Config;
pub use error::{DecodeError, EncodeError, RecordError, SocketError, StartError};
pub use io::{spawn, Driver, Events, Handle};
