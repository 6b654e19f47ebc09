//! Who is to blame for an error: the vocabulary every crate's errors answer in.
//!
//! A user who sees a failed dial, a failed handshake or a reset stream mostly wants to know one
//! thing: was it the remote, was it us, or did it just take too long? Every error type of the
//! workspace implements [`Classify`], so that question has one answer everywhere instead of a
//! string to match.

use std::io;

/// The class of an error: who broke what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The remote broke a rule of the protocol: a malformed message, a bad signature, a frame
    /// over a limit it was told, another identity than the one dialed.
    Remote,
    /// The remote follows the rules but we cannot talk to it: no protocol in common, a key type
    /// or algorithm we do not support.
    Incompatible,
    /// The network or the remote went away underneath: connection refused or reset, the socket
    /// ended in the middle of a message.
    Network,
    /// Something on our side: the operating system, a local limit, our own configuration, or
    /// the caller (an invalid argument, the host already closed).
    Local,
    /// The operation took longer than its configured bound.
    Timeout,
}

impl Fault {
    /// Whether the remote is to blame (it broke a rule): the errors worth a debug log line and
    /// nothing else on our side.
    pub fn is_remote(self) -> bool {
        self == Fault::Remote
    }

    /// The class of an I/O error, from its kind: timeouts are [`Fault::Timeout`], invalid data
    /// is the remote's fault, a refused, reset or cut-short connection is [`Fault::Network`],
    /// and anything else (permissions, descriptors, addresses) is ours.
    pub fn of_io(error: &io::Error) -> Fault {
        use io::ErrorKind::*;
        match error.kind() {
            TimedOut | WouldBlock => Fault::Timeout,
            InvalidData => Fault::Remote,
            ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe
            | UnexpectedEof | WriteZero | HostUnreachable | NetworkUnreachable | NetworkDown => {
                Fault::Network
            }
            _ => {
                // Errors wrapped by a protocol layer (`io::Error::other(e)`) keep their class.
                if let Some(inner) = error.get_ref() {
                    if let Some(fault) = classify_dyn(inner) {
                        return fault;
                    }
                }
                Fault::Local
            }
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::Remote => "remote broke the protocol",
            Fault::Incompatible => "remote is incompatible",
            Fault::Network => "network failure",
            Fault::Local => "local failure",
            Fault::Timeout => "timed out",
        })
    }
}

/// An error that knows its [`Fault`].
pub trait Classify {
    /// Who is to blame.
    fn fault(&self) -> Fault;
}

impl Classify for io::Error {
    fn fault(&self) -> Fault {
        Fault::of_io(self)
    }
}

/// The fault of a type-erased error, when it is one of the workspace's error types that core
/// knows (`io::Error`, the transport and negotiation errors) or wraps one.
fn classify_dyn(error: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<Fault> {
    if let Some(e) = error.downcast_ref::<io::Error>() {
        return Some(e.fault());
    }
    if let Some(e) = error.downcast_ref::<crate::TransportError>() {
        return Some(e.fault());
    }
    if let Some(e) = error.downcast_ref::<crate::multistream::NegotiationError>() {
        return Some(e.fault());
    }
    if let Some(e) = error.downcast_ref::<crate::MuxerError>() {
        return Some(e.fault());
    }
    if let Some(e) = error.downcast_ref::<crate::framing::FrameError>() {
        return Some(e.fault());
    }
    if let Some(e) = error.downcast_ref::<FaultOf>() {
        return Some(e.fault);
    }
    None
}

/// The fault of a boxed error of any layer: known error types answer for themselves, a
/// security protocol's own error is found through [`FaultOf`] when it registered one, and
/// anything else counts as the remote's (a handshake that failed on its bytes).
pub fn fault_of_boxed(error: &(dyn std::error::Error + Send + Sync + 'static)) -> Fault {
    if let Some(fault) = classify_dyn(error) {
        return fault;
    }
    if let Some(e) = error.downcast_ref::<FaultOf>() {
        return e.fault;
    }
    Fault::Remote
}

/// A type-erased error together with its class, for layers whose error types core does not
/// know (a security protocol's handshake error boxed into [`TransportError::Security`]).
///
/// [`TransportError::Security`]: crate::TransportError::Security
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct FaultOf {
    /// The class.
    pub fault: Fault,
    /// The error.
    #[source]
    pub source: crate::BoxError,
}

impl FaultOf {
    /// Boxes `error` with its class.
    pub fn new<E: Classify + std::error::Error + Send + Sync + 'static>(error: E) -> Self {
        FaultOf {
            fault: error.fault(),
            source: Box::new(error),
        }
    }

    /// The error inside, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }
}

impl Classify for FaultOf {
    fn fault(&self) -> Fault {
        self.fault
    }
}

impl Classify for crate::framing::FrameError {
    fn fault(&self) -> Fault {
        use crate::framing::FrameError as E;
        match self {
            E::Io(e) => e.fault(),
            E::Oversized { .. } => Fault::Local,
            _ => Fault::Remote,
        }
    }
}

impl Classify for crate::multistream::NegotiationError {
    fn fault(&self) -> Fault {
        use crate::multistream::NegotiationError as E;
        match self {
            E::Io(e) => e.fault(),
            E::ProtocolNotSupported { .. } => Fault::Incompatible,
            E::InvalidProtocol(_) => Fault::Local,
            _ => Fault::Remote,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_errors_have_their_class() {
        use crate::framing::FrameError;
        let eof = FrameError::Io(io::ErrorKind::UnexpectedEof.into());
        assert_eq!(eof.fault(), Fault::Network);
        assert_eq!(
            FrameError::TooLong { len: 2, max: 1 }.fault(),
            Fault::Remote
        );
        assert_eq!(FrameError::InvalidHead.fault(), Fault::Remote);
        assert_eq!(
            FrameError::Oversized { len: 2, max: 1 }.fault(),
            Fault::Local
        );
    }

    #[test]
    fn io_kinds_map_to_their_class() {
        let kind = |k: io::ErrorKind| Fault::of_io(&io::Error::from(k));
        assert_eq!(kind(io::ErrorKind::TimedOut), Fault::Timeout);
        assert_eq!(kind(io::ErrorKind::InvalidData), Fault::Remote);
        assert_eq!(kind(io::ErrorKind::ConnectionReset), Fault::Network);
        assert_eq!(kind(io::ErrorKind::UnexpectedEof), Fault::Network);
        assert_eq!(kind(io::ErrorKind::PermissionDenied), Fault::Local);
    }

    #[test]
    fn wrapped_errors_keep_their_class() {
        let inner = crate::multistream::NegotiationError::ProtocolNotSupported { offered: vec![] };
        let wrapped = io::Error::other(inner);
        assert_eq!(Fault::of_io(&wrapped), Fault::Incompatible);
        let boxed: crate::BoxError = Box::new(FaultOf {
            fault: Fault::Incompatible,
            source: "no common cipher".into(),
        });
        assert_eq!(fault_of_boxed(boxed.as_ref()), Fault::Incompatible);
        let framed = io::Error::other(crate::framing::FrameError::TooLong { len: 9, max: 1 });
        assert_eq!(Fault::of_io(&framed), Fault::Remote);
        let unknown: crate::BoxError = "bad signature".into();
        assert_eq!(fault_of_boxed(unknown.as_ref()), Fault::Remote);
    }
}
