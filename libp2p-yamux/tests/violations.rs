//! A remote that breaks the yamux protocol loses its connection: the yamux crate answers with
//! GoAway(protocol error) and would go on serving the session; the adapter ends it.

mod common;

use std::time::Duration;

use common::*;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::{MuxerError, Role, StreamMuxer};
use libp2p_yamux::Yamux;

/// The bound within which a connection whose remote broke the protocol must be gone.
const BOUND: Duration = Duration::from_secs(1);

/// Runs `attack` from a raw TCP socket against a yamux listener whose inbound streams are
/// handed to `serve`; checks that the connection ends with a protocol error within [`BOUND`]
/// of the attack, that no stream can be opened afterwards, and that the attacker was told
/// GoAway(protocol error) before its socket ended.
async fn connection_ends<S, F>(serve: S, attack: Vec<u8>)
where
    S: FnOnce(libp2p_yamux::YamuxMuxer) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (attacker, target) = tcp_pair().await;
    let (muxer, driver) = Yamux::default().muxer(target, Role::Listener);
    let driver = tokio::spawn(driver);
    let server = tokio::spawn(serve(muxer.clone()));
    let (rd, mut wr) = attacker.split();
    let received = tokio::spawn(read_to_end(rd));
    // The target may close while this is still being written.
    let _ = wr.write_all(&attack).await;
    let _ = wr.flush().await;
    let ended = tokio::time::timeout(BOUND, driver)
        .await
        .expect("the connection must end within the bound after the violation")
        .expect("driver does not panic");
    assert!(
        matches!(ended, Err(MuxerError::Protocol(_))),
        "driver ended with {ended:?}"
    );
    assert!(muxer.is_closed());
    assert!(muxer.open().await.is_err(), "no new stream after the end");
    let received = tokio::time::timeout(BOUND, received)
        .await
        .expect("the target's socket is closed")
        .unwrap();
    assert_eq!(go_aways(&received), vec![1], "one GoAway(protocol error)");
    server.abort();
}

#[tokio::test]
async fn data_past_a_fresh_streams_window_ends_the_connection() {
    // 300 KiB on a new stream that nobody reads: the window is 256 KiB.
    connection_ends(|_muxer| async move {}, data_frames(SYN, 1, 300 * 1024)).await;
}

#[tokio::test]
async fn data_past_an_open_streams_window_ends_the_connection() {
    // The stream is open and read for 64 KiB, then 1 MiB comes without waiting for credit.
    let mut attack = data_frames(SYN, 1, 64 * 1024);
    attack.extend(data_frames(0, 1, 1024 * 1024));
    connection_ends(
        |muxer| async move {
            let mut stream = muxer.accept().await.expect("inbound stream");
            let mut first = vec![0u8; 64 * 1024];
            stream.read_exact(&mut first).await.expect("first 64 KiB");
            // Then stop reading; keep the stream.
            std::future::pending::<()>().await;
            drop(stream);
        },
        attack,
    )
    .await;
}

#[tokio::test]
async fn a_send_window_overflow_ends_the_connection() {
    // Credit beyond 2^32 - 1 in total on one stream.
    let mut attack = data(SYN, 1, b"hi");
    attack.extend(frame(WINDOW_UPDATE, 0, 1, u32::MAX, &[]));
    attack.extend(frame(WINDOW_UPDATE, 0, 1, u32::MAX, &[]));
    connection_ends(
        |muxer| async move {
            let _stream = muxer.accept().await;
            std::future::pending::<()>().await;
        },
        attack,
    )
    .await;
}

#[tokio::test]
async fn a_syn_whose_credit_overflows_the_window_ends_the_connection() {
    // The yamux crate adds a SYN's credit to the initial 256 KiB window unchecked (a panic
    // with overflow checks, a wrapped window without): the adapter refuses the frame first.
    let (attacker, target) = tcp_pair().await;
    let (muxer, driver) = Yamux::default().muxer(target, Role::Listener);
    let driver = tokio::spawn(driver);
    let (_rd, mut wr) = attacker.split();
    wr.write_all(&frame(WINDOW_UPDATE, SYN, 1, u32::MAX, &[]))
        .await
        .expect("attack sent");
    wr.flush().await.expect("flushed");
    let ended = tokio::time::timeout(BOUND, driver)
        .await
        .expect("the connection must end within the bound")
        .expect("driver does not panic");
    let Err(MuxerError::Io(e)) = &ended else {
        panic!("driver ended with {ended:?}");
    };
    let ours = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<libp2p_yamux::YamuxError>());
    assert!(
        matches!(
            ours,
            Some(libp2p_yamux::YamuxError::CreditOverflow {
                stream: 1,
                credit: u32::MAX
            })
        ),
        "{e:?}"
    );
    assert_eq!(
        libp2p_core::Classify::fault(ended.as_ref().unwrap_err()),
        libp2p_core::Fault::Remote
    );
    assert!(muxer.is_closed());
    assert!(muxer.accept().await.is_err(), "no stream came out of it");
}
