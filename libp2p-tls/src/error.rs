//! The errors: one enum per operation (making our certificate, checking the remote's, the
//! handshake), each with its [`Classify`] answer.

use std::io;
use std::sync::Arc;

use libp2p_core::{Classify, Fault, PeerId};

/// Why our own certificate could not be made (see [`crate::Certificate::generate`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The identity key could not sign the certificate's public key.
    #[error("the identity key cannot sign: {0}")]
    Signing(#[from] libp2p_core::identity::SigningError),
    /// rcgen could not make the key pair or the certificate.
    #[error("cannot build the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the certificate's private key.
    #[error("rustls refused the certificate key: {0}")]
    Key(#[from] rustls::Error),
}

impl Classify for GenerateError {
    fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// Why a remote's certificate was refused (see [`crate::verify_certificate`]): each variant is a
/// rule of the libp2p TLS spec that the certificate breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The certificate is not a DER-encoded X.509 certificate (or has bytes after it).
    #[error("malformed X.509 certificate")]
    Malformed,
    /// The remote sent a chain of more than one certificate.
    #[error("the remote sent {count} certificates, exactly one is allowed")]
    TooManyCertificates {
        /// How many it sent.
        count: usize,
    },
    /// The certificate has no libp2p public key extension (OID 1.3.6.1.4.1.53594.1.1).
    #[error("the certificate has no libp2p public key extension")]
    MissingExtension,
    /// The certificate carries the libp2p extension more than once.
    #[error("the certificate has the libp2p extension more than once")]
    DuplicateExtension,
    /// The libp2p extension is not a DER `SignedKey`, or its public key is not a protobuf
    /// `PublicKey`.
    #[error("malformed libp2p public key extension")]
    MalformedExtension,
    /// The extension's public key is of a type we do not know (the protobuf `KeyType`).
    #[error("unsupported identity key type {key_type}")]
    UnsupportedKeyType {
        /// The protobuf `KeyType` number.
        key_type: i32,
    },
    /// The extension's public key is of a known type but its bytes are not a valid key.
    #[error("invalid identity public key in the libp2p extension")]
    InvalidPublicKey,
    /// The identity key's signature over the certificate key is wrong.
    #[error("the libp2p extension's signature does not verify")]
    BadExtensionSignature,
    /// The certificate's self-signature does not verify with its own key.
    #[error("the certificate's self-signature does not verify")]
    BadSelfSignature,
    /// The certificate is signed with an algorithm we cannot check.
    #[error("unsupported certificate signature algorithm")]
    UnsupportedSignatureAlgorithm,
    /// The certificate's `NotBefore` is later than now.
    #[error("the certificate is not valid before {not_before} (unix seconds)")]
    NotYetValid {
        /// `NotBefore`, in seconds since the Unix epoch.
        not_before: i64,
    },
    /// The certificate's `NotAfter` is earlier than now.
    #[error("the certificate expired at {not_after} (unix seconds)")]
    Expired {
        /// `NotAfter`, in seconds since the Unix epoch.
        not_after: i64,
    },
    /// The certificate has a critical extension we do not understand.
    #[error("unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// The extension's object identifier, dotted.
        oid: String,
    },
    /// The certificate carries the deprecated `issuerUniqueID` or `subjectUniqueID`.
    #[error("the certificate carries a deprecated unique identifier")]
    UniqueIdentifier,
    /// The TLS `CertificateVerify` signature, made with the certificate key over the
    /// handshake, does not verify.
    #[error("the handshake signature does not verify with the certificate key")]
    BadHandshakeSignature,
    /// The TLS `CertificateVerify` uses a signature scheme that does not fit the
    /// certificate key, or one we do not support.
    #[error("unsupported handshake signature scheme {scheme:?}")]
    UnsupportedSignatureScheme {
        /// The scheme the remote used.
        scheme: rustls::SignatureScheme,
    },
}

impl Classify for CertificateError {
    fn fault(&self) -> Fault {
        match self {
            CertificateError::UnsupportedKeyType { .. }
            | CertificateError::UnsupportedSignatureAlgorithm
            | CertificateError::UnsupportedSignatureScheme { .. } => Fault::Incompatible,
            _ => Fault::Remote,
        }
    }
}

