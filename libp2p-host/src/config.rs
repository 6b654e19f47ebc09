//! The host's settings: listening addresses, limits and timeouts, and the crate's fixed
//! constants in one place. [`Config`] derives serde so that it can come from a TOML or JSON
//! file (durations as seconds, `20` or `0.5`).

use std::time::Duration;

use libp2p_core::duration::secs;
use libp2p_core::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::connmgr::ConnectionManagerConfig;
use crate::resource::ResourceLimits;

// ---- The fixed constants --------------------------------------------------------------------
// What a deployment tunes is a field of `Config`; these are bounds of the protocols' own code
// that no deployment has a reason to move, each with the reason for its value. (Wire facts,
// the protocol names and ping's 32-byte payload, stay with their protocol's module.)

/// Largest single identify message accepted. 64 KiB: a signed peer record with many
/// addresses fits well within it (go-libp2p sends at most a few KiB).
pub const MAX_IDENTIFY_MESSAGE_LEN: usize = 64 * KIB;
/// Most messages merged into one identify answer (go-libp2p may split a large record).
pub const MAX_IDENTIFY_MESSAGES: usize = 10;
/// Inbound ping streams served at once per peer; more are reset. One is the rule (pings reuse
/// a stream); a few allow for a peer's reconnects.
pub const MAX_INBOUND_PINGS_PER_PEER: usize = 4;
/// Most sources the per-second inbound rate table follows at once. It holds only sources that
/// opened a connection in the last [`RATE_WINDOW`], so it stays far below this unless
/// connections come from tens of thousands of addresses per second; past it, new sources go
/// uncounted by the rate limit (the host-wide `max_pending_incoming` still bounds them) rather
/// than refused, so a flood from many addresses cannot lock everyone out through this table.
pub(crate) const MAX_RATE_SOURCES: usize = 65_536;
/// The window of the per-source rate limit ([`Config::max_incoming_per_ip_per_second`]).
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(1);
/// The buffer `/perf/1.0.0` sends and receives through, allocated once per transfer (no
/// allocation per chunk).
pub(crate) const PERF_CHUNK: usize = 64 * KIB;
/// Units of the byte budgets.
pub(crate) const KIB: usize = 1024;
/// Units of the byte budgets.
pub(crate) const MIB: usize = 1024 * KIB;

