//! QUIC over real sockets: dial and listen, identities, streams, echo, idle connections, the
//! shared socket.

mod common;

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_core::testkit::{echo_roundtrip, pattern, serve_echo, within};
use libp2p_core::{
    Classify, Direction, Fault, Keypair, ListenerEvent, Protocol, StreamMuxer, Transport,
    TransportError,
};
use libp2p_quic::{Config, QuicTransport, PROTOCOL};

#[tokio::test]
async fn dial_and_listen_learn_each_others_identity() {
    let (a, b) = (
        common::transport(Config::default()),
        common::transport(Config::default()),
    );
    let (mut listener, addr) = common::listen(&b).await;
    assert!(a.can_dial(&addr) && !a.can_dial(&"/ip4/127.0.0.1/tcp/1".parse().unwrap()));
    let (dialed, accepted) = within(
        20,
        "connect",
        futures::future::join(
            a.dial(addr.clone().with(Protocol::P2p(b.local_peer_id()))),
            common::accept_next(&b, &mut listener),
        ),
    )
    .await;
    let dialed = dialed.expect("dial");
    assert_eq!(dialed.peer, b.local_peer_id());
    assert_eq!(accepted.peer, a.local_peer_id());
    assert_eq!(dialed.info.direction, Direction::Outbound);
    assert_eq!(accepted.info.direction, Direction::Inbound);
    assert_eq!(dialed.info.security, PROTOCOL);
    assert_eq!(dialed.info.remote_addr, addr);
    // A dial without /p2p learns the remote from its certificate.
    let (again, _) = within(
        20,
        "connect without a peer id",
        futures::future::join(a.dial(addr), common::accept_next(&b, &mut listener)),
    )
    .await;
    assert_eq!(again.expect("dial").peer, b.local_peer_id());
}

#[tokio::test]
async fn a_dial_to_the_wrong_peer_is_refused() {
    let (a, b) = (
        common::transport(Config::default()),
        common::transport(Config::default()),
    );
    let (mut listener, addr) = common::listen(&b).await;
    let server = tokio::spawn(async move {
        // The listener sees the attempt fail (the dialer aborts the handshake).
        while let Some(event) = listener.next().await {
            if let ListenerEvent::Incoming { pending, .. } = event {
                let _ = b.accept(pending).await;
            }
        }
    });
    let someone_else = Keypair::generate_ed25519().public().to_peer_id();
    let result = within(
        20,
        "dial the wrong peer",
        a.dial(addr.with(Protocol::P2p(someone_else))),
    )
    .await;
    match result {
        Err(TransportError::PeerIdMismatch { expected, actual }) => {
            assert_eq!(*expected, someone_else);
            assert_ne!(*actual, someone_else);
            assert_eq!(
                TransportError::PeerIdMismatch { expected, actual }.fault(),
                Fault::Remote
            );
        }
        other => panic!("expected a peer id mismatch, got {other:?}"),
    }
    server.abort();
}

#[tokio::test]
async fn nothing_listening_fails_within_the_handshake_timeout() {
    let a = common::transport(Config::default().with_handshake_timeout(Duration::from_secs(1)));
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let addr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
        .parse()
        .unwrap();
    let result = within(10, "dial a silent socket", a.dial(addr)).await;
    match result {
        Err(e) => assert_eq!(e.fault(), Fault::Timeout, "{e}"),
        Ok(_) => panic!("a silent socket cannot complete a handshake"),
    }
}

#[tokio::test]
async fn a_mebibyte_echoes_and_many_streams_run_at_once() {
    let (dialed, accepted) = common::connected(Config::default()).await;
    let server = {
        let muxer = accepted.muxer.clone();
        tokio::spawn(async move {
            while let Ok(stream) = muxer.accept().await {
                tokio::spawn(serve_echo(stream));
            }
        })
    };
    let mib = pattern(7, 1 << 20);
    let stream = dialed.muxer.open().await.expect("open");
    within(30, "1 MiB echo", echo_roundtrip(stream, &mib)).await;

    // More streams than the remote allows at once: the rest wait for credit, none fails.
    let data = std::sync::Arc::new(pattern(8, 4096));
    let tasks: Vec<_> = (0..600)
        .map(|_| {
            let muxer = dialed.muxer.clone();
            let data = data.clone();
            tokio::spawn(async move {
                let stream = muxer.open().await.expect("open");
                echo_roundtrip(stream, &data).await;
            })
        })
        .collect();
    within(60, "600 streams", futures::future::try_join_all(tasks))
        .await
        .expect("a stream failed");
    server.abort();
}

#[tokio::test]
async fn a_reset_stream_reads_as_an_error_not_as_eof() {
    let (dialed, accepted) = common::connected(Config::default()).await;
    let mut ours = dialed.muxer.open().await.unwrap();
    ours.write_all(b"partial").await.unwrap();
    let mut theirs = within(10, "accept", accepted.muxer.accept()).await.unwrap();
    let mut buf = [0u8; 7];
    theirs.read_exact(&mut buf).await.unwrap();
    drop(ours);
    let mut rest = Vec::new();
    let read = within(10, "read after reset", theirs.read_to_end(&mut rest)).await;
    assert!(read.is_err(), "a dropped stream is reset, not finished");
}

