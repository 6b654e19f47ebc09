//! A transport whose connections arrive authenticated and multiplexed by themselves, in memory:
//! the stand-in for QUIC in tests, and the cheap transport of large simulations.
//!
//! There is no handshake and no framing: a dial hands the listener the dialer's peer id and a
//! pair of stream queues; each stream is a pair of in-memory pipes. Identities are taken on
//! trust, which is fine inside one process and nowhere else.
//!
//! Semantics differ from a real muxer in two ways, both documented on [`MemoryMuxer`]: dropping
//! a stream without closing it ends it for the remote like a close (no reset), and closing the
//! connection stops new streams but leaves open ones to their owners.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};
use tokio::sync::watch;
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::connection::{Connection, ConnectionInfo, Direction};
use crate::memory::MemorySocket;
use crate::transport::{split_peer_id, ListenerEvent, Transport, TransportError};
use crate::upgrade::{MuxerError, StreamMuxer};

/// The name this transport gives its security and its muxer in [`ConnectionInfo`].
pub const PROTOCOL: &str = "/memory-muxed";

/// Inbound connections waiting per listener before dials are refused.
const BACKLOG: usize = 128;
/// Inbound streams waiting per connection before `open` waits (back-pressure on the opener).
const STREAM_BACKLOG: usize = 64;
/// Bytes each stream's pipe buffers per direction (about what a loopback socket buffers).
const PIPE_BUFFER: usize = 64 * 1024;

struct Incoming {
    dialer: PeerId,
    dialer_port: u64,
    to_dialer: mpsc::Sender<MemorySocket>,
    from_dialer: mpsc::Receiver<MemorySocket>,
    closed: Arc<watch::Sender<bool>>,
}

struct Endpoint {
    peer: PeerId,
    incoming: mpsc::Sender<Incoming>,
}

static HUB: LazyLock<Mutex<HashMap<u64, Endpoint>>> = LazyLock::new(Default::default);
static NEXT_PORT: AtomicU64 = AtomicU64::new(1 << 40);

fn port_of(addr: &Multiaddr) -> Option<u64> {
    let (addr, _) = split_peer_id(addr);
    let mut iter = addr.iter();
    match (iter.next(), iter.next()) {
        (Some(Protocol::Memory(port)), None) => Some(port),
        _ => None,
    }
}

fn memory_addr(port: u64) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Memory(port))
}

/// The transport. Each instance speaks for one identity (`peer`), which it presents to every
/// peer it dials or accepts.
#[derive(Debug, Clone)]
pub struct MuxedMemoryTransport {
    peer: PeerId,
}

impl MuxedMemoryTransport {
    /// A transport whose connections authenticate us as `peer`.
    pub fn new(peer: PeerId) -> Self {
        MuxedMemoryTransport { peer }
    }
}

/// A muxed in-memory connection. Cheap to clone; when every clone on one side is dropped, the
/// connection is closed for both.
///
/// Unlike mplex or yamux, a stream dropped without closing ends like a closed one (the remote
/// reads EOF, not a reset), and [`StreamMuxer::close`] refuses new streams without ending the
/// open ones.
#[derive(Debug, Clone)]
pub struct MemoryMuxer {
    inner: Arc<MuxerInner>,
}

#[derive(Debug)]
struct MuxerInner {
    outbound: mpsc::Sender<MemorySocket>,
    inbound: futures::lock::Mutex<mpsc::Receiver<MemorySocket>>,
    closed: Arc<watch::Sender<bool>>,
}

impl Drop for MuxerInner {
    fn drop(&mut self) {
        self.closed.send_replace(true);
    }
}

impl MemoryMuxer {
    fn new(
        outbound: mpsc::Sender<MemorySocket>,
        inbound: mpsc::Receiver<MemorySocket>,
        closed: Arc<watch::Sender<bool>>,
    ) -> Self {
        MemoryMuxer {
            inner: Arc::new(MuxerInner {
                outbound,
                inbound: futures::lock::Mutex::new(inbound),
                closed,
            }),
        }
    }
}

impl StreamMuxer for MemoryMuxer {
    type Stream = MemorySocket;

    fn open(&self) -> impl Future<Output = Result<Self::Stream, MuxerError>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            if *inner.closed.borrow() {
                return Err(MuxerError::Closed);
            }
            let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
            let mut outbound = inner.outbound.clone();
            outbound
                .send(theirs.compat())
                .await
                .map_err(|_| MuxerError::Closed)?;
            Ok(ours.compat())
        }
    }

    fn accept(&self) -> impl Future<Output = Result<Self::Stream, MuxerError>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let mut closed = inner.closed.subscribe();
            let mut inbound = inner.inbound.lock().await;
            loop {
                if *closed.borrow_and_update() {
                    return Err(MuxerError::Closed);
                }
                tokio::select! {
                    next = inbound.next() => return next.ok_or(MuxerError::Closed),
                    changed = closed.changed() => {
                        if changed.is_err() {
                            return Err(MuxerError::Closed);
                        }
                    }
                }
            }
        }
    }

    fn close(&self) -> impl Future<Output = Result<(), MuxerError>> + Send + 'static {
        self.inner.closed.send_replace(true);
        futures::future::ready(Ok(()))
    }

    fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }
}

/// A listener of [`MuxedMemoryTransport`]; dropping it frees its port.
#[derive(Debug)]
pub struct MuxedMemoryListener {
    port: u64,
    announced: bool,
    incoming: mpsc::Receiver<Incoming>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("dialer", &self.dialer)
            .finish()
    }
}

