//! The limits of the Host service, beside the router's own [`Config`].

use std::time::Duration;

use crate::config::Config;

/// The configuration of the gossipsub Host service: the router's [`Config`] and the limits of
/// the streams, queues and channels around it.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The router: mesh degrees, heartbeat, caches, scoring, message ids. Default
    /// [`Config::default`].
    pub router: Config,
    /// RPCs queued for one peer's outbound stream. Default 1024: a few heartbeats of a busy
    /// mesh. When the queue is full the new RPC is dropped (the newest goes, counted in
    /// [`ServiceStats::dropped_rpcs`](super::ServiceStats::dropped_rpcs)); what it carried is
    /// recovered by gossip (messages) or by the next heartbeat (meshes), while a peer that
    /// stays that slow trips [`ServiceConfig::write_timeout`] and loses its stream.
    pub outbound_queue: usize,
    /// How long one write (a batch of queued RPCs) may take before the peer's stream is given
    /// up. Default 10 s: a healthy peer takes a 1 MiB RPC in well under a second; one that
    /// reads nothing for this long is stalled, and its backlog would only grow.
    pub write_timeout: Duration,
    /// How long opening our outbound stream to a peer may take, negotiation included.
    /// Default 10 s (the host bounds the negotiation too; this bounds the whole).
    pub open_timeout: Duration,
    /// How long after a connection is up we wait for identify to say whether the peer speaks
    /// gossipsub before we simply try to open a stream. Default 5 s: identify normally answers
    /// within a round trip; peers without identify still get a stream.
    pub identify_wait: Duration,
    /// Messages buffered per [`Subscription`](super::Subscription) for a reader that has not
    /// caught up. Default 1024. A subscriber that falls further behind loses the oldest ones
    /// and is told how many ([`Lagged`](super::Lagged)); the router never waits for it.
    pub subscription_buffer: usize,
    /// Peer events buffered per [`PeerEvents`](super::PeerEvents) stream, with the same
    /// policy as subscriptions. Default 1024.
    pub event_buffer: usize,
    /// Requests from the application handles queued for the router. Default 256; a full
    /// queue makes the caller's `await` wait (back-pressure on the application, never on the
    /// router).
    pub command_queue: usize,
    /// RPCs decoded by the peers' readers and queued for the router. Default 1024; a full
    /// queue holds the readers back (and the peers, through their streams' flow control).
    pub inbound_queue: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            router: Config::default(),
            outbound_queue: 1024,
            write_timeout: Duration::from_secs(10),
            open_timeout: Duration::from_secs(10),
            identify_wait: Duration::from_secs(5),
            subscription_buffer: 1024,
            event_buffer: 1024,
            command_queue: 256,
            inbound_queue: 1024,
        }
    }
}

impl From<Config> for ServiceConfig {
    fn from(router: Config) -> Self {
        ServiceConfig {
            router,
            ..ServiceConfig::default()
        }
    }
}
