//! The TLS upgrade end to end: the core security kit, every key type, the full pipeline over
//! TCP, the no-resumption rule, SNI, and every refusal as a typed error of a real handshake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::testkit::{handshake_pair, memory_pair, muxed_echo, security_kit};
use libp2p_core::{
    Classify, Fault, Keypair, MuxerUpgrade, Negotiated, PeerId, Role, SecurityUpgrade, TransportExt,
};
use libp2p_tls::{
    encode_signed_key, signed_key_extension, Certificate, CertificateError, Tls, TlsError,
    TlsStream, EXTENSION_OID, PROTOCOL, SIGNATURE_PREFIX,
};
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_yamux::Yamux;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// The listener's result, after the dialer's stream (if it got one) was used: a TLS 1.3
/// client finishes before the server has checked its certificate, so it learns of a refusal
/// only when it reads.
async fn listener_refuses(dialer: &Tls, listener: &Tls) -> TlsError {
    let (ca, cb) = memory_pair();
    let (dialed, accepted) = handshake_pair(dialer, listener, ca, cb, None).await;
    if let Ok((_, mut io)) = dialed {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
            .await
            .expect("the refused dialer's read must end");
        assert!(read.is_err(), "a refused dialer must see its stream fail");
    }
    match accepted {
        Ok(_) => panic!("the listener must refuse"),
        Err(e) => e,
    }
}

