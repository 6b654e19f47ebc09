//! The errors the adapter raises on its own account (the yamux crate's own errors are
//! mapped to [`MuxerError`](libp2p_core::MuxerError) by the driver).

use libp2p_core::{Classify, Fault};

/// Why the adapter refused the remote's bytes before the yamux crate saw them. The driver
/// ends the connection with it inside [`MuxerError::Io`](libp2p_core::MuxerError::Io) (kind
/// `InvalidData`, so the fault class is the remote's); downcast the `io::Error`'s inner
/// error to tell which rule the remote broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum YamuxError {
    /// A window update that opens a stream (SYN) granted so much credit that, added to the
    /// initial 256 KiB window, the stream's send window would pass `u32::MAX`. The yamux
    /// crate adds the two without a check (it panics with overflow checks on, and wraps to a
    /// tiny window without), so the adapter ends the connection first.
    #[error(
        "remote opened yamux stream {stream} with a window update of {credit} bytes, \
         which overflows the stream's window"
    )]
    CreditOverflow {
        /// The stream the window update opened.
        stream: u32,
        /// The credit it granted.
        credit: u32,
    },
}

impl Classify for YamuxError {
    fn fault(&self) -> Fault {
        match self {
            YamuxError::CreditOverflow { .. } => Fault::Remote,
        }
    }
}

impl YamuxError {
    /// As the `io::Error` that carries it up through the yamux crate.
    pub(crate) fn to_io(&self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self.clone())
    }
}
