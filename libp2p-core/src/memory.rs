//! An in-process transport over `/memory/<n>` addresses, so that tests can swap transports
//! without sockets.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::Stream;
use multiaddr::{Multiaddr, Protocol};
use tokio::io::DuplexStream;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use crate::transport::{ListenerEvent, Transport, TransportError};

/// One end of an in-memory connection: a bounded pipe in each direction.
pub type MemorySocket = Compat<DuplexStream>;

/// Connections waiting to be accepted per listener before dials are refused.
const BACKLOG: usize = 128;

type Hub = Mutex<HashMap<u64, mpsc::Sender<(MemorySocket, u64)>>>;

static HUB: LazyLock<Hub> = LazyLock::new(Default::default);
static NEXT_PORT: AtomicU64 = AtomicU64::new(1 << 20);

/// The in-memory transport. Listeners live in one process-wide table keyed by port.
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    buffer: usize,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        MemoryTransport::new()
    }
}

impl MemoryTransport {
    /// A memory transport whose pipes buffer 64 KiB in each direction (about what a loopback
    /// socket buffers at once, so writers feel back-pressure as they would over TCP).
    pub fn new() -> Self {
        MemoryTransport { buffer: 64 * 1024 }
    }
}

fn memory_port(addr: &Multiaddr) -> Result<u64, TransportError> {
    let mut iter = addr.iter();
    match (iter.next(), iter.next()) {
        (Some(Protocol::Memory(port)), None) => Ok(port),
        (Some(Protocol::Memory(port)), Some(Protocol::P2p(_))) if iter.next().is_none() => Ok(port),
        _ => Err(TransportError::MultiaddrNotSupported(addr.clone())),
    }
}

fn fresh_port(hub: &HashMap<u64, mpsc::Sender<(MemorySocket, u64)>>) -> u64 {
    loop {
        let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        if port != 0 && !hub.contains_key(&port) {
            return port;
        }
    }
}

/// A listener of the memory transport; dropping it frees its port.
#[derive(Debug)]
pub struct MemoryListener {
    port: u64,
    announced: bool,
    incoming: mpsc::Receiver<(MemorySocket, u64)>,
}

impl Stream for MemoryListener {
    type Item = ListenerEvent<MemorySocket>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.announced {
            self.announced = true;
            let addr = Multiaddr::empty().with(Protocol::Memory(self.port));
            return Poll::Ready(Some(ListenerEvent::NewAddress(addr)));
        }
        let port = self.port;
        Pin::new(&mut self.incoming).poll_next(cx).map(|next| {
            next.map(|(socket, remote)| ListenerEvent::Incoming {
                pending: socket,
                local_addr: Multiaddr::empty().with(Protocol::Memory(port)),
                remote_addr: Multiaddr::empty().with(Protocol::Memory(remote)),
            })
        })
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        if let Ok(mut hub) = HUB.lock() {
            hub.remove(&self.port);
        }
    }
}

impl Transport for MemoryTransport {
    type Output = MemorySocket;
    type Pending = MemorySocket;
    type Listener = MemoryListener;

    fn can_dial(&self, addr: &Multiaddr) -> bool {
        memory_port(addr).is_ok()
    }

    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let buffer = self.buffer;
        let result = (|| {
            let port = memory_port(&addr)?;
            let mut hub = HUB.lock().expect("memory hub poisoned");
            let local_port = fresh_port(&hub);
            let sender = hub
                .get_mut(&port)
                .ok_or_else(|| TransportError::ConnectionRefused(addr.clone()))?;
            let (ours, theirs) = tokio::io::duplex(buffer);
            sender
                .try_send((theirs.compat(), local_port))
                .map_err(|_| TransportError::ConnectionRefused(addr.clone()))?;
            Ok(ours.compat())
        })();
        futures::future::ready(result)
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        let port = memory_port(&addr)?;
        let mut hub = HUB.lock().expect("memory hub poisoned");
        let port = if port == 0 { fresh_port(&hub) } else { port };
        if hub.contains_key(&port) {
            return Err(TransportError::AddressInUse(addr));
        }
        let (sender, incoming) = mpsc::channel(BACKLOG);
        hub.insert(port, sender);
        Ok(MemoryListener {
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
