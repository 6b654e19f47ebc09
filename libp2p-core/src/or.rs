//! [`Or`]: two transports as one, each dialing and listening on the addresses it knows.
//!
//! Raw transports combine before the upgrade (`TcpTransport::new().or(MemoryTransport::new())`
//! gives sockets of either kind, secured and muxed by one pipeline); whole stacks combine after
//! it (a TCP pipeline or a QUIC transport), their output an `Either` of two connections that
//! [`IntoConnection`](crate::IntoConnection) turns into one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::Either;
use futures::{FutureExt, Stream, TryFutureExt};
use multiaddr::Multiaddr;

use crate::transport::{ListenerEvent, Transport, TransportError};

/// Two transports as one: an address goes to the first that can dial it (or listen on it).
#[derive(Debug, Clone)]
pub struct Or<A, B> {
    a: A,
    b: B,
}

impl<A, B> Or<A, B> {
    /// `a` first, then `b`.
    pub fn new(a: A, b: B) -> Self {
        Or { a, b }
    }
}

/// The listener of an [`Or`]: the listener of whichever transport took the address.
#[derive(Debug)]
pub enum OrListener<A, B> {
    /// The first transport listens.
    A(A),
    /// The second transport listens.
    B(B),
}

fn map_event<P, Q>(event: ListenerEvent<P>, f: impl FnOnce(P) -> Q) -> ListenerEvent<Q> {
    match event {
        ListenerEvent::Incoming {
            pending,
            local_addr,
            remote_addr,
        } => ListenerEvent::Incoming {
            pending: f(pending),
            local_addr,
            remote_addr,
        },
        ListenerEvent::NewAddress(a) => ListenerEvent::NewAddress(a),
        ListenerEvent::AddressExpired(a) => ListenerEvent::AddressExpired(a),
        ListenerEvent::Error(e) => ListenerEvent::Error(e),
    }
}

impl<A, B, PA, PB> Stream for OrListener<A, B>
where
    A: Stream<Item = ListenerEvent<PA>> + Unpin,
    B: Stream<Item = ListenerEvent<PB>> + Unpin,
{
    type Item = ListenerEvent<Either<PA, PB>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            OrListener::A(a) => Pin::new(a)
                .poll_next(cx)
                .map(|e| e.map(|e| map_event(e, Either::Left))),
            OrListener::B(b) => Pin::new(b)
                .poll_next(cx)
                .map(|e| e.map(|e| map_event(e, Either::Right))),
        }
    }
}

impl<A: Transport, B: Transport> Transport for Or<A, B> {
    type Output = Either<A::Output, B::Output>;
    type Pending = Either<A::Pending, B::Pending>;
    type Listener = OrListener<A::Listener, B::Listener>;

    fn can_dial(&self, addr: &Multiaddr) -> bool {
        self.a.can_dial(addr) || self.b.can_dial(addr)
    }

    fn local_addr_of(output: &Self::Output) -> Option<Multiaddr> {
        match output {
            Either::Left(a) => A::local_addr_of(a),
            Either::Right(b) => B::local_addr_of(b),
        }
    }

    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        if self.a.can_dial(&addr) {
            self.a.dial(addr).map_ok(Either::Left).left_future()
        } else {
            self.b.dial(addr).map_ok(Either::Right).right_future()
        }
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        match self.a.listen(addr.clone()) {
            Ok(listener) => Ok(OrListener::A(listener)),
            Err(TransportError::MultiaddrNotSupported(_)) => self.b.listen(addr).map(OrListener::B),
            Err(e) => Err(e),
        }
    }

    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        match pending {
            Either::Left(p) => self.a.accept(p).map_ok(Either::Left).left_future(),
            Either::Right(p) => self.b.accept(p).map_ok(Either::Right).right_future(),
        }
    }
}
