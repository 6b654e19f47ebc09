//! `/yamux/1.0.0` for the modular libp2p: adapts the [`yamux`] crate to the core
//! [`MuxerUpgrade`] and [`StreamMuxer`] traits.
//!
//! The upgrade ([`Yamux`]) turns a socket into a cheap, cloneable handle ([`YamuxMuxer`]) and a
//! driver future ([`YamuxDriver`]). The driver owns the [`yamux::Connection`] and polls it; the
//! handles talk to the driver through channels:
//!
//! - `open` sends a request with a one-shot reply to the driver, which opens the stream when
//!   the yamux connection allows it (yamux holds back new streams while 256 of ours wait for
//!   the remote's acknowledgement);
//! - inbound streams go into a bounded queue that `accept` reads;
//! - `close` raises a flag and wakes the driver, which closes the connection gracefully.
//!
//! The driver ends when the connection ends: then pending and later `open` and `accept` calls
//! fail with [`MuxerError::Closed`] and [`StreamMuxer::is_closed`] is true. When every handle
//! is dropped, the driver closes the connection.
//!
//! Limits: at most [`Config::max_streams`] streams (both directions together) are alive at
//! once. An `open` beyond the limit fails with [`MuxerError::TooManyStreams`]; an inbound
//! stream beyond the limit, or one that finds the accept queue full, is reset.
//!
//! A remote that breaks the protocol (data past a stream's window, a window overflow, a bad
//! stream id) loses the connection: the yamux crate answers with GoAway(protocol error) but
//! would keep the session going; the adapter ends it once that GoAway went into the socket,
//! and the driver fails with [`MuxerError::Protocol`].
//!
//! Layers: `config.rs` ([`Config`] and its translation into the yamux crate's), `frame.rs`
//! (the 12-byte header as far as the adapter reads it), `socket.rs` (the socket as yamux
//! sees it: flush coalescing, the write deadline, the watch on our own GoAway and the check of
//! the remote's headers), `muxer.rs` ([`Yamux`], [`YamuxMuxer`]), `stream.rs`
//! ([`YamuxStream`]), `driver.rs` ([`YamuxDriver`]), `error.rs` ([`YamuxError`]).
//!
//! Logging: the yamux crate logs through `log`, one line per bad frame at ERROR under the
//! target `yamux::connection` (and one per unexpected pong under `yamux::connection::rtt`,
//! which is no violation and does not end the connection). Ending the connection cuts the
//! first kind to one ERROR line per connection, which no level filter can hide: a program's
//! default filter should carry `yamux=off`, since this adapter reports the same failure
//! itself, at debug, once per connection.
//!
//! ```
//! use futures::{AsyncReadExt, AsyncWriteExt};
//! use libp2p_core::{MuxerUpgrade, Role, StreamMuxer};
//! use libp2p_yamux::Yamux;
//! use tokio_util::compat::TokioAsyncReadCompatExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let yamux = Yamux::default();
//! let (dialer, driver) = yamux.upgrade(a.compat(), Role::Dialer, "/yamux/1.0.0").await?;
//! tokio::spawn(driver);
//! let (listener, driver) = yamux.upgrade(b.compat(), Role::Listener, "/yamux/1.0.0").await?;
//! tokio::spawn(driver);
//!
//! let mut out = dialer.open().await?;
//! out.write_all(b"hello").await?;
//! out.close().await?; // closes our write side only
//! let mut inbound = listener.accept().await?;
//! let mut got = Vec::new();
//! inbound.read_to_end(&mut got).await?;
//! assert_eq!(got, b"hello");
//! dialer.close().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod driver;
mod error;
mod frame;
mod muxer;
mod socket;
mod stream;

pub use config::Config;
pub use driver::YamuxDriver;
pub use error::YamuxError;
pub use muxer::{Yamux, YamuxMuxer};
pub use stream::YamuxStream;

/// The protocol name of yamux.
pub const PROTOCOL: &str = "/yamux/1.0.0";

#[cfg(doc)]
use libp2p_core::{MuxerError, MuxerUpgrade, StreamMuxer};
