//! mplex over in-memory pipes, TCP and TCP + plaintext: the conformance kit, bounded memory
//! under both buffer policies, fairness, and malformed input.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::testkit::{
    echo_roundtrip, memory_pair, muxer_kit, pattern, serve_echo, transport_pair, within,
    MuxerKitConfig,
};
use libp2p_core::{
    Keypair, MemorySocket, MuxerError, Protocol, StreamMuxer, Transport, TransportExt,
};
use libp2p_mplex::{BufferPolicy, Config, Mplex, MplexMuxer};
use libp2p_plaintext::Plaintext;
use libp2p_transport_tcp::TcpTransport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_memory() {
    muxer_kit(
        Mplex::default(),
        || async { memory_pair() },
        MuxerKitConfig::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_tcp() {
    let tcp = TcpTransport::new();
    muxer_kit(
        Mplex::default(),
        || {
            let tcp = tcp.clone();
            async move { transport_pair(&tcp, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await }
        },
        MuxerKitConfig::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_tcp_plaintext() {
    let secured = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(Keypair::generate_ed25519()));
    muxer_kit(
        Mplex::default(),
        || {
            let secured = secured.clone();
            async move {
                let ((_, a), (_, b)) =
                    transport_pair(&secured, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
                (a, b)
            }
        },
        MuxerKitConfig::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_tcp_plaintext_mplex() {
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(kb.clone()))
        .multiplex(Mplex::default());
    let client = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(ka.clone()))
        .multiplex(Mplex::default());
    let (mut listener, addr) =
        libp2p_core::testkit::listen_on(&server, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
    let serve = tokio::spawn(async move {
        while let Some(event) = futures::StreamExt::next(&mut listener).await {
            if let libp2p_core::ListenerEvent::Incoming { pending, .. } = event {
                let libp2p_core::Connection { peer, muxer, .. } =
                    server.accept(pending).await.expect("accept");
                while let Ok(stream) = muxer.accept().await {
                    tokio::spawn(serve_echo(stream));
                }
                return peer;
            }
        }
        panic!("listener ended");
    });
    let target = addr.with(Protocol::P2p(kb.public().to_peer_id()));
    let libp2p_core::Connection { peer, muxer, .. } = client.dial(target).await.expect("dial");
    assert_eq!(peer, kb.public().to_peer_id());
    let data = pattern(3, 1 << 20);
    for _ in 0..3 {
        let stream = muxer.open().await.unwrap();
        within(20, "echo", echo_roundtrip(stream, &data)).await;
    }
    muxer.close().await.unwrap();
    let seen = within(10, "server sees the close", serve).await.unwrap();
    assert_eq!(seen, ka.public().to_peer_id());
}

fn connect(config: Config) -> (MplexMuxer, MplexMuxer) {
    let (a, b) = memory_pair();
    let mplex = Mplex::with_config(config);
    let (ma, da) = mplex.connect(a);
    let (mb, db) = mplex.connect(b);
    tokio::spawn(da);
    tokio::spawn(db);
    (ma, mb)
}

const CAP: usize = 64 * 1024;

fn small_buffers(policy: BufferPolicy) -> Config {
    Config {
        max_buffer_len: CAP,
        buffer_policy: policy,
        split_send_size: 16 * 1024,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_reset_policy_bounds_memory_and_others_flow() {
    let (dialer, listener) = connect(small_buffers(BufferPolicy::ResetStream));
    // Stream A: the listener accepts it and never reads.
    let mut a = dialer.open().await.unwrap();
    let flood = tokio::spawn(async move {
        let chunk = vec![7u8; 16 * 1024];
        for _ in 0..1024 {
            if a.write_all(&chunk).await.is_err() {
                return true;
            }
        }
        false
    });
    let stalled = within(10, "accept A", listener.accept()).await.unwrap();
    // Stream B keeps working meanwhile.
    let echo_listener = listener.clone();
    tokio::spawn(async move {
        while let Ok(s) = echo_listener.accept().await {
            tokio::spawn(serve_echo(s));
        }
    });
    for i in 0..20 {
        let b = dialer.open().await.unwrap();
        within(
            10,
            "echo beside a slow reader",
            echo_roundtrip(b, &pattern(i, 10_000)),
        )
        .await;
        assert!(
            listener.buffered_len() <= CAP + 16 * 1024,
            "buffered {} bytes",
            listener.buffered_len()
        );
    }
    // A overflowed its buffer and was reset: its writer learns it.
    assert!(within(20, "flood ends", flood).await.unwrap());
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_block_policy_bounds_memory_and_resumes() {
    let (dialer, listener) = connect(small_buffers(BufferPolicy::Block));
    let total = 4 << 20;
    let mut a = dialer.open().await.unwrap();
    let data = pattern(9, total);
    let sent = data.clone();
    let flood = tokio::spawn(async move {
        a.write_all(&sent).await.unwrap();
        a.close().await.unwrap();
        a
    });
    let mut stalled = within(10, "accept A", listener.accept()).await.unwrap();
    // Let the flood fill everything it can.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!flood.is_finished(), "the writer must be held back");
    let buffered = listener.buffered_len();
    assert!(buffered <= CAP + 16 * 1024, "buffered {buffered} bytes");
    assert!(
        buffered >= CAP,
        "the stream's buffer should be full, is {buffered}"
    );
    // Another stream's data waits behind A (the connection is blocked) ...
    // (Its write waits too: the connection's output is full of A's bytes.)
    let mut b = dialer.open().await.unwrap();
    let b_writer = tokio::spawn(async move {
        b.write_all(b"hello").await.unwrap();
        b.close().await.unwrap();
        b
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        listener.buffered_len(),
        buffered,
        "nothing moves while A is full"
    );
    // ... and arrives once A's reader drains.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        stalled.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut b_in = within(20, "accept B", listener.accept()).await.unwrap();
    let mut got = Vec::new();
    within(20, "read B", b_in.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"hello");
    let got = within(30, "drain A", reader).await.unwrap();
    assert!(got == data, "A's bytes arrive intact");
    within(10, "writer done", flood).await.unwrap();
    within(10, "B's writer done", b_writer).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_out_stream_does_not_starve_small_messages() {
    let (dialer, listener) = connect(Config::default());
    tokio::spawn({
        let listener = listener.clone();
        async move {
            while let Ok(s) = listener.accept().await {
                tokio::spawn(serve_echo(s));
            }
        }
    });
    let bulk = dialer.open().await.unwrap();
    let (mut bulk_r, mut bulk_w) = bulk.split();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = tokio::spawn({
        let stop = stop.clone();
        async move {
            let chunk = vec![1u8; 256 * 1024];
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                bulk_w.write_all(&chunk).await.unwrap();
                sent += chunk.len() as u64;
            }
            bulk_w.close().await.unwrap();
            sent
        }
    });
    let drain = tokio::spawn(async move {
        let mut sink = futures::io::sink();
        futures::io::copy(&mut bulk_r, &mut sink).await.unwrap()
    });
    let mut small = dialer.open().await.unwrap();
    for i in 0..50u8 {
        within(5, "small message beside a bulk stream", async {
            small.write_all(&[i; 10]).await.unwrap();
            let mut back = [0u8; 10];
            small.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [i; 10]);
        })
        .await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = within(20, "bulk sender stops", sender).await.unwrap();
    let echoed = within(20, "bulk echo drains", drain).await.unwrap();
    assert_eq!(sent, echoed);
    assert!(sent > 0);
}

/// Our mplex on one end of a pipe, raw bytes on the other.
fn raw_peer(
    config: Config,
) -> (
    MplexMuxer,
    tokio::task::JoinHandle<Result<(), MuxerError>>,
    MemorySocket,
) {
    let (a, b) = memory_pair();
    let (muxer, driver) = Mplex::with_config(config).connect(a);
    (muxer, tokio::spawn(driver), b)
}

#[tokio::test]
async fn malformed_frames_end_the_connection() {
    let cases: [(&str, &[u8]); 4] = [
        ("unknown flag", &[0x0f, 0x00]),
        ("over-long length", &[0x0a, 0x80, 0x80, 0x80, 0x08]),
        ("varint overflow", &[0xff; 12]),
        ("NewStream for an id in use", &[0x08, 0x00, 0x08, 0x00]),
    ];
    for (what, bytes) in cases {
        let (muxer, driver, mut raw) = raw_peer(Config::default());
        raw.write_all(bytes).await.unwrap();
        let result = within(5, what, driver).await.unwrap();
        assert!(
            matches!(result, Err(MuxerError::Protocol(_))),
            "{what}: {result:?}"
        );
        assert!(muxer.is_closed(), "{what}");
        assert!(muxer.open().await.is_err(), "{what}");
    }
}

#[tokio::test]
async fn truncated_header_then_eof_ends_cleanly() {
    let (muxer, driver, mut raw) = raw_peer(Config::default());
    raw.write_all(&[0x80]).await.unwrap();
    drop(raw);
    let _ = within(5, "driver ends", driver).await.unwrap();
    assert!(muxer.accept().await.is_err());
}

#[tokio::test]
async fn unknown_streams_are_ignored_and_the_connection_lives_on() {
    let (muxer, driver, mut raw) = raw_peer(Config::default());
    // Data, close and reset for stream 9, which nobody opened.
    raw.write_all(&[0x4a, 0x02, b'h', b'i', 0x4c, 0x00, 0x4e, 0x00])
        .await
        .unwrap();
    // Then a real stream 1 with a message.
    raw.write_all(&[0x08, 0x01, b'1', 0x0a, 0x03, b'a', b'b', b'c'])
        .await
        .unwrap();
    let mut s = within(5, "accept", muxer.accept()).await.unwrap();
    let mut buf = [0u8; 3];
    within(5, "read", s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"abc");
    // Our answer goes out with the receiver's message flag (1): header 1 << 3 | 1.
    s.write_all(b"xy").await.unwrap();
    s.flush().await.unwrap();
    let mut back = [0u8; 4];
    raw.read_exact(&mut back).await.unwrap();
    assert_eq!(back, [0x09, 0x02, b'x', b'y']);
    assert!(!driver.is_finished());
}

#[tokio::test]
async fn excess_inbound_streams_are_reset() {
    let config = Config {
        max_streams: 2,
        ..Config::default()
    };
    let (muxer, _driver, mut raw) = raw_peer(config);
    // NewStream 0, 1, 2.
    raw.write_all(&[0x00, 0x00, 0x08, 0x00, 0x10, 0x00])
        .await
        .unwrap();
    // Stream 2 is refused with ResetReceiver (flag 5): header 2 << 3 | 5 = 0x15.
    let mut back = [0u8; 2];
    within(5, "reset of the excess stream", raw.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(back, [0x15, 0x00]);
    assert_eq!(muxer.stream_count(), 2);
}

#[tokio::test]
async fn dropping_the_muxer_closes_the_connection() {
    let (dialer, listener) = connect(Config::default());
    let s = dialer.open().await.unwrap();
    drop(dialer);
    let r = within(5, "remote sees the end", async {
        // The stream arrives, then the connection ends.
        let _ = listener.accept().await;
        listener.accept().await
    })
    .await;
    assert!(r.is_err());
    drop(s);
}

/// A frame that has started but does not finish ends the connection once
/// `Config::frame_timeout` has passed, with a timeout error; nothing is held for the
/// megabyte it announced.
#[tokio::test]
async fn an_unfinished_frame_times_out() {
    let config = Config {
        frame_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let (muxer, driver, mut raw) = raw_peer(config);
    // NewStream 1, then a message on it announcing 1 MiB (varint 0x80 0x80 0x40), 10 bytes of
    // which arrive; then the remote goes quiet, socket open.
    raw.write_all(&[0x08, 0x00, 0x0a, 0x80, 0x80, 0x40])
        .await
        .unwrap();
    raw.write_all(&[b'x'; 10]).await.unwrap();
    raw.flush().await.unwrap();
    let _stream = within(5, "accept", muxer.accept()).await.unwrap();
    let err = within(5, "the connection ends", driver)
        .await
        .unwrap()
        .expect_err("an unfinished frame is an error");
    let MuxerError::Io(io) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(
        matches!(
            io.get_ref()
                .and_then(|e| e.downcast_ref::<libp2p_mplex::MplexError>()),
            Some(libp2p_mplex::MplexError::FrameTimeout { .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        libp2p_core::Classify::fault(&err),
        libp2p_core::Fault::Timeout
    );
    assert!(muxer.open().await.is_err());
    drop(raw);
}
