//! The resource manager: budgets of streams and memory per connection, per peer, per
//! protocol and for the whole host, in the manner of go-libp2p's `rcmgr` (scopes nested
//! in a hierarchy: a stream counts in its connection, its peer, its protocol and the host).
//!
//! What is charged, exactly:
//! - an established connection reserves [`ResourceLimits::memory_per_connection`] bytes in
//!   its connection, its peer and the host scope, from the moment it joins the pool until it
//!   ends;
//! - a stream counts as one inbound or outbound stream and reserves
//!   [`ResourceLimits::memory_per_stream`] bytes in its connection, its peer and the host
//!   from the moment the muxer gives it to us (inbound) or before we ask the muxer for it
//!   (outbound); once its protocol is agreed, the same count and bytes go into that
//!   protocol's scope too. Everything is released when the stream is dropped (its guard
//!   travels inside the host's [`Stream`](crate::Stream)).
//!
//! These are fixed reservations of what the muxers may make us hold, not measurements of the
//! heap: the reservation per stream is the most a remote may send us that the stream has not
//! read (yamux's initial receive window, mplex's per-stream buffer: both 256 KiB by default);
//! the reservation per connection is the secure channel's read and write buffers (noise
//! frames are at most 64 KiB each way). A refusal never depends on the allocator's state, so
//! it is the same on every run.
//!
//! A plain table under one lock; the host calls it, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use libp2p_core::{
    ConnectionId, Direction, PeerId, ResourceKind, ResourceLimitExceeded, ResourceScope,
};
use serde::{Deserialize, Serialize};

use crate::config::{KIB, MIB};

/// The budgets of one scope. A stream beyond a count, or a reservation beyond `memory`, is
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScopeLimits {
    /// Inbound streams open at once.
    pub streams_inbound: usize,
    /// Outbound streams open at once.
    pub streams_outbound: usize,
    /// Streams open at once, both directions together.
    pub streams: usize,
    /// Bytes reserved at once.
    pub memory: usize,
}

impl ScopeLimits {
    /// Budgets of these sizes.
    pub fn new(
        streams_inbound: usize,
        streams_outbound: usize,
        streams: usize,
        memory: usize,
    ) -> Self {
        ScopeLimits {
            streams_inbound,
            streams_outbound,
            streams,
            memory,
        }
    }

    /// No budget at all (every count and byte fits).
    pub fn unlimited() -> Self {
        ScopeLimits::new(usize::MAX, usize::MAX, usize::MAX, usize::MAX)
    }
}

/// The resource manager's budgets (`Config::resources`). The scopes nest: a stream
/// counts in its connection, its peer, its protocol (once agreed) and the host, and must fit
/// in each. The figures follow go-libp2p's default scaling where it has one, resized to what
/// we reserve per stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ResourceLimits {
    /// The whole host. Default 4,096 inbound, 4,096 outbound, 8,192 streams and 1 GiB:
    /// go-libp2p's system scope allows 1,024 to 4,096 inbound streams depending on the
    /// machine and at most 1 GiB; at 256 KiB a stream, 1 GiB is 4,096 streams whose windows
    /// are all full, so memory is what binds first under attack.
    pub host: ScopeLimits,
    /// Each remote peer, all its connections together. Default 512 inbound, 1,024 outbound,
    /// 1,024 streams (go-libp2p's peer scope counts) and 258 MiB (1,024 streams' reservations
    /// and eight connections'): its inbound streams alone, 512 of them at 128 MiB, take at
    /// most an eighth of the host's memory, so a few hostile peers cannot starve the rest.
    pub peer: ScopeLimits,
    /// Each connection. Default 256 inbound (the same as `max_inbound_streams_per_connection`;
    /// the smaller of the two applies), 1,024 outbound and 1,024 streams (the muxers' own
    /// stream limit), and 257 MiB (its own reservation and 1,024 streams').
    pub connection: ScopeLimits,
    /// Each protocol not named in `protocols`, all peers together. Default 1,024 inbound,
    /// 2,048 outbound, 2,048 streams and 256 MiB (go-libp2p's protocol scope counts: 512 to
    /// 1,024 inbound, 2,048 to 4,096 outbound): no single protocol can use the whole host.
    pub protocol: ScopeLimits,
    /// Budgets of particular protocols, in place of `protocol` (say, a tight one for a
    /// public echo service, a generous one for bulk transfer). Default none. Its size is
    /// the configuration's.
    pub protocols: BTreeMap<String, ScopeLimits>,
    /// Bytes reserved per established connection. Default 128 KiB: the noise channel's read
    /// and write buffers (a frame of at most 64 KiB each way). mplex may hold up to one
    /// whole 1 MiB frame more while it arrives (bounded by its frame timeout); raise it for
    /// a host that serves mplex to many peers.
    pub memory_per_connection: usize,
    /// Bytes reserved per open stream. Default 256 KiB: what the remote may send that the
    /// stream has not read, yamux's initial receive window (`yamux::DEFAULT_CREDIT`) and
    /// mplex's `max_buffer_len`. (yamux may grow a busy stream's window beyond it; this
    /// budget counts streams at their initial window.)
    pub memory_per_stream: usize,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            host: ScopeLimits::new(4096, 4096, 8192, 1024 * MIB),
            peer: ScopeLimits::new(512, 1024, 1024, 258 * MIB),
            connection: ScopeLimits::new(256, 1024, 1024, 257 * MIB),
            protocol: ScopeLimits::new(1024, 2048, 2048, 256 * MIB),
            protocols: BTreeMap::new(),
            memory_per_connection: 128 * KIB,
            memory_per_stream: 256 * KIB,
        }
    }
}

