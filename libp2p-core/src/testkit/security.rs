//! The security kit.

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_identity::{Keypair, PeerId};
use multiaddr::{Multiaddr, Protocol};

use super::{
    answer_after_close, echo_listener, echo_roundtrip, listen_on, memory_pair, pattern,
    rsa_keypair, serve_echo, within,
};
use crate::{
    ListenerEvent, MemorySocket, MemoryTransport, Role, SecurityUpgrade, Transport, TransportError,
    TransportExt, UpgradeInfo,
};

/// What one side of a handshake yields.
pub type Handshake<S, C> =
    Result<(PeerId, <S as SecurityUpgrade<C>>::Output), <S as SecurityUpgrade<C>>::Error>;

/// Runs `dialer`'s handshake on `ca` (expecting `expected`) against `listener`'s on `cb`,
/// under the dialer's first protocol name, and returns both results (dialer's, listener's).
/// Panics if the two do not finish within 30 seconds.
pub async fn handshake_pair<S: SecurityUpgrade<C>, C: crate::Socket>(
    dialer: &S,
    listener: &S,
    ca: C,
    cb: C,
    expected: Option<PeerId>,
) -> (Handshake<S, C>, Handshake<S, C>) {
    let name = dialer
        .protocol_names()
        .next()
        .expect("an upgrade names its protocol");
    within(
        30,
        "security handshake",
        futures::future::join(
            dialer.secure(ca, Role::Dialer, expected, name),
            listener.secure(cb, Role::Listener, None, name),
        ),
    )
    .await
}

/// Secures the socket pair `(ca, cb)` with two upgrades `make` builds from fresh Ed25519 keys
/// and returns the two secured streams (dialer's, listener's): the socket pair muxer kits
/// use over a security protocol.
pub async fn secured_pair<S, F, C>(make: F, (ca, cb): (C, C)) -> (S::Output, S::Output)
where
    F: Fn(Keypair) -> S,
    S: SecurityUpgrade<C>,
    C: crate::Socket,
{
    let (a, b) = (
        make(Keypair::generate_ed25519()),
        make(Keypair::generate_ed25519()),
    );
    let (ra, rb) = handshake_pair(&a, &b, ca, cb, None).await;
    (
        ra.expect("dialer handshake").1,
        rb.expect("listener handshake").1,
    )
}

async fn handshake<S: SecurityUpgrade<MemorySocket>>(
    dialer: &S,
    listener: &S,
    expected: Option<PeerId>,
) -> (Handshake<S, MemorySocket>, Handshake<S, MemorySocket>) {
    let (a, b) = memory_pair();
    handshake_pair(dialer, listener, a, b, expected).await
}

/// One key of each type libp2p-identity knows, by name (RSA is [`rsa_keypair`]'s).
pub fn every_key_type() -> Vec<(&'static str, Keypair)> {
    vec![
        ("ed25519", Keypair::generate_ed25519()),
        ("secp256k1", Keypair::generate_secp256k1()),
        ("ecdsa", Keypair::generate_ecdsa()),
        ("rsa", rsa_keypair()),
    ]
}

/// Every key type meets every key type (both ways) in a handshake over in-memory pipes: both
/// sides learn each other's id, `check` looks at the two secured streams (dialer's,
/// listener's), and 70,000 bytes are echoed through them.
pub async fn handshake_with_every_key_type<S, F, C>(make: F, check: C)
where
    F: Fn(Keypair) -> S,
    S: SecurityUpgrade<MemorySocket>,
    C: Fn(&S::Output, &S::Output),
{
    let keys = every_key_type();
    for (name_a, ka) in &keys {
        for (name_b, kb) in &keys {
            let (a, b) = (make(ka.clone()), make(kb.clone()));
            let id_b = kb.public().to_peer_id();
            let (ra, rb) = handshake(&a, &b, Some(id_b)).await;
            let (seen_b, io_a) = ra.unwrap_or_else(|e| panic!("{name_a}->{name_b}: {e}"));
            let (seen_a, io_b) = rb.unwrap_or_else(|e| panic!("{name_a}->{name_b}: {e}"));
            assert_eq!(seen_b, id_b);
            assert_eq!(seen_a, ka.public().to_peer_id());
            check(&io_a, &io_b);
            let server = tokio::spawn(serve_echo(io_b));
            echo_roundtrip(io_a, &pattern(5, 70_000)).await;
            assert_eq!(server.await.unwrap().unwrap(), 70_000);
        }
    }
}

