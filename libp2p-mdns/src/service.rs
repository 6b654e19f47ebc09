//! mDNS as a Host service: announces the host's listen addresses (updated as they change),
//! puts discovered peers into the host's peerstore with the TTL of their records, tells the
//! application through an [`MdnsHandle`], and optionally dials each peer it discovers.
//!
//! ```no_run
//! use futures::StreamExt;
//! use libp2p_core::Keypair;
//! use libp2p_mdns::service::{MdnsService, ServiceConfig};
//! use libp2p_mdns::{Config, Event};
//!
//! # async fn run(builder: impl FnOnce(MdnsService)) {
//! let (service, handle) = MdnsService::new(Config::default(), ServiceConfig::default());
//! let mut discoveries = handle.subscribe();
//! builder(service); // `Host::builder(key).service(service)...build()`
//! while let Some(Event::Discovered { peer, .. }) = discoveries.next().await {
//!     println!("found {peer}");
//! }
//! # }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use libp2p_core::service::Event as HostEvent;
use libp2p_core::{HostContext, PeerId, Service, ServiceContext};
use tokio::sync::{broadcast, Semaphore};

use crate::core::Event;
use crate::Config;

/// The service's own settings (the protocol's are in [`Config`]).
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Whether the service dials every peer it discovers that we are not connected to.
    /// Default `false`: discovery fills the peerstore, and the application decides whom to
    /// connect to (the `peer` program's `--mdns` turns it on).
    pub auto_dial: bool,
    /// Dials started by [`auto_dial`](Self::auto_dial) running at once; a discovery beyond it
    /// is not dialed (its addresses are in the peerstore all the same). Default 8: a local
    /// network has a handful of peers, and the cap bounds what forged answers can make us do.
    pub max_concurrent_dials: usize,
    /// Events kept for each [`MdnsHandle::subscribe`] stream that its reader has not taken; a
    /// reader further behind skips the oldest. Default 256, the driver's own event queue.
    pub event_capacity: usize,
    /// How often the peerstore's copy of the discovered addresses is brought up to date with
    /// the records' refreshed TTLs (a record answered again lives longer). Default 30 s: well
    /// under the 2 minutes and more that peers announce, so no live address lapses.
    pub peerstore_refresh: Duration,
    /// Restrict mDNS to these interfaces (by name), or `None` for every interface that can
    /// multicast. Default `None`.
    pub interfaces: Option<Vec<String>>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            auto_dial: false,
            max_concurrent_dials: 8,
            event_capacity: 256,
            peerstore_refresh: Duration::from_secs(30),
            interfaces: None,
        }
    }
}

impl ServiceConfig {
    /// Sets [`auto_dial`](Self::auto_dial).
    pub fn with_auto_dial(mut self, auto_dial: bool) -> Self {
        self.auto_dial = auto_dial;
        self
    }
}

/// The mDNS service, to be given to the host (`HostBuilder::service`).
pub struct MdnsService {
    config: Config,
    io: ServiceConfig,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for MdnsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsService")
            .field("auto_dial", &self.io.auto_dial)
            .finish()
    }
}

/// The application's side: discovery events. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MdnsHandle {
    events: broadcast::Sender<Event>,
}

impl MdnsHandle {
    /// The discoveries from now on ([`Event::Discovered`], [`Event::Expired`]), as a
    /// `futures::Stream` that ends when the service stops. A reader more than
    /// [`ServiceConfig::event_capacity`] events behind skips the oldest ones.
    pub fn subscribe(&self) -> BoxStream<'static, Event> {
        use broadcast::error::RecvError;
        futures::stream::unfold(self.events.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "mDNS subscriber fell behind");
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}

impl MdnsService {
    /// The service with the protocol's `config` and the service's `io` settings, and its
    /// handle.
    pub fn new(config: Config, io: ServiceConfig) -> (MdnsService, MdnsHandle) {
        let (events, _) = broadcast::channel(io.event_capacity.max(1));
        let handle = MdnsHandle {
            events: events.clone(),
        };
        (MdnsService { config, io, events }, handle)
    }
}

impl Service for MdnsService {
    fn name(&self) -> &'static str {
        "mdns"
    }

    fn protocols(&self) -> Vec<String> {
        Vec::new()
    }

    fn run(self: Box<Self>, ctx: ServiceContext) -> BoxFuture<'static, ()> {
        Box::pin(run(*self, ctx))
    }
}

async fn run(service: MdnsService, ctx: ServiceContext) {
    let MdnsService { config, io, events } = service;
    let ServiceContext {
        host,
        events: mut host_events,
        ..
    } = ctx;
    let local = host.local_peer_id();
    let started = crate::io::Driver::new(config, local, host.listen_addrs());
    let (driver, mdns, mut discoveries) = match started {
        Ok(parts) => parts,
        Err(e) => {
            tracing::warn!(error = %e, "mDNS could not start");
            return;
        }
    };
    let driver = match io.interfaces.clone() {
        Some(names) => driver.only_interfaces(names),
        None => driver,
    };
    let task = tokio::spawn(async move {
        if let Err(e) = driver.run().await {
            tracing::warn!(error = %e, "mDNS driver stopped");
        }
    });
    let dials = Arc::new(Semaphore::new(io.max_concurrent_dials));
    let mut refresh = tokio::time::interval(io.peerstore_refresh.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            event = host_events.next() => match event {
                Some(HostEvent::ListenAddrAdded { .. }) | Some(HostEvent::ListenAddrExpired { .. }) => {
                    if !mdns.set_listen_addrs(host.listen_addrs()).await {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            },
            event = discoveries.recv() => match event {
                Some(event) => {
                    if let Event::Discovered { peer, .. } = &event {
                        sync_peerstore(&*host, &mdns, Some(*peer)).await;
                        if io.auto_dial {
                            dial(&host, &dials, *peer);
                        }
                    }
                    // No subscriber is no error.
                    let _ = events.send(event);
                }
                None => break,
            },
            _ = refresh.tick() => sync_peerstore(&*host, &mdns, None).await,
        }
    }
    // Dropping the driver's handle stops it (it says goodbye on the way out).
    drop(mdns);
    let _ = task.await;
}

/// Copies the discovered addresses (of `only`, or of everyone) into the peerstore, each with
/// the time its record has left.
async fn sync_peerstore(host: &dyn HostContext, mdns: &crate::io::Handle, only: Option<PeerId>) {
    let Some(expiries) = mdns.expiries().await else {
        return;
    };
    let now = Instant::now();
    for (peer, addr, expiry) in expiries {
        if only.is_some_and(|p| p != peer) || expiry <= now {
            continue;
        }
        host.peerstore().add_addrs(&peer, [addr], expiry - now);
    }
}

fn dial(host: &Arc<dyn HostContext>, dials: &Arc<Semaphore>, peer: PeerId) {
    if !host.connections(&peer).is_empty() {
        return;
    }
    let Ok(permit) = dials.clone().try_acquire_owned() else {
        tracing::debug!(%peer, "too many mDNS dials running; not dialing");
        return;
    };
    let connect = host.connect(peer);
    tokio::spawn(async move {
        if let Err(e) = connect.await {
            tracing::debug!(%peer, error = %e, "dialing an mDNS peer failed");
        }
        drop(permit);
    });
}
