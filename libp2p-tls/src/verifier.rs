//! The rustls side: our certificate verifiers (a web PKI verifier cannot check a self-signed
//! libp2p certificate), the resolvers that always present our one certificate, and the
//! client and server configurations built from them.

use std::sync::{Arc, Mutex};

use libp2p_core::PeerId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::certificate::{verify_at, verify_handshake_signature, SIGNATURE_SCHEMES};
use crate::error::{CertificateError, Refusal};

/// The ALPN protocol both sides offer.
pub const ALPN: &[u8] = b"libp2p";

/// Checks the remote's certificate chain: exactly one certificate, valid by the libp2p rules,
/// of the `expected` peer when one is given.
#[derive(Debug)]
pub(crate) struct Libp2pVerifier {
    expected: Option<PeerId>,
    /// Where a mismatch is noted, for a transport that gets only an alert back (QUIC).
    met: Option<MetInstead>,
}

/// The peer a dial met instead of the one it expected, noted by the certificate verifier of
/// [`Tls::client_config_noting`](crate::Tls::client_config_noting). A transport that runs TLS
/// itself (QUIC) learns of a refused certificate only as a TLS alert; this lets it name the
/// peer it met in its error.
#[derive(Debug, Clone, Default)]
pub struct MetInstead(Arc<Mutex<Option<PeerId>>>);

impl MetInstead {
    /// The other peer, if the verifier refused one (taken: a second call gives `None`).
    pub fn take(&self) -> Option<PeerId> {
        self.0.lock().ok().and_then(|mut met| met.take())
    }

    fn note(&self, peer: PeerId) {
        if let Ok(mut met) = self.0.lock() {
            *met = Some(peer);
        }
    }
}

impl Libp2pVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(CertificateError::TooManyCertificates {
                count: 1 + intermediates.len(),
            }
            .into());
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let peer = verify_at(end_entity.as_ref(), now)?;
        match self.expected {
            Some(expected) if expected != peer.peer_id => {
                if let Some(met) = &self.met {
                    met.note(peer.peer_id);
                }
                Err(Refusal::PeerIdMismatch {
                    expected,
                    actual: peer.peer_id,
                }
                .into_rustls())
            }
            _ => Ok(()),
        }
    }

    fn tls13_signature(
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(cert.as_ref(), dss.scheme, message, dss.signature())?;
        Ok(HandshakeSignatureValid::assertion())
    }

    /// Never called (only TLS 1.3 is offered or accepted); refuses all the same.
    fn tls12_signature() -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }
}

impl ServerCertVerifier for Libp2pVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::tls12_signature()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SIGNATURE_SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for Libp2pVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::tls12_signature()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SIGNATURE_SCHEMES.to_vec()
    }
}

/// Presents our one certificate to every peer, whatever the client hello says (the server
/// name among it: the spec has servers ignore SNI).
#[derive(Debug)]
pub(crate) struct OneCertificate(pub(crate) Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl ResolvesClientCert for OneCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// ring, as rustls' default for it, restricted to what TLS 1.3 uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: TLS 1.3 only, client certificates mandatory, ALPN `libp2p`, no session
/// tickets and no session cache (nothing to resume).
pub(crate) fn server_config(
    provider: &Arc<CryptoProvider>,
    certificate: &Arc<CertifiedKey>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(Libp2pVerifier {
            expected: None,
            met: None,
        }))
        .with_cert_resolver(Arc::new(OneCertificate(certificate.clone())));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.max_early_data_size = 0;
    Ok(config)
}

/// The client side: TLS 1.3 only, our certificate always sent, ALPN `libp2p`, no SNI, never
/// resuming; `expected` (when known) is checked by the verifier, before our certificate goes
/// out, and a mismatch noted in `met` when given.
pub(crate) fn client_config(
    provider: &Arc<CryptoProvider>,
    certificate: &Arc<CertifiedKey>,
    expected: Option<PeerId>,
    met: Option<MetInstead>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Libp2pVerifier { expected, met }))
        .with_client_cert_resolver(Arc::new(OneCertificate(certificate.clone())));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_sni = false;
    config.enable_early_data = false;
    Ok(config)
}

/// The name the client gives rustls. An IP address, so that rustls never sends it as SNI
/// (the spec forbids any SNI value in this version); nothing checks it.
pub(crate) fn server_name() -> ServerName<'static> {
    ServerName::IpAddress(rustls::pki_types::IpAddr::from(
        std::net::Ipv4Addr::UNSPECIFIED,
    ))
}
