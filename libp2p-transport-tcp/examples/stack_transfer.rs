//! One stream carries `TRANSFER_MIB` MiB (default 64) over loopback TCP through a whole stack,
//! as a host runs it: the upgrade pipeline (multistream-select, security, muxer), then a
//! protocol agreed on the stream and the stream wrapped in `libp2p_core::Stream`, written and
//! read with tokio's I/O traits. Single-threaded runtime, so that instruction counts repeat:
//! the fixed workload for `bench/callgrind-transfer`.
//!
//! ```text
//! stack_transfer plaintext-mplex | noise-yamux    (READ=buf reads with read_buf into a BytesMut)
//! ```

use futures::StreamExt;
use libp2p_core::{
    multistream, Connection, ConnectionId, Keypair, ListenerEvent, Multiaddr, MuxerUpgrade,
    Negotiated, SecurityUpgrade, Socket, Stream, StreamMuxer, Transport, TransportExt,
};
use libp2p_mplex::Mplex;
use libp2p_noise::Noise;
use libp2p_plaintext::Plaintext;
use libp2p_transport_tcp::{TcpSocket, TcpTransport};
use libp2p_yamux::Yamux;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 64 * 1024;
const PROTOCOL: &str = "/transfer/1.0.0";

fn main() {
    let stack = std::env::args().nth(1).unwrap_or_default();
    let mib: usize = std::env::var("TRANSFER_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let read_buf = std::env::var("READ").is_ok_and(|v| v == "buf");
    let total = mib << 20;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let received = runtime.block_on(async move {
        match stack.as_str() {
            "plaintext-mplex" => run(Plaintext::new, Mplex::default(), total, read_buf).await,
            "noise-yamux" => run(Noise::new, Yamux::default(), total, read_buf).await,
            other => panic!("unknown stack {other:?}: plaintext-mplex or noise-yamux"),
        }
    });
    assert_eq!(received, total);
    println!("{received} bytes");
}

async fn run<S, M>(security: fn(Keypair) -> S, muxer: M, total: usize, read_buf: bool) -> usize
where
    S: SecurityUpgrade<Negotiated<TcpSocket>>,
    M: MuxerUpgrade<Negotiated<S::Output>>,
{
    let dialer = TcpTransport::new()
        .upgrade()
        .authenticate(security(Keypair::generate_ed25519()))
        .multiplex(muxer.clone());
    let listener = TcpTransport::new()
        .upgrade()
        .authenticate(security(Keypair::generate_ed25519()))
        .multiplex(muxer);
    let mut listening = listener
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let addr = loop {
        if let Some(ListenerEvent::NewAddress(a)) = listening.next().await {
            break a;
        }
    };
    let accept = async {
        loop {
            if let Some(ListenerEvent::Incoming { pending, .. }) = listening.next().await {
                break listener.accept(pending).await.expect("accept");
            }
        }
    };
    let (ours, theirs) = futures::join!(dialer.dial(addr.clone()), accept);
    let ours = ours.expect("dial");

    let sender = tokio::spawn(async move {
        let raw: Box<dyn Socket> = Box::new(ours.muxer.open().await.expect("open"));
        let mut out = wrap(ours.clone(), raw, true, addr).await;
        let chunk = vec![0x5a; CHUNK];
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK);
            out.write_all(&chunk[..n]).await.expect("write");
            left -= n;
        }
        out.shutdown().await.expect("close");
        ours
    });
    let raw: Box<dyn Socket> = Box::new(theirs.muxer.accept().await.expect("accept"));
    let remote: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().expect("address");
    let mut inbound = wrap(theirs.clone(), raw, false, remote).await;
    let mut n = 0;
    if read_buf {
        let mut buf = bytes::BytesMut::with_capacity(CHUNK);
        loop {
            buf.clear();
            let k = inbound.read_buf(&mut buf).await.expect("read");
            if k == 0 {
                break;
            }
            n += k;
        }
    } else {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let k = inbound.read(&mut buf).await.expect("read");
            if k == 0 {
                break;
            }
            n += k;
        }
    }
    drop(sender.await.expect("sender"));
    drop(theirs);
    n
}

/// Agrees on [`PROTOCOL`] on a muxer stream, as a host does, and wraps it in a [`Stream`].
async fn wrap<Mx: StreamMuxer>(
    conn: Connection<Mx>,
    raw: Box<dyn Socket>,
    dialer: bool,
    addr: Multiaddr,
) -> Stream {
    let config = multistream::Config::default();
    let (protocol, io) = if dialer {
        let (p, io) =
            multistream::dialer_select(raw, [PROTOCOL], multistream::Version::V1, &config)
                .await
                .expect("negotiate");
        (p.to_string(), io)
    } else {
        multistream::listener_select(raw, &[PROTOCOL][..], &config)
            .await
            .expect("negotiate")
    };
    Stream::new(io, protocol, conn.peer, ConnectionId::new(1), addr)
}
