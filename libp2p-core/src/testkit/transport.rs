//! The transport kit.

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use multiaddr::Multiaddr;

use super::{echo_roundtrip, pattern, serve_echo, within};
use crate::{ListenerEvent, Socket, Transport, TransportError};

/// Checks a raw transport (one whose output is a socket).
///
/// `listen_addr` is an address it can listen on (port 0 style); `unsupported` an address it
/// must refuse with [`TransportError::MultiaddrNotSupported`].
pub async fn transport_kit<T>(transport: T, listen_addr: Multiaddr, unsupported: Multiaddr)
where
    T: Transport,
    T::Output: Socket,
{
    // Listening reports a concrete address first.
    let mut listener = transport.listen(listen_addr.clone()).expect("listen");
    let addr = match within(10, "first listener event", listener.next()).await {
        Some(ListenerEvent::NewAddress(addr)) => addr,
        Some(_) => panic!("conformance: the first listener event should be NewAddress"),
        None => panic!("conformance: the listener ended at once"),
    };
    assert_ne!(
        addr, listen_addr,
        "the reported address must be the bound one"
    );
    // Drain any further address events into nothing: accept on a task.
    let server_transport = transport.clone();
    let server = tokio::spawn(async move {
        let mut served = 0usize;
        while let Some(event) = listener.next().await {
            if let ListenerEvent::Incoming {
                pending,
                local_addr,
                remote_addr,
            } = event
            {
                assert!(!local_addr.is_empty() && !remote_addr.is_empty());
                let accept = server_transport.accept(pending);
                tokio::spawn(async move {
                    let socket = accept.await.expect("accept");
                    serve_echo(socket).await.expect("echo");
                });
                served += 1;
            }
        }
        served
    });

    // One connection: 1 MiB echoed while it is being written (full duplex).
    let data = pattern(1, 1 << 20);
    let socket = within(10, "dial", transport.dial(addr.clone()))
        .await
        .expect("dial");
    within(30, "1 MiB echo", echo_roundtrip(socket, &data)).await;

    // Half-close: after we close our write side we can still read the remote's bytes.
    let mut socket = transport.dial(addr.clone()).await.expect("dial");
    socket.write_all(b"half").await.expect("write");
    socket.close().await.expect("close write side");
    let mut back = Vec::new();
    within(10, "read after half-close", socket.read_to_end(&mut back))
        .await
        .expect("read after close");
    assert_eq!(back, b"half");

    // Many connections at once.
    let dials = (0..32u64).map(|i| {
        let transport = transport.clone();
        let addr = addr.clone();
        async move {
            let socket = transport.dial(addr).await.expect("dial");
            echo_roundtrip(socket, &pattern(i, 20_000)).await;
        }
    });
    within(
        30,
        "32 concurrent connections",
        futures::future::join_all(dials),
    )
    .await;

    // Unsupported addresses are refused with the typed error.
    match transport.dial(unsupported.clone()).await {
        Err(TransportError::MultiaddrNotSupported(a)) => assert_eq!(a, unsupported),
        Err(e) => {
            panic!("conformance: dialing {unsupported} should be MultiaddrNotSupported, got {e}")
        }
        Ok(_) => panic!("conformance: dialing {unsupported} should fail"),
    }
    assert!(
        matches!(
            transport.listen(unsupported.clone()),
            Err(TransportError::MultiaddrNotSupported(_))
        ),
        "listening on {unsupported} should be MultiaddrNotSupported"
    );

    // Once the listener is dropped, dialing it fails (and does not hang).
    server.abort();
    let _ = server.await;
    let result = within(10, "dial a closed listener", transport.dial(addr.clone())).await;
    assert!(result.is_err(), "dialing a dropped listener should fail");
}
