//! Every limit and interval of the protocol, each with its default and the reason for it.

use std::time::Duration;

/// Whether we serve the DHT or only use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// We answer requests and announce `/ipfs/kad/1.0.0` through identify, so that others add
    /// us to their routing tables. For nodes others can dial.
    Server,
    /// We query the DHT but answer no requests and do not announce the protocol, so that a
    /// node behind a NAT does not pollute others' routing tables.
    Client,
}

/// The configuration of a [`Kad`](crate::Kad) node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Client or server mode. Default [`Mode::Server`]: until AutoNAT exists nothing tells a
    /// node whether it is reachable, and the hosts this crate is built for (tests, examples,
    /// the `peer` program) listen on addresses others dial. Set [`Mode::Client`] for a node
    /// behind a NAT.
    pub mode: Mode,
    /// `k`: the size of each k-bucket, the number of closest peers a lookup finishes with, the
    /// number of peers a record or provider is stored on. Default 20, the spec's value (also
    /// go's and rust-libp2p's). Values below 1 are treated as 1.
    pub replication_factor: usize,
    /// `alpha`: how many requests one lookup keeps in flight. Default 3, rust-libp2p's value and
    /// the Kademlia paper's (the spec suggests 10, go-libp2p's; 3 keeps a lookup's load on the
    /// network low, at the cost of a few more round trips). Values below 1 are treated as 1.
    pub parallelism: usize,
    /// How long one request may wait for its response before the peer counts as failed for
    /// the lookup. Default 10 s, go-libp2p's read timeout for DHT messages: long enough for a
    /// slow peer on another continent, short enough that a dead one holds up little.
    pub request_timeout: Duration,
    /// How long a whole query (lookup and, for puts, the stores that follow) may run. Default
    /// 60 s, rust-libp2p's value. A query that runs out of time finishes with a timeout error
    /// that carries what it found.
    pub query_timeout: Duration,
    /// The largest message we read or write, in bytes, checked on the length prefix before
    /// anything is allocated. Default 16 KiB, rust-libp2p's limit (go-libp2p reads up to 4 MiB):
    /// twenty peers with a handful of addresses each fit easily, and a rust-libp2p peer drops
    /// anything larger we might send.
    pub max_message_size: usize,
    /// Peer entries kept from one received list (closer peers, providers); the rest is
    /// dropped. Default 64: a well-behaved peer sends `k` = 20 closer peers; the margin lets
    /// provider lists through, and the cap bounds what one response adds to a lookup.
    pub max_peers_per_message: usize,
    /// Addresses kept per peer, from messages and in the routing table. Default 16: nodes
    /// rarely listen on more (IPv4 and IPv6, TCP and QUIC, a few relays), and the cap bounds
    /// the table's memory per entry.
    pub max_addrs_per_peer: usize,
    /// Queries running at once (lookups started by the application, republishing and
    /// bootstrap together), counting finished ones whose result has not been taken with
    /// [`Kad::poll_event`](crate::Kad::poll_event) yet; starting one more fails with
    /// [`StartError::TooManyQueries`](crate::StartError::TooManyQueries). Default 256, each
    /// costing at most [`max_lookup_peers`](Config::max_lookup_peers) entries and
    /// `max(alpha, k)` requests in flight.
    pub max_queries: usize,
    /// The candidates one lookup remembers; past it, the farthest not yet contacted are
    /// forgotten. Default 200: ten times `k`, far more than a lookup among the `k` closest
    /// ever reaches even when many of them fail.
    pub max_lookup_peers: usize,
    /// Events waiting for [`Kad::poll_event`](crate::Kad::poll_event); when full, new
    /// routing-table events are dropped (query results never are: there are at most
    /// [`max_queries`](Config::max_queries) of them). Default 1,024.
    pub max_queued_events: usize,
    /// How long a liveness check of a bucket's least recently seen peer may go unanswered
    /// before it counts as failed (the peer is evicted and the waiting one takes its place).
    /// Default 30 s: above a ping's own timeout, so that the host's answer normally comes first.
    pub liveness_timeout: Duration,
    /// How long an entry heard from (it answered a request, identified, or passed a liveness
    /// check) counts as alive without a check. A newcomer to a full bucket whose least
    /// recently seen entry is connected, or was heard from within this, is dropped at once;
    /// only an older entry is pinged (the Kademlia paper's rule against pinging peers seen
    /// recently). Default 5 min, half the [`bootstrap_interval`](Config::bootstrap_interval):
    /// each refresh re-checks the entries nothing was heard from since the last one, while a
    /// busy server is spared a dial for nearly every peer that contacts it. Zero checks every
    /// time a disconnected entry stands in a newcomer's way.
    pub recently_seen: Duration,
    /// The interval between automatic bootstraps (a lookup of our own id, then of a random key
    /// in each non-empty bucket), or `None` for none. Default 10 min, the spec's value. The
    /// first automatic bootstrap runs once the routing table has a peer.
    pub bootstrap_interval: Option<Duration>,
    /// How long a record we store for others lives, unless republished. Default 48 h,
    /// rust-libp2p's value and the spec's provider expiry.
    pub record_ttl: Duration,
    /// How often we republish the records we put ourselves. Default 22 h, rust-libp2p's value:
    /// well within [`record_ttl`](Config::record_ttl) so that a record does not lapse on
    /// the peers holding it.
    pub record_republish_interval: Duration,
    /// How long a provider record we store for others lives, unless republished. Default 48 h,
    /// the spec's (and IPFS's) expiration interval.
    pub provider_ttl: Duration,
    /// How often we republish the keys we provide. Default 22 h, the spec's (and IPFS's)
    /// republish interval.
    pub provider_republish_interval: Duration,
    /// How often the store is swept for expired entries and entries due for republishing.
    /// Default 60 s: expiry and republishing are measured in hours, a minute's lag is nothing.
    pub maintenance_interval: Duration,
    /// Republishing queries started per maintenance sweep, so that thousands of records due at
    /// once do not start thousands of queries; the rest wait for the next sweep. Default 16.
    pub max_republish_per_sweep: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Server,
            replication_factor: 20,
            parallelism: 3,
            request_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(60),
            max_message_size: 16 * 1024,
            max_peers_per_message: 64,
            max_addrs_per_peer: 16,
            max_queries: 256,
            max_lookup_peers: 200,
            max_queued_events: 1024,
            liveness_timeout: Duration::from_secs(30),
            recently_seen: Duration::from_secs(5 * 60),
            bootstrap_interval: Some(Duration::from_secs(10 * 60)),
            record_ttl: Duration::from_secs(48 * 60 * 60),
            record_republish_interval: Duration::from_secs(22 * 60 * 60),
            provider_ttl: Duration::from_secs(48 * 60 * 60),
            provider_republish_interval: Duration::from_secs(22 * 60 * 60),
            maintenance_interval: Duration::from_secs(60),
            max_republish_per_sweep: 16,
        }
    }
}

impl Config {
    /// Sets [`mode`](Config::mode).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`replication_factor`](Config::replication_factor).
    pub fn with_replication_factor(mut self, k: usize) -> Self {
        self.replication_factor = k;
        self
    }

    /// Sets [`parallelism`](Config::parallelism).
    pub fn with_parallelism(mut self, alpha: usize) -> Self {
        self.parallelism = alpha;
        self
    }

    /// Sets [`bootstrap_interval`](Config::bootstrap_interval).
    pub fn with_bootstrap_interval(mut self, interval: Option<Duration>) -> Self {
        self.bootstrap_interval = interval;
        self
    }

    pub(crate) fn k(&self) -> usize {
        self.replication_factor.max(1)
    }

    pub(crate) fn alpha(&self) -> usize {
        self.parallelism.max(1)
    }

    /// The bounds for turning received messages into typed requests and responses, from
    /// [`max_peers_per_message`](Config::max_peers_per_message) and
    /// [`max_addrs_per_peer`](Config::max_addrs_per_peer).
    pub fn peer_limits(&self) -> crate::proto::PeerLimits {
        crate::proto::PeerLimits {
            max_peers: self.max_peers_per_message,
            max_addrs: self.max_addrs_per_peer,
        }
    }
}
