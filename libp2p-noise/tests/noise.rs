use std::io;
use std::time::{Duration, Instant};

use futures::{AsyncWriteExt, StreamExt};
use libp2p_core::testkit::tamper::{self, Outcome, Tamper};
use libp2p_core::testkit::{
    assert_peer_id_mismatch, echo_roundtrip, expecting_a_stranger, handshake_pair, listen_on,
    memory_pair, muxed_echo, pattern, security_kit, serve_echo, transport_pair,
};
use libp2p_core::{
    Keypair, ListenerEvent, MuxerUpgrade, Negotiated, Protocol, Role, SecurityUpgrade, Transport,
    TransportExt, UpgradeInfo,
};
use libp2p_mplex::Mplex;
use libp2p_noise::{Noise, NoiseError, NoiseStream, PROTOCOL};
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_yamux::Yamux;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    security_kit(Noise::new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_name_and_static_keys() {
    let noise = Noise::new(Keypair::generate_ed25519());
    assert_eq!(
        UpgradeInfo::protocol_names(&noise).collect::<Vec<_>>(),
        vec!["/noise"]
    );
    assert_eq!(noise.static_public_key().map(<[u8]>::len), Some(32));
    // Clones share the static key; new instances get a fresh one.
    assert_eq!(noise.clone().static_public_key(), noise.static_public_key());
    let other = Noise::new(Keypair::generate_ed25519());
    assert_ne!(other.static_public_key(), noise.static_public_key());

    // Each side sees the other's static key.
    let (ca, cb) = memory_pair();
    let (ra, rb) = handshake_pair(&noise, &other, ca, cb, None).await;
    let (io_a, io_b) = (ra.unwrap().1, rb.unwrap().1);
    assert_eq!(io_a.remote_static_key(), other.static_public_key());
    assert_eq!(io_b.remote_static_key(), noise.static_public_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_with_every_key_type() {
    libp2p_core::testkit::handshake_with_every_key_type(Noise::new, |_, _| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transfer_over_tcp() {
    let (a, b) = (
        Noise::new(Keypair::generate_ed25519()),
        Noise::new(Keypair::generate_ed25519()),
    );
    let (ca, cb) = transport_pair(
        &TcpTransport::new(),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
    )
    .await;
    let (ra, rb) = handshake_pair(&a, &b, ca, cb, None).await;
    let server = tokio::spawn(serve_echo(rb.unwrap().1));
    echo_roundtrip(ra.unwrap().1, &pattern(11, 3 << 20)).await;
    assert_eq!(server.await.unwrap().unwrap(), 3 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expecting_another_peer_is_a_mismatch() {
    // The security reports who the remote proved to be, never the expected peer: comparing
    // the two is the pipeline's job alone (the dial through the pipeline below fails with
    // `TransportError::PeerIdMismatch`).
    let (_, _, _, rb) = expecting_a_stranger(Noise::new).await;
    assert!(rb.is_ok());
}

// ---------------------------------------------------------------------------------------
// The full pipeline over TCP: multistream-select, noise, a muxer, a stream.

async fn pipeline_echo<M>(muxer: M)
where
    M: MuxerUpgrade<Negotiated<NoiseStream<Negotiated<TcpSocket>>>>,
{
    let stack = |key| {
        TcpTransport::new()
            .upgrade()
            .authenticate(Noise::new(key))
            .multiplex(muxer.clone())
    };
    muxed_echo(stack, "/ip4/127.0.0.1/tcp/0".parse().unwrap(), 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_noise_yamux_echoes_a_mebibyte() {
    pipeline_echo(Yamux::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_noise_mplex_echoes_a_mebibyte() {
    pipeline_echo(Mplex::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_the_wrong_peer_id_through_the_pipeline_fails() {
    let server = TcpTransport::new()
        .upgrade()
        .authenticate(Noise::new(Keypair::generate_ed25519()));
    let client = TcpTransport::new()
        .upgrade()
        .authenticate(Noise::new(Keypair::generate_ed25519()));
    let (mut listener, addr) = listen_on(&server, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
    tokio::spawn(async move {
        while let Some(event) = listener.next().await {
            if let ListenerEvent::Incoming { pending, .. } = event {
                let _ = server.accept(pending).await;
            }
        }
    });
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        client.dial(addr.with(Protocol::P2p(stranger))),
    )
    .await
    .expect("no hang");
    assert_peer_id_mismatch(result, stranger);
}

// ---------------------------------------------------------------------------------------
// Tampering through a TCP proxy.
//
// Messages from the dialer to the listener, by index: 0 = `-> e`, 1 = `-> s, se` with the
// dialer's payload, 2.. = transport messages.

type ListenerOutcome = Outcome<NoiseError>;

/// The noise length prefix, in bytes.
const PREFIX: usize = 2;

/// The dialer sends [`tamper::chunks`] (one message each: each is flushed) through a
/// tampering proxy to the listener, then closes.
async fn through_proxy(tamper: Tamper) -> (Result<(), NoiseError>, ListenerOutcome) {
    tamper::tampered(Noise::new, PREFIX, tamper).await
}

fn is_decrypt_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
        && matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<NoiseError>()),
            Some(NoiseError::Noise(_))
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untampered_proxy_delivers_everything() {
    tamper::untampered_delivers_everything(Noise::new, PREFIX).await;
}

/// Each of `tampers` makes the listener's read fail to decrypt.
async fn reads_fail_to_decrypt(tampers: &[Tamper]) {
    tamper::reads_fail(Noise::new, PREFIX, tampers, |tamper, e| {
        assert!(is_decrypt_error(e), "{tamper:?}: {e}")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bits_in_transport_messages_fail_decryption() {
    reads_fail_to_decrypt(&[
        Tamper::FlipFirst(2),
        Tamper::FlipLast(2),
        Tamper::FlipFirst(4),
        Tamper::FlipLast(4),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_length_bits_fail() {
    // The message boundaries slip: a decryption error, or an early end of stream.
    let tampers = [
        Tamper::FlipLength(2, 15),
        Tamper::FlipLength(2, 0),
        Tamper::FlipLength(2, 1),
        Tamper::FlipLength(3, 3),
        Tamper::FlipLength(4, 0),
    ];
    tamper::reads_fail(Noise::new, PREFIX, &tampers, |tamper, e| {
        assert!(
            is_decrypt_error(e) || e.kind() == io::ErrorKind::UnexpectedEof,
            "{tamper:?}: {e}"
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_or_replayed_transport_messages_fail() {
    // Unlike SECIO, every message has its own nonce: a dropped or repeated one is detected.
    reads_fail_to_decrypt(&[
        Tamper::Drop(2),
        Tamper::Drop(3),
        Tamper::Replay(2),
        Tamper::Replay(4),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_handshake_fails() {
    let tampers = [
        // `-> e`: the keys no longer agree; the dialer's third message fails to decrypt.
        Tamper::FlipFirst(0),
        // `-> s, se` + payload: the encrypted static key, or the payload's tag.
        Tamper::FlipFirst(1),
        Tamper::FlipLast(1),
        Tamper::FlipLength(1, 15),
        Tamper::FlipLength(1, 0),
        Tamper::Drop(0),
        Tamper::Drop(1),
        Tamper::Replay(0),
    ];
    tamper::handshakes_fail(
        Noise::new,
        PREFIX,
        &tampers,
        |tamper, e| {
            if let Tamper::FlipFirst(1) | Tamper::FlipLast(1) = tamper {
                // The third message no longer decrypts.
                assert!(matches!(e, NoiseError::Noise(_)), "{tamper:?}: {e}");
            }
        },
        // A dropped message, or a length that now runs past what was sent, leaves the
        // listener waiting until the deadline (the pipeline's, the kit's here).
        |tamper| {
            matches!(
                tamper,
                Tamper::Drop(_) | Tamper::FlipLength(..) | Tamper::Replay(_)
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_handshake_fails_on_both_sides_in_time() {
    // The dialer's first message is 2 + 32 bytes; cuts before its end leave the listener
    // without a complete first message and the dialer without an answer.
    for n in [0, 1, 2, 20, 33] {
        let start = Instant::now();
        let (dialer, listener) = through_proxy(Tamper::Truncate(n)).await;
        assert!(dialer.is_err(), "truncate at {n}: the dialer must fail");
        assert!(
            matches!(listener, ListenerOutcome::Handshake(_)),
            "truncate at {n}: {listener:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(5), "truncate at {n}");
    }
    // Cuts at or inside the third message: the listener fails its handshake (the dialer,
    // which already finished, just sees the connection go).
    for n in [34, 36, 60, 100] {
        let (_dialer, listener) = through_proxy(Tamper::Truncate(n)).await;
        assert!(
            matches!(listener, ListenerOutcome::Handshake(_)),
            "truncate at {n}: {listener:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_mid_handshake_leaves_the_handshake_waiting() {
    // The remote sends part of a first message and then nothing, keeping the socket open:
    // noise neither fails nor makes up the rest; it waits, and the deadline that ends it is
    // the pipeline's (examples/tests/handshake_deadline.rs shows it cut off).
    let (ours, theirs) = memory_pair();
    let noise = Noise::new(Keypair::generate_ed25519());
    let attacker = async move {
        let mut theirs = theirs;
        theirs.write_all(&[0, 32, 1, 2, 3]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        theirs
    };
    let start = Instant::now();
    let handshake = noise.secure(ours, Role::Listener, None, PROTOCOL);
    let (result, _keep) = futures::join!(
        libp2p_core::with_timeout(Duration::from_millis(500), handshake),
        attacker
    );
    assert!(
        result.is_none(),
        "{:?}",
        result.map(|r| r.map(|(peer, _)| peer))
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}
