use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::testkit::{echo_listener, pattern, security_kit, Refusing};
use libp2p_core::{
    Keypair, Multiaddr, PeerId, Protocol, Role, SecurityUpgrade, Transport, TransportError,
    TransportExt,
};
use libp2p_plaintext::{Plaintext, PlaintextError};
use libp2p_transport_tcp::TcpTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    security_kit(Plaintext::new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tcp_endpoints_negotiate_plaintext_through_the_pipeline() {
    let (addr, id_b) = plaintext_echo_listener().await;
    let client = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(Keypair::generate_ed25519()));
    let (peer, mut io) = client
        .dial(addr.with(Protocol::P2p(id_b)))
        .await
        .expect("dial");
    assert_eq!(peer, id_b);
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
const UNSPOKEN: Refusing = Refusing("/unspoken/1.0.0");

/// A plaintext listener of a fresh identity over TCP that echoes every connection: its
/// address and its peer id.
async fn plaintext_echo_listener() -> (Multiaddr, PeerId) {
    let key = Keypair::generate_ed25519();
    let id = key.public().to_peer_id();
    let server = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(key));
    let addr = echo_listener(server, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
    (addr, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_falls_back_when_the_first_proposal_is_refused() {
    let (addr, id_b) = plaintext_echo_listener().await;
    let client = TcpTransport::new()
        .upgrade()
        .authenticate((UNSPOKEN, Plaintext::new(Keypair::generate_ed25519())));
    let (peer, mut io) = client.dial(addr.clone()).await.expect("fallback dial");
    assert_eq!(peer, id_b);
    io.write_all(b"after fallback").await.unwrap();
    io.close().await.unwrap();
    let mut back = Vec::new();
    io.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"after fallback");

    // Only the unspoken protocol: the listener refuses it and the error says so.
    let lonely = TcpTransport::new().upgrade().authenticate(UNSPOKEN);
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