async fn dialer_refuses(dialer: &Tls, listener: &Tls) -> TlsError {
    let (ca, cb) = memory_pair();
    let (dialed, accepted) = handshake_pair(dialer, listener, ca, cb, None).await;
    assert!(accepted.is_err(), "the listener sees the dialer abort");
    match dialed {
        Ok(_) => panic!("the dialer must refuse"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------
// Working handshakes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    security_kit(Tls::new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_with_every_key_type() {
    libp2p_core::testkit::handshake_with_every_key_type(Tls::new, |io_a, io_b| {
        assert_eq!(io_a.alpn_protocol(), Some(&b"libp2p"[..]));
        assert_eq!(io_b.alpn_protocol(), Some(&b"libp2p"[..]));
    })
    .await;
}

async fn pipeline_echo<M>(muxer: M)
where
    M: MuxerUpgrade<Negotiated<TlsStream<Negotiated<TcpSocket>>>>,
{
    let stack = |key| {
        TcpTransport::new()
            .upgrade()
            .authenticate(Tls::new(key))
            .multiplex(muxer.clone())
    };
    muxed_echo(stack, "/ip4/127.0.0.1/tcp/0".parse().unwrap(), 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_tls_yamux_echoes_a_mebibyte() {
    pipeline_echo(Yamux::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_config_dials_many_servers() {
    // A resuming client would offer the ticket of the first server to the second under the
    // same server name; ours never resumes and our servers issue no tickets, so every
    // handshake is a full one, whoever the server is and however often.
    let client = Tls::new(Keypair::generate_ed25519());
    let servers = [
        Tls::new(Keypair::generate_ed25519()),
        Tls::new(Keypair::generate_ecdsa()),
    ];
    for round in 0..3 {
        for server in &servers {
            let (ca, cb) = memory_pair();
            let id = server.local_peer_id();
            let (dialed, accepted) = handshake_pair(&client, server, ca, cb, Some(id)).await;
            let (seen, mut io_a) = dialed.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(seen, id);
            let (_, mut io_b) = accepted.unwrap_or_else(|e| panic!("round {round}: {e}"));
            io_b.write_all(b"hi").await.unwrap();
            io_b.flush().await.unwrap();
            let mut buf = [0u8; 2];
            io_a.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hi");
        }
    }
}

/// A client session store that records what the server gave it.
#[derive(Debug, Default)]
struct RecordingStore {
    tickets: Mutex<usize>,
    offered: Mutex<usize>,
    inner: Option<Arc<dyn rustls::client::ClientSessionStore>>,
}

impl rustls::client::ClientSessionStore for RecordingStore {
    fn set_kx_hint(&self, _: ServerName<'static>, _: rustls::NamedGroup) {}
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        None
    }
    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {}
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        *self.tickets.lock().unwrap() += 1;
        if let Some(inner) = &self.inner {
            inner.insert_tls13_ticket(name, value);
        }
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let ticket = self.inner.as_ref().and_then(|i| i.take_tls13_ticket(name));
        *self.offered.lock().unwrap() += usize::from(ticket.is_some());
        ticket
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_issue_no_session_tickets() {
    let client = Tls::new(Keypair::generate_ed25519());
    let server = Tls::new(Keypair::generate_ed25519());
    // Our client configuration, made to resume: it would keep any ticket the server sends.
    let store = Arc::new(RecordingStore::default());
    let mut config = (*client.client_config(None).unwrap()).clone();
    config.resumption = rustls::client::Resumption::store(store.clone());
    let (ca, cb) = memory_pair();
    let name = ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
    let (dialed, accepted) = futures::future::join(
        futures_rustls::TlsConnector::from(Arc::new(config)).connect(name, ca),
        server.secure(cb, Role::Listener, None, PROTOCOL),
    )
    .await;
    let mut io_a = dialed.expect("dial");
    let (_, mut io_b) = accepted.expect("accept");
    // Tickets come after the handshake, before application data: read some.
    io_b.write_all(b"data").await.unwrap();
    io_b.close().await.unwrap();
    let mut got = Vec::new();
    io_a.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"data");
    assert_eq!(*store.tickets.lock().unwrap(), 0, "no ticket may be issued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_across_peers_is_what_we_avoid() {
    // What a default rustls peer does: a server that issues tickets, and a client that keeps
    // them per server name, here shared by two servers of different identities.
    let client = Tls::new(Keypair::generate_ed25519());
    let mut client_config = (*client.client_config(None).unwrap()).clone();
    let store = Arc::new(RecordingStore {
        tickets: Mutex::new(0),
        offered: Mutex::new(0),
        inner: Some(Arc::new(rustls::client::ClientSessionMemoryCache::new(8))),
    });
    client_config.resumption = rustls::client::Resumption::store(store.clone());
    let client_config = Arc::new(client_config);
    let ticketing = |tls: &Tls| {
        let mut config = (*tls.server_config().unwrap()).clone();
        config.send_tls13_tickets = 2;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(8);
        Arc::new(config)
    };
    let first = Tls::new(Keypair::generate_ed25519());
    let second = Tls::new(Keypair::generate_ed25519());
    let mut seen = Vec::new();
    for server in [&first, &second] {
        let (ca, cb) = memory_pair();
        let name = ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
        let (dialed, accepted) = futures::future::join(
            futures_rustls::TlsConnector::from(client_config.clone()).connect(name, ca),
            futures_rustls::TlsAcceptor::from(ticketing(server)).accept(cb),
        )
        .await;
        let (mut io_a, mut io_b) = (dialed.expect("dial"), accepted.expect("accept"));
        io_b.write_all(b"x").await.unwrap();
        io_b.close().await.unwrap();
        let mut got = Vec::new();
        io_a.read_to_end(&mut got).await.unwrap();
        let cert = io_a.get_ref().1.peer_certificates().unwrap()[0].clone();
        seen.push(libp2p_tls::verify_certificate(&cert, std::time::SystemTime::now()).unwrap());
    }
    // The first server's tickets went into the store and the second was offered one of
    // them: the handshake only works because the second server cannot read it and falls back
    // to a full one. A peer that does not fall back aborts here; ours issue none.
    assert!(
        *store.tickets.lock().unwrap() >= 2,
        "tickets were issued and kept"
    );
    assert_eq!(seen[0].peer_id, first.local_peer_id());
    assert_eq!(seen[1].peer_id, second.local_peer_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sni_sent_and_sni_received_ignored() {
    let client = Tls::new(Keypair::generate_ed25519());
    let server = Tls::new(Keypair::generate_ed25519());
    // Our dialer against a rustls server that reports the server name it received.
    let (ca, cb) = memory_pair();
    let (dialed, accepted) = futures::future::join(
        client.secure(ca, Role::Dialer, Some(server.local_peer_id()), PROTOCOL),
        futures_rustls::TlsAcceptor::from(server.server_config().unwrap()).accept(cb),
    )
    .await;
    dialed.expect("dial");
    let accepted = accepted.expect("accept");
    assert_eq!(accepted.get_ref().1.server_name(), None, "no SNI sent");

    // A client that sends SNI: our listener ignores it.
    let mut config = (*client.client_config(None).unwrap()).clone();
    config.enable_sni = true;
    let (ca, cb) = memory_pair();
    let name = ServerName::try_from("example.com").unwrap();
    let (dialed, accepted) = futures::future::join(
        futures_rustls::TlsConnector::from(Arc::new(config)).connect(name, ca),
        server.secure(cb, Role::Listener, None, PROTOCOL),
    )
    .await;
    dialed.expect("dial with SNI");
    assert_eq!(accepted.expect("accept").0, client.local_peer_id());
}

// ---------------------------------------------------------------------------------------
// Refusals: each bad certificate, built with rcgen, in a real handshake.

/// The DER and PKCS#8 key of a certificate made like ours but adjusted by `tweak` (which
/// gets the certificate key's SubjectPublicKeyInfo) before signing.
fn custom_parts(tweak: impl FnOnce(&mut rcgen::CertificateParams, &[u8])) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    tweak(&mut params, &key.public_key_der());
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

fn custom_cert(
    _identity: &Keypair,
    tweak: impl FnOnce(&mut rcgen::CertificateParams, &[u8]),
) -> Certificate {
    let (der, key) = custom_parts(tweak);
    Certificate::from_der(der, key)
}

fn good_extension(identity: &Keypair) -> impl FnOnce(&mut rcgen::CertificateParams, &[u8]) + '_ {
    move |params, spki| {
        params
            .custom_extensions
            .push(signed_key_extension(identity, spki).unwrap())
    }
}

fn extension_with(content: Vec<u8>) -> rcgen::CustomExtension {
    let mut ext = rcgen::CustomExtension::from_oid_content(&EXTENSION_OID, content);
    ext.set_criticality(true);
    ext
}

/// A certificate of `identity` made like ours, adjusted by `tweak` before its libp2p
/// extension is added.
fn good_cert_with(
    identity: &Keypair,
    tweak: impl FnOnce(&mut rcgen::CertificateParams),
) -> Certificate {
    custom_cert(identity, |params, spki| {
        tweak(params);
        good_extension(identity)(params, spki)
    })
}

/// A certificate whose only libp2p extension has `content`.
fn cert_with_extension(content: Vec<u8>) -> Certificate {
    custom_cert(&Keypair::generate_ed25519(), |params, _| {
        params.custom_extensions.push(extension_with(content))
    })
}

/// A `Tls` that presents `cert` for `identity`.
fn presenting(identity: &Keypair, cert: Certificate) -> Tls {
    Tls::with_certificate(identity.public().to_peer_id(), cert).unwrap()
}

/// Checks that both roles refuse the peer presenting `cert` with `expected`.
async fn refused_both_ways(cert: Certificate, expected: CertificateError) {
    let identity = Keypair::generate_ed25519();
    let bad = presenting(&identity, cert);
    let good = Tls::new(Keypair::generate_ed25519());
    match listener_refuses(&bad, &good).await {
        TlsError::Certificate(e) => assert_eq!(e, expected, "listener"),
        other => panic!("listener: expected {expected:?}, got {other:?}"),
    }
    match dialer_refuses(&good, &bad).await {
        TlsError::Certificate(e) => assert_eq!(e, expected, "dialer"),
        other => panic!("dialer: expected {expected:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_certificate_without_the_extension() {
    let cert = custom_cert(&Keypair::generate_ed25519(), |_, _| {});
    refused_both_ways(cert, CertificateError::MissingExtension).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_malformed_extension() {
    let cert = cert_with_extension(vec![0x30, 3, 4, 1]);
    refused_both_ways(cert, CertificateError::MalformedExtension).await;
    // A SignedKey whose public key is not a protobuf PublicKey.
    let cert = cert_with_extension(encode_signed_key(b"\xff\xff", b"sig"));
    refused_both_ways(cert, CertificateError::MalformedExtension).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_duplicate_extension() {
    let identity = Keypair::generate_ed25519();
    let cert = custom_cert(&identity, |params, spki| {
        params
            .custom_extensions
            .push(signed_key_extension(&identity, spki).unwrap());
        params
            .custom_extensions
            .push(signed_key_extension(&identity, spki).unwrap());
    });
    refused_both_ways(cert, CertificateError::DuplicateExtension).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_extension_signed_over_another_key() {
    let identity = Keypair::generate_ed25519();
    // Signed over the SubjectPublicKeyInfo of another certificate key.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = custom_cert(&identity, |params, _| {
        params
            .custom_extensions
            .push(signed_key_extension(&identity, &other.public_key_der()).unwrap())
    });
    refused_both_ways(cert, CertificateError::BadExtensionSignature).await;
    // Signed without the prefix.
    let cert = custom_cert(&identity, |params, spki| {
        let signature = identity.sign(spki).unwrap();
        let content = encode_signed_key(&identity.public().encode_protobuf(), &signature);
        params.custom_extensions.push(extension_with(content))
    });
    refused_both_ways(cert, CertificateError::BadExtensionSignature).await;
    // Signed by another identity than the one it names.
    let impostor = Keypair::generate_ed25519();
    let cert = custom_cert(&identity, |params, spki| {
        let mut message = SIGNATURE_PREFIX.to_vec();
        message.extend_from_slice(spki);
        let signature = impostor.sign(&message).unwrap();
        let content = encode_signed_key(&identity.public().encode_protobuf(), &signature);
        params.custom_extensions.push(extension_with(content))
    });
    refused_both_ways(cert, CertificateError::BadExtensionSignature).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_bad_self_signature() {
    let identity = Keypair::generate_ed25519();
    let (mut der, key) = custom_parts(good_extension(&identity));
    // The last byte is the end of the ECDSA signature's `s`: still DER, no longer valid.
    *der.last_mut().unwrap() ^= 0x01;
    refused_both_ways(
        Certificate::from_der(der, key),
        CertificateError::BadSelfSignature,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_certificate_not_yet_valid_or_expired() {
    let identity = Keypair::generate_ed25519();
    let cert = good_cert_with(&identity, |params| {
        params.not_before = rcgen::date_time_ymd(2200, 1, 1);
    });
    refused_both_ways(
        cert,
        CertificateError::NotYetValid {
            not_before: 7_258_118_400,
        },
    )
    .await;
    let cert = good_cert_with(&identity, |params| {
        params.not_before = rcgen::date_time_ymd(1999, 1, 1);
        params.not_after = rcgen::date_time_ymd(2000, 1, 1);
    });
    refused_both_ways(
        cert,
        CertificateError::Expired {
            not_after: 946_684_800,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_unsupported_key_type() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct PublicKey {
        #[prost(int32, required, tag = "1")]
        key_type: i32,
        #[prost(bytes = "vec", required, tag = "2")]
        data: Vec<u8>,
    }
    let key = prost::Message::encode_to_vec(&PublicKey {
        key_type: 7,
        data: vec![1; 32],
    });
    let cert = cert_with_extension(encode_signed_key(&key, b"sig"));
    refused_both_ways(cert, CertificateError::UnsupportedKeyType { key_type: 7 }).await;
    // A known type with bytes that are no key of it.
    let key = prost::Message::encode_to_vec(&PublicKey {
        key_type: 1,
        data: vec![1; 5],
    });
    let cert = cert_with_extension(encode_signed_key(&key, b"sig"));
    refused_both_ways(cert, CertificateError::InvalidPublicKey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_extensions_critical_refused_others_ignored() {
    let identity = Keypair::generate_ed25519();
    let unknown = |critical: bool| {
        let mut ext = rcgen::CustomExtension::from_oid_content(&[1, 2, 3, 4, 5], vec![5, 0]);
        ext.set_criticality(critical);
        ext
    };
    let cert = good_cert_with(&identity, |params| {
        params.custom_extensions.push(unknown(true));
    });
    refused_both_ways(
        cert,
        CertificateError::UnknownCriticalExtension {
            oid: "1.2.3.4.5".into(),
        },
    )
    .await;

    // Non-critical and unknown: ignored.
    let cert = good_cert_with(&identity, |params| {
        params.custom_extensions.push(unknown(false));
    });
    let (a, b) = (
        presenting(&identity, cert),
        Tls::new(Keypair::generate_ed25519()),
    );
    let (ca, cb) = memory_pair();
    let (dialed, accepted) =
        handshake_pair(&b, &a, ca, cb, Some(identity.public().to_peer_id())).await;
    dialed.expect("a non-critical unknown extension is ignored");
    accepted.expect("listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_the_wrong_peer() {
    let (a, b) = (
        Tls::new(Keypair::generate_ed25519()),
        Tls::new(Keypair::generate_ed25519()),
    );
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let (ca, cb) = memory_pair();
    let (dialed, accepted) = handshake_pair(&a, &b, ca, cb, Some(stranger)).await;
    match dialed {
        Err(e @ TlsError::PeerIdMismatch { .. }) => {
            assert_eq!(e.fault(), Fault::Remote);
            let TlsError::PeerIdMismatch { expected, actual } = e else {
                unreachable!()
            };
            assert_eq!(*expected, stranger);
            assert_eq!(*actual, b.local_peer_id());
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    // The listener learns only that the dialer refused it.
    match accepted {
        Err(e @ TlsError::Refused(rustls::AlertDescription::CertificateUnknown)) => {
            assert_eq!(e.fault(), Fault::Incompatible)
        }
        other => panic!("expected a certificate_unknown alert, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_expecting_someone_else_refuses() {
    let (a, b) = (
        Tls::new(Keypair::generate_ed25519()),
        Tls::new(Keypair::generate_ed25519()),
    );
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let (ca, cb) = memory_pair();
    let (dialed, accepted) = futures::future::join(
        a.secure(ca, Role::Dialer, None, PROTOCOL),
        b.secure(cb, Role::Listener, Some(stranger), PROTOCOL),
    )
    .await;
    assert!(dialed.is_ok(), "the dialer accepted the listener");
    match accepted {
        Err(TlsError::PeerIdMismatch { expected, actual }) => {
            assert_eq!((*expected, *actual), (stranger, a.local_peer_id()))
        }
        other => panic!("expected a mismatch, got {:?}", other.map(|r| r.0)),
    }
}

// ---------------------------------------------------------------------------------------
// Refusals of peers that break the handshake rules themselves, played by raw rustls.

/// Accepts any certificate: the foreign peer's side of the tests below.
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate chain and key of a well-formed libp2p certificate, as rustls wants them.
fn chain_and_key(identity: &Keypair) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .custom_extensions
        .push(signed_key_extension(identity, &key.public_key_der()).unwrap());
    let cert = params.self_signed(&key).unwrap();
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// Presents a fixed chain. (rustls' own `with_single_cert` and `with_client_auth_cert` check
/// the certificate with webpki, which refuses the libp2p extension as an unknown critical
/// one.)
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl Fixed {
    fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Arc<Self> {
        let key = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
        Arc::new(Fixed(Arc::new(rustls::sign::CertifiedKey::new(chain, key))))
    }
}

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for Fixed {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn foreign_client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    chain: Option<Vec<CertificateDer<'static>>>,
    key: PrivateKeyDer<'static>,
) -> futures_rustls::TlsConnector {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything));
    let mut config = match chain {
        Some(chain) => builder.with_client_cert_resolver(Fixed::new(chain, key)),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"libp2p".to_vec()];
    futures_rustls::TlsConnector::from(Arc::new(config))
}

/// Our listener against a foreign client; returns our listener's error.
async fn our_listener_against(client: futures_rustls::TlsConnector) -> TlsError {
    let ours = Tls::new(Keypair::generate_ed25519());
    let (ca, cb) = memory_pair();
    let name = ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
    let (dialed, accepted) = tokio::time::timeout(
        Duration::from_secs(20),
        futures::future::join(
            async move {
                // Read, to see the listener's alert if the client finished first.
                let mut io = client.connect(name, ca).await?;
                let mut buf = [0u8; 1];
                io.read(&mut buf).await
            },
            ours.secure(cb, Role::Listener, None, PROTOCOL),
        ),
    )
    .await
    .expect("no hang");
    assert!(dialed.is_err(), "the foreign client is refused");
    accepted.expect_err("our listener must refuse")
}

/// Our dialer against a foreign server of `versions` presenting `chain`; returns our
/// dialer's result.
async fn our_dialer_against(
    versions: &[&'static rustls::SupportedProtocolVersion],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<PeerId, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Fixed::new(chain, key));
    config.alpn_protocols = vec![b"libp2p".to_vec()];
    let ours = Tls::new(Keypair::generate_ed25519());
    let (ca, cb) = memory_pair();
    let (dialed, _) = futures::future::join(
        ours.secure(ca, Role::Dialer, None, PROTOCOL),
        futures_rustls::TlsAcceptor::from(Arc::new(config)).accept(cb),
    )
    .await;
    dialed.map(|(peer, _)| peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_more_than_one_certificate() {
    let identity = Keypair::generate_ed25519();
    let (cert, key) = chain_and_key(&identity);
    let (extra, _) = chain_and_key(&Keypair::generate_ed25519());
    // A client sending two certificates.
    let client = foreign_client(
        &[&rustls::version::TLS13],
        Some(vec![cert.clone(), extra.clone()]),
        key.clone_key(),
    );
    match our_listener_against(client).await {
        TlsError::Certificate(CertificateError::TooManyCertificates { count: 2 }) => {}
        other => panic!("expected too many certificates, got {other:?}"),
    }
    // A server sending two certificates.
    match our_dialer_against(&[&rustls::version::TLS13], vec![cert, extra], key).await {
        Err(TlsError::Certificate(CertificateError::TooManyCertificates { count: 2 })) => {}
        other => panic!("expected too many certificates, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_client_without_certificate() {
    let (_, key) = chain_and_key(&Keypair::generate_ed25519());
    let client = foreign_client(&[&rustls::version::TLS13], None, key);
    match our_listener_against(client).await {
        e @ TlsError::NoCertificate => assert_eq!(e.fault(), Fault::Remote),
        other => panic!("expected no certificate, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_tls_1_2() {
    let identity = Keypair::generate_ed25519();
    let (cert, key) = chain_and_key(&identity);
    // A TLS 1.2-only client against our listener.
    let client = foreign_client(
        &[&rustls::version::TLS12],
        Some(vec![cert.clone()]),
        key.clone_key(),
    );
    match our_listener_against(client).await {
        e @ TlsError::NotTls13 => assert_eq!(e.fault(), Fault::Incompatible),
        other => panic!("expected not TLS 1.3, got {other:?}"),
    }
    // Our dialer against a TLS 1.2-only server.
    match our_dialer_against(&[&rustls::version::TLS12], vec![cert], key).await {
        Err(TlsError::NotTls13) => {}
        other => panic!("expected not TLS 1.3, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_other_than_libp2p_is_refused_none_is_tolerated() {
    let identity = Keypair::generate_ed25519();
    let (cert, key) = chain_and_key(&identity);
    // Offering only another protocol: the server must abort.
    let client = {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything))
            .with_client_cert_resolver(Fixed::new(vec![cert.clone()], key.clone_key()));
        config.alpn_protocols = vec![b"h2".to_vec()];
        futures_rustls::TlsConnector::from(Arc::new(config))
    };
    match our_listener_against(client).await {
        e @ TlsError::Tls(rustls::Error::NoApplicationProtocol) => {
            assert_eq!(e.fault(), Fault::Incompatible)
        }
        other => panic!("expected no application protocol, got {other:?}"),
    }
    // Offering none (some implementations leave ALPN out): accepted, with no protocol.
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_client_cert_resolver(Fixed::new(vec![cert], key));
    config.alpn_protocols.clear();
    let ours = Tls::new(Keypair::generate_ed25519());
    let (ca, cb) = memory_pair();
    let name = ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
    let (dialed, accepted) = futures::future::join(
        futures_rustls::TlsConnector::from(Arc::new(config)).connect(name, ca),
        ours.secure(cb, Role::Listener, None, PROTOCOL),
    )
    .await;
    dialed.expect("dial without ALPN");
    let (peer, io) = accepted.expect("accept without ALPN");
    assert_eq!(peer, identity.public().to_peer_id());
    assert_eq!(io.alpn_protocol(), None);
}
