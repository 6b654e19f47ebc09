//! The stream muxer kit.

use std::future::Future;

use futures::{AsyncReadExt, AsyncWriteExt};

use super::{answer_after_close, echo_roundtrip, pattern, serve_echo, within};
use crate::{MuxerError, MuxerUpgrade, Role, Socket, StreamMuxer};

/// Sizes of the muxer kit's loads; the defaults are what every muxer in the workspace passes.
#[derive(Debug, Clone)]
pub struct MuxerKitConfig {
    /// Streams opened at once, each echoing `stream_bytes`. Default 1,000.
    pub streams: usize,
    /// Bytes each of those streams echoes. Default 64 KiB.
    pub stream_bytes: usize,
    /// Bytes sent on one stream in each direction at once. Default 16 MiB.
    pub bulk_bytes: usize,
}

impl Default for MuxerKitConfig {
    fn default() -> Self {
        MuxerKitConfig {
            streams: 1000,
            stream_bytes: 64 * 1024,
            bulk_bytes: 16 << 20,
        }
    }
}

struct Pair<M> {
    dialer: M,
    listener: M,
    /// The drivers (dialer's, listener's) of a muxer upgrade; none for connections that drive
    /// themselves.
    drivers: Vec<tokio::task::JoinHandle<Result<(), MuxerError>>>,
}

async fn setup<U, C, F, Fut>(upgrade: &U, connect: &F) -> Pair<U::Muxer>
where
    U: MuxerUpgrade<C>,
    C: Socket,
    F: Fn() -> Fut,
    Fut: Future<Output = (C, C)>,
{
    let (a, b) = within(20, "connect a socket pair", connect()).await;
    let name = upgrade
        .protocol_names()
        .next()
        .expect("an upgrade names its protocol");
    let (dialer, listener) = within(
        20,
        "muxer upgrade",
        futures::future::join(
            upgrade.upgrade(a, Role::Dialer, name),
            upgrade.upgrade(b, Role::Listener, name),
        ),
    )
    .await;
    let (dialer, d1) = dialer.expect("dialer muxer upgrade");
    let (listener, d2) = listener.expect("listener muxer upgrade");
    Pair {
        dialer,
        listener,
        drivers: vec![tokio::spawn(d1), tokio::spawn(d2)],
    }
}

/// Serves echo on every inbound stream of `muxer` until the connection closes.
fn spawn_echo_server<M: StreamMuxer>(muxer: M) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(stream) = muxer.accept().await {
            tokio::spawn(async move {
                let _ = serve_echo(stream).await;
            });
        }
    })
}

/// Checks a stream muxer. `connect` yields connected socket pairs (dialer end, listener end):
/// in-memory pipes, TCP, or TCP under a security protocol.
pub async fn muxer_kit<U, C, F, Fut>(upgrade: U, connect: F, config: MuxerKitConfig)
where
    U: MuxerUpgrade<C>,
    C: Socket,
    F: Fn() -> Fut,
    Fut: Future<Output = (C, C)>,
{
    assert!(
        upgrade.protocol_names().all(|n| n.starts_with('/')),
        "protocol names start with '/'"
    );
    run(&|| setup(&upgrade, &connect), &config).await;
}

/// Checks the muxed connections of a transport that secures and multiplexes by itself
/// (QUIC): `connect` yields connected pairs of muxers (dialer's, listener's), each
/// connection driven by the transport (no driver future). "The remote drops the connection"
/// is the listener's handle being dropped with its streams.
pub async fn muxer_kit_pairs<M, F, Fut>(connect: F, config: MuxerKitConfig)
where
    M: StreamMuxer,
    F: Fn() -> Fut,
    Fut: Future<Output = (M, M)>,
{
    let setup = || async {
        let (dialer, listener) = within(20, "connect a muxer pair", connect()).await;
        Pair {
            dialer,
            listener,
            drivers: Vec::new(),
        }
    };
    run(&setup, &config).await;
}

async fn run<M, S, SFut>(setup: &S, config: &MuxerKitConfig)
where
    M: StreamMuxer,
    S: Fn() -> SFut,
    SFut: Future<Output = Pair<M>>,
{
    many_streams(setup, config).await;
    both_directions(setup, config).await;
    half_close(setup).await;
    reset(setup).await;
    remote_drop(setup).await;
}

