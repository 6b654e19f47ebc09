//! The errors of the service and its handle, one per operation, each with its [`Fault`].

use std::io;

use libp2p_core::{Classify, Fault, NewStreamError};

use crate::error::DecodeError;

/// The service has stopped: its host closed, or it was never run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gossipsub service has stopped")]
#[non_exhaustive]
pub struct Closed;

impl Classify for Closed {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Publishing through the handle failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The router refused the message (no peers, too large, a duplicate, signing failed).
    #[error(transparent)]
    Router(#[from] crate::error::PublishError),
    /// The service has stopped.
    #[error(transparent)]
    Closed(#[from] Closed),
}

impl Classify for PublishError {
    fn fault(&self) -> Fault {
        match self {
            PublishError::Router(e) => e.fault(),
            PublishError::Closed(e) => e.fault(),
        }
    }
}

/// Subscribing through the handle failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The router refused (too many topics).
    #[error(transparent)]
    Router(#[from] crate::error::SubscribeError),
    /// The service has stopped.
    #[error(transparent)]
    Closed(#[from] Closed),
}

impl Classify for SubscribeError {
    fn fault(&self) -> Fault {
        match self {
            SubscribeError::Router(e) => e.fault(),
            SubscribeError::Closed(e) => e.fault(),
        }
    }
}

/// Reporting a validation verdict through the handle failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The router knows no message of this id awaiting validation.
    #[error(transparent)]
    Router(#[from] crate::error::ReportError),
    /// The service has stopped.
    #[error(transparent)]
    Closed(#[from] Closed),
}

impl Classify for ReportError {
    fn fault(&self) -> Fault {
        match self {
            ReportError::Router(e) => e.fault(),
            ReportError::Closed(e) => e.fault(),
        }
    }
}

/// A subscriber fell behind and this many messages were dropped for it (the router never
/// waits for a slow subscriber); the ones after them follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the subscriber fell behind and missed {missed} messages")]
#[non_exhaustive]
pub struct Lagged {
    /// Messages lost.
    pub missed: u64,
}

impl Classify for Lagged {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Opening our outbound stream to a peer failed (logged; the peer gets no RPCs from us until
/// a later attempt succeeds).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The host could not open the stream (no gossipsub protocol in common, connection gone).
    #[error(transparent)]
    Stream(#[from] NewStreamError),
    /// Opening took longer than `ServiceConfig::open_timeout`.
    #[error("opening the stream timed out")]
    Timeout,
}

impl Classify for OpenError {
    fn fault(&self) -> Fault {
        match self {
            OpenError::Stream(e) => e.fault(),
            OpenError::Timeout => Fault::Timeout,
        }
    }
}

/// Reading a peer's inbound stream failed; the stream is dropped (logged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The stream failed.
    #[error("reading the stream failed: {0}")]
    Io(#[from] io::Error),
    /// The peer sent an oversized or malformed RPC.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Classify for ReadError {
    fn fault(&self) -> Fault {
        match self {
            ReadError::Io(e) => Fault::of_io(e),
            ReadError::Decode(e) => e.fault(),
        }
    }
}

/// Writing to a peer's outbound stream failed; the stream is given up (logged).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The stream failed.
    #[error("writing the stream failed: {0}")]
    Io(#[from] io::Error),
    /// One write took longer than `ServiceConfig::write_timeout`: the peer is not reading.
    #[error("writing the stream stalled")]
    Timeout,
}

impl Classify for WriteError {
    fn fault(&self) -> Fault {
        match self {
            WriteError::Io(e) => Fault::of_io(e),
            WriteError::Timeout => Fault::Timeout,
        }
    }
}
