//! WebSocket over real TCP sockets: the raw byte stream, limits, and noise + yamux on top.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_core::testkit::{muxer_kit_pairs, pattern, within, MuxerKitConfig};
use libp2p_core::{
    Classify, Fault, Keypair, ListenerEvent, Multiaddr, Protocol, Transport, TransportError,
    TransportExt,
};
use libp2p_noise::Noise;
use libp2p_transport_tcp::TcpTransport;
use libp2p_websocket::{Config, WsTransport};
use libp2p_yamux::Yamux;

async fn listen<T: Transport>(t: &T) -> (T::Listener, Multiaddr) {
    libp2p_core::testkit::listen_on(t, "/ip4/127.0.0.1/tcp/0/ws".parse().unwrap()).await
}

/// The TCP port of `addr`.
fn tcp_port(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap()
}

/// The next inbound connection of `listener`, not yet accepted.
async fn next_inbound<L, P>(listener: &mut L) -> P
where
    L: futures::Stream<Item = ListenerEvent<P>> + Unpin,
{
    let Some(ListenerEvent::Incoming { pending, .. }) = listener.next().await else {
        panic!("no inbound")
    };
    pending
}

#[tokio::test]
async fn a_websocket_carries_bytes_both_ways() {
    let ws = WsTransport::new(TcpTransport::new());
    let (mut listener, addr) = listen(&ws).await;
    assert!(addr.to_string().ends_with("/ws"), "{addr}");
    assert!(ws.can_dial(&addr));
    assert!(!ws.can_dial(&"/ip4/127.0.0.1/tcp/1".parse().unwrap()));
    let len = 1 << 20;
    let server = {
        let ws = ws.clone();
        tokio::spawn(async move {
            let pending = next_inbound(&mut listener).await;
            let mut socket = ws.accept(pending).await.expect("accept");
            let mut got = vec![0u8; len];
            socket.read_exact(&mut got).await.expect("server read");
            socket.write_all(&got).await.expect("server write");
            socket.flush().await.expect("flush");
            // Wait for the client's close before going.
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
            got
        })
    };
    let mut socket = within(10, "dial", ws.dial(addr)).await.expect("dial");
    let data = pattern(3, len);
    let back = {
        let (mut r, mut w) = (&mut socket).split();
        let write = async {
            w.write_all(&data).await.expect("write");
            w.flush().await.expect("flush");
        };
        let read = async {
            let mut back = vec![0u8; len];
            r.read_exact(&mut back).await.expect("read");
            back
        };
        within(30, "1 MiB both ways", async { futures::join!(write, read) })
            .await
            .1
    };
    assert!(back == data);
    socket.close().await.expect("close");
    let server_got = within(10, "server", server).await.unwrap();
    assert!(server_got == data);
}

#[tokio::test]
async fn an_oversized_upgrade_request_is_refused() {
    let ws = WsTransport::with_config(TcpTransport::new(), Config::default());
    let (mut listener, addr) = listen(&ws).await;
    let port = tcp_port(&addr);
    let client = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..2000 {
            head.extend_from_slice(format!("X-Pad-{i}: aaaaaaaaaaaaaaaa\r\n").as_bytes());
        }
        let _ = tcp.write_all(&head).await;
        tcp
    });
    let pending = next_inbound(&mut listener).await;
    let result = within(10, "refuse a huge head", ws.accept(pending)).await;
    match result {
        Err(e) => assert_eq!(e.fault(), Fault::Remote, "{e}"),
        Ok(_) => panic!("a 60 KiB request head must be refused"),
    }
    drop(client);
}

#[tokio::test]
async fn a_silent_client_times_out_the_upgrade() {
    let config = Config::default().with_handshake_timeout(Duration::from_millis(300));
    let ws = WsTransport::with_config(TcpTransport::new(), config);
    let (mut listener, addr) = listen(&ws).await;
    let port = tcp_port(&addr);
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let pending = next_inbound(&mut listener).await;
    let result = within(10, "upgrade deadline", ws.accept(pending)).await;
    assert!(matches!(result, Err(TransportError::Timeout(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_and_yamux_over_websocket_pass_the_muxer_kit() {
    let stack = |key: Keypair| {
        WsTransport::new(TcpTransport::new())
            .upgrade()
            .authenticate(Noise::new(key))
            .multiplex(Yamux::default())
    };
    muxer_kit_pairs(
        || async {
            let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
            let b_id = b.public().to_peer_id();
            let (dialer, listener_side) = (stack(a), stack(b));
            let (mut listener, addr) = listen(&listener_side).await;
            let accept = async {
                loop {
                    if let Some(ListenerEvent::Incoming { pending, .. }) = listener.next().await {
                        break listener_side.accept(pending).await.expect("accept");
                    }
                }
            };
            let (dialed, accepted) =
                futures::join!(dialer.dial(addr.with(Protocol::P2p(b_id))), accept);
            let dialed = dialed.expect("dial");
            assert_eq!(dialed.peer, b_id);
            (dialed.muxer, accepted.muxer)
        },
        MuxerKitConfig {
            streams: 200,
            ..MuxerKitConfig::default()
        },
    )
    .await;
}
