//! The dialer's certificate check when it knows whom it dials: the libp2p rules of
//! [`libp2p_tls::verify_certificate`], then the expected peer, refusing another one before our
//! own certificate goes out (as the TLS upgrade does), and keeping the identity it met so that
//! the dial can report the mismatch by name rather than as a bare TLS alert.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use libp2p_core::PeerId;
use libp2p_tls::CertificateError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What the verifier saw of the remote, read by the dial after a failed handshake.
pub(crate) type Seen = Arc<Mutex<Option<PeerId>>>;

#[derive(Debug)]
pub(crate) struct ExpectPeer {
    expected: PeerId,
    /// Set to the remote's identity when it is another peer than `expected`.
    pub(crate) mismatch: Seen,
}

impl ExpectPeer {
    pub(crate) fn new(expected: PeerId) -> Self {
        ExpectPeer {
            expected,
            mismatch: Arc::default(),
        }
    }
}

impl ServerCertVerifier for ExpectPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(CertificateError::TooManyCertificates {
                count: 1 + intermediates.len(),
            }
            .into());
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let peer = libp2p_tls::verify_certificate(end_entity.as_ref(), now)?;
        if peer.peer_id != self.expected {
            if let Ok(mut seen) = self.mismatch.lock() {
                *seen = Some(peer.peer_id);
            }
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only; never called.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // webpki cannot check this (it refuses the critical libp2p extension): the TLS
        // crate's own check, on the certificate's key.
        libp2p_tls::verify_handshake_signature(
            cert.as_ref(),
            dss.scheme,
            message,
            dss.signature(),
        )?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        libp2p_tls::SIGNATURE_SCHEMES.to_vec()
    }
}
