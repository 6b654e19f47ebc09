//! `/tls/1.0.0`: the libp2p TLS 1.3 handshake, as a [`SecurityUpgrade`] over any socket.
//!
//! Each side presents one self-signed X.509 certificate whose key (ECDSA P-256, made afresh
//! for every [`Tls`] value) is unrelated to the host's identity key. The identity travels in
//! the certificate's libp2p extension (OID 1.3.6.1.4.1.53594.1.1): the identity public key
//! and its signature over `"libp2p-tls-handshake:" ++ the certificate's
//! SubjectPublicKeyInfo`. Both sides must present a certificate; each checks the other's
//! (see [`verify_certificate`]) and derives the peer id from the extension's key; the dialer
//! also checks it against the peer it meant to reach before it sends its own certificate.
//!
//! What the spec asks, and how it is met:
//! - TLS 1.3 only (rustls is given no other version), ALPN `libp2p`, no SNI sent (the
//!   client names the server by an IP address, which rustls never sends) and any SNI received
//!   ignored (the server presents its one certificate whatever the hello says).
//! - A client that offers ALPN protocols but not `libp2p` is refused; one that offers none is
//!   accepted (the spec only asks to abort when none of those offered is supported).
//! - Exactly one certificate, valid now, with a good self-signature, exactly one libp2p
//!   extension, no critical extension but that one; each refusal is its own
//!   [`CertificateError`].
//! - Every key type of libp2p-identity: Ed25519, secp256k1, ECDSA, RSA.
//! - No session tickets and no resumption: a ticket from one peer offered to another under
//!   the same (fixed) server name would abort that handshake.
//!
//! rustls runs on ring (no aws-lc, no TLS 1.2 code), over the futures I/O traits by way of
//! futures-rustls: the rustls project's own adapter, which already drives the handshake,
//! `close_notify` and half-close the way rustls means them, so this crate holds only the
//! libp2p rules (certificate, verifiers, configuration). The one gap it leaves, an alert lost
//! on sockets without vectored writes, is closed by the socket wrapper in `stream.rs`.
//!
//! For a transport that runs TLS itself (QUIC), [`Tls::server_config`] and
//! [`Tls::client_config`] give the same rustls configurations, and [`verify_certificate`]
//! names the peer of a certificate.
//!
//! ```
//! use libp2p_core::{Keypair, Role, SecurityUpgrade};
//! use libp2p_tls::{Tls, PROTOCOL};
//! use tokio_util::compat::TokioAsyncReadCompatExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (alice, bob) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
//! let bob_id = bob.public().to_peer_id();
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let (dialed, accepted) = futures::join!(
//!     Tls::new(alice.clone()).secure(a.compat(), Role::Dialer, Some(bob_id), PROTOCOL),
//!     Tls::new(bob).secure(b.compat(), Role::Listener, None, PROTOCOL),
//! );
//! assert_eq!(dialed.unwrap().0, bob_id);
//! assert_eq!(accepted.unwrap().0, alice.public().to_peer_id());
//! # }
//! ```
//!
//! In a pipeline: `TcpTransport::new().upgrade().authenticate(Tls::new(key)).multiplex(Yamux::default())`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod certificate;
mod error;
mod stream;
mod verifier;

use std::future::Future;
use std::sync::Arc;

use libp2p_core::{Keypair, PeerId, Role, SecurityUpgrade, Socket, UpgradeInfo};
use rustls::sign::CertifiedKey;

pub use certificate::{
    decode_signed_key, encode_signed_key, signed_key_extension, verify_certificate,
    verify_handshake_signature, Certificate, PeerCertificate, EXTENSION_OID, SIGNATURE_PREFIX,
    SIGNATURE_SCHEMES,
};
pub use error::{CertificateError, GenerateError, TlsError};
pub use stream::TlsStream;
pub use verifier::{MetInstead, ALPN};

/// The protocol name.
pub const PROTOCOL: &str = "/tls/1.0.0";

/// What one [`Tls`] value brings to every handshake.
struct Local {
    provider: Arc<rustls::crypto::CryptoProvider>,
    certificate: Arc<CertifiedKey>,
    server: Arc<rustls::ServerConfig>,
    /// The client configuration when no peer is expected; one per handshake otherwise, since
    /// the verifier holds the expected peer.
    client: Arc<rustls::ClientConfig>,
}

/// The `/tls/1.0.0` security upgrade. Clones share one certificate and its configurations.
///
/// It has no settings of its own. The handshake's deadline is the upgrade pipeline's. The
/// sizes that bound what a remote can make us hold are rustls' own, which are already tight:
/// a handshake message is refused past 64 KiB (a libp2p certificate is well under 1 KiB, an
/// RSA one under 2 KiB), a TLS record past 16 KiB of plaintext, and at most 64 KiB of our own
/// unsent plaintext is buffered before writes wait.
#[derive(Clone)]
pub struct Tls {
    peer: PeerId,
    /// Our certificate and configurations, or why they could not be made (reported by every
    /// handshake).
    local: Result<Arc<Local>, Arc<GenerateError>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS for the identity `keypair`, with a fresh certificate. Should the certificate fail
    /// to be made, every handshake reports why ([`TlsError::Setup`]); [`Tls::try_new`]
    /// reports it at once.
    pub fn new(keypair: Keypair) -> Self {
        let peer = keypair.public().to_peer_id();
        let local = Certificate::generate(&keypair)
            .and_then(Local::new)
            .map(Arc::new)
            .map_err(|e| {
                tracing::warn!("tls: cannot make the local certificate: {e}");
                Arc::new(e)
            });
        Tls { peer, local }
    }

    /// TLS for the identity `keypair`, failing if its certificate cannot be made.
    pub fn try_new(keypair: Keypair) -> Result<Self, GenerateError> {
        let peer = keypair.public().to_peer_id();
        let local = Local::new(Certificate::generate(&keypair)?)?;
        Ok(Tls {
            peer,
            local: Ok(Arc::new(local)),
        })
    }

    /// TLS presenting `certificate` as it is, for the identity `peer` (the one it should
    /// carry; nothing checks that it does).
    pub fn with_certificate(peer: PeerId, certificate: Certificate) -> Result<Self, GenerateError> {
        Ok(Tls {
            peer,
            local: Ok(Arc::new(Local::new(certificate)?)),
        })
    }

    /// The peer id this upgrade presents.
    pub fn local_peer_id(&self) -> PeerId {
        self.peer
    }

    /// The rustls server configuration every listener handshake uses (TLS 1.3 only, client
    /// certificates mandatory and checked by the libp2p rules, ALPN `libp2p`, no tickets), for
    /// a transport that runs TLS itself (QUIC).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        Ok(self.local()?.server.clone())
    }

    /// The rustls client configuration for a dial to `expected` (any peer if `None`): TLS 1.3
    /// only, the libp2p verifier, ALPN `libp2p`, no SNI, no resumption. For a transport that
    /// runs TLS itself (QUIC); learn the remote with [`verify_certificate`].
    pub fn client_config(
        &self,
        expected: Option<PeerId>,
    ) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        self.local()?.client_for(expected)
    }

    /// As [`client_config`](Self::client_config) for a dial to `expected`, with the peer met
    /// instead noted when the verifier refuses it: a transport that runs TLS itself (QUIC)
    /// gets only an alert back from a refused handshake, and can name the peer from this.
    pub fn client_config_noting(
        &self,
        expected: PeerId,
    ) -> Result<(Arc<rustls::ClientConfig>, MetInstead), TlsError> {
        let local = self.local()?;
        let met = MetInstead::default();
        let config = verifier::client_config(
            &local.provider,
            &local.certificate,
            Some(expected),
            Some(met.clone()),
        )
        .map_err(TlsError::Tls)?;
        Ok((Arc::new(config), met))
    }

    fn local(&self) -> Result<&Arc<Local>, TlsError> {
        self.local
            .as_ref()
            .map_err(|e| TlsError::Setup(Arc::clone(e)))
    }
}