impl Stream for MuxedMemoryListener {
    type Item = ListenerEvent<Connection<MemoryMuxer>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.announced {
            self.announced = true;
            return Poll::Ready(Some(ListenerEvent::NewAddress(memory_addr(self.port))));
        }
        let port = self.port;
        Pin::new(&mut self.incoming).poll_next(cx).map(|next| {
            next.map(|incoming| {
                let remote_addr = memory_addr(incoming.dialer_port);
                let info = ConnectionInfo::new(
                    PROTOCOL,
                    PROTOCOL,
                    Some(memory_addr(port)),
                    remote_addr.clone(),
                    Direction::Inbound,
                );
                let muxer =
                    MemoryMuxer::new(incoming.to_dialer, incoming.from_dialer, incoming.closed);
                ListenerEvent::Incoming {
                    pending: Connection {
                        peer: incoming.dialer,
                        muxer,
                        info,
                    },
                    local_addr: memory_addr(port),
                    remote_addr,
                }
            })
        })
    }
}

impl Drop for MuxedMemoryListener {
    fn drop(&mut self) {
        if let Ok(mut hub) = HUB.lock() {
            hub.remove(&self.port);
        }
    }
}

impl Transport for MuxedMemoryTransport {
    type Output = Connection<MemoryMuxer>;
    type Pending = Connection<MemoryMuxer>;
    type Listener = MuxedMemoryListener;

    fn can_dial(&self, addr: &Multiaddr) -> bool {
        port_of(addr).is_some()
    }

    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let me = self.peer;
        let result = (|| {
            let port = port_of(&addr)
                .ok_or_else(|| TransportError::MultiaddrNotSupported(addr.clone()))?;
            let (raw_addr, expected) = split_peer_id(&addr);
            let mut hub = HUB.lock().expect("memory hub poisoned");
            let endpoint = hub
                .get_mut(&port)
                .ok_or_else(|| TransportError::ConnectionRefused(addr.clone()))?;
            if let Some(expected) = expected {
                if expected != endpoint.peer {
                    return Err(TransportError::PeerIdMismatch {
                        expected: Box::new(expected),
                        actual: Box::new(endpoint.peer),
                    });
                }
            }
            let (to_dialer, from_listener) = mpsc::channel(STREAM_BACKLOG);
            let (to_listener, from_dialer) = mpsc::channel(STREAM_BACKLOG);
            let (closed, _) = watch::channel(false);
            let closed = Arc::new(closed);
            let dialer_port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
            endpoint
                .incoming
                .try_send(Incoming {
                    dialer: me,
                    dialer_port,
                    to_dialer,
                    from_dialer,
                    closed: closed.clone(),
                })
                .map_err(|_| TransportError::ConnectionRefused(addr.clone()))?;
            let info = ConnectionInfo::new(
                PROTOCOL,
                PROTOCOL,
                Some(memory_addr(dialer_port)),
                raw_addr,
                Direction::Outbound,
            );
            Ok(Connection {
                peer: endpoint.peer,
                muxer: MemoryMuxer::new(to_listener, from_listener, closed),
                info,
            })
        })();
        futures::future::ready(result)
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        let port =
            port_of(&addr).ok_or_else(|| TransportError::MultiaddrNotSupported(addr.clone()))?;
        let mut hub = HUB.lock().expect("memory hub poisoned");
        let port = if port == 0 {
            loop {
                let p = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
                if !hub.contains_key(&p) {
                    break p;
                }
            }
        } else {
            port
        };
        if hub.contains_key(&port) {
            return Err(TransportError::AddressInUse(addr));
        }
        let (incoming_tx, incoming) = mpsc::channel(BACKLOG);
        hub.insert(
            port,
            Endpoint {
                peer: self.peer,
                incoming: incoming_tx,
            },
        );
        Ok(MuxedMemoryListener {
            port,
            announced: false,
            incoming,
        })
    }

    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        futures::future::ready(Ok(pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn streams_flow_both_ways_and_close_ends_accept() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let listener_side = MuxedMemoryTransport::new(b);
        let mut listener = listener_side.listen("/memory/0".parse().unwrap()).unwrap();
        let Some(ListenerEvent::NewAddress(addr)) = listener.next().await else {
            panic!("no address")
        };
        let wrong = addr.clone().with(Protocol::P2p(a));
        assert!(matches!(
            MuxedMemoryTransport::new(a).dial(wrong).await,
            Err(TransportError::PeerIdMismatch { .. })
        ));
        let dialed = MuxedMemoryTransport::new(a)
            .dial(addr.clone().with(Protocol::P2p(b)))
            .await
            .unwrap();
        assert_eq!(dialed.peer, b);
        let Some(ListenerEvent::Incoming { pending, .. }) = listener.next().await else {
            panic!("no inbound")
        };
        let accepted = listener_side.accept(pending).await.unwrap();
        assert_eq!(accepted.peer, a);
        assert_eq!(accepted.info.direction, Direction::Inbound);

        let mut out = dialed.muxer.open().await.unwrap();
        let mut inbound = accepted.muxer.accept().await.unwrap();
        out.write_all(b"ping").await.unwrap();
        out.close().await.unwrap();
        let mut got = Vec::new();
        inbound.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        inbound.write_all(b"pong").await.unwrap();
        let mut back = [0u8; 4];
        out.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");

        let waiting = tokio::spawn({
            let muxer = accepted.muxer.clone();
            async move { muxer.accept().await }
        });
        dialed.muxer.close().await.unwrap();
        assert!(matches!(waiting.await.unwrap(), Err(MuxerError::Closed)));
        assert!(accepted.muxer.is_closed());
        assert!(matches!(
            accepted.muxer.open().await,
            Err(MuxerError::Closed)
        ));
    }
}
