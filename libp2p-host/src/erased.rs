//! Type erasure: the host keeps any `Transport<Output = (PeerId, impl StreamMuxer)>` behind
//! trait objects, so that `Host` has no type parameters. The cost is one allocation per
//! connection and per stream and a virtual call per read or write; nothing per frame.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryFutureExt};
use libp2p_core::{
    ListenerEvent, Multiaddr, MuxerError, PeerId, Socket, StreamMuxer, Transport, TransportError,
};

/// A stream of any muxer.
pub type BoxedStream = Box<dyn Socket>;

/// An established connection's muxer, type-erased.
pub trait DynMuxer: Send + Sync {
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
pub type Connected = (PeerId, Arc<dyn DynMuxer>);
/// The upgrade of an inbound connection, still to run.
pub type PendingUpgrade = BoxFuture<'static, Result<Connected, TransportError>>;

/// A transport, type-erased.
pub trait DynTransport: Send + Sync {
    /// Dials `addr`.
    fn dial(&self, addr: Multiaddr) -> BoxFuture<'static, Result<Connected, TransportError>>;
    /// Listens on `addr`; inbound connections come with their upgrade as a future.
    fn listen(
        &self,
        addr: Multiaddr,
    ) -> Result<BoxStream<'static, ListenerEvent<PendingUpgrade>>, TransportError>;
}

impl<T, M> DynTransport for T
where
    T: Transport<Output = (PeerId, M)>,
    M: StreamMuxer,
{
    fn dial(&self, addr: Multiaddr) -> BoxFuture<'static, Result<Connected, TransportError>> {
        Transport::dial(self, addr)
            .map_ok(|(peer, muxer)| (peer, Arc::new(muxer) as Arc<dyn DynMuxer>))
            .boxed()
    }

    fn listen(
        &self,
        addr: Multiaddr,
    ) -> Result<BoxStream<'static, ListenerEvent<PendingUpgrade>>, TransportError> {
        let listener = Transport::listen(self, addr)?;
        let transport = self.clone();
        Ok(listener
            .map(move |event| match event {
                ListenerEvent::Incoming {
                    pending,
                    local_addr,
                    remote_addr,
                } => ListenerEvent::Incoming {
                    pending: transport
                        .accept(pending)
                        .map_ok(|(peer, muxer)| (peer, Arc::new(muxer) as Arc<dyn DynMuxer>))
                        .boxed(),
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
