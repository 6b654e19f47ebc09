//! `/mplex/6.7.0`: many independent streams over one connection.
//!
//! Every frame is `uvarint(stream id << 3 | flag) ‖ uvarint(length) ‖ data`. The flags are
//! NewStream (0), Message (1 from the stream's receiver, 2 from its initiator), Close (3, 4)
//! and Reset (5, 6). Each side numbers the streams it opens itself, so a stream is named by its
//! id together with who opened it.
//!
//! # Shape
//!
//! [`Mplex`] is the [`MuxerUpgrade`]; it yields a [`MplexMuxer`] handle (cheap to clone) and a
//! [`MplexDriver`] future that owns the socket: it reads and routes frames and writes what the
//! streams queued. Streams never touch the socket and there is no task per stream. A write
//! copies the caller's bytes, already framed, into one shared output buffer; the driver swaps
//! that buffer with its own and writes it out in large writes, so small frames from many
//! streams go out in one system call. Received data is handed to streams without copying
//! (each frame's bytes are split off the read buffer).
//!
//! # Bounded memory
//!
//! mplex has no flow control, so a stream whose reader does not read would otherwise buffer
//! without limit. Each stream buffers at most [`Config::max_buffer_len`] bytes (plus one
//! frame); what happens when it is full is [`Config::buffer_policy`]:
//!
//! - [`BufferPolicy::Block`] (the default) stops reading the connection until that stream's
//!   reader drains below the limit. No data is lost and TCP's own flow control pushes back on
//!   the sender, which is what applications written for one reliable stream expect. The cost:
//!   a reader that never reads stalls every stream of its connection, so readers must keep
//!   reading (or drop the stream, which resets it and frees the connection).
//! - [`BufferPolicy::ResetStream`] resets the stream that overflowed and keeps the connection
//!   flowing: one slow reader cannot stall the others, but a burst larger than the buffer
//!   while the application is momentarily busy kills a healthy stream.
//!
//! The output side is bounded too: a write waits while the shared output buffer holds
//! [`Config::write_buffer_len`] bytes, and the driver stops reading input while its own
//! control answers (resets) pile up unsent. Frames longer than [`Config::max_frame_len`]
//! end the connection with an error before anything is allocated for them, and the read buffer
//! grows only with the bytes that arrive. A frame that has started arriving must finish within
//! [`Config::frame_timeout`], or the connection ends with [`MplexError::FrameTimeout`].
//! At most [`Config::max_streams`] streams are open at once, both directions counted together
//! (as in yamux): inbound streams beyond it are reset, outbound ones fail to open.
//!
//! # Layers
//!
//! - `config.rs`: [`Config`] and the crate's fixed constants;
//! - `frame.rs`: the wire format, encode and a bounded decode (no I/O);
//! - `proto.rs`: the protocol core, a plain state machine (no I/O, no wakers, no clock): it
//!   takes decoded frames and the streams' operations and gives frames and events out;
//!   dispatch, the limits, resets, back-pressure and fairness live there, with synchronous
//!   tests of two cores wired together;
//! - `stream.rs`, `muxer.rs`: the user-facing [`MplexStream`], [`MplexMuxer`] and [`Mplex`];
//! - `driver.rs`: the async part, [`MplexDriver`]: the socket, the read and write buffers,
//!   the wakers and the timer.
//!
//! # Fairness
//!
//! Within one output buffer each stream may queue at most its share (the buffer's size over
//! the number of streams that wrote into the previous buffer, plus one), so a stream sending
//! flat out always leaves room for another stream's small message in the same write.
//!
//! # Example
//!
//! ```
//! use futures::{AsyncReadExt, AsyncWriteExt};
//! use libp2p_core::StreamMuxer;
//! use libp2p_mplex::Mplex;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (a, b) = libp2p_core::testkit::memory_pair();
//! let mplex = Mplex::default();
//! let (dialer, driver) = mplex.connect(a);
//! tokio::spawn(driver);
//! let (listener, driver) = mplex.connect(b);
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
mod proto;
mod stream;

pub use config::{BufferPolicy, Config, MAX_FRAME_LEN};
pub use driver::MplexDriver;
pub use error::MplexError;
pub use muxer::{Mplex, MplexMuxer};
pub use stream::MplexStream;

#[cfg(doc)]
use libp2p_core::MuxerUpgrade;

/// The protocol name.
pub const PROTOCOL: &str = "/mplex/6.7.0";
