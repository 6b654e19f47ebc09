//! Conformance kits: the tests every [`Transport`](crate::Transport), security upgrade and
//! stream muxer in the workspace must pass. An alternative implementation is "done" when it
//! passes its kit.
//!
//! The kits panic with a message naming the failed check (they are test helpers), and every
//! step runs under a timeout so that a broken implementation fails instead of hanging.

mod muxer;
mod security;
pub mod tamper;
mod transport;

pub use muxer::{muxer_kit, muxer_kit_pairs, MuxerKitConfig};
pub use security::{
    assert_peer_id_mismatch, every_key_type, expecting_a_stranger, handshake_pair,
    handshake_with_every_key_type, muxed_echo, secured_pair, security_kit,
    security_kit_over_transport, Handshake, Never, Refusing,
};
pub use transport::transport_kit;

use std::future::Future;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The workspace's RSA-2048 test key (PKCS#8 DER, `testdata/rsa-2048.pk8`): libp2p-identity
/// cannot generate RSA keys, so every RSA test uses this one.
pub const RSA_TEST_KEY_PKCS8: &[u8] = include_bytes!("../../testdata/rsa-2048.pk8");

/// [`RSA_TEST_KEY_PKCS8`] as a keypair.
pub fn rsa_keypair() -> crate::Keypair {
    crate::Keypair::rsa_from_pkcs8(&mut RSA_TEST_KEY_PKCS8.to_vec())
        .expect("testdata/rsa-2048.pk8 is a PKCS#8 RSA key")
}

/// Bytes of a deterministic pseudo-random pattern, so that a reordered, dropped or
/// duplicated chunk shows up as a mismatch.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Runs `fut`, panicking with `what` if it takes longer than `secs` seconds.
pub async fn within<F: Future>(secs: u64, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(out) => out,
        Err(_) => panic!("conformance: timed out after {secs}s: {what}"),
    }
}

/// Writes `data` in chunks of varying size while reading the same amount back, and checks
/// that what came back equals what was sent. Closes the write side at the end and expects EOF.
pub async fn echo_roundtrip<S: AsyncRead + AsyncWrite + Unpin>(stream: S, data: &[u8]) {
    let (mut reader, mut writer) = stream.split();
    let write = async {
        let mut offset = 0;
        let mut step = 1usize;
        while offset < data.len() {
            let end = (offset + step).min(data.len());
            writer.write_all(&data[offset..end]).await.expect("write");
            offset = end;
            step = (step * 7 + 13) % 65_536 + 1;
        }
        writer.flush().await.expect("flush");
        writer.close().await.expect("close write side");
    };
    let read = async {
        let mut back = Vec::with_capacity(data.len());
        reader.read_to_end(&mut back).await.expect("read echo");
        back
    };
    let ((), back) = futures::join!(write, read);
    assert_eq!(back.len(), data.len(), "echo length");
    assert!(back == data, "echoed bytes differ from the sent bytes");
}

/// Half-close: `ours` has written `question` and closed its write side; `theirs` reads it up
/// to that close, then answers `answer` and closes, and `ours` still reads the answer after
/// its own close.
async fn answer_after_close<A, B>(ours: &mut A, theirs: &mut B, question: &[u8], answer: &[u8])
where
    A: AsyncRead + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut got = Vec::new();
    within(
        10,
        "read to the remote's close",
        theirs.read_to_end(&mut got),
    )
    .await
    .expect("read to EOF");
    assert_eq!(got, question);
    theirs
        .write_all(answer)
        .await
        .expect("write after remote close");
    theirs.close().await.expect("close");
    let mut got = Vec::new();
    within(10, "read after own close", ours.read_to_end(&mut got))
        .await
        .expect("read after own close");
    assert_eq!(got, answer);
}

/// Echoes every byte of `stream` back until the remote closes its write side, then closes.
pub async fn serve_echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> std::io::Result<u64> {
    let (mut reader, mut writer) = stream.split();
    let n = futures::io::copy(&mut reader, &mut writer).await?;
    writer.close().await?;
    Ok(n)
}

/// A connected pair of in-memory sockets (dialer end, listener end), each buffering up to
/// 64 KiB: the socket pair muxer kits use when no transport is under test.
pub fn memory_pair() -> (crate::MemorySocket, crate::MemorySocket) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (
        tokio_util::compat::TokioAsyncReadCompatExt::compat(a),
        tokio_util::compat::TokioAsyncReadCompatExt::compat(b),
    )
}

/// Listens with `transport` on `listen_addr` and waits (10 seconds at most) for the first
/// address it reports, passing over other events: the listener and that address.
pub async fn listen_on<T: crate::Transport>(
    transport: &T,
    listen_addr: crate::Multiaddr,
) -> (T::Listener, crate::Multiaddr) {
    use futures::StreamExt;
    let mut listener = transport.listen(listen_addr).expect("listen");
    loop {
        match within(10, "listen address", listener.next()).await {
            Some(crate::ListenerEvent::NewAddress(a)) => break (listener, a),
            Some(_) => continue,
            None => panic!("listener ended before reporting an address"),
        }
    }
}

/// Listens with `transport` on `listen_addr`, dials the reported address and returns both
/// outputs (dialer's, listener's): a socket pair over any transport or upgraded stack.
pub async fn transport_pair<T: crate::Transport>(
    transport: &T,
    listen_addr: crate::Multiaddr,
) -> (T::Output, T::Output) {
    use futures::StreamExt;
    let (mut listener, addr) = listen_on(transport, listen_addr).await;
    let dial = transport.dial(addr);
    let accept = async {
        loop {
            match listener.next().await {
                Some(crate::ListenerEvent::Incoming { pending, .. }) => {
                    break transport.accept(pending).await
                }
                Some(_) => continue,
                None => panic!("listener ended before a connection came in"),
            }
        }
    };
    let (dialed, accepted) =
        within(20, "connect a pair", futures::future::join(dial, accept)).await;
    (dialed.expect("dial"), accepted.expect("accept"))
}

/// Listens with `transport` on `listen_addr`, echoes every stream of every connection it
/// accepts (security stacks whose output is `(PeerId, socket)`), and returns the address.
pub async fn echo_listener<T, S>(transport: T, listen_addr: crate::Multiaddr) -> crate::Multiaddr
where
    T: crate::Transport<Output = (crate::PeerId, S)>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures::StreamExt;
    let (mut listener, addr) = listen_on(&transport, listen_addr).await;
    tokio::spawn(async move {
        while let Some(event) = listener.next().await {
            if let crate::ListenerEvent::Incoming { pending, .. } = event {
                let accept = transport.accept(pending);
                tokio::spawn(async move {
                    if let Ok((_, io)) = accept.await {
                        let _ = serve_echo(io).await;
                    }
                });
            }
        }
    });
    addr
}
