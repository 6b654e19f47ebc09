//! The upgrade and the cheap, cloneable handle that opens and accepts streams.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use libp2p_core::{MuxerError, MuxerUpgrade, Role, Socket, StreamMuxer, UpgradeInfo};

use crate::config::{Config, MAX_FRAME_LEN};
use crate::driver::{MplexDriver, Shared};
use crate::proto::Connection;
use crate::stream::MplexStream;
use crate::PROTOCOL;

/// The mplex upgrade: [`Mplex::new`] (the default [`Config`], as [`Default`]) or
/// [`Mplex::with_config`].
#[derive(Debug, Clone)]
pub struct Mplex {
    config: Config,
}

impl Mplex {
    /// An upgrade with the default [`Config`].
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// An upgrade with the given configuration (a `split_send_size` outside
    /// `1..=MAX_FRAME_LEN` and a zero `write_buffer_len` are raised or lowered into range).
    pub fn with_config(config: Config) -> Self {
        let mut config = config;
        config.split_send_size = config.split_send_size.clamp(1, MAX_FRAME_LEN);
        config.write_buffer_len = config.write_buffer_len.max(1);
        Mplex { config }
    }

    /// Sets up mplex on `socket` (the role does not matter to mplex).
    pub fn connect<C: Socket>(&self, socket: C) -> (MplexMuxer, MplexDriver<C>) {
        let shared = Arc::new(Shared::new(Connection::new(self.config.clone())));
        let guard = Arc::new(HandleGuard(shared.clone()));
        let muxer = MplexMuxer {
            shared: shared.clone(),
            _guard: guard,
        };
        (muxer, MplexDriver::new(socket, shared))
    }
}

impl Default for Mplex {
    fn default() -> Self {
        Self::new()
    }
}

impl UpgradeInfo for Mplex {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once(PROTOCOL)
    }
}

impl<C: Socket> MuxerUpgrade<C> for Mplex {
    type Muxer = MplexMuxer;
    type Driver = MplexDriver<C>;

    fn upgrade(
        &self,
        socket: C,
        _role: Role,
        _protocol: &str,
    ) -> impl Future<Output = Result<(Self::Muxer, Self::Driver), MuxerError>> + Send + 'static
    {
        let pair = self.connect(socket);
        async move { Ok(pair) }
    }
}

/// Dropping the last [`MplexMuxer`] clone closes the connection.
struct HandleGuard(Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.conn.request_close();
        inner.wake();
    }
}

/// A handle on an mplex connection: opens and accepts streams. Clones share the connection;
/// dropping the last clone closes it.
#[derive(Clone)]
pub struct MplexMuxer {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for MplexMuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.shared.lock();
        f.debug_struct("MplexMuxer")
            .field("streams", &inner.conn.stream_count())
            .field("closed", &inner.conn.closed_reason())
            .finish()
    }
}

impl MplexMuxer {
    fn open_now(&self) -> Result<MplexStream, MuxerError> {
        let mut inner = self.shared.lock();
        let key = inner.conn.open_stream();
        inner.wake();
        Ok(MplexStream::new(self.shared.clone(), key?))
    }

    /// Number of streams currently open (both directions, including inbound streams not yet
    /// accepted).
    pub fn stream_count(&self) -> usize {
        self.shared.lock().conn.stream_count()
    }

    /// Bytes currently buffered for readers, over all streams.
    pub fn buffered_len(&self) -> usize {
        self.shared.lock().conn.buffered_len()
    }
}

impl StreamMuxer for MplexMuxer {
    type Stream = MplexStream;

    fn open(&self) -> impl Future<Output = Result<MplexStream, MuxerError>> + Send + 'static {
        let result = self.open_now();
        async move { result }
    }

    fn accept(&self) -> impl Future<Output = Result<MplexStream, MuxerError>> + Send + 'static {
        let shared = self.shared.clone();
        futures::future::poll_fn(move |cx| {
            let mut inner = shared.lock();
            match inner.conn.accept_stream() {
                Poll::Ready(Ok(key)) => Poll::Ready(Ok(MplexStream::new(shared.clone(), key))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    inner.wait_accept(cx.waker());
                    Poll::Pending
                }
            }
        })
    }

    fn close(&self) -> impl Future<Output = Result<(), MuxerError>> + Send + 'static {
        let shared = self.shared.clone();
        {
            let mut inner = shared.lock();
            inner.conn.request_close();
            inner.wake();
        }
        futures::future::poll_fn(move |cx| {
            let mut inner = shared.lock();
            if inner.conn.has_ended() {
                return Poll::Ready(Ok(()));
            }
            inner.wait_close(cx.waker());
            Poll::Pending
        })
    }

    fn is_closed(&self) -> bool {
        self.shared.lock().conn.is_closed()
    }
}