/// Why a `/tls/1.0.0` handshake failed.
///
/// Errors of the channel after the handshake reach the reader or writer as an [`io::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Reading or writing the socket failed (including the remote closing it early).
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
    /// Our own certificate could not be made when the [`crate::Tls`] was built.
    #[error("no local certificate: {0}")]
    Setup(#[source] Arc<GenerateError>),
    /// The remote's certificate breaks the libp2p TLS rules.
    #[error("remote certificate refused: {0}")]
    Certificate(#[source] CertificateError),
    /// The remote presented no certificate (client authentication is mandatory).
    #[error("the remote presented no certificate")]
    NoCertificate,
    /// The remote is not the peer we meant to reach. (The ids are boxed to keep the error,
    /// and every `Result` carrying it, small.)
    #[error("peer id mismatch: expected {expected}, found {actual}")]
    PeerIdMismatch {
        /// The peer we meant to reach.
        expected: Box<PeerId>,
        /// The peer we met.
        actual: Box<PeerId>,
    },
    /// The remote does not speak TLS 1.3 (it offered or chose an older version).
    #[error("the remote does not speak TLS 1.3")]
    NotTls13,
    /// The remote aborted the handshake with this alert: most often it refused our
    /// certificate (because it expected another peer, say).
    #[error("the remote aborted the handshake: {0:?}")]
    Refused(rustls::AlertDescription),
    /// Another TLS error of the handshake: a message the remote should not have sent, one we
    /// could not decode, no cipher suite or group in common, and so on.
    #[error("tls error: {0}")]
    Tls(#[source] rustls::Error),
}

impl Classify for TlsError {
    fn fault(&self) -> Fault {
        match self {
            TlsError::Io(e) => e.fault(),
            TlsError::Setup(_) => Fault::Local,
            TlsError::Certificate(e) => e.fault(),
            TlsError::NoCertificate | TlsError::PeerIdMismatch { .. } => Fault::Remote,
            TlsError::NotTls13 | TlsError::Refused(_) => Fault::Incompatible,
            TlsError::Tls(e) => match e {
                rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                    Fault::Incompatible
                }
                rustls::Error::General(_)
                | rustls::Error::FailedToGetCurrentTime
                | rustls::Error::FailedToGetRandomBytes
                | rustls::Error::EncryptError
                | rustls::Error::BadMaxFragmentSize
                | rustls::Error::InconsistentKeys(_)
                | rustls::Error::Other(_) => Fault::Local,
                _ => Fault::Remote,
            },
        }
    }
}

/// What our verifiers hand back to rustls when they refuse a certificate, so that the
/// handshake error can name the rule again (see [`TlsError::from_io`]).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(transparent)]
    Certificate(CertificateError),
    #[error("peer id mismatch: expected {expected}, found {actual}")]
    PeerIdMismatch { expected: PeerId, actual: PeerId },
}

impl Refusal {
    /// The rustls error that carries this refusal (and makes rustls send a
    /// `bad_certificate` alert).
    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(self),
        )))
    }
}

impl From<CertificateError> for rustls::Error {
    fn from(e: CertificateError) -> Self {
        Refusal::Certificate(e).into_rustls()
    }
}

impl TlsError {
    /// The handshake error behind an I/O error of futures-rustls: rustls errors (ours from the
    /// verifiers among them) come back typed, anything else is I/O.
    pub(crate) fn from_io(e: io::Error) -> TlsError {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => TlsError::from_rustls(tls.clone()),
            None => TlsError::Io(e),
        }
    }

    pub(crate) fn from_rustls(e: rustls::Error) -> TlsError {
        use rustls::{AlertDescription as Alert, PeerIncompatible as Pi};
        match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(ref other)) => {
                match other.0.downcast_ref::<Refusal>() {
                    Some(Refusal::Certificate(c)) => TlsError::Certificate(c.clone()),
                    Some(Refusal::PeerIdMismatch { expected, actual }) => {
                        TlsError::PeerIdMismatch {
                            expected: Box::new(*expected),
                            actual: Box::new(*actual),
                        }
                    }
                    None => TlsError::Tls(e),
                }
            }
            rustls::Error::NoCertificatesPresented => TlsError::NoCertificate,
            rustls::Error::PeerIncompatible(
                Pi::SupportedVersionsExtensionRequired
                | Pi::ServerDoesNotSupportTls12Or13
                | Pi::ServerTlsVersionIsDisabledByOurConfig
                | Pi::Tls12NotOffered
                | Pi::Tls12NotOfferedOrEnabled,
            )
            | rustls::Error::AlertReceived(Alert::ProtocolVersion) => TlsError::NotTls13,
            rustls::Error::AlertReceived(alert) => TlsError::Refused(alert),
            other => TlsError::Tls(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults() {
        let remote = [
            CertificateError::MissingExtension,
            CertificateError::BadExtensionSignature,
            CertificateError::BadSelfSignature,
            CertificateError::Expired { not_after: 0 },
            CertificateError::TooManyCertificates { count: 2 },
        ];
        for e in remote {
            assert_eq!(TlsError::Certificate(e).fault(), Fault::Remote);
        }
        let unsupported = CertificateError::UnsupportedKeyType { key_type: 9 };
        assert_eq!(
            TlsError::Certificate(unsupported).fault(),
            Fault::Incompatible
        );
        assert_eq!(TlsError::NotTls13.fault(), Fault::Incompatible);
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(TlsError::Io(eof).fault(), Fault::Network);
        let misbehaved =
            rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyEmptyFragments);
        assert_eq!(TlsError::Tls(misbehaved).fault(), Fault::Remote);
    }

    #[test]
    fn refusals_survive_the_trip_through_rustls_and_io() {
        let refusal = CertificateError::NotYetValid { not_before: 5 };
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::from(refusal.clone()),
        );
        match TlsError::from_io(wrapped) {
            TlsError::Certificate(e) => assert_eq!(e, refusal),
            other => panic!("expected the refusal back, got {other:?}"),
        }
        let (a, b) = (PeerId::random(), PeerId::random());
        let mismatch = Refusal::PeerIdMismatch {
            expected: a,
            actual: b,
        }
        .into_rustls();
        match TlsError::from_rustls(mismatch) {
            TlsError::PeerIdMismatch { expected, actual } => {
                assert_eq!((*expected, *actual), (a, b))
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        let plain = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(matches!(TlsError::from_io(plain), TlsError::Io(_)));
    }
}
