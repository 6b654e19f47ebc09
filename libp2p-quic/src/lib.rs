//! QUIC v1 (RFC 9000) for the modular libp2p: `/ip4|ip6/A/udp/P/quic-v1`, on quinn, with the
//! libp2p TLS 1.3 handshake (the certificate and verifiers of `libp2p-tls`, ALPN `libp2p`).
//!
//! A QUIC connection is secured and multiplexed by itself, so [`QuicTransport`] yields what
//! the TCP upgrade pipeline yields at its end: a [`Connection`](libp2p_core::Connection) with
//! the remote's proven peer id and a [`QuicMuxer`] whose streams are QUIC's own. The host
//! cannot tell it from a TCP stack.
//!
//! - The remote's peer id comes from its certificate; a dial to `…/p2p/<id>` refuses another
//!   identity during the handshake, before our own certificate is sent
//!   ([`TransportError::PeerIdMismatch`](libp2p_core::TransportError::PeerIdMismatch)).
//! - Streams keep our semantics: closing one finishes our direction only, dropping one
//!   without closing resets it (quinn alone would finish it gracefully).
//! - One UDP socket per address family serves listening and dialing.
//! - Idle connections are kept open with keep-alives (quinn's default would close them after
//!   30 s of silence, where TCP keeps them); every limit is in [`Config`].
//!
//! ```
//! use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
//! use libp2p_core::{Keypair, ListenerEvent, StreamMuxer, Transport};
//! use libp2p_quic::QuicTransport;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (alice, bob) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
//! let bob_id = bob.public().to_peer_id();
//! let server = QuicTransport::new(bob);
//! let mut listener = server.listen("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()).unwrap();
//! let Some(ListenerEvent::NewAddress(addr)) = listener.next().await else { unreachable!() };
//! tokio::spawn(async move {
//!     while let Some(event) = listener.next().await {
//!         if let ListenerEvent::Incoming { pending, .. } = event {
//!             let conn = server.accept(pending).await.unwrap();
//!             let mut stream = conn.muxer.accept().await.unwrap();
//!             let mut got = Vec::new();
//!             stream.read_to_end(&mut got).await.unwrap();
//!             stream.write_all(&got).await.unwrap();
//!             stream.close().await.unwrap();
//!             // Keep the connection until the dialer is done with it: closing it at once
//!             // would abandon the echo not yet acknowledged.
//!             let _ = conn.muxer.accept().await;
//!         }
//!     }
//! });
//! let client = QuicTransport::new(alice);
//! let conn = client.dial(addr.with(libp2p_core::Protocol::P2p(bob_id))).await.unwrap();
//! assert_eq!(conn.peer, bob_id);
//! let mut stream = conn.muxer.open().await.unwrap();
//! stream.write_all(b"hello").await.unwrap();
//! stream.close().await.unwrap();
//! let mut back = Vec::new();
//! stream.read_to_end(&mut back).await.unwrap();
//! assert_eq!(back, b"hello");
//! conn.muxer.close().await.unwrap();
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod addr;
mod config;
mod error;
mod muxer;
mod transport;

pub use config::Config;
pub use error::{HandshakeError, SetupError};
pub use muxer::{QuicMuxer, QuicStream};
pub use transport::{QuicListener, QuicPending, QuicTransport};

/// The name QUIC connections give their security and their muxer in
/// [`ConnectionInfo`](libp2p_core::ConnectionInfo), and the protocol of its errors.
pub const PROTOCOL: &str = "/quic-v1";
