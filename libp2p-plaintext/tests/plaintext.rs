use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::testkit::{pattern, security_kit};
use libp2p_core::{
    Keypair, PeerId, Protocol, Role, SecurityUpgrade, Socket, Transport, TransportError,
    TransportExt, UpgradeInfo,
};
use libp2p_plaintext::{Plaintext, PlaintextError};
use libp2p_transport_tcp::TcpTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    security_kit(Plaintext::new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tcp_endpoints_negotiate_plaintext_through_the_pipeline() {
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(kb.clone()));
    let client = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(ka));
    let addr =
        libp2p_core::testkit::echo_listener(server, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
    let target = addr.with(Protocol::P2p(kb.public().to_peer_id()));
    let (peer, mut io) = client.dial(target).await.expect("dial");
    assert_eq!(peer, kb.public().to_peer_id());
    let data = pattern(1, 300_000);
    let (mut r, mut w) = (&mut io).split();
    let send = async {
        w.write_all(&data).await.unwrap();
        w.close().await.unwrap();
    };
    let mut back = Vec::new();
    let recv = r.read_to_end(&mut back);
    let ((), n) = futures::join!(send, recv);
    assert_eq!(n.unwrap(), data.len());
    assert!(back == data);
}

/// A security protocol the listener does not speak, offered first by the dialer.
#[derive(Clone)]
struct Unspoken;

#[derive(Debug, thiserror::Error)]
#[error("never agreed")]
struct Never;

impl libp2p_core::Classify for Never {
    fn fault(&self) -> libp2p_core::Fault {
        libp2p_core::Fault::Local
    }
}

impl UpgradeInfo for Unspoken {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once("/unspoken/1.0.0")
    }
}

impl<C: Socket> SecurityUpgrade<C> for Unspoken {
    type Output = C;
    type Error = Never;
    fn secure(
        &self,
        _socket: C,
        _role: Role,
        _expected: Option<PeerId>,
        _protocol: &str,
    ) -> impl std::future::Future<Output = Result<(PeerId, C), Never>> + Send + 'static {
        futures::future::ready(Err(Never))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_falls_back_when_the_first_proposal_is_refused() {
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(kb.clone()));
    let client = TcpTransport::new()
        .upgrade()
        .authenticate((Unspoken, Plaintext::new(ka)));
    let addr =
        libp2p_core::testkit::echo_listener(server, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
    let (peer, mut io) = client.dial(addr.clone()).await.expect("fallback dial");
    assert_eq!(peer, kb.public().to_peer_id());
    io.write_all(b"after fallback").await.unwrap();
    io.close().await.unwrap();
    let mut back = Vec::new();
    io.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"after fallback");

    // Only the unspoken protocol: the listener refuses it and the error says so.
    let lonely = TcpTransport::new().upgrade().authenticate(Unspoken);
    match lonely.dial(addr).await {
        Err(TransportError::Negotiation { source, .. }) => {
            assert!(source.to_string().contains("/unspoken/1.0.0"), "{source}")
        }
        Err(e) => panic!("expected a negotiation error, got {e}"),
        Ok(_) => panic!("must not connect"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_exchange_is_refused_without_allocating() {
    let (ours, theirs) = tokio::io::duplex(1024);
    use tokio_util::compat::TokioAsyncReadCompatExt;
    let (ours, mut theirs) = (ours.compat(), theirs.compat());
    let key = Keypair::generate_ed25519();
    let attacker = async move {
        // A length of 1 GiB.
        theirs
            .write_all(&[0x80, 0x80, 0x80, 0x80, 0x04])
            .await
            .unwrap();
        let mut sink = vec![0u8; 4096];
        let _ = theirs.read(&mut sink).await;
        theirs
    };
    let plaintext = Plaintext::new(key);
    let (result, _keep) = futures::join!(
        plaintext.secure(ours, Role::Listener, None, libp2p_plaintext::PROTOCOL),
        attacker
    );
    assert!(matches!(
        result,
        Err(PlaintextError::MessageTooLarge { .. })
    ));
}
