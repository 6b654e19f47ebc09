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
//!   skipped; it yields [`Event`]s as a stream;
//! - [`service`]: the Host service ([`MdnsService`]): announces the host's listen addresses,
//!   puts discovered peers into its peerstore, optionally dials them.
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
//!
//! # Behaviour on the wire
//!
//! - A query (`_p2p._udp.local PTR`) goes out on each link when it comes up, then after
//!   [`Config::initial_query_interval`], doubling up to [`Config::query_interval`].
//! - Queries for our PTR, our SRV/TXT, our host's A/AAAA, or the DNS-SD meta query are
//!   answered by multicast from port 5353, at most once per [`Config::min_answer_interval`]
//!   per link (later queries in the window share one delayed answer), unless the query lists
//!   our PTR as a known answer. We answer only by multicast: rust-libp2p asks from an
//!   ephemeral port that it never reads, so RFC 6762 §6.7 unicast replies would reach nobody.
//! - Discovered addresses live for the TTL of their records (capped by [`Config::max_ttl`]);
//!   [`Event::Expired`] says when they are gone, so a peerstore that adds on
//!   [`Event::Discovered`] and removes on [`Event::Expired`] needs no timer of its own. A TTL
//!   of 0 (a goodbye) expires them at once; we send ours when the driver stops.
//! - Loopback interfaces are skipped, loopback addresses never announced (and dropped when
//!   received, with unspecified ones), and an unspecified listen address (`/ip4/0.0.0.0/...`)
//!   is announced as each interface's own addresses.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod core;
pub mod error;
pub mod io;
pub mod proto;
pub mod service;

pub use crate::core::{Event, LinkId, Mdns, Stats, Transmit};
pub use config::Config;
pub use error::{DecodeError, EncodeError, RecordError, SocketError, StartError};
pub use io::{spawn, Driver, Events, Handle};
pub use service::{MdnsHandle, MdnsService, ServiceConfig};
