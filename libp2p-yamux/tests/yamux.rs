//! Yamux passes the muxer kit over in-memory pipes, TCP and TCP under plaintext, works in the
//! upgrade pipeline, and holds its stream limits.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_core::testkit::{
    echo_roundtrip, listen_on, muxer_kit, pattern, serve_echo, MuxerKitConfig,
};
use libp2p_core::{
    Keypair, ListenerEvent, MuxerError, MuxerUpgrade, Protocol, Role, SecurityUpgrade, StreamMuxer,
    Transport, TransportExt, UpgradeInfo,
};
use libp2p_plaintext::Plaintext;
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_yamux::{Config, Yamux, YamuxDriver, YamuxMuxer};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

type Pipe = Compat<tokio::io::DuplexStream>;

async fn pipe_pair() -> (Pipe, Pipe) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (a.compat(), b.compat())
}

async fn tcp_pair() -> (TcpSocket, TcpSocket) {
    // TcpTransport sets TCP_NODELAY on both ends.
    libp2p_core::testkit::transport_pair(
        &TcpTransport::new(),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
    )
    .await
}

async fn plaintext_pair() -> (
    <Plaintext as SecurityUpgrade<TcpSocket>>::Output,
    <Plaintext as SecurityUpgrade<TcpSocket>>::Output,
) {
    libp2p_core::testkit::secured_pair(Plaintext::new, tcp_pair().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_memory_pipes() {
    muxer_kit(Yamux::default(), pipe_pair, MuxerKitConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_tcp() {
    muxer_kit(Yamux::default(), tcp_pair, MuxerKitConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_over_tcp_plaintext() {
    muxer_kit(Yamux::default(), plaintext_pair, MuxerKitConfig::default()).await;
}

/// Two muxers over an in-memory pipe, drivers spawned.
async fn pair(dialer: Yamux, listener: Yamux) -> (YamuxMuxer, YamuxMuxer) {
    let (a, b) = pipe_pair().await;
    let name = UpgradeInfo::protocol_names(&dialer)
        .next()
        .expect("an upgrade names its protocol");
    let (d, l) = tokio::join!(
        dialer.upgrade(a, Role::Dialer, name),
        listener.upgrade(b, Role::Listener, name)
    );
    let (d, dd): (YamuxMuxer, YamuxDriver<Pipe>) = d.unwrap();
    let (l, ld) = l.unwrap();
    tokio::spawn(dd);
    tokio::spawn(ld);
    (d, l)
}

async fn within<F: std::future::Future>(secs: u64, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_end_to_end() {
    let (ka, kb) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let server = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(kb.clone()))
        .multiplex(Yamux::default());
    let client = TcpTransport::new()
        .upgrade()
        .authenticate(Plaintext::new(ka.clone()))
        .multiplex(Yamux::default());
    let (mut listener, addr) = listen_on(&server, "/ip4/127.0.0.1/tcp/0".parse().unwrap()).await;
    let client_id = ka.public().to_peer_id();
    let server_task = tokio::spawn(async move {
        loop {
            if let Some(ListenerEvent::Incoming { pending, .. }) = listener.next().await {
                let libp2p_core::Connection { peer, muxer, .. } =
                    server.accept(pending).await.expect("accept connection");
                assert_eq!(peer, client_id);
                // Serve echo on the first stream, then open one back.
                let stream = muxer.accept().await.expect("accept stream");
                serve_echo(stream).await.expect("echo");
                let mut back = muxer.open().await.expect("open back");
                back.write_all(b"from the listener").await.unwrap();
                back.close().await.unwrap();
                let mut rest = Vec::new();
                back.read_to_end(&mut rest).await.unwrap();
                return muxer;
            }
        }
    });
    let target = addr.with(Protocol::P2p(kb.public().to_peer_id()));
    let libp2p_core::Connection { peer, muxer, .. } =
        within(20, client.dial(target)).await.expect("dial");
    assert_eq!(peer, kb.public().to_peer_id());
    let stream = muxer.open().await.expect("open");
    within(20, echo_roundtrip(stream, &pattern(3, 200_000))).await;
    let mut inbound = within(10, muxer.accept()).await.expect("accept back");
    let mut got = Vec::new();
    within(10, inbound.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"from the listener");
    inbound.close().await.unwrap();
    let server_muxer = within(10, server_task).await.unwrap();
    // Closing ends both sides.
    within(10, muxer.close()).await.unwrap();
    assert!(muxer.is_closed());
    assert!(matches!(
        within(10, muxer.open()).await,
        Err(MuxerError::Closed)
    ));
    assert!(within(10, server_muxer.accept()).await.is_err());
    within(10, async {
        while !server_muxer.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_streams_beyond_the_limit_are_reset() {
    let limit = 4;
    let (dialer, listener) = pair(
        Yamux::default(),
        Yamux::with_config(Config::default().with_max_streams(limit)),
    )
    .await;
    let mut streams = Vec::new();
    for i in 0..10u8 {
        let mut s = dialer.open().await.expect("open");
        s.write_all(&[i]).await.unwrap();
        s.flush().await.unwrap();
        streams.push(s);
        // Let the frames arrive in order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The listener holds the first `limit` streams in its accept queue; the rest were reset.
    for _ in 0..limit {
        let s = within(10, listener.accept()).await.expect("accept");
        tokio::spawn(serve_echo(s));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "no stream beyond the limit may be accepted"
    );
    let mut ok = 0;
    for (i, mut s) in streams.into_iter().enumerate() {
        let _ = s.close().await;
        let mut got = Vec::new();
        let read = within(10, s.read_to_end(&mut got)).await;
        if read.is_ok() && got == [i as u8] {
            ok += 1;
            assert!(i < limit, "stream {i} beyond the limit was served");
        } else {
            assert!(i >= limit, "stream {i} within the limit failed");
        }
    }
    assert_eq!(ok, limit);
    // The connection still works once streams are gone.
    within(10, async {
        while listener.live_streams() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let server = {
        let listener = listener.clone();
        tokio::spawn(async move {
            while let Ok(s) = listener.accept().await {
                tokio::spawn(serve_echo(s));
            }
        })
    };
    let s = dialer.open().await.expect("open after the limit");
    within(10, echo_roundtrip(s, b"still alive")).await;
    assert!(!dialer.is_closed() && !listener.is_closed());
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limit_counts_both_directions_together() {
    // The dialer's limit is 2: one stream the listener opened and one of its own fill it.
    let (dialer, listener) = pair(
        Yamux::with_config(Config::default().with_max_streams(2)),
        Yamux::default(),
    )
    .await;
    let mut theirs = listener.open().await.expect("the listener opens a stream");
    theirs.write_all(b"x").await.expect("write");
    theirs.flush().await.expect("flush");
    let _inbound = within(10, dialer.accept())
        .await
        .expect("the dialer accepts");
    let _ours = dialer.open().await.expect("one of the dialer's own");
    match dialer.open().await {
        Err(MuxerError::TooManyStreams { limit }) => assert_eq!(limit, 2),
        other => panic!("expected TooManyStreams, got {other:?}"),
    }
    assert!(!dialer.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_beyond_the_limit_fails() {
    let (dialer, _listener) = pair(
        Yamux::with_config(Config::default().with_max_streams(2)),
        Yamux::default(),
    )
    .await;
    let a = dialer.open().await.expect("first");
    let _b = dialer.open().await.expect("second");
    match dialer.open().await {
        Err(MuxerError::TooManyStreams { limit }) => assert_eq!(limit, 2),
        other => panic!("expected TooManyStreams, got {other:?}"),
    }
    drop(a);
    let _c = dialer.open().await.expect("a slot was freed");
    assert!(!dialer.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_and_opens() {
    let (dialer, listener) = pair(Yamux::default(), Yamux::default()).await;
    let acceptors: Vec<_> = (0..8)
        .map(|_| {
            let l = listener.clone();
            tokio::spawn(async move {
                let s = l.accept().await.expect("accept");
                serve_echo(s).await.expect("echo");
            })
        })
        .collect();
    let openers: Vec<_> = (0..8)
        .map(|i| {
            let d = dialer.clone();
            tokio::spawn(async move {
                let s = d.open().await.expect("open");
                echo_roundtrip(s, &pattern(i, 10_000)).await;
            })
        })
        .collect();
    within(20, futures::future::try_join_all(openers))
        .await
        .unwrap();
    within(20, futures::future::try_join_all(acceptors))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_closes_the_connection() {
    let (a, b) = pipe_pair().await;
    let yamux = Yamux::default();
    let (d, l) = tokio::join!(
        yamux.upgrade(a, Role::Dialer, "/yamux/1.0.0"),
        yamux.upgrade(b, Role::Listener, "/yamux/1.0.0")
    );
    let (dialer, dialer_driver) = d.unwrap();
    let (listener, listener_driver) = l.unwrap();
    let dialer_driver = tokio::spawn(dialer_driver);
    let listener_driver = tokio::spawn(listener_driver);
    let clone = dialer.clone();
    drop(dialer);
    // A clone keeps the connection open.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!clone.is_closed());
    drop(clone);
    within(10, dialer_driver).await.unwrap().expect("clean end");
    // The remote sees the connection end.
    assert!(within(10, listener.accept()).await.is_err());
    within(10, listener_driver)
        .await
        .unwrap()
        .expect("clean end");
    assert!(listener.is_closed());
    assert!(matches!(listener.open().await, Err(MuxerError::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_remote_is_a_protocol_error() {
    let (a, b) = pipe_pair().await;
    let (muxer, driver) =
        MuxerUpgrade::<Pipe>::upgrade(&Yamux::default(), a, Role::Listener, "/yamux/1.0.0")
            .await
            .unwrap();
    let driver = tokio::spawn(driver);
    let mut b = b;
    // Version 7 is not yamux.
    b.write_all(&[7u8; 24]).await.unwrap();
    b.flush().await.unwrap();
    let result = within(10, driver).await.expect("driver does not panic");
    assert!(result.is_err(), "{result:?}");
    assert!(muxer.is_closed());
    assert!(muxer.accept().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_inbound_streams_does_not_kill_the_connection() {
    let (dialer, listener) = pair(
        Yamux::default(),
        Yamux::with_config(Config::default().with_max_streams(8)),
    )
    .await;
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let d = dialer.clone();
            tokio::spawn(async move {
                let mut s = d.open().await.expect("open");
                let _ = s.write_all(b"x").await;
                let _ = s.flush().await;
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
            })
        })
        .collect();
    // Whatever is accepted is held a moment, then dropped (reset); streams beyond the 8
    // allowed are reset by the muxer. Every stream ends.
    let resetter = {
        let listener = listener.clone();
        tokio::spawn(async move {
            while let Ok(s) = listener.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    drop(s);
                });
            }
        })
    };
    within(60, futures::future::try_join_all(tasks))
        .await
        .expect("a task panicked");
    resetter.abort();
    assert!(!dialer.is_closed() && !listener.is_closed());
    let server = {
        let listener = listener.clone();
        tokio::spawn(async move {
            while let Ok(s) = listener.accept().await {
                tokio::spawn(serve_echo(s));
            }
        })
    };
    within(10, async {
        while listener.live_streams() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let s = dialer.open().await.expect("open after the flood");
    within(10, echo_roundtrip(s, b"survived")).await;
    server.abort();
}

/// Streams opened and closed without data, one after another, both sides closing: every
/// round trip ends (yamux sends the SYN with the FIN when no data went first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_streams_open_and_close_in_a_loop() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let (a, b) = libp2p_core::testkit::memory_pair();
    let yamux = libp2p_yamux::Yamux::default();
    let (dialer, da) =
        libp2p_core::MuxerUpgrade::upgrade(&yamux, a, libp2p_core::Role::Dialer, "/yamux/1.0.0")
            .await
            .unwrap();
    let (listener, db) =
        libp2p_core::MuxerUpgrade::upgrade(&yamux, b, libp2p_core::Role::Listener, "/yamux/1.0.0")
            .await
            .unwrap();
    tokio::spawn(da);
    tokio::spawn(db);
    tokio::spawn(async move {
        while let Ok(mut s) = libp2p_core::StreamMuxer::accept(&listener).await {
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf).await;
            let _ = s.close().await;
        }
    });
    for i in 0..2000 {
        let mut s = libp2p_core::testkit::within(
            5,
            &format!("open {i}"),
            libp2p_core::StreamMuxer::open(&dialer),
        )
        .await
        .expect("open");
        libp2p_core::testkit::within(5, &format!("close {i}"), s.close())
            .await
            .expect("close");
        let mut buf = [0u8; 1];
        let n = libp2p_core::testkit::within(5, &format!("read {i}"), s.read(&mut buf))
            .await
            .expect("read");
        assert_eq!(n, 0);
    }
}

/// One stream, its read half and its write half each in a task of its own (the way
/// `tokio::io::split` users and echo clients hold a stream): the yamux crate's stream has one
/// waker slot for its frame queue, which a read (sending a window update) and a write share,
/// so without care a read parks there over the write's waker and the writer never wakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_read_and_written_from_two_tasks_keeps_flowing() {
    const TOTAL: usize = 32 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    for round in 0..4 {
        let (dialer, listener) = pair(Yamux::default(), Yamux::default()).await;
        let echo = tokio::spawn(async move {
            let stream = listener.accept().await.expect("accept");
            let (mut rx, mut tx) = stream.split();
            let copied = futures::io::copy(&mut rx, &mut tx).await?;
            // Closed, not dropped: a dropped stream is reset, taking the echo's tail with it.
            tx.close().await?;
            // Kept until the reader is done: dropping the last handle closes the connection.
            Ok::<_, std::io::Error>((copied, listener))
        });
        let stream = dialer.open().await.expect("open");
        let (mut rx, mut tx) = stream.split();
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; CHUNK];
            let mut sent = 0;
            while sent < TOTAL {
                tx.write_all(&chunk).await.expect("write");
                sent += CHUNK;
            }
            tx.close().await.expect("close");
        });
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0;
            while got < TOTAL {
                let n = rx.read(&mut buf).await.expect("read");
                assert!(n > 0, "the echo ended after {got} bytes");
                got += n;
            }
            got
        });
        let got = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the echo stalled"))
            .unwrap();
        assert_eq!(got, TOTAL);
        within(10, writer).await.unwrap();
        let (copied, _listener) = within(10, echo).await.unwrap().unwrap();
        assert_eq!(copied, TOTAL as u64);
    }
}