async fn many_streams<M, S, SFut>(setup: &S, config: &MuxerKitConfig)
where
    M: StreamMuxer,
    S: Fn() -> SFut,
    SFut: Future<Output = Pair<M>>,
{
    let pair = setup().await;
    let server = spawn_echo_server(pair.listener.clone());
    let data = std::sync::Arc::new(pattern(11, config.stream_bytes));
    let tasks: Vec<_> = (0..config.streams)
        .map(|_| {
            let muxer = pair.dialer.clone();
            let data = data.clone();
            tokio::spawn(async move {
                let stream = muxer.open().await.expect("open stream");
                echo_roundtrip(stream, &data).await;
            })
        })
        .collect();
    within(
        240,
        "many concurrent echo streams",
        futures::future::try_join_all(tasks),
    )
    .await
    .expect("a stream task failed");
    // Both directions open streams: the listener side opens one too.
    let reverse_server = spawn_echo_server(pair.dialer.clone());
    let stream = within(10, "open from the listener side", pair.listener.open())
        .await
        .expect("listener opens a stream");
    within(
        20,
        "echo on a listener-opened stream",
        echo_roundtrip(stream, &data),
    )
    .await;
    within(10, "close", pair.dialer.close()).await.ok();
    server.abort();
    reverse_server.abort();
    for d in pair.drivers {
        d.abort();
    }
}

async fn both_directions<M, S, SFut>(setup: &S, config: &MuxerKitConfig)
where
    M: StreamMuxer,
    S: Fn() -> SFut,
    SFut: Future<Output = Pair<M>>,
{
    let pair = setup().await;
    let up = pattern(21, config.bulk_bytes);
    let down = pattern(22, config.bulk_bytes);
    let listener = pair.listener.clone();
    let down_clone = down.clone();
    let up_len = up.len();
    let remote = tokio::spawn(async move {
        let stream = listener.accept().await.expect("accept");
        let (mut r, mut w) = stream.split();
        let send = async {
            w.write_all(&down_clone).await.expect("remote write");
            w.close().await.expect("remote close");
        };
        let recv = async {
            let mut got = Vec::with_capacity(up_len);
            r.read_to_end(&mut got).await.expect("remote read");
            got
        };
        futures::join!(send, recv).1
    });
    let stream = pair.dialer.open().await.expect("open");
    let (mut r, mut w) = stream.split();
    let send = async {
        w.write_all(&up).await.expect("write");
        w.close().await.expect("close");
    };
    let recv = async {
        let mut got = Vec::with_capacity(down.len());
        r.read_to_end(&mut got).await.expect("read");
        got
    };
    let ((), got) = within(120, "bulk transfer both ways at once", async {
        futures::join!(send, recv)
    })
    .await;
    let remote_got = within(30, "remote side of the bulk transfer", remote)
        .await
        .expect("remote task");
    assert!(got == down, "bytes received by the dialer differ");
    assert!(remote_got == up, "bytes received by the listener differ");
    for d in pair.drivers {
        d.abort();
    }
}

async fn half_close<M, S, SFut>(setup: &S)
where
    M: StreamMuxer,
    S: Fn() -> SFut,
    SFut: Future<Output = Pair<M>>,
{
    let pair = setup().await;
    // Dialer closes first: the listener reads EOF, then still answers.
    let mut ours = pair.dialer.open().await.expect("open");
    ours.write_all(b"ping").await.expect("write");
    ours.close().await.expect("close");
    let mut theirs = within(10, "accept", pair.listener.accept())
        .await
        .expect("accept");
    answer_after_close(&mut ours, &mut theirs, b"ping", b"pong").await;

    // Listener closes first.
    let mut ours = pair.dialer.open().await.expect("open");
    ours.write_all(b"hello").await.expect("write");
    ours.flush().await.expect("flush");
    let mut theirs = within(10, "accept", pair.listener.accept())
        .await
        .expect("accept");
    let mut buf = [0u8; 5];
    within(10, "read hello", theirs.read_exact(&mut buf))
        .await
        .expect("read");
    theirs.write_all(b"bye").await.expect("write");
    theirs.close().await.expect("close");
    let mut got = [0u8; 3];
    within(10, "read bye", ours.read_exact(&mut got))
        .await
        .expect("read");
    assert_eq!(&got, b"bye");
    let mut rest = Vec::new();
    within(10, "EOF after remote close", ours.read_to_end(&mut rest))
        .await
        .expect("EOF");
    assert!(rest.is_empty());
    ours.write_all(b"still open")
        .await
        .expect("write after remote close");
    ours.close().await.expect("close");
    let mut got = Vec::new();
    within(
        10,
        "listener reads after its own close",
        theirs.read_to_end(&mut got),
    )
    .await
    .expect("read");
    assert_eq!(got, b"still open");
    for d in pair.drivers {
        d.abort();
    }
}