/// A dialer (Ed25519) expecting a stranger meets a listener (ECDSA) over in-memory pipes:
/// its handshake succeeds and reports the remote's own id, never the expected one (comparing
/// the two is the pipeline's job alone). Returns the dialer, the listener, the stranger and
/// the listener's result.
pub async fn expecting_a_stranger<S, F>(make: F) -> (S, S, PeerId, Handshake<S, MemorySocket>)
where
    F: Fn(Keypair) -> S,
    S: SecurityUpgrade<MemorySocket>,
{
    let (a, b) = (
        make(Keypair::generate_ed25519()),
        make(Keypair::generate_ecdsa()),
    );
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let (ra, rb) = handshake(&a, &b, Some(stranger)).await;
    let (actual, _) = ra.expect("the handshake itself succeeds");
    assert_ne!(actual, stranger);
    (a, b, stranger, rb)
}

/// A security upgrade under the protocol name it holds whose handshake always fails: a
/// protocol the remote does not speak, or one that is never reached.
#[derive(Debug, Clone, Copy)]
pub struct Refusing(pub &'static str);

/// The error of [`Refusing`]'s handshake.
#[derive(Debug, thiserror::Error)]
#[error("never agreed")]
pub struct Never;

impl crate::Classify for Never {
    fn fault(&self) -> crate::Fault {
        crate::Fault::Local
    }
}

impl UpgradeInfo for Refusing {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once(self.0)
    }
}

impl<C: crate::Socket> SecurityUpgrade<C> for Refusing {
    type Output = C;
    type Error = Never;
    fn secure(
        &self,
        _: C,
        _: Role,
        _: Option<PeerId>,
        _: &str,
    ) -> impl std::future::Future<Output = Result<(PeerId, C), Never>> + Send + 'static {
        futures::future::ready(Err(Never))
    }
}

/// Checks that a dial failed with the pipeline's [`TransportError::PeerIdMismatch`], a
/// remote fault, naming `expected` as the peer that was dialed.
pub fn assert_peer_id_mismatch<T>(result: Result<T, TransportError>, expected: PeerId) {
    match result {
        Err(e @ TransportError::PeerIdMismatch { .. }) => {
            assert_eq!(crate::Classify::fault(&e), crate::Fault::Remote);
            let TransportError::PeerIdMismatch {
                expected: named, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(*named, expected);
        }
        Err(e) => panic!("expected a peer id mismatch, got {e}"),
        Ok(_) => panic!("must not connect"),
    }
}

/// Listens with the stack `make` builds (from a fresh Ed25519 key for the dialer, a
/// secp256k1 key for the listener) on `listen_addr`, dials it by `/p2p/<id>`, checks that
/// both sides authenticated each other, and echoes `len` bytes through one stream.
pub async fn muxed_echo<T, M, F>(make: F, listen_addr: Multiaddr, len: usize)
where
    F: Fn(Keypair) -> T,
    T: Transport<Output = crate::Connection<M>>,
    M: crate::StreamMuxer,
{
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_secp256k1());
    let (id_a, id_b) = (ka.public().to_peer_id(), kb.public().to_peer_id());
    let (server, client) = (make(kb), make(ka));
    let (mut listener, addr) = listen_on(&server, listen_addr).await;
    let serve = tokio::spawn(async move {
        while let Some(event) = listener.next().await {
            if let ListenerEvent::Incoming { pending, .. } = event {
                let crate::Connection { peer, muxer, .. } =
                    server.accept(pending).await.expect("accept");
                assert_eq!(peer, id_a);
                let stream = muxer.accept().await.expect("inbound stream");
                return serve_echo(stream).await.expect("echo");
            }
        }
        panic!("listener ended");
    });
    let crate::Connection { peer, muxer, .. } =
        within(20, "dial", client.dial(addr.with(Protocol::P2p(id_b))))
            .await
            .expect("dial");
    assert_eq!(peer, id_b);
    let stream = muxer.open().await.expect("open a stream");
    within(60, "echo", echo_roundtrip(stream, &pattern(1, len))).await;
    assert_eq!(serve.await.unwrap(), len as u64);
    let _ = muxer.close().await;
}

