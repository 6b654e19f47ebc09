//! The upgrade and the cheap, cloneable handle that opens and accepts streams.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::task::AtomicWaker;
use libp2p_core::{MuxerError, MuxerUpgrade, Role, Socket, StreamMuxer, UpgradeInfo};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::driver::{error_copy, Phase, YamuxDriver};
use crate::socket::{Coalesce, FlushControl};
use crate::stream::YamuxStream;
use crate::PROTOCOL;

/// The yamux muxer upgrade (`/yamux/1.0.0`).
#[derive(Debug, Clone, Default)]
pub struct Yamux {
    config: Config,
}

impl Yamux {
    /// A yamux upgrade with the default [`Config`] (as [`Default`]).
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A yamux upgrade with the given configuration.
    pub fn with_config(config: Config) -> Self {
        Yamux { config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets up yamux on `socket` right away (the upgrade itself exchanges no bytes).
    pub fn muxer<C: Socket>(&self, socket: C, role: Role) -> (YamuxMuxer, YamuxDriver<C>) {
        let mode = match role {
            Role::Dialer => yamux::Mode::Client,
            // Role::Listener (`Role` is non-exhaustive).
            _ => yamux::Mode::Server,
        };
        let flush = Arc::new(FlushControl::default());
        let connection = yamux::Connection::new(
            Coalesce::new(socket, flush.clone(), self.config.write_timeout),
            self.config.to_yamux(),
            mode,
        );
        let max_streams = self.config.stream_limit();
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            close_requested: AtomicBool::new(false),
            driver_waker: AtomicWaker::new(),
            live_streams: Arc::new(AtomicUsize::new(0)),
            max_streams,
            failure: std::sync::Mutex::new(None),
            waiting: std::sync::Mutex::default(),
        });
        let (open_tx, open_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound_rx) = mpsc::channel(self.config.accept_queue.max(1));
        let (closed_tx, closed_rx) = watch::channel(false);
        let muxer = YamuxMuxer {
            inner: Arc::new(Handle {
                open_tx,
                inbound_rx: Arc::new(tokio::sync::Mutex::new(inbound_rx)),
                closed_rx,
                shared: shared.clone(),
            }),
        };
        let driver = YamuxDriver {
            connection,
            open_rx,
            handles_gone: false,
            pending_opens: VecDeque::new(),
            inbound_tx: Some(inbound_tx),
            closed_tx,
            shared,
            phase: Phase::Running,
            flush,
        };
        (muxer, driver)
    }
}

impl UpgradeInfo for Yamux {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once(PROTOCOL)
    }
}

impl<C: Socket> MuxerUpgrade<C> for Yamux {
    type Muxer = YamuxMuxer;
    type Driver = YamuxDriver<C>;

    fn upgrade(
        &self,
        socket: C,
        role: Role,
        _protocol: &str,
    ) -> impl Future<Output = Result<(Self::Muxer, Self::Driver), MuxerError>> + Send + 'static
    {
        futures::future::ready(Ok(self.muxer(socket, role)))
    }
}

/// State shared by the handles, the driver and the streams.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The connection is closed or closing: no new streams.
    pub(crate) closed: AtomicBool,
    /// A handle asked to close the connection.
    pub(crate) close_requested: AtomicBool,
    /// Wakes the driver (for close requests).
    pub(crate) driver_waker: AtomicWaker,
    /// Streams alive (handed out, or waiting in the accept queue).
    pub(crate) live_streams: Arc<AtomicUsize>,
    /// The limit on `live_streams`.
    pub(crate) max_streams: usize,
    /// Why the driver failed, when it did: `accept` gives it to the host, which reports it
    /// as the connection's close cause.
    pub(crate) failure: std::sync::Mutex<Option<MuxerError>>,
    /// The streams' reads and writes waiting on the yamux crate, woken when the connection
    /// closes or ends: the crate wakes them when the connection fails, but not when it is
    /// closed (its closing state leaves them parked for good).
    pub(crate) waiting: std::sync::Mutex<Waiting>,
}

