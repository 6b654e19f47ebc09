//! Every limit and interval of mDNS discovery, each with its default and the reason for it.

use std::time::Duration;

/// The configuration of the mDNS core and its driver.
///
/// The defaults follow rust-libp2p where it has a value (TTL 6 min, queries every 5 min) and
/// RFC 6762 elsewhere, so that our peers and theirs refresh each other at the same pace.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The TTL of the records we announce: how long others keep our addresses without hearing
    /// from us again. Default 6 minutes, rust-libp2p's value; it must stay above
    /// [`query_interval`](Self::query_interval), or peers forget us between two queries.
    pub ttl: Duration,
    /// How often we ask the link for peers once the start-up burst is over. Default 5 minutes,
    /// rust-libp2p's default since its 0.29 (it was 20 s before; the longer interval saves
    /// bandwidth on busy links, and peers that arrive announce themselves by querying).
    pub query_interval: Duration,
    /// The delay between the first and second query; each later delay doubles until it reaches
    /// [`query_interval`](Self::query_interval). Default 500 ms (rust-libp2p's start-up probe):
    /// a lost first packet costs half a second, not five minutes.
    pub initial_query_interval: Duration,
    /// The least time between two multicast answers on one interface; a query inside that
    /// window is answered when it ends (one answer covers all the queries in between).
    /// Default 1 s: RFC 6762 §6 forbids multicasting a record more often, and it bounds what a
    /// query flood can make us send to one packet per second per interface.
    pub min_answer_interval: Duration,
    /// The largest datagram we accept, and the largest we send (answers with many addresses
    /// are split into several packets under it). Default 9000 bytes, RFC 6762 §17's maximum
    /// mDNS message; the receive buffer is this size, allocated once per socket.
    pub max_packet_size: usize,
    /// The most questions and records (all sections together) a received packet may announce
    /// in its header; more and it is refused before it is parsed. Default 256: a 9000-byte
    /// packet holds at most a few hundred minimal records, and no libp2p answer needs more
    /// than a few dozen.
    pub max_records: usize,
    /// The most peers kept in the table of discovered peers. A response about a new peer when
    /// the table is full is ignored (known peers are still refreshed) until one expires.
    /// Default 256: far more than a local network has libp2p peers, and it caps what forged
    /// responses can make us hold.
    pub max_peers: usize,
    /// The most addresses kept per discovered peer; further ones are ignored until one
    /// expires. Default 32: a host has a handful of listen addresses per interface.
    pub max_addrs_per_peer: usize,
    /// The longest TTL we honour in a received record; longer ones are cut to it. Default 75
    /// minutes (4500 s), RFC 6762 §10's TTL for records that are not host names and
    /// python-zeroconf's: a record claiming to live for years still leaves the table.
    pub max_ttl: Duration,
    /// The most packets waiting to be sent; a packet queued when it is full is dropped. The
    /// driver sends after every step, so this is only reached when sockets stall. Default 64.
    pub max_queued_transmits: usize,
    /// The most events (discovered, expired) waiting to be taken; when full, the oldest is
    /// dropped. Default 1024. The driver forwards events to its channel after every step.
    pub max_queued_events: usize,
    /// Whether the driver opens IPv6 sockets (ff02::fb) as well as IPv4 ones. Default `true`:
    /// the libp2p mDNS spec covers both, and a link may have IPv6 only.
    pub enable_ipv6: bool,
    /// How often the driver lists the interfaces again to open sockets on new ones and close
    /// those of interfaces that went away. Default 30 s: listing interfaces is one cheap
    /// system call, and a new interface is queried on as soon as it is seen.
    pub interface_scan_interval: Duration,
    /// The capacity of the driver's event channel. An event that finds it full is dropped with
    /// a warning, so that a consumer that stops reading cannot stop us from answering.
    /// Default 256.
    pub event_channel_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ttl: Duration::from_secs(6 * 60),
            query_interval: Duration::from_secs(5 * 60),
            initial_query_interval: Duration::from_millis(500),
            min_answer_interval: Duration::from_secs(1),
            max_packet_size: 9000,
            max_records: 256,
            max_peers: 256,
            max_addrs_per_peer: 32,
            max_ttl: Duration::from_secs(4500),
            max_queued_transmits: 64,
            max_queued_events: 1024,
            enable_ipv6: true,
            interface_scan_interval: Duration::from_secs(30),
            event_channel_capacity: 256,
        }
    }
}

impl Config {
    /// Sets [`ttl`](Self::ttl).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets [`query_interval`](Self::query_interval).
    pub fn with_query_interval(mut self, interval: Duration) -> Self {
        self.query_interval = interval;
        self
    }

    /// Sets [`initial_query_interval`](Self::initial_query_interval).
    pub fn with_initial_query_interval(mut self, interval: Duration) -> Self {
        self.initial_query_interval = interval;
        self
    }

    /// Sets [`enable_ipv6`](Self::enable_ipv6).
    pub fn with_ipv6(mut self, enable: bool) -> Self {
        self.enable_ipv6 = enable;
        self
    }

    /// Sets [`max_peers`](Self::max_peers).
    pub fn with_max_peers(mut self, max: usize) -> Self {
        self.max_peers = max;
        self
    }

    /// Sets [`max_addrs_per_peer`](Self::max_addrs_per_peer).
    pub fn with_max_addrs_per_peer(mut self, max: usize) -> Self {
        self.max_addrs_per_peer = max;
        self
    }

    /// Sets [`interface_scan_interval`](Self::interface_scan_interval).
    pub fn with_interface_scan_interval(mut self, interval: Duration) -> Self {
        self.interface_scan_interval = interval;
        self
    }
}