#[tokio::test]
async fn data_sent_with_the_fin_is_data() {
    let (dialed, accepted) = common::connected(Config::default()).await;
    let mut ours = dialed.muxer.open().await.unwrap();
    ours.write_all(b"last words").await.unwrap();
    ours.close().await.unwrap();
    let mut theirs = within(10, "accept", accepted.muxer.accept()).await.unwrap();
    let mut got = Vec::new();
    within(10, "read to FIN", theirs.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"last words");
    // The remote stopping our reads does not stop its writes to us (rust-libp2p sends
    // STOP_SENDING after identify answers).
    theirs.write_all(b"reply").await.unwrap();
    theirs.close().await.unwrap();
    let mut back = Vec::new();
    within(10, "read reply", ours.read_to_end(&mut back))
        .await
        .unwrap();
    assert_eq!(back, b"reply");
}

async fn idle_then_use(config: Config, idle: Duration) -> bool {
    let (dialed, accepted) = common::connected(config).await;
    tokio::time::sleep(idle).await;
    let server = {
        let muxer = accepted.muxer.clone();
        tokio::spawn(async move {
            if let Ok(stream) = muxer.accept().await {
                let _ = serve_echo(stream).await;
            }
        })
    };
    let alive = !dialed.muxer.is_closed()
        && within(10, "use after idle", async {
            match dialed.muxer.open().await {
                Ok(mut s) => {
                    s.write_all(b"still there?").await.is_ok() && s.close().await.is_ok() && {
                        let mut back = Vec::new();
                        s.read_to_end(&mut back).await.is_ok() && back == b"still there?"
                    }
                }
                Err(_) => false,
            }
        })
        .await;
    server.abort();
    alive
}

#[tokio::test]
async fn keep_alive_holds_an_idle_connection_past_its_idle_timeout() {
    let short = Config::default().with_idle_timeout(Duration::from_secs(1));
    let kept = short
        .clone()
        .with_keep_alive_interval(Some(Duration::from_millis(200)));
    let dropped = short.with_keep_alive_interval(None);
    let (kept, dropped) = futures::join!(
        idle_then_use(kept, Duration::from_secs(3)),
        idle_then_use(dropped, Duration::from_secs(3)),
    );
    assert!(kept, "with keep-alives the idle connection stays open");
    assert!(
        !dropped,
        "without keep-alives the idle timeout closes it (the control)"
    );
}

#[tokio::test]
async fn the_default_config_keeps_a_connection_past_quinns_default_idle_timeout() {
    // quinn's default idle timeout is 30 s; ours sends keep-alives well within it.
    assert!(idle_then_use(Config::default(), Duration::from_secs(35)).await);
}

#[tokio::test]
async fn dials_leave_from_the_listening_socket() {
    let (a, b) = (
        common::transport(Config::default()),
        common::transport(Config::default()),
    );
    let (_a_listener, a_addr) = common::listen(&a).await;
    let (mut b_listener, b_addr) = common::listen(&b).await;
    let accept = tokio::spawn(async move {
        loop {
            if let Some(ListenerEvent::Incoming { remote_addr, .. }) = b_listener.next().await {
                return remote_addr;
            }
        }
    });
    let _ = within(20, "dial", a.dial(b_addr)).await;
    let seen_from = within(10, "inbound", accept).await.unwrap();
    assert_eq!(seen_from, a_addr, "the dial came from a's listening port");
    assert_eq!(a.local_addrs().len(), 1, "one socket for the family");
}

#[tokio::test]
async fn a_dropped_listener_accepts_no_more_but_its_connections_go_on() {
    let (a, b) = (
        common::transport(Config::default().with_handshake_timeout(Duration::from_secs(2))),
        common::transport(Config::default()),
    );
    let (mut listener, addr) = common::listen(&b).await;
    let (dialed, accepted) = within(
        20,
        "connect",
        futures::future::join(a.dial(addr.clone()), common::accept_next(&b, &mut listener)),
    )
    .await;
    let dialed = dialed.unwrap();
    drop(listener);
    let refused = within(10, "dial after the listener is gone", a.dial(addr)).await;
    assert!(refused.is_err(), "no listener, no new connection");
    let server = {
        let muxer = accepted.muxer.clone();
        tokio::spawn(async move {
            let stream = muxer.accept().await.unwrap();
            serve_echo(stream).await.unwrap();
        })
    };
    let stream = dialed.muxer.open().await.unwrap();
    within(
        10,
        "echo on the old connection",
        echo_roundtrip(stream, b"on"),
    )
    .await;
    server.await.unwrap();
    drop(accepted);
}

#[tokio::test]
async fn listening_twice_on_one_port_is_address_in_use() {
    let t = common::transport(Config::default());
    let (_listener, addr) = common::listen(&t).await;
    let other = QuicTransport::new(Keypair::generate_ed25519());
    assert!(matches!(
        other.listen(addr),
        Err(TransportError::AddressInUse(_))
    ));
    assert!(matches!(
        other.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()),
        Err(TransportError::MultiaddrNotSupported(_))
    ));
}

#[tokio::test]
async fn an_open_past_the_remotes_stream_limit_times_out() {
    let config = Config::default()
        .with_max_concurrent_streams(1)
        .with_open_timeout(Duration::from_millis(300));
    let (dialed, accepted) = common::connected(config).await;
    let mut first = dialed.muxer.open().await.expect("first stream");
    first.write_all(b"hold").await.unwrap();
    let _theirs = within(10, "accept", accepted.muxer.accept()).await.unwrap();
    let second = within(10, "second open", dialed.muxer.open()).await;
    match second {
        Err(e) => assert_eq!(e.fault(), Fault::Timeout, "{e}"),
        Ok(_) => panic!("the remote allows one stream at a time"),
    }
}