/// Parked stream reads and writes, by key (a stream's read is `2 * id`, its write
/// `2 * id + 1`, with `id` counted per connection).
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    pub(crate) next_id: u64,
    pub(crate) wakers: std::collections::HashMap<u64, std::task::Waker>,
}

impl Shared {
    /// Parks a stream's read or write until the connection closes; `false` if it has
    /// already (checked under the lock, so a close cannot slip between check and park).
    pub(crate) fn park(&self, key: u64, cx: &std::task::Context<'_>) -> bool {
        let mut waiting = self.waiting.lock().expect("lock");
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        match waiting.wakers.get_mut(&key) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                waiting.wakers.insert(key, cx.waker().clone());
            }
        }
        true
    }

    /// Marks the connection closed and wakes every parked stream.
    pub(crate) fn close_streams(&self) {
        let wakers = {
            let mut waiting = self.waiting.lock().expect("lock");
            self.closed.store(true, Ordering::SeqCst);
            std::mem::take(&mut waiting.wakers)
        };
        for (_, waker) in wakers {
            waker.wake();
        }
    }
}

pub(crate) type OpenReply = oneshot::Sender<Result<YamuxStream, MuxerError>>;

struct Handle {
    open_tx: mpsc::UnboundedSender<OpenReply>,
    inbound_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Box<YamuxStream>>>>,
    closed_rx: watch::Receiver<bool>,
    shared: Arc<Shared>,
}

/// A yamux connection: a cheap, cloneable handle that opens and accepts streams.
///
/// The connection runs in its [`YamuxDriver`]. When every clone of the handle is dropped, the
/// driver closes the connection.
#[derive(Clone)]
pub struct YamuxMuxer {
    inner: Arc<Handle>,
}

impl fmt::Debug for YamuxMuxer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YamuxMuxer")
            .field("closed", &self.is_closed())
            .field(
                "live_streams",
                &self.inner.shared.live_streams.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl YamuxMuxer {
    /// The number of streams alive on this connection (both directions, including inbound
    /// streams not accepted yet).
    pub fn live_streams(&self) -> usize {
        self.inner.shared.live_streams.load(Ordering::Relaxed)
    }
}

impl StreamMuxer for YamuxMuxer {
    type Stream = YamuxStream;

    fn open(&self) -> impl Future<Output = Result<YamuxStream, MuxerError>> + Send + 'static {
        let open_tx = self.inner.open_tx.clone();
        let closed = self.is_closed();
        async move {
            if closed {
                return Err(MuxerError::Closed);
            }
            let (reply_tx, reply_rx) = oneshot::channel();
            open_tx.send(reply_tx).map_err(|_| MuxerError::Closed)?;
            drop(open_tx);
            reply_rx.await.unwrap_or(Err(MuxerError::Closed))
        }
    }

    fn accept(&self) -> impl Future<Output = Result<YamuxStream, MuxerError>> + Send + 'static {
        let inbound = self.inner.inbound_rx.clone();
        let shared = self.inner.shared.clone();
        async move {
            let mut rx = inbound.lock().await;
            rx.recv().await.map(|stream| *stream).ok_or_else(|| {
                shared
                    .failure
                    .lock()
                    .expect("lock")
                    .as_ref()
                    .map_or(MuxerError::Closed, error_copy)
            })
        }
    }

    fn close(&self) -> impl Future<Output = Result<(), MuxerError>> + Send + 'static {
        let shared = self.inner.shared.clone();
        let mut closed_rx = self.inner.closed_rx.clone();
        async move {
            shared.close_requested.store(true, Ordering::SeqCst);
            shared.driver_waker.wake();
            // An error means the driver is gone, which closed the connection too.
            let _ = closed_rx.wait_for(|closed| *closed).await;
            Ok(())
        }
    }

    fn is_closed(&self) -> bool {
        self.inner.shared.closed.load(Ordering::SeqCst) || self.inner.open_tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn protocol_name() {
        let names = UpgradeInfo::protocol_names(&Yamux::default()).collect::<Vec<_>>();
        assert_eq!(names, vec!["/yamux/1.0.0"]);
    }
}