/// Checks a security upgrade directly over in-memory pipes, then through the upgrade
/// pipeline over the memory transport (see [`security_kit_over_transport`]).
///
/// `make` builds the upgrade for a given identity; it is called with fresh Ed25519 keys.
pub async fn security_kit<S, F>(make: F)
where
    F: Fn(Keypair) -> S,
    S: SecurityUpgrade<MemorySocket> + SecurityUpgrade<crate::Negotiated<MemorySocket>>,
{
    let key_a = Keypair::generate_ed25519();
    let key_b = Keypair::generate_ed25519();
    let (id_a, id_b) = (key_a.public().to_peer_id(), key_b.public().to_peer_id());
    let (a, b) = (make(key_a.clone()), make(key_b.clone()));
    assert!(
        UpgradeInfo::protocol_names(&a).all(|n| n.starts_with('/')),
        "protocol names start with '/'"
    );

    // Both sides learn each other's identity.
    let (dialer, listener) = handshake(&a, &b, Some(id_b)).await;
    let (seen_b, io_a) = dialer.expect("dialer handshake");
    let (seen_a, io_b) = listener.expect("listener handshake");
    assert_eq!(seen_b, id_b, "dialer authenticated the listener");
    assert_eq!(seen_a, id_a, "listener authenticated the dialer");

    // 4 MiB echoed through the channel while being written, in writes of many sizes.
    let data = pattern(7, 4 << 20);
    let server = tokio::spawn(async move { serve_echo(io_b).await });
    within(
        60,
        "4 MiB echo over the secure channel",
        echo_roundtrip(io_a, &data),
    )
    .await;
    let echoed = server.await.expect("echo task").expect("echo");
    assert_eq!(echoed, data.len() as u64);

    // Half-close: the dialer closes its write side and still reads the listener's reply.
    let (dialer, listener) = handshake(&a, &b, None).await;
    let (_, mut io_a) = dialer.expect("dialer handshake");
    let (_, mut io_b) = listener.expect("listener handshake");
    io_a.write_all(b"question").await.expect("write");
    io_a.close().await.expect("close");
    answer_after_close(&mut io_a, &mut io_b, b"question", b"answer").await;

    // Expecting someone else: the security reports who the remote proved to be, never the
    // peer that was expected (comparing the two is the pipeline's job, checked over the
    // transport below); a protocol that checks it in its handshake (TLS) may fail instead.
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let (dialer, _listener) = handshake(&a, &b, Some(stranger)).await;
    if let Ok((seen, _)) = dialer {
        assert_eq!(
            seen, id_b,
            "a dialer expecting another peer must report the remote's own id"
        );
    }

    // Garbage instead of a handshake: an error, not a hang or a panic.
    for garbage in [vec![0xffu8; 64], vec![0u8; 3], pattern(3, 4096), Vec::new()] {
        for role in [Role::Dialer, Role::Listener] {
            let (ours, mut theirs) = memory_pair();
            let name = UpgradeInfo::protocol_names(&a)
                .next()
                .expect("an upgrade names its protocol");
            let handshake = a.secure(ours, role, None, name);
            let garbage = garbage.clone();
            let attacker = async move {
                let _ = theirs.write_all(&garbage).await;
                let _ = theirs.close().await;
                let mut sink = Vec::new();
                let _ = theirs.read_to_end(&mut sink).await;
            };
            let (result, ()) = within(
                20,
                "handshake against garbage",
                futures::future::join(handshake, attacker),
            )
            .await;
            assert!(result.is_err(), "a garbage handshake ({role:?}) must fail");
        }
    }

    security_kit_over_transport(make(key_a), make(key_b), id_b).await;
}

/// Checks a security upgrade through the pipeline over the memory transport: dialing
/// `/memory/N/p2p/<id>` authenticates that peer, a wrong `/p2p/` fails, bytes flow.
pub async fn security_kit_over_transport<S>(dialer: S, listener: S, listener_id: PeerId)
where
    S: SecurityUpgrade<crate::Negotiated<MemorySocket>>,
{
    let client = MemoryTransport::new().upgrade().authenticate(dialer);
    let server = MemoryTransport::new().upgrade().authenticate(listener);
    let addr = echo_listener(server, "/memory/0".parse().unwrap()).await;

    let with_id = addr.clone().with(Protocol::P2p(listener_id));
    let (peer, io) = within(20, "pipeline dial", client.dial(with_id))
        .await
        .expect("dial through the pipeline");
    assert_eq!(peer, listener_id);
    within(
        30,
        "echo through the pipeline",
        echo_roundtrip(io, &pattern(9, 100_000)),
    )
    .await;

    let wrong: Multiaddr = addr.with(Protocol::P2p(PeerId::random()));
    match within(20, "dial with a wrong peer id", client.dial(wrong)).await {
        Err(TransportError::PeerIdMismatch { .. }) | Err(TransportError::Security { .. }) => {}
        Err(e) => panic!("a wrong /p2p/ should fail as a mismatch, got {e}"),
        Ok(_) => panic!("a wrong /p2p/ must not connect"),
    }
}
