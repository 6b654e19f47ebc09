//! Prometheus metrics of a host (the `metrics` feature): connections, dials, streams and their
//! bytes per protocol, ping round trips, and what the host refused.
//!
//! ```
//! use libp2p_host::metrics::{Metrics, Registry};
//!
//! let mut registry = Registry::default();
//! let metrics = Metrics::new(&mut registry);
//! // Host::builder(key).metrics(metrics)...; later, for a scrape:
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! ```
//!
//! Every label takes its values from a set the host bounds: the transports, security
//! protocols and muxers of its own stacks, the protocols it accepts or opens, the classes of
//! [`Fault`], and the refusal reasons. What a remote sends never becomes a label.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use libp2p_core::{
    BoxedStream, Classify, CloseCause, ConnectionInfo, ConnectionRefusedReason, Direction, Event,
    Fault, Multiaddr, Protocol, RefusedReason, ResourceKind, ResourceLimitExceeded, ResourceScope,
    TransportError,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::Registry;

/// The host's metrics, registered in a [`Registry`]; give them to
/// [`HostBuilder::metrics`](crate::HostBuilder::metrics). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Recorder>,
}

#[derive(Debug)]
pub(crate) struct Recorder {
    connections_opened: Family<ConnectionLabels, Counter>,
    connections_closed: Family<CloseLabels, Counter>,
    connections: Family<ConnectionLabels, Gauge>,
    dials: Family<TransportLabels, Counter>,
    dial_failures: Family<FailureLabels, Counter>,
    streams: Family<StreamLabels, Counter>,
    stream_bytes: Family<StreamLabels, Counter>,
    ping_rtt: Histogram,
    refused: Family<RefusedLabels, Counter>,
    resource_refused: Family<ResourceLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    /// `stream` or `connection`.
    what: &'static str,
    /// `host`, `peer`, `connection` or `protocol`.
    scope: &'static str,
    /// `inbound_streams`, `outbound_streams`, `streams` or `memory`.
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    direction: &'static str,
    transport: &'static str,
    security: String,
    muxer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    direction: &'static str,
    transport: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    transport: &'static str,
    fault: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    protocol: String,
    /// `inbound` / `outbound` for streams, `in` / `out` for bytes.
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    /// `stream` or `connection`.
    what: &'static str,
    reason: &'static str,
}

impl Metrics {
    /// The host's metrics, registered in `registry` under the `libp2p` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let recorder = Recorder {
            connections_opened: Family::default(),
            connections_closed: Family::default(),
            connections: Family::default(),
            dials: Family::default(),
            dial_failures: Family::default(),
            streams: Family::default(),
            stream_bytes: Family::default(),
            // 100 µs to ~1.6 s: loopback to a far continent.
            ping_rtt: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            refused: Family::default(),
            resource_refused: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("libp2p");
        r.register(
            "connections_opened",
            "Connections established, by direction, transport, security and muxer",
            recorder.connections_opened.clone(),
        );
        r.register(
            "connections_closed",
            "Connections closed, by direction, transport and cause",
            recorder.connections_closed.clone(),
        );
        r.register(
            "connections",
            "Connections open now, by direction, transport, security and muxer",
            recorder.connections.clone(),
        );
        r.register(
            "dial_attempts",
            "Addresses dialed, by transport",
            recorder.dials.clone(),
        );
        r.register(
            "dial_failures",
            "Addresses whose dial failed, by transport and fault class",
            recorder.dial_failures.clone(),
        );
        r.register(
            "streams",
            "Streams on which a protocol was agreed, by protocol and direction",
            recorder.streams.clone(),
        );
        r.register(
            "stream_bytes",
            "Bytes read (in) and written (out) on streams after their protocol was agreed",
            recorder.stream_bytes.clone(),
        );
        r.register(
            "ping_rtt_seconds",
            "Round trips measured by Host::ping",
            recorder.ping_rtt.clone(),
        );
        r.register(
            "refused",
            "Streams and connections the host refused, by reason",
            recorder.refused.clone(),
        );
        r.register(
            "resource_refused",
            "Streams and connections the resource manager refused, by scope and resource",
            recorder.resource_refused.clone(),
        );
        Metrics {
            inner: Arc::new(recorder),
        }
    }

    pub(crate) fn recorder(&self) -> Arc<Recorder> {
        self.inner.clone()
    }
}

/// The transport of an address, as a label.
fn transport_of(addr: &Multiaddr) -> &'static str {
    let mut kind = "other";
    for p in addr.iter() {
        kind = match p {
            Protocol::Tcp(_) => "tcp",
            Protocol::Ws(_) | Protocol::Wss(_) => "websocket",
            Protocol::QuicV1 => "quic",
            Protocol::Memory(_) => "memory",
            _ => continue,
        };
    }
    kind
}

fn direction_of(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        _ => "outbound",
    }
}

fn fault_label(fault: Fault) -> &'static str {
    match fault {
        Fault::Remote => "remote",
        Fault::Incompatible => "incompatible",
        Fault::Network => "network",
        Fault::Timeout => "timeout",
        _ => "local",
    }
}

fn connection_labels(info: &ConnectionInfo) -> ConnectionLabels {
    ConnectionLabels {
        direction: direction_of(info.direction),
        transport: transport_of(&info.remote_addr),
        security: info.security.clone(),
        muxer: info.muxer.clone(),
    }
}

impl Recorder {
    /// Records what an event says (every event of the host passes here before it is sent).
    pub(crate) fn on_event(&self, event: &Event) {
        match event {
            Event::ConnectionEstablished { info, .. } => {
                let labels = connection_labels(info);
                self.connections_opened.get_or_create(&labels).inc();
                self.connections.get_or_create(&labels).inc();
            }
            Event::ConnectionClosed { info, cause, .. } => {
                let labels = connection_labels(info);
                self.connections.get_or_create(&labels).dec();
                let cause = match cause {
                    CloseCause::Local => "local",
                    CloseCause::Remote => "remote",
                    CloseCause::Error(e) => fault_label(e.fault()),
                    CloseCause::Trimmed => "trimmed",
                    CloseCause::IdleTimeout => "idle_timeout",
                    _ => "other",
                };
                self.connections_closed
                    .get_or_create(&CloseLabels {
                        direction: labels.direction,
                        transport: labels.transport,
                        cause,
                    })
                    .inc();
            }
            Event::InboundConnectionRefused {
                reason: ConnectionRefusedReason::Resource(e),
                ..
            } => self.refuse_resource("connection", e),
            Event::InboundStreamRefused {
                reason: RefusedReason::Resource(e),
                ..
            } => self.refuse_resource("stream", e),
            Event::InboundConnectionRefused { reason, .. } => {
                let reason = match reason {
                    ConnectionRefusedReason::ConnectionLimit { .. } => "connection_limit",
                    ConnectionRefusedReason::PendingLimit { .. } => "pending_limit",
                    ConnectionRefusedReason::PendingPerIp { .. } => "pending_per_ip",
                    ConnectionRefusedReason::RatePerIp { .. } => "rate_per_ip",
                    _ => "other",
                };
                self.refuse("connection", reason);
            }
            Event::InboundStreamRefused { reason, .. } => {
                let reason = match reason {
                    RefusedReason::QueueFull { .. } => "queue_full",
                    RefusedReason::StreamLimit { .. } => "stream_limit",
                    RefusedReason::NotSupported => "not_supported",
                    RefusedReason::Timeout => "timeout",
                    RefusedReason::Negotiation(_) => "negotiation",
                    _ => "other",
                };
                self.refuse("stream", reason);
            }
            _ => {}
        }
    }

    /// A connection or stream the resource manager refused (`reason="resource_limit"` in
    /// the refusals, and its scope and resource beside).
    pub(crate) fn refuse_resource(&self, what: &'static str, e: &ResourceLimitExceeded) {
        self.refuse(what, "resource_limit");
        let scope = match e.scope {
            ResourceScope::Host => "host",
            ResourceScope::Peer => "peer",
            ResourceScope::Connection => "connection",
            ResourceScope::Protocol(_) => "protocol",
            _ => "other",
        };
        let resource = match e.resource {
            ResourceKind::InboundStreams => "inbound_streams",
            ResourceKind::OutboundStreams => "outbound_streams",
            ResourceKind::Streams => "streams",
            ResourceKind::Memory => "memory",
            _ => "other",
        };
        self.resource_refused
            .get_or_create(&ResourceLabels {
                what,
                scope,
                resource,
            })
            .inc();
    }

    /// A connection or stream refused for `reason`.
    pub(crate) fn refuse(&self, what: &'static str, reason: &'static str) {
        self.refused
            .get_or_create(&RefusedLabels { what, reason })
            .inc();
    }

    /// An address is being dialed.
    pub(crate) fn dial(&self, addr: &Multiaddr) {
        self.dials
            .get_or_create(&TransportLabels {
                transport: transport_of(addr),
            })
            .inc();
    }

    /// Dialing an address failed.
    pub(crate) fn dial_failed(&self, addr: &Multiaddr, error: &TransportError) {
        self.dial_failures
            .get_or_create(&FailureLabels {
                transport: transport_of(addr),
                fault: fault_label(error.fault()),
            })
            .inc();
    }

    /// A ping round trip.
    pub(crate) fn ping(&self, rtt: Duration) {
        self.ping_rtt.observe(rtt.as_secs_f64());
    }

    /// A stream about to negotiate: its bytes are counted once [`StreamMeter::agreed`] names
    /// the protocol.
    pub(crate) fn meter(&self, raw: BoxedStream) -> (BoxedStream, StreamMeter) {
        let slot = Arc::new(OnceLock::new());
        let counted = Counted {
            inner: raw,
            slot: slot.clone(),
        };
        (Box::new(counted), StreamMeter { slot })
    }

    fn stream_counters(&self, protocol: &str, direction: Direction) -> Counters {
        let label = |direction| StreamLabels {
            protocol: protocol.to_string(),
            direction,
        };
        self.streams
            .get_or_create(&label(direction_of(direction)))
            .inc();
        // One at a time: `get_or_create` holds the family's read lock while its guard lives,
        // and creating the second entry takes the write lock.
        let read = self.stream_bytes.get_or_create(&label("in")).clone();
        let written = self.stream_bytes.get_or_create(&label("out")).clone();
        Counters { read, written }
    }
}

/// Counts a stream once its protocol is agreed.
pub(crate) struct StreamMeter {
    slot: Arc<OnceLock<Counters>>,
}

impl StreamMeter {
    /// `protocol` was agreed: count the stream and its bytes from now on.
    pub(crate) fn agreed(self, recorder: &Recorder, protocol: &str, direction: Direction) {
        let _ = self.slot.set(recorder.stream_counters(protocol, direction));
    }
}

#[derive(Debug)]
struct Counters {
    read: Counter,
    written: Counter,
}

/// A muxer stream whose bytes go to its protocol's counters (none before it is agreed).
struct Counted {
    inner: BoxedStream,
    slot: Arc<OnceLock<Counters>>,
}

impl futures::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(c)) = (&poll, self.slot.get()) {
            c.read.inc_by(*n as u64);
        }
        poll
    }
}

impl futures::AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(c)) = (&poll, self.slot.get()) {
            c.written.inc_by(*n as u64);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_named_by_their_address() {
        for (addr, kind) in [
            ("/ip4/1.2.3.4/tcp/1", "tcp"),
            ("/ip4/1.2.3.4/tcp/1/ws", "websocket"),
            ("/ip4/1.2.3.4/udp/1/quic-v1", "quic"),
            ("/memory/5", "memory"),
            ("/ip4/1.2.3.4/udp/1", "other"),
        ] {
            assert_eq!(transport_of(&addr.parse().unwrap()), kind, "{addr}");
        }
    }
}
