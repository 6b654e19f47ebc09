//! Type erasure: the host keeps any transport whose output is a [`Connection`] behind trait
//! objects, so that `Host` has no type parameters. The cost is one allocation per connection
//! and per stream and a virtual call per read or write; nothing per frame.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryFutureExt};
use libp2p_core::{
    BoxedStream, Connection, IntoConnection, ListenerEvent, Multiaddr, MuxerError, StreamMuxer,
    Transport, TransportError,
};

/// An established connection's muxer, type-erased.
pub(crate) trait DynMuxer: Send + Sync {
    /// Opens an outbound stream.
    fn open(&self) -> BoxFuture<'static, Result<BoxedStream, MuxerError>>;
    /// Waits for the next inbound stream.
    fn accept(&self) -> BoxFuture<'static, Result<BoxedStream, MuxerError>>;
    /// Closes the connection.
    fn close(&self) -> BoxFuture<'static, Result<(), MuxerError>>;
    /// Whether the connection is closed.
    fn is_closed(&self) -> bool;
}

impl<M: StreamMuxer> DynMuxer for M {
    fn open(&self) -> BoxFuture<'static, Result<BoxedStream, MuxerError>> {
        StreamMuxer::open(self)
            .map_ok(|s| Box::new(s) as BoxedStream)
            .boxed()
    }
    fn accept(&self) -> BoxFuture<'static, Result<BoxedStream, MuxerError>> {
        StreamMuxer::accept(self)
            .map_ok(|s| Box::new(s) as BoxedStream)
            .boxed()
    }
    fn close(&self) -> BoxFuture<'static, Result<(), MuxerError>> {
        StreamMuxer::close(self).boxed()
    }
    fn is_closed(&self) -> bool {
        StreamMuxer::is_closed(self)
    }
}

/// A connection as the host keeps it.
pub(crate) type Connected = Connection<Arc<dyn DynMuxer>>;
/// The upgrade of an inbound connection, still to run.
pub(crate) type PendingUpgrade = BoxFuture<'static, Result<Connected, TransportError>>;
/// A listener's events, with each inbound connection's upgrade as a future.
pub(crate) type DynListener = BoxStream<'static, ListenerEvent<PendingUpgrade>>;

fn erase<C: IntoConnection>(output: C) -> Connected {
    let c = output.into_connection();
    Connection {
        peer: c.peer,
        muxer: Arc::new(c.muxer) as Arc<dyn DynMuxer>,
        info: c.info,
    }
}

/// A transport, type-erased.
pub(crate) trait DynTransport: Send + Sync {
    /// Whether it can dial `addr`.
    fn can_dial(&self, addr: &Multiaddr) -> bool;
    /// Dials `addr`.
    fn dial(&self, addr: Multiaddr) -> BoxFuture<'static, Result<Connected, TransportError>>;
    /// Listens on `addr`; inbound connections come with their upgrade as a future.
    fn listen(&self, addr: Multiaddr) -> Result<DynListener, TransportError>;
}

impl<T> DynTransport for T
where
    T: Transport,
    T::Output: IntoConnection,
{
    fn can_dial(&self, addr: &Multiaddr) -> bool {
        Transport::can_dial(self, addr)
    }

    fn dial(&self, addr: Multiaddr) -> BoxFuture<'static, Result<Connected, TransportError>> {
        Transport::dial(self, addr).map_ok(erase).boxed()
    }

    fn listen(&self, addr: Multiaddr) -> Result<DynListener, TransportError> {
        let listener = Transport::listen(self, addr)?;
        let transport = self.clone();
        Ok(listener
            .map(move |event| match event {
                ListenerEvent::Incoming {
                    pending,
                    local_addr,
                    remote_addr,
                } => ListenerEvent::Incoming {
                    pending: transport.accept(pending).map_ok(erase).boxed(),
                    local_addr,
                    remote_addr,
                },
                ListenerEvent::NewAddress(a) => ListenerEvent::NewAddress(a),
                ListenerEvent::AddressExpired(a) => ListenerEvent::AddressExpired(a),
                ListenerEvent::Error(e) => ListenerEvent::Error(e),
            })
            .boxed())
    }
}