impl ResourceLimits {
    /// No budget anywhere (reservations are still counted).
    pub fn unlimited() -> Self {
        ResourceLimits {
            host: ScopeLimits::unlimited(),
            peer: ScopeLimits::unlimited(),
            connection: ScopeLimits::unlimited(),
            protocol: ScopeLimits::unlimited(),
            ..ResourceLimits::default()
        }
    }

    fn protocol_limits(&self, protocol: &str) -> &ScopeLimits {
        self.protocols.get(protocol).unwrap_or(&self.protocol)
    }
}

/// What a scope holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceUsage {
    /// Inbound streams open.
    pub streams_inbound: usize,
    /// Outbound streams open.
    pub streams_outbound: usize,
    /// Bytes reserved.
    pub memory: usize,
}

impl ResourceUsage {
    fn is_empty(&self) -> bool {
        *self == ResourceUsage::default()
    }

    /// Whether `charge` fits under `limits`; the first budget it breaks, if not.
    fn check(&self, limits: &ScopeLimits, charge: &Charge) -> Option<(ResourceKind, usize)> {
        let streams = self.streams_inbound + self.streams_outbound;
        let (inbound, outbound) = charge.streams();
        if inbound > 0 && self.streams_inbound >= limits.streams_inbound {
            return Some((ResourceKind::InboundStreams, limits.streams_inbound));
        }
        if outbound > 0 && self.streams_outbound >= limits.streams_outbound {
            return Some((ResourceKind::OutboundStreams, limits.streams_outbound));
        }
        if charge.stream.is_some() && streams >= limits.streams {
            return Some((ResourceKind::Streams, limits.streams));
        }
        if self.memory.saturating_add(charge.memory) > limits.memory {
            return Some((ResourceKind::Memory, limits.memory));
        }
        None
    }

    fn add(&mut self, charge: &Charge) {
        let (inbound, outbound) = charge.streams();
        self.streams_inbound += inbound;
        self.streams_outbound += outbound;
        self.memory += charge.memory;
    }

    fn sub(&mut self, charge: &Charge) {
        let (inbound, outbound) = charge.streams();
        self.streams_inbound -= inbound;
        self.streams_outbound -= outbound;
        self.memory -= charge.memory;
    }
}

/// One reservation: a stream of a direction (or none, for a connection) and bytes.
#[derive(Debug, Clone, Copy)]
struct Charge {
    stream: Option<Direction>,
    memory: usize,
}

