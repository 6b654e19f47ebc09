//! What can go wrong: setting up the endpoint, and a connection's handshake.
//!
//! A failed dial or accept reaches the caller as a [`TransportError`]: a timeout as
//! [`TransportError::Timeout`], another identity than the one dialed as
//! [`TransportError::PeerIdMismatch`], socket errors as [`TransportError::Io`], and every other
//! handshake failure as [`TransportError::Security`] holding a [`FaultOf`] around a
//! [`HandshakeError`] (its class already answered, the error itself one `downcast_ref` away).

use std::sync::Arc;
use std::time::Duration;

use libp2p_core::{Classify, Fault, FaultOf, TransportError};

/// The protocol name this crate gives its errors and its connections.
pub(crate) const PROTOCOL: &str = crate::PROTOCOL;

/// Why a QUIC connection could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Our own configuration could not be made (reported by every dial and listen of a
    /// transport whose setup failed).
    #[error("local quic setup failed: {0}")]
    Setup(#[source] Arc<SetupError>),
    /// quinn refused to start the connection (an address it cannot reach from this socket,
    /// no connection ids left, the endpoint stopping).
    #[error("cannot start the connection: {0}")]
    Connect(#[source] quinn::ConnectError),
    /// The connection failed during the handshake: closed by the remote (a TLS alert when it
    /// refused our certificate), a QUIC rule the remote broke, a certificate our verifier
    /// refused, an idle timeout, a version the remote does not speak.
    #[error("connection failed: {0}")]
    Connection(#[source] quinn::ConnectionError),
    /// The remote's certificate breaks the libp2p TLS rules.
    #[error("remote certificate refused: {0}")]
    Certificate(#[source] libp2p_tls::CertificateError),
    /// The handshake finished without the remote's certificate (which the TLS configuration
    /// makes mandatory).
    #[error("the remote presented no certificate")]
    NoCertificate,
    /// The handshake did not finish within [`crate::Config::handshake_timeout`].
    #[error("quic handshake timed out after {0:?}")]
    Timeout(Duration),
}

/// Why our own QUIC configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The TLS configuration failed (our certificate could not be made).
    #[error("tls setup failed: {0}")]
    Tls(#[source] libp2p_tls::TlsError),
    /// The TLS configuration lacks the cipher suite QUIC's initial packets need.
    #[error("{0}")]
    NoInitialCipherSuite(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
}

impl Classify for SetupError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// The class of a quinn connection error, for handshakes and for streams alike.
pub(crate) fn connection_fault(e: &quinn::ConnectionError) -> Fault {
    use quinn::ConnectionError as E;
    match e {
        E::VersionMismatch => Fault::Incompatible,
        // Detected by us: the remote broke a QUIC rule, or our verifier refused its
        // certificate (a crypto error). A missing ALPN is incompatibility, not malice.
        E::TransportError(t) => {
            if t.code == quinn::TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL) {
                Fault::Incompatible
            } else {
                Fault::Remote
            }
        }
        // The remote closed with a QUIC error: during a handshake that is a TLS alert (it
        // refused our certificate or our parameters), as TLS over TCP reports a received alert.
        E::ConnectionClosed(_) => Fault::Incompatible,
        E::ApplicationClosed(_) | E::Reset => Fault::Network,
        E::TimedOut => Fault::Timeout,
        E::LocallyClosed | E::CidsExhausted => Fault::Local,
    }
}

/// TLS alert `no_application_protocol`.
const NO_APPLICATION_PROTOCOL: u8 = 120;

impl Classify for HandshakeError {
    fn fault(&self) -> Fault {
        match self {
            HandshakeError::Setup(_) => Fault::Local,
            HandshakeError::Connect(_) => Fault::Local,
            HandshakeError::Connection(e) => connection_fault(e),
            HandshakeError::Certificate(e) => e.fault(),
            HandshakeError::NoCertificate => Fault::Remote,
            HandshakeError::Timeout(_) => Fault::Timeout,
        }
    }
}

impl From<HandshakeError> for TransportError {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::Timeout(limit) => TransportError::Timeout(limit),
            other => TransportError::Security {
                protocol: PROTOCOL.to_string(),
                source: Box::new(FaultOf::new(other)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults() {
        assert_eq!(
            HandshakeError::Timeout(Duration::from_secs(1)).fault(),
            Fault::Timeout
        );
        assert_eq!(HandshakeError::NoCertificate.fault(), Fault::Remote);
        let closed = HandshakeError::Connection(quinn::ConnectionError::TimedOut);
        assert_eq!(closed.fault(), Fault::Timeout);
        let version = HandshakeError::Connection(quinn::ConnectionError::VersionMismatch);
        assert_eq!(version.fault(), Fault::Incompatible);
        let reset = HandshakeError::Connection(quinn::ConnectionError::Reset);
        assert_eq!(reset.fault(), Fault::Network);
    }

    #[test]
    fn transport_errors_keep_the_class() {
        let e = TransportError::from(HandshakeError::NoCertificate);
        assert_eq!(e.fault(), Fault::Remote);
        let TransportError::Security { source, .. } = &e else {
            panic!("expected a security error, got {e:?}")
        };
        let inner = source
            .downcast_ref::<FaultOf>()
            .and_then(|f| f.source.downcast_ref::<HandshakeError>());
        assert!(matches!(inner, Some(HandshakeError::NoCertificate)));
        let t = TransportError::from(HandshakeError::Timeout(Duration::from_secs(2)));
        assert!(matches!(t, TransportError::Timeout(_)));
        assert_eq!(t.fault(), Fault::Timeout);
    }
}