/// Settings of a [`Host`](crate::Host). Every field has a default (see [`Default`]), so a
/// config file need only name what it changes; in code, start from `Config::default()`
/// and set fields. Whichever builder method builds the host, all of it applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to listen on when the host starts. Default none (a dial-only host).
    pub listen_addrs: Vec<Multiaddr>,
    /// Most connections established at once, inbound and outbound together; an inbound
    /// connection beyond it is closed at once, a dial beyond it fails. Default 256: plenty for
    /// an application node, and a bound on what a flood of inbound connections costs.
    pub max_connections: usize,
    /// Most connections to one peer. Default 8: one is the rule, a few happen when both sides
    /// dial at once or a peer reconnects before the old connection is noticed dead.
    pub max_connections_per_peer: usize,
    /// Most inbound connections still in their upgrade (security and muxer handshakes) at
    /// once; further ones are closed at once. Default 128: a silent peer holds its slot for
    /// the handshake timeout at most, and well-behaved handshakes take milliseconds.
    pub max_pending_incoming: usize,
    /// Most inbound connections from one source IP in their upgrade at once; further ones
    /// from that IP are closed at once (an [`Event::InboundConnectionRefused`] and a debug
    /// line), while other sources go on. Default 16: a host behind one address opens a few
    /// connections at once, not dozens; without it one source of silent sockets takes all of
    /// `max_pending_incoming` (and the descriptors) for the handshake timeout.
    ///
    /// [`Event::InboundConnectionRefused`]: crate::Event::InboundConnectionRefused
    pub max_pending_incoming_per_ip: usize,
    /// Most inbound connections one source IP may open per second (a fixed one-second window
    /// per source, counting the connections admitted); further ones in the same second are
    /// closed at once, reported like the limit above. Default 32: reconnects and a few
    /// parallel dials fit; a source opening connections as fast as it can is slowed to a
    /// rate whose handshakes cost little. Sources without an IP (memory transports) have no
    /// such limits.
    pub max_incoming_per_ip_per_second: u32,
    /// Most inbound streams open at once on one connection (being negotiated, queued for an
    /// `accept` or held by the application); further ones are reset. Default 256, the muxers'
    /// own default stream limit.
    pub max_inbound_streams_per_connection: usize,
    /// Inbound streams waiting in each protocol's `accept` queue; a stream that finds the
    /// queue full is reset and reported. Default 256, one connection's stream limit: a burst
    /// on one connection always fits, and a stalled consumer costs at most this many.
    /// (Handlers given to `set_stream_handler` have no queue.)
    pub accept_queue: usize,
    /// Bound on a connection's whole upgrade (security and muxer), for every transport of
    /// the host (the default stack's pipeline gets it; a stack given to `transport` keeps its
    /// own bound too, and the shorter one wins). Default 20 s: an RSA handshake across the
    /// world fits; a silent peer is dropped soon.
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    /// Bound on agreeing the protocol of one stream, and on each identify and ping exchange.
    /// Default 10 s.
    #[serde(with = "secs")]
    pub negotiation_timeout: Duration,
    /// How long an address learned from identify (or given to `connect`) stays in the
    /// peerstore. Default 1 h.
    #[serde(with = "secs")]
    pub address_ttl: Duration,
    /// Most peers the peerstore keeps a record of (addresses, key, protocols, agent); past it
    /// the least recently written records go, an eighth at a time. Default
    /// [`DEFAULT_MAX_PEERS`](libp2p_core::peerstore::DEFAULT_MAX_PEERS) (4,096).
    pub max_peerstore_peers: usize,
    /// Events buffered for each subscriber before the slowest one misses some (it is told
    /// how many). Default 1,024.
    pub event_buffer: usize,
    /// Serve and run identify (`/ipfs/id/1.0.0` and push). Default on: go-libp2p waits for it
    /// before opening streams, py-libp2p runs it on every connection.
    pub identify: bool,
    /// Serve ping (`/ipfs/ping/1.0.0`), and check connected peers with it (below). Default on.
    pub ping: bool,
    /// Time between liveness pings of each connected peer; a peer whose ping fails or takes
    /// longer than `ping_timeout` is disconnected (a peer that refuses the ping protocol is
    /// not checked). Zero turns the checks off. Default 15 s, rust-libp2p's ping interval:
    /// a peer that vanished without closing (power loss, a NAT that forgot the mapping, a
    /// frozen process) is found within `ping_interval + ping_timeout` instead of the hours
    /// TCP takes, and an idle connection costs one 32-byte round trip per interval.
    #[serde(with = "secs")]
    pub ping_interval: Duration,
    /// Bound on one liveness ping, its stream's negotiation included. Default 20 s
    /// (rust-libp2p's): a loaded peer across the world answers well within it.
    #[serde(with = "secs")]
    pub ping_timeout: Duration,
    /// The protocol version sent in identify. Default `/ipfs/0.1.0`.
    pub protocol_version: String,
    /// The agent string sent in identify. Default `libp2p-modular/<version>`.
    pub agent_version: String,
    /// Limits of [`Host::request`](crate::Host::request) and
    /// [`Host::serve_requests`](crate::Host::serve_requests).
    pub request_response: crate::request_response::RequestResponseConfig,
    /// The connection manager: watermarks and trimming, grace and silence periods, the idle
    /// timeout, dials in progress. See [`ConnectionManagerConfig`] for each default.
    pub connection_manager: ConnectionManagerConfig,
    /// The resource manager's budgets of streams and memory per connection, peer, protocol
    /// and host. See [`ResourceLimits`] for each default and what is charged.
    pub resources: ResourceLimits,
    /// How long a write to a connection's socket may make no progress before the connection
    /// ends (the muxers' `write_timeout`, given to yamux and mplex on the default stacks of
    /// [`HostBuilder::build`](crate::HostBuilder::build); a stack given to `transport` keeps
    /// its own). Default 60 s, the muxers' own: the kernel's send buffer takes megabytes, so
    /// no byte accepted for a minute means a remote that stopped reading.
    #[serde(with = "secs")]
    pub muxer_write_timeout: Duration,
    /// How a peer with several addresses is dialed: the ranking delays, the deadline of one
    /// address, and the back-off of addresses that failed.
    pub dial: DialConfig,
}

/// Settings of the dialer: when each of a peer's addresses is tried (see
/// [`rank`](crate::dial::rank)), how long one may take, and how long a failed one is left
/// alone.
///
/// Addresses fall into groups (loopback, private, public, others). The groups start at once,
/// side by side; within a group QUIC addresses go first, the first at once and the next each
/// one group delay later, and TCP addresses start one group delay after the last QUIC one. A
/// failed attempt with nothing else in flight brings the next one forward to now; the first
/// connection made wins and the attempts still running are dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DialConfig {
    /// The step between attempts on loopback addresses. Default 0: a loopback dial connects
    /// or is refused within a millisecond, so nothing is gained by waiting (a QUIC and a TCP
    /// loopback address of one peer are then raced, QUIC started first).
    #[serde(with = "secs")]
    pub loopback_delay: Duration,
    /// The step between attempts on private addresses (RFC 1918, CGNAT, link-local, IPv6
    /// unique local). Default 30 ms, go-libp2p's: about one round trip on a local network.
    #[serde(with = "secs")]
    pub private_delay: Duration,
    /// The step between attempts on public addresses and on those that are not IP addresses
    /// (names, memory). Default 250 ms, go-libp2p's, from Happy Eyeballs (RFC 8305): a rough
    /// round trip across the internet, after which a second attempt is worth its cost.
    #[serde(with = "secs")]
    pub public_delay: Duration,
    /// Bound on one address's attempt: connecting, the security and muxer handshakes. Default
    /// 20 s, the bound each address had before dials ran concurrently: an RSA handshake
    /// across the world fits, and a black-holed TCP connect (which the kernel retries for
    /// about two minutes) is given up well before.
    #[serde(with = "secs")]
    pub address_timeout: Duration,
    /// Most attempts in flight at once in one dial; later ones wait for a slot. Default 8,
    /// go-libp2p's per-peer limit: a peer announcing dozens of addresses costs at most this
    /// many sockets and handshakes at a time.
    pub max_parallel: usize,
    /// How long an address that failed is left out of dials to its peer, after its first
    /// failure; each further failure in a row doubles it. Default 5 s (go-libp2p's base): a
    /// peer restarting is back soon, an application dialing in a loop does not hammer it.
    /// Zero turns back-off off. An explicit [`Host::dial`](crate::Host::dial) of an address
    /// always tries it (and records the outcome).
    #[serde(with = "secs")]
    pub backoff: Duration,
    /// The longest back-off. Default 5 min (go-libp2p's): a peer gone for good is tried a
    /// few times an hour.
    #[serde(with = "secs")]
    pub backoff_max: Duration,
    /// Most addresses remembered as backed off; when full, expired entries go first, then
    /// the one closest to expiring. Default 1,024: a node's working set of unreachable
    /// addresses, at about 200 bytes each.
    pub backoff_entries: usize,
}

