//! Dialer and listener over a real in-process pipe, and the exact bytes on the wire.

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_multistream::{
    dialer_select, list_protocols, listener_select, Config, NegotiationError, Version,
};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

type Pipe = Compat<tokio::io::DuplexStream>;

fn pipe() -> (Pipe, Pipe) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (a.compat(), b.compat())
}

fn msg(s: &str) -> Vec<u8> {
    let mut out = vec![(s.len() + 1) as u8];
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
    out
}

#[tokio::test]
async fn agrees_on_first_supported_protocol() {
    for version in [Version::V1, Version::V1Lazy] {
        let (a, b) = pipe();
        let config = Config::default();
        let listener = tokio::spawn(async move {
            let (p, mut io) = listener_select(b, &["/b/1", "/c/1"][..], &Config::default())
                .await
                .unwrap();
            let mut buf = [0u8; 5];
            io.read_exact(&mut buf).await.unwrap();
            io.write_all(&buf).await.unwrap();
            io.close().await.unwrap();
            (p, buf)
        });
        let (p, mut io) = dialer_select(a, ["/a/1", "/b/1", "/c/1"], version, &config)
            .await
            .unwrap();
        assert_eq!(p, "/b/1");
        io.write_all(b"hello").await.unwrap();
        let mut back = Vec::new();
        io.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello");
        let (lp, got) = listener.await.unwrap();
        assert_eq!(lp, "/b/1");
        assert_eq!(&got, b"hello");
    }
}

#[tokio::test]
async fn lazy_dialer_sends_data_before_the_answer() {
    let (a, b) = pipe();
    let (p, mut io) = dialer_select(a, ["/echo/1"], Version::V1Lazy, &Config::default())
        .await
        .unwrap();
    assert_eq!(p, "/echo/1");
    assert!(!io.is_confirmed());
    // Header, proposal and data all sit in the pipe before the listener even starts.
    io.write_all(b"early data").await.unwrap();
    let (lp, mut lio) = listener_select(b, &["/echo/1"][..], &Config::default())
        .await
        .unwrap();
    assert_eq!(lp, "/echo/1");
    let mut buf = [0u8; 10];
    lio.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"early data");
    lio.write_all(b"reply").await.unwrap();
    let mut reply = [0u8; 5];
    io.read_exact(&mut reply).await.unwrap();
    assert!(io.is_confirmed());
    assert_eq!(&reply, b"reply");
}

#[tokio::test]
async fn lazy_dialer_refused_fails_on_first_read() {
    let (a, b) = pipe();
    let (_, mut io) = dialer_select(a, ["/nope/1"], Version::V1Lazy, &Config::default())
        .await
        .unwrap();
    let listener =
        tokio::spawn(async move { listener_select(b, &["/echo/1"][..], &Config::default()).await });
    let mut buf = [0u8; 1];
    let err = io.read(&mut buf).await.unwrap_err();
    let inner = err.into_inner().unwrap();
    let inner = inner.downcast::<NegotiationError>().unwrap();
    assert!(matches!(
        *inner,
        NegotiationError::ProtocolNotSupported { .. }
    ));
    drop(io);
    assert!(listener.await.unwrap().is_err());
}

#[tokio::test]
async fn no_common_protocol() {
    let (a, b) = pipe();
    let listener =
        tokio::spawn(async move { listener_select(b, &["/x/1"][..], &Config::default()).await });
    let err = dialer_select(a, ["/a/1", "/b/1"], Version::V1, &Config::default())
        .await
        .unwrap_err();
    match err {
        NegotiationError::ProtocolNotSupported { offered } => {
            assert_eq!(offered, vec!["/a/1".to_string(), "/b/1".to_string()])
        }
        other => panic!("unexpected {other:?}"),
    }
    // The dialer gave up and dropped the socket: the listener sees the end.
    assert!(matches!(
        listener.await.unwrap(),
        Err(NegotiationError::Io(_))
    ));
}

#[tokio::test]
async fn dialer_bytes_on_the_wire() {
    // The dialer's first write holds the header and its first proposal, as go-libp2p and
    // rust-libp2p send them.
    let (a, b) = pipe();
    let mut raw = b;
    let dialer = tokio::spawn(async move {
        dialer_select(a, ["/echo/1.0.0"], Version::V1, &Config::default())
            .await
            .map(|(p, _)| p)
    });
    let mut expected = msg("/multistream/1.0.0");
    expected.extend(msg("/echo/1.0.0"));
    let mut got = vec![0u8; expected.len()];
    raw.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expected);
    raw.write_all(&expected).await.unwrap();
    assert_eq!(dialer.await.unwrap().unwrap(), "/echo/1.0.0");
}

#[tokio::test]
async fn listener_answers_na_and_ls() {
    let (a, b) = pipe();
    let mut raw = a;
    let listener = tokio::spawn(async move {
        listener_select(b, &["/a/1", "/b/1"][..], &Config::default())
            .await
            .map(|(p, _)| p)
    });
    let mut out = msg("/multistream/1.0.0");
    out.extend(msg("/zzz"));
    out.extend(msg("ls"));
    raw.write_all(&out).await.unwrap();
    let mut expected = msg("/multistream/1.0.0");
    expected.extend(msg("na"));
    let mut list = msg("/a/1");
    list.extend(msg("/b/1"));
    list.push(b'\n');
    expected.push(list.len() as u8);
    expected.extend(&list);
    let mut got = vec![0u8; expected.len()];
    raw.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expected);
    raw.write_all(&msg("/b/1")).await.unwrap();
    let mut echo = vec![0u8; 6];
    raw.read_exact(&mut echo).await.unwrap();
    assert_eq!(echo, msg("/b/1"));
    assert_eq!(listener.await.unwrap().unwrap(), "/b/1");
}

