//! The errors the mplex driver raises on its own account.

use std::time::Duration;

use libp2p_core::{Classify, Fault};

/// Why the driver ended a connection for a reason of its own (not a socket failure, not a
/// malformed frame). It reaches the caller inside [`MuxerError::Io`] with the matching
/// [`io::ErrorKind`], so `MuxerError`'s [`Classify`] answers for it as well.
///
/// [`MuxerError::Io`]: libp2p_core::MuxerError::Io
/// [`io::ErrorKind`]: std::io::ErrorKind
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MplexError {
    /// A frame had started arriving but was still incomplete after
    /// [`Config::frame_timeout`](crate::Config::frame_timeout).
    #[error("an mplex frame was still incomplete {timeout:?} after it started")]
    FrameTimeout {
        /// The configured bound.
        timeout: Duration,
    },
    /// The socket took none of our bytes for
    /// [`Config::write_timeout`](crate::Config::write_timeout): the remote does not
    /// read.
    #[error("the remote took no bytes for {timeout:?} (write timeout): it does not read")]
    WriteTimeout {
        /// The configured bound.
        timeout: Duration,
    },
}

impl Classify for MplexError {
    fn fault(&self) -> Fault {
        match self {
            MplexError::FrameTimeout { .. } | MplexError::WriteTimeout { .. } => Fault::Timeout,
        }
    }
}

impl MplexError {
    /// As the `io::Error` that carries it in [`MuxerError::Io`](libp2p_core::MuxerError::Io).
    pub(crate) fn into_io(self) -> std::io::Error {
        let kind = match self {
            MplexError::FrameTimeout { .. } | MplexError::WriteTimeout { .. } => {
                std::io::ErrorKind::TimedOut
            }
        };
        std::io::Error::new(kind, self)
    }
}