impl Default for DialConfig {
    fn default() -> Self {
        DialConfig {
            loopback_delay: Duration::ZERO,
            private_delay: Duration::from_millis(30),
            public_delay: Duration::from_millis(250),
            address_timeout: Duration::from_secs(20),
            max_parallel: 8,
            backoff: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            backoff_entries: 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_addrs: Vec::new(),
            max_connections: 256,
            max_connections_per_peer: 8,
            max_pending_incoming: 128,
            max_pending_incoming_per_ip: 16,
            max_incoming_per_ip_per_second: 32,
            max_inbound_streams_per_connection: 256,
            accept_queue: 256,
            handshake_timeout: Duration::from_secs(20),
            negotiation_timeout: Duration::from_secs(10),
            address_ttl: Duration::from_secs(3_600),
            max_peerstore_peers: libp2p_core::peerstore::DEFAULT_MAX_PEERS,
            event_buffer: 1024,
            identify: true,
            ping: true,
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(20),
            protocol_version: "/ipfs/0.1.0".into(),
            agent_version: concat!("libp2p-modular/", env!("CARGO_PKG_VERSION")).into(),
            request_response: Default::default(),
            connection_manager: ConnectionManagerConfig::default(),
            resources: ResourceLimits::default(),
            muxer_write_timeout: Duration::from_secs(60),
            dial: DialConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_fills_defaults() {
        let config = Config {
            listen_addrs: vec!["/ip4/0.0.0.0/tcp/4001".parse().unwrap()],
            max_connections: 10,
            negotiation_timeout: Duration::from_millis(1500),
            ..Config::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let partial: Config =
            serde_json::from_str(r#"{"max_connections": 3, "handshake_timeout": 0.25}"#).unwrap();
        assert_eq!(partial.max_connections, 3);
        assert_eq!(partial.handshake_timeout, Duration::from_millis(250));
        assert_eq!(partial.negotiation_timeout, Duration::from_secs(10));
        assert!(serde_json::from_str::<Config>(r#"{"max_conections": 3}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"handshake_timeout": -1}"#).is_err());
        let dial: Config =
            serde_json::from_str(r#"{"dial": {"public_delay": 0.1, "max_parallel": 2}}"#).unwrap();
        assert_eq!(dial.dial.public_delay, Duration::from_millis(100));
        assert_eq!(dial.dial.max_parallel, 2);
        assert_eq!(dial.dial.private_delay, Duration::from_millis(30));
    }

    #[test]
    fn limits_round_trip_through_json() {
        let mut config = Config::default();
        config.connection_manager.low_watermark = 3;
        config.connection_manager.idle_timeout = Some(Duration::from_millis(500));
        config.resources.peer.streams_inbound = 7;
        config
            .resources
            .protocols
            .insert("/echo/1.0.0".into(), crate::ScopeLimits::new(1, 2, 3, 4096));
        config.muxer_write_timeout = Duration::from_secs(5);
        let json = serde_json::to_string(&config).unwrap();
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let partial: Config = serde_json::from_str(
            r#"{"connection_manager": {"high_watermark": 9, "idle_timeout": 2.5},
                "resources": {"memory_per_stream": 1024}}"#,
        )
        .unwrap();
        assert_eq!(partial.connection_manager.high_watermark, 9);
        assert_eq!(
            partial.connection_manager.idle_timeout,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(partial.connection_manager.low_watermark, 160);
        assert_eq!(partial.resources.memory_per_stream, 1024);
        assert_eq!(partial.resources.peer, ResourceLimits::default().peer);
        assert_eq!(
            serde_json::from_str::<Config>(r#"{"connection_manager": {"idle_timeout": null}}"#)
                .unwrap()
                .connection_manager
                .idle_timeout,
            None
        );
        assert!(serde_json::from_str::<Config>(r#"{"resources": {"peers": {}}}"#).is_err());
    }
}