#[tokio::test]
async fn ls_lists_listener_protocols() {
    let (a, b) = pipe();
    tokio::spawn(async move {
        let _ = listener_select(b, &["/a/1", "/b/2"][..], &Config::default()).await;
    });
    let names = list_protocols(a, &Config::default()).await.unwrap();
    assert_eq!(names, vec!["/a/1".to_string(), "/b/2".to_string()]);
}

#[tokio::test]
async fn oversized_length_is_refused_without_allocating() {
    let (a, b) = pipe();
    let mut raw = a;
    // A length of 2^62 with no body behind it.
    raw.write_all(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40])
        .await
        .unwrap();
    let err = listener_select(b, &["/a/1"][..], &Config::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, NegotiationError::MessageTooLong { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn malformed_input_is_an_error() {
    type Check = fn(&NegotiationError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (msg("/multistream/2.0.0"), |e| {
            matches!(e, NegotiationError::InvalidHeader(_))
        }),
        (b"\x03abc".to_vec(), |e| {
            matches!(e, NegotiationError::InvalidMessage(_))
        }),
        (vec![0xff; 12], |e| {
            matches!(e, NegotiationError::InvalidMessage(_))
        }),
        (b"\x05/mu".to_vec(), |e| {
            matches!(e, NegotiationError::Io(_))
        }),
    ];
    for (input, check) in cases {
        let (a, b) = pipe();
        let mut raw = a;
        raw.write_all(&input).await.unwrap();
        raw.close().await.unwrap();
        let err = listener_select(b, &["/a/1"][..], &Config::default())
            .await
            .unwrap_err();
        assert!(check(&err), "{input:?} gave {err:?}");
    }
}

#[tokio::test]
async fn too_many_proposals() {
    let (a, b) = pipe();
    let mut raw = a;
    let config = Config {
        max_proposals: 3,
        ..Config::default()
    };
    let mut out = msg("/multistream/1.0.0");
    for i in 0..5 {
        out.extend(msg(&format!("/p/{i}")));
    }
    raw.write_all(&out).await.unwrap();
    let err = listener_select(b, &["/a/1"][..], &config)
        .await
        .unwrap_err();
    assert!(
        matches!(err, NegotiationError::TooManyProposals(3)),
        "{err:?}"
    );
}

#[tokio::test]
async fn dialer_rejects_garbage_answers() {
    let (a, b) = pipe();
    let mut raw = b;
    let dialer = tokio::spawn(async move {
        dialer_select(a, ["/a/1"], Version::V1, &Config::default())
            .await
            .map(|(p, _)| p)
    });
    let mut out = msg("/multistream/1.0.0");
    out.extend(msg("/other"));
    raw.write_all(&out).await.unwrap();
    let err = dialer.await.unwrap().unwrap_err();
    assert!(
        matches!(err, NegotiationError::UnexpectedMessage { .. }),
        "{err:?}"
    );
    let err = dialer_select(pipe().0, ["bad\nname"], Version::V1, &Config::default())
        .await
        .unwrap_err();
    assert!(matches!(err, NegotiationError::InvalidProtocol(_)));
}

/// A socket that keeps written bytes until flushed and whose first flush is not ready (as a
/// secure channel holding an unsent frame when the runtime's budget runs out).
struct HoldsUntilFlushed {
    inner: Pipe,
    held: Vec<u8>,
    first_flush: bool,
}

impl futures::AsyncRead for HoldsUntilFlushed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl futures::AsyncWrite for HoldsUntilFlushed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.held.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.first_flush {
            self.first_flush = false;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let this = &mut *self;
        while !this.held.is_empty() {
            let n =
                futures::ready!(std::pin::Pin::new(&mut this.inner).poll_write(cx, &this.held))?;
            this.held.drain(..n);
        }
        std::pin::Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[tokio::test]
async fn a_flush_that_is_not_ready_at_once_is_retried() {
    let (a, b) = pipe();
    let socket = HoldsUntilFlushed {
        inner: a,
        held: Vec::new(),
        first_flush: true,
    };
    let listener =
        tokio::spawn(async move { listener_select(b, &["/a/1"][..], &Config::default()).await });
    let dialed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        dialer_select(socket, ["/a/1"], Version::V1, &Config::default()),
    )
    .await
    .expect("the proposal must go out although the first flush was pending");
    assert_eq!(dialed.unwrap().0, "/a/1");
    assert_eq!(listener.await.unwrap().unwrap().0, "/a/1");
}

/// A dialer that sends `ls` forever, and reads every answer so that the listener never blocks
/// on writing, is cut off with a typed error instead of being answered forever.
#[tokio::test]
async fn endless_ls_is_cut_off() {
    let (a, b) = pipe();
    let (mut rd, mut wr) = a.split();
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        wr.write_all(&msg("/multistream/1.0.0")).await?;
        let mut batch = Vec::new();
        for _ in 0..64 {
            batch.extend(msg("ls"));
        }
        loop {
            wr.write_all(&batch).await?;
            sent += 64;
            if sent > 10_000_000 {
                return Ok::<u64, std::io::Error>(sent);
            }
        }
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while rd.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
    });
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        listener_select(b, &["/a/1", "/b/1"][..], &Config::default()),
    )
    .await
    .expect("the listener must give up on an endless `ls` loop")
    .unwrap_err();
    assert!(
        matches!(err, NegotiationError::TooManyListRequests(n) if n == Config::default().max_list_requests),
        "{err:?}"
    );
    // The listener dropped its end: the dialer's writes fail instead of going on.
    assert!(writer.await.unwrap().is_err());
    reader.await.unwrap();
}
