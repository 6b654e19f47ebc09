//! WebSocket (`/ws`) for the modular libp2p: a transport that wraps a TCP transport, runs the
//! HTTP upgrade and carries a byte stream over binary WebSocket messages, for the upgrade
//! pipeline to secure and multiplex as it does a TCP socket (noise or TLS, then yamux).
//!
//! The framing is tokio-tungstenite's, with our limits instead of its generous defaults
//! (see [`Config`]): frames and messages of at most 1 MiB, an HTTP head of at most 16 KiB,
//! the upgrade bounded by a deadline. Pings are answered, pongs ignored, a close frame reads
//! as EOF. `/wss` (TLS under the WebSocket) is not supported.
//!
//! ```
//! use libp2p_core::{Multiaddr, Transport, TransportExt};
//! use libp2p_websocket::WsTransport;
//! # fn tcp() -> libp2p_core::MemoryTransport { libp2p_core::MemoryTransport::new() }
//! // Over TCP: WsTransport::new(TcpTransport::new()).upgrade().authenticate(noise).multiplex(yamux)
//! let ws = WsTransport::new(tcp());
//! assert!(!ws.can_dial(&"/memory/1".parse::<Multiaddr>().unwrap()));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod stream;
mod transport;

pub use config::Config;
pub use error::UpgradeError;
pub use stream::{Capped, WsStream};
pub use transport::{split_ws, WsListener, WsSocket, WsTransport};

/// The name of this transport's layer in errors.
pub const PROTOCOL: &str = "/ws";