impl Charge {
    /// The (inbound, outbound) streams it counts.
    fn streams(&self) -> (usize, usize) {
        match self.stream {
            Some(Direction::Inbound) => (1, 0),
            Some(_) => (0, 1),
            None => (0, 0),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    host: ResourceUsage,
    /// Entries exist only while they hold something, so there are at most as many as
    /// connections (peers, connections) or protocols agreed on open streams.
    peers: HashMap<PeerId, ResourceUsage>,
    conns: HashMap<ConnectionId, ResourceUsage>,
    protocols: HashMap<String, ResourceUsage>,
}

/// A key of one scope in the table.
#[derive(Debug, Clone)]
enum Key {
    Host,
    Peer(PeerId),
    Connection(ConnectionId),
    Protocol(String),
}

impl State {
    fn usage(&mut self, key: &Key) -> &mut ResourceUsage {
        match key {
            Key::Host => &mut self.host,
            Key::Peer(p) => self.peers.entry(*p).or_default(),
            Key::Connection(c) => self.conns.entry(*c).or_default(),
            Key::Protocol(p) => self.protocols.entry(p.clone()).or_default(),
        }
    }

    fn peek(&self, key: &Key) -> ResourceUsage {
        match key {
            Key::Host => self.host,
            Key::Peer(p) => self.peers.get(p).copied().unwrap_or_default(),
            Key::Connection(c) => self.conns.get(c).copied().unwrap_or_default(),
            Key::Protocol(p) => self.protocols.get(p).copied().unwrap_or_default(),
        }
    }

    fn release(&mut self, key: &Key, charge: &Charge) {
        let usage = self.usage(key);
        usage.sub(charge);
        if usage.is_empty() {
            match key {
                Key::Host => {}
                Key::Peer(p) => {
                    self.peers.remove(p);
                }
                Key::Connection(c) => {
                    self.conns.remove(c);
                }
                Key::Protocol(p) => {
                    self.protocols.remove(p);
                }
            }
        }
    }
}

/// The resource manager of one host. Cheap to clone (the clones share one table).
#[derive(Debug, Clone)]
pub(crate) struct ResourceManager {
    limits: Arc<ResourceLimits>,
    state: Arc<Mutex<State>>,
}

impl ResourceManager {
    pub(crate) fn new(limits: ResourceLimits) -> Self {
        ResourceManager {
            limits: Arc::new(limits),
            state: Arc::default(),
        }
    }

    fn limits_of(&self, key: &Key) -> (ScopeLimits, ResourceScope) {
        match key {
            Key::Host => (self.limits.host, ResourceScope::Host),
            Key::Peer(_) => (self.limits.peer, ResourceScope::Peer),
            Key::Connection(_) => (self.limits.connection, ResourceScope::Connection),
            Key::Protocol(p) => (
                *self.limits.protocol_limits(p),
                ResourceScope::Protocol(p.clone()),
            ),
        }
    }

    /// Charges every scope of `keys`, or none if one has no room.
    fn reserve(
        &self,
        keys: Vec<Key>,
        charge: Charge,
    ) -> Result<Reservation, ResourceLimitExceeded> {
        let mut state = self.state.lock().expect("lock");
        for key in &keys {
            let (limits, scope) = self.limits_of(key);
            if let Some((kind, limit)) = state.peek(key).check(&limits, &charge) {
                return Err(ResourceLimitExceeded::new(scope, kind, limit));
            }
        }
        for key in &keys {
            state.usage(key).add(&charge);
        }
        Ok(Reservation {
            state: self.state.clone(),
            keys,
            charge,
        })
    }

    /// Reserves an established connection's memory in its own, its peer's and the host's
    /// scope.
    pub(crate) fn reserve_connection(
        &self,
        peer: PeerId,
        conn: ConnectionId,
    ) -> Result<Reservation, ResourceLimitExceeded> {
        let charge = Charge {
            stream: None,
            memory: self.limits.memory_per_connection,
        };
        self.reserve(
            vec![Key::Connection(conn), Key::Peer(peer), Key::Host],
            charge,
        )
    }

    /// Reserves a new stream (its count and memory) in its connection's, its peer's and the
    /// host's scope; [`StreamReservation::set_protocol`] adds the protocol's.
    pub(crate) fn reserve_stream(
        &self,
        peer: PeerId,
        conn: ConnectionId,
        direction: Direction,
    ) -> Result<StreamReservation, ResourceLimitExceeded> {
        let charge = Charge {
            stream: Some(direction),
            memory: self.limits.memory_per_stream,
        };
        let base = self.reserve(
            vec![Key::Connection(conn), Key::Peer(peer), Key::Host],
            charge,
        )?;
        Ok(StreamReservation {
            manager: self.clone(),
            base,
            protocol: None,
        })
    }

    /// What the host scope holds now.
    pub(crate) fn host_usage(&self) -> ResourceUsage {
        self.state.lock().expect("lock").host
    }

    /// What `peer`'s scope holds now.
    pub(crate) fn peer_usage(&self, peer: &PeerId) -> ResourceUsage {
        self.state.lock().expect("lock").peek(&Key::Peer(*peer))
    }

    /// What `protocol`'s scope holds now.
    pub(crate) fn protocol_usage(&self, protocol: &str) -> ResourceUsage {
        self.state
            .lock()
            .expect("lock")
            .peek(&Key::Protocol(protocol.to_string()))
    }
}

/// A reservation in some scopes; dropping it releases exactly what it charged.
#[derive(Debug)]
pub(crate) struct Reservation {
    state: Arc<Mutex<State>>,
    keys: Vec<Key>,
    charge: Charge,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.state.lock().expect("lock");
        for key in &self.keys {
            state.release(key, &self.charge);
        }
    }
}

/// A stream's reservation: in its connection, peer and host from the start, in its
/// protocol once agreed. Dropping it releases all of it.
#[derive(Debug)]
pub(crate) struct StreamReservation {
    manager: ResourceManager,
    base: Reservation,
    protocol: Option<Reservation>,
}

impl StreamReservation {
    /// Charges the stream to `protocol`'s scope as well (once: a second call does nothing).
    pub(crate) fn set_protocol(&mut self, protocol: &str) -> Result<(), ResourceLimitExceeded> {
        if self.protocol.is_none() {
            let charge = self.base.charge;
            self.protocol = Some(
                self.manager
                    .reserve(vec![Key::Protocol(protocol.to_string())], charge)?,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ResourceLimits {
        let mut limits = ResourceLimits {
            host: ScopeLimits::new(4, 4, 6, 10_000),
            peer: ScopeLimits::new(2, 3, 4, 10_000),
            connection: ScopeLimits::unlimited(),
            protocol: ScopeLimits::new(3, 3, 3, usize::MAX),
            memory_per_connection: 1_000,
            memory_per_stream: 100,
            ..ResourceLimits::default()
        };
        limits
            .protocols
            .insert("/tight".into(), ScopeLimits::new(1, 1, 1, usize::MAX));
        limits
    }

    #[test]
    fn peer_and_protocol_budgets_refuse_and_releases_are_exact() {
        let manager = ResourceManager::new(small());
        let peer = PeerId::random();
        let conn = ConnectionId::new(1);
        let c = manager.reserve_connection(peer, conn).unwrap();
        let a = manager
            .reserve_stream(peer, conn, Direction::Inbound)
            .unwrap();
        let b = manager
            .reserve_stream(peer, conn, Direction::Inbound)
            .unwrap();
        let refused = manager
            .reserve_stream(peer, conn, Direction::Inbound)
            .unwrap_err();
        assert_eq!(
            refused,
            ResourceLimitExceeded::new(ResourceScope::Peer, ResourceKind::InboundStreams, 2)
        );
        assert_eq!(manager.peer_usage(&peer).memory, 1_200);
        drop(a);
        let mut d = manager
            .reserve_stream(peer, conn, Direction::Inbound)
            .unwrap();
        d.set_protocol("/tight").unwrap();
        let mut e = manager
            .reserve_stream(peer, conn, Direction::Outbound)
            .unwrap();
        assert_eq!(
            e.set_protocol("/tight").unwrap_err().scope,
            ResourceScope::Protocol("/tight".into())
        );
        e.set_protocol("/other").unwrap();
        assert_eq!(manager.protocol_usage("/other").streams_outbound, 1);
        drop((b, d, e));
        assert_eq!(
            manager.host_usage(),
            ResourceUsage {
                memory: 1_000,
                ..Default::default()
            }
        );
        drop(c);
        assert_eq!(manager.host_usage(), ResourceUsage::default());
        let state = manager.state.lock().unwrap();
        assert!(state.peers.is_empty() && state.conns.is_empty() && state.protocols.is_empty());
    }

    #[test]
    fn memory_budget_refuses_what_does_not_fit() {
        let mut limits = small();
        limits.host.memory = 1_150;
        let manager = ResourceManager::new(limits);
        let peer = PeerId::random();
        let conn = ConnectionId::new(7);
        let _c = manager.reserve_connection(peer, conn).unwrap();
        let _s = manager
            .reserve_stream(peer, conn, Direction::Outbound)
            .unwrap();
        let refused = manager
            .reserve_stream(peer, conn, Direction::Outbound)
            .unwrap_err();
        assert_eq!(refused.scope, ResourceScope::Host);
        assert_eq!(refused.resource, ResourceKind::Memory);
        assert_eq!(
            manager
                .reserve_connection(peer, ConnectionId::new(8))
                .unwrap_err()
                .resource,
            ResourceKind::Memory
        );
        // A refusal charges nothing.
        assert_eq!(manager.host_usage().memory, 1_100);
    }
}