async fn reset<M, S, SFut>(setup: &S)
where
    M: StreamMuxer,
    S: Fn() -> SFut,
    SFut: Future<Output = Pair<M>>,
{
    let pair = setup().await;
    for dialer_drops in [true, false] {
        let mut ours = pair.dialer.open().await.expect("open");
        ours.write_all(b"x").await.expect("write");
        ours.flush().await.expect("flush");
        let mut theirs = within(10, "accept", pair.listener.accept())
            .await
            .expect("accept");
        let mut one = [0u8; 1];
        theirs.read_exact(&mut one).await.expect("read");
        let (dropped, mut survivor) = if dialer_drops {
            (ours, theirs)
        } else {
            (theirs, ours)
        };
        // Dropping a stream without closing it resets it: the survivor's reads end (with an
        // error or EOF) instead of waiting forever, and its writes eventually fail.
        drop(dropped);
        let mut rest = Vec::new();
        let read = within(
            10,
            "read on a reset stream ends",
            survivor.read_to_end(&mut rest),
        )
        .await;
        assert!(rest.is_empty() || read.is_err());
        let write_fails = within(10, "writes on a reset stream fail", async {
            for _ in 0..1000 {
                if survivor.write_all(&[0u8; 1024]).await.is_err()
                    || survivor.flush().await.is_err()
                {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            false
        })
        .await;
        assert!(
            write_fails,
            "writing to a stream the remote reset must fail"
        );
    }
    // The connection is still usable after resets.
    let server = spawn_echo_server(pair.listener.clone());
    let stream = pair.dialer.open().await.expect("open after reset");
    within(10, "echo after resets", echo_roundtrip(stream, b"alive")).await;
    server.abort();
    for d in pair.drivers {
        d.abort();
    }
}

async fn remote_drop<M, S, SFut>(setup: &S)
where
    M: StreamMuxer,
    S: Fn() -> SFut,
    SFut: Future<Output = Pair<M>>,
{
    // The remote's whole connection goes away mid-transfer (its driver, and with it its
    // socket, is dropped): our streams and accept end with errors, nothing hangs.
    let pair = setup().await;
    let mut stream = pair.dialer.open().await.expect("open");
    stream.write_all(&pattern(5, 10_000)).await.expect("write");
    stream.flush().await.expect("flush");
    let _theirs = within(10, "accept", pair.listener.accept())
        .await
        .expect("accept");
    let mut drivers = pair.drivers.into_iter();
    let ours_driver = drivers.next();
    if let Some(theirs_driver) = drivers.next() {
        theirs_driver.abort();
        let _ = theirs_driver.await;
    }
    drop(pair.listener);
    drop(_theirs);
    let mut rest = Vec::new();
    let _ = within(
        10,
        "read after remote drop ends",
        stream.read_to_end(&mut rest),
    )
    .await;
    let write = within(10, "write after remote drop fails", async {
        for _ in 0..1000 {
            if stream.write_all(&[1u8; 4096]).await.is_err() || stream.flush().await.is_err() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        false
    })
    .await;
    assert!(
        write,
        "writes after the remote dropped the connection must fail"
    );
    let accept = within(10, "accept after remote drop", pair.dialer.accept()).await;
    assert!(accept.is_err(), "accept after the remote dropped must fail");
    let open = within(10, "open after remote drop", async {
        match pair.dialer.open().await {
            Ok(mut s) => {
                // Some muxers open lazily: the failure shows on first use.
                s.write_all(b"x").await.and(s.flush().await).is_err()
                    || s.read(&mut [0u8; 1]).await.map(|n| n == 0).unwrap_or(true)
            }
            Err(_) => true,
        }
    })
    .await;
    assert!(
        open,
        "a stream opened after the remote dropped must not work"
    );
    if let Some(ours_driver) = ours_driver {
        let driver = within(10, "our driver ends after remote drop", ours_driver).await;
        assert!(driver.is_ok(), "driver task panicked");
    }
    assert!(pair.dialer.is_closed(), "muxer reports closed");
}