impl Local {
    fn new(certificate: Certificate) -> Result<Self, GenerateError> {
        let provider = verifier::provider();
        let key = provider
            .key_provider
            .load_private_key(certificate.private_key())?;
        let certificate = Arc::new(CertifiedKey::new(vec![certificate.der.clone()], key));
        let server = Arc::new(verifier::server_config(&provider, &certificate)?);
        let client = Arc::new(verifier::client_config(
            &provider,
            &certificate,
            None,
            None,
        )?);
        Ok(Local {
            provider,
            certificate,
            server,
            client,
        })
    }

    fn client_for(&self, expected: Option<PeerId>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        match expected {
            None => Ok(self.client.clone()),
            Some(peer) => {
                verifier::client_config(&self.provider, &self.certificate, Some(peer), None)
                    .map(Arc::new)
                    .map_err(TlsError::Tls)
            }
        }
    }
}

impl UpgradeInfo for Tls {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once(PROTOCOL)
    }
}

impl<C: Socket> SecurityUpgrade<C> for Tls {
    type Output = TlsStream<C>;
    type Error = TlsError;

    fn secure(
        &self,
        socket: C,
        role: Role,
        expected: Option<PeerId>,
        _protocol: &str,
    ) -> impl Future<Output = Result<(PeerId, TlsStream<C>), TlsError>> + Send + 'static {
        let local = self.local().cloned();
        async move {
            let local = local?;
            handshake(local, socket, role, expected).await
        }
    }
}

async fn handshake<C: Socket>(
    local: Arc<Local>,
    socket: C,
    role: Role,
    expected: Option<PeerId>,
) -> Result<(PeerId, TlsStream<C>), TlsError> {
    let stream = match role {
        Role::Dialer => {
            let config = local.client_for(expected)?;
            let stream = futures_rustls::TlsConnector::from(config)
                .connect(verifier::server_name(), stream::Vectored(socket))
                .await
                .map_err(TlsError::from_io)?;
            futures_rustls::TlsStream::Client(stream)
        }
        // Role::Listener (`Role` is non-exhaustive).
        _ => {
            let stream = futures_rustls::TlsAcceptor::from(local.server.clone())
                .accept(stream::Vectored(socket))
                .await
                .map_err(TlsError::from_io)?;
            futures_rustls::TlsStream::Server(stream)
        }
    };
    let stream = TlsStream(stream);
    let version = match &stream.0 {
        futures_rustls::TlsStream::Client(s) => s.get_ref().1.protocol_version(),
        futures_rustls::TlsStream::Server(s) => s.get_ref().1.protocol_version(),
    };
    if version != Some(rustls::ProtocolVersion::TLSv1_3) {
        return Err(TlsError::NotTls13);
    }
    // The verifier checked the one certificate; rustls only completes with one present.
    let der = stream.peer_certificate().ok_or(TlsError::NoCertificate)?;
    let peer = certificate::peer_id_of_verified(der).map_err(TlsError::Certificate)?;
    if let Some(expected) = expected {
        if expected != peer {
            return Err(TlsError::PeerIdMismatch {
                expected: Box::new(expected),
                actual: Box::new(peer),
            });
        }
    }
    Ok((peer, stream))
}
