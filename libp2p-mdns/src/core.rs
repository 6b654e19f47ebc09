//! The mDNS protocol as a plain state machine: no sockets, no async, no clock.
//!
//! The driver feeds it received datagrams ([`Mdns::handle_packet`]) and the time
//! ([`Mdns::handle_timeout`] when [`Mdns::poll_timeout`] is due), and takes out packets to send
//! ([`Mdns::poll_transmit`]) and discovery events ([`Mdns::poll_event`]). A *link* is one
//! socket: one interface and one address family, named by the driver with a [`LinkId`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};
use libp2p_core::{Multiaddr, PeerId, Protocol};

use crate::error::{DecodeError, EncodeError};
use crate::proto::{self, Announcement, Limits, Names, Packet};
use crate::Config;

/// A link (interface and address family) as the driver names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u32);

/// A packet to multicast on a link (to `224.0.0.251:5353` or `[ff02::fb]:5353`, by its family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The link to send on.
    pub link: LinkId,
    /// The DNS message.
    pub packet: Vec<u8>,
}

/// What discovery has learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// New addresses of a peer (only those not known before).
    Discovered {
        /// The peer.
        peer: PeerId,
        /// The new addresses, without `/p2p/`.
        addrs: Vec<Multiaddr>,
    },
    /// Addresses whose TTL ran out, or that the peer withdrew (TTL 0).
    Expired {
        /// The peer.
        peer: PeerId,
        /// The addresses, without `/p2p/`.
        addrs: Vec<Multiaddr>,
    },
}

/// Counters of what the core refused or dropped, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams refused as a whole ([`DecodeError`]).
    pub packets_refused: u64,
    /// `dnsaddr` entries skipped inside otherwise good responses.
    pub entries_rejected: u64,
    /// New peers ignored because the table was full.
    pub peers_ignored: u64,
    /// New addresses ignored because their peer had the most allowed.
    pub addrs_ignored: u64,
    /// Packets dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Answers sent.
    pub answers_sent: u64,
    /// Queries sent (one per link per round).
    pub queries_sent: u64,
}

#[derive(Debug)]
struct Link {
    ips: Vec<IpAddr>,
    last_answer: Option<Instant>,
    /// When the pending answer goes out (the rate limit may hold it back).
    answer_due: Option<Instant>,
    /// The pending answer includes our peer records.
    peers_due: bool,
    /// The pending answer includes the meta-query answer.
    meta_due: bool,
}

/// The mDNS state machine of one host.
#[derive(Debug)]
pub struct Mdns {
    config: Config,
    local: PeerId,
    peer_name: String,
    names: Names,
    query_packet: Vec<u8>,
    listen_addrs: Vec<Multiaddr>,
    links: HashMap<LinkId, Link>,
    next_query: Instant,
    query_step: Duration,
    /// Discovered peers: address → expiry.
    peers: HashMap<PeerId, HashMap<Multiaddr, Instant>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl Mdns {
    /// A new state machine for `local`, with a fresh random peer name. Each link gets a query
    /// when it is added; the next round is due `initial_query_interval` after `now`, and each
    /// later gap doubles up to `query_interval`.
    pub fn new(config: Config, local: PeerId, now: Instant) -> Result<Self, EncodeError> {
        Self::with_peer_name(config, local, proto::random_peer_name(), now)
    }

    /// Like [`new`](Self::new) with a given peer name (one DNS label), for tests.
    pub fn with_peer_name(
        config: Config,
        local: PeerId,
        peer_name: String,
        now: Instant,
    ) -> Result<Self, EncodeError> {
        let names = Names::new(&peer_name)?;
        let query_packet = proto::encode_query()?;
        let next_query = now + config_initial(&config);
        Ok(Mdns {
            query_step: (config.initial_query_interval * 2).min(config.query_interval),
            config,
            local,
            peer_name,
            names,
            query_packet,
            listen_addrs: Vec::new(),
            links: HashMap::new(),
            next_query,
            peers: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        })
    }

    /// Our random peer name.
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The addresses we announce (a `/p2p/` suffix is removed; loopback addresses are never
    /// announced; an unspecified IP such as `0.0.0.0` is announced as each link's own address
    /// of that family).
    pub fn set_listen_addrs(&mut self, addrs: Vec<Multiaddr>) {
        self.listen_addrs = addrs
            .into_iter()
            .map(|mut a| {
                if let Some(Protocol::P2p(_)) = a.iter().last() {
                    a.pop();
                }
                a
            })
            .filter(|a| !matches!(first_ip(a), Some(ip) if ip.is_loopback()))
            .collect();
        self.listen_addrs.dedup();
    }

    /// A new link with the IP addresses of its interface, of both families: they are the A and
    /// AAAA records of our answers on it, and replace unspecified IPs in our listen addresses.
    /// Give the IPv4 and the IPv6 link of one interface the same list, so that both answer
    /// alike. A query goes out on the link at once.
    pub fn add_link(&mut self, id: LinkId, ips: Vec<IpAddr>) {
        self.links.insert(
            id,
            Link {
                ips,
                last_answer: None,
                answer_due: None,
                peers_due: false,
                meta_due: false,
            },
        );
        let packet = self.query_packet.clone();
        self.stats.queries_sent += 1;
        self.push_transmit(id, packet);
    }

    /// Forgets a link (its interface went away). Discovered peers stay until they expire.
    pub fn remove_link(&mut self, id: LinkId) {
        self.links.remove(&id);
        self.transmits.retain(|t| t.link != id);
    }

    /// The links known.
    pub fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links.keys().copied()
    }

    /// The discovered peers and their addresses.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, Vec<Multiaddr>)> + '_ {
        self.peers
            .iter()
            .map(|(p, addrs)| (*p, addrs.keys().cloned().collect()))
    }

    /// The discovered addresses with the moment each expires (their records' TTL, capped by
    /// [`Config::max_ttl`], refreshed by every answer that carries them).
    pub fn peer_expiries(&self) -> impl Iterator<Item = (PeerId, Multiaddr, Instant)> + '_ {
        self.peers.iter().flat_map(|(peer, addrs)| {
            addrs
                .iter()
                .map(move |(addr, expiry)| (*peer, addr.clone(), *expiry))
        })
    }

    /// Takes in a datagram received on `link` from `from`. `len` is its size as received
    /// (larger than `bytes.len()` if the receive buffer cut it). A refused packet changes
    /// nothing but the counters.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        link: LinkId,
        from: SocketAddr,
        bytes: &[u8],
        len: usize,
    ) -> Result<(), DecodeError> {
        let limits = Limits {
            max_packet_size: self.config.max_packet_size,
            max_records: self.config.max_records,
        };
        let packet = match proto::decode(bytes, len, limits) {
            Ok(p) => p,
            Err(e) => {
                self.stats.packets_refused += 1;
                tracing::debug!(%from, error = %e, "mDNS packet refused");
                return Err(e);
            }
        };
        match packet {
            Packet::Query(q) => self.on_query(now, link, &q),
            Packet::Response(r) => {
                self.stats.entries_rejected += r.rejected_count as u64;
                for e in &r.rejected {
                    tracing::debug!(%from, error = %e, "mDNS entry skipped");
                }
                for peer in r.peers {
                    self.on_peer(now, peer);
                }
            }
        }
        Ok(())
    }

    fn on_query(&mut self, now: Instant, link: LinkId, q: &proto::Query) {
        let names = &self.names;
        let mut wants_peers = false;
        let mut wants_meta = false;
        for (name, ty) in &q.questions {
            let ty = *ty;
            let any = ty == RecordType::ANY;
            // Our PTR, our SRV/TXT (asked for by DNS-SD resolvers that ignore the additional
            // section), or our host's addresses: all answered with the full answer.
            let ours = (*name == names.service && (ty == RecordType::PTR || any))
                || (*name == names.instance
                    && (matches!(ty, RecordType::SRV | RecordType::TXT) || any))
                || (*name == names.host && (matches!(ty, RecordType::A | RecordType::AAAA) || any));
            wants_peers |= ours;
            wants_meta |= *name == names.meta && (ty == RecordType::PTR || any);
        }
        // Known-answer suppression: the asker already holds our PTR with at least half its TTL.
        let half_ttl = (self.config.ttl.as_secs() / 2) as u32;
        let known = q.known_answers.iter().any(|(name, target, ttl)| {
            *name == names.service && *target == names.instance && *ttl >= half_ttl
        });
        if known && !q.questions.iter().any(|(n, _)| *n != names.service) {
            wants_peers = false;
        }
        let min = self.config.min_answer_interval;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !(wants_peers || wants_meta) {
            return;
        }
        l.peers_due |= wants_peers;
        l.meta_due |= wants_meta;
        if l.answer_due.is_none() {
            l.answer_due = Some(l.last_answer.map_or(now, |t| (t + min).max(now)));
        }
        // An answer due now goes out without waiting for the next timeout.
        self.send_due_answers(now);
    }

    fn on_peer(&mut self, now: Instant, rec: proto::PeerRecord) {
        if rec.peer_id == self.local {
            return; // our own answer, looped back
        }
        let ttl = rec.ttl.min(self.config.max_ttl);
        if ttl.is_zero() {
            // Goodbye: the peer withdraws these addresses.
            if let Some(known) = self.peers.get_mut(&rec.peer_id) {
                let gone: Vec<Multiaddr> = rec
                    .addrs
                    .iter()
                    .filter(|a| known.remove(*a).is_some())
                    .cloned()
                    .collect();
                if known.is_empty() {
                    self.peers.remove(&rec.peer_id);
                }
                if !gone.is_empty() {
                    self.push_event(Event::Expired {
                        peer: rec.peer_id,
                        addrs: gone,
                    });
                }
            }
            return;
        }
        let expiry = now + ttl;
        // A loopback or unspecified address from another host is no way to reach it (it would
        // dial ourselves); the spec's open issue leans the same way.
        let usable: Vec<Multiaddr> = rec
            .addrs
            .into_iter()
            .filter(|a| !matches!(first_ip(a), Some(ip) if ip.is_loopback() || ip.is_unspecified()))
            .collect();
        if usable.is_empty() {
            return;
        }
        if !self.peers.contains_key(&rec.peer_id) && self.peers.len() >= self.config.max_peers {
            self.stats.peers_ignored += 1;
            return;
        }
        let known = self.peers.entry(rec.peer_id).or_default();
        let mut new = Vec::new();
        for addr in usable {
            if let Some(e) = known.get_mut(&addr) {
                *e = (*e).max(expiry);
            } else if known.len() >= self.config.max_addrs_per_peer {
                self.stats.addrs_ignored += 1;
            } else {
                known.insert(addr.clone(), expiry);
                new.push(addr);
            }
        }
        if known.is_empty() {
            self.peers.remove(&rec.peer_id);
        }
        if !new.is_empty() {
            self.push_event(Event::Discovered {
                peer: rec.peer_id,
                addrs: new,
            });
        }
    }

    /// Acts on the time: sends the queries and delayed answers that are due, expires peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_query {
            let links: Vec<LinkId> = self.links.keys().copied().collect();
            for link in links {
                let packet = self.query_packet.clone();
                self.stats.queries_sent += 1;
                self.push_transmit(link, packet);
            }
            self.next_query = now + self.query_step;
            self.query_step = (self.query_step * 2).min(self.config.query_interval);
        }
        self.send_due_answers(now);
        self.expire(now);
    }

    fn send_due_answers(&mut self, now: Instant) {
        let due: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.answer_due.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(link) = self.links.get_mut(&id) else {
                continue;
            };
            link.answer_due = None;
            link.last_answer = Some(now);
            let meta = std::mem::take(&mut link.meta_due);
            let peers = std::mem::take(&mut link.peers_due);
            let ips = link.ips.clone();
            if meta {
                match proto::encode_meta_response(&self.names, self.config.ttl) {
                    Ok(p) => self.push_transmit(id, p),
                    Err(e) => tracing::warn!(error = %e, "cannot encode mDNS meta answer"),
                }
            }
            if !peers {
                continue;
            }
            let addrs = self.addrs_for(&ips);
            let ann = Announcement {
                peer_id: self.local,
                names: &self.names,
                addrs: &addrs,
                ips: &ips,
                ttl: self.config.ttl,
            };
            match proto::encode_response(&ann, self.config.max_packet_size) {
                Ok(packets) => {
                    self.stats.answers_sent += 1;
                    for p in packets {
                        self.push_transmit(id, p);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode mDNS answer"),
            }
        }
    }

    /// Queues our goodbye on every link: the answer with TTL 0, which makes peers drop our
    /// addresses at once instead of when their TTL runs out (RFC 6762 §10.1). Call it before
    /// closing the sockets; it ignores the answer rate limit, as it is sent once.
    pub fn goodbye(&mut self) {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            let ips = self.links[&id].ips.clone();
            let addrs = self.addrs_for(&ips);
            let ann = Announcement {
                peer_id: self.local,
                names: &self.names,
                addrs: &addrs,
                ips: &ips,
                ttl: Duration::ZERO,
            };
            match proto::encode_response(&ann, self.config.max_packet_size) {
                Ok(packets) => {
                    for p in packets {
                        self.push_transmit(id, p);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode mDNS goodbye"),
            }
        }
    }

    /// Our addresses as announced on a link with these IPs: unspecified IPs replaced by the
    /// link's own address of that family (an IPv6 link-local address is not usable without its
    /// zone, so it is not substituted).
    fn addrs_for(&self, ips: &[IpAddr]) -> Vec<Multiaddr> {
        let mut out = Vec::new();
        for addr in &self.listen_addrs {
            match first_ip(addr) {
                Some(ip) if ip.is_unspecified() => {
                    for own in ips.iter().filter(|o| o.is_ipv4() == ip.is_ipv4()) {
                        if let IpAddr::V6(v6) = own {
                            if v6.is_unicast_link_local() {
                                continue;
                            }
                        }
                        let replaced = addr.replace(0, |_| Some(Protocol::from(*own)));
                        if let Some(a) = replaced {
                            if !out.contains(&a) {
                                out.push(a);
                            }
                        }
                    }
                }
                _ => {
                    if !out.contains(addr) {
                        out.push(addr.clone());
                    }
                }
            }
        }
        out
    }

    fn expire(&mut self, now: Instant) {
        let mut expired = Vec::new();
        self.peers.retain(|peer, addrs| {
            let mut gone = Vec::new();
            addrs.retain(|a, t| {
                if *t <= now {
                    gone.push(a.clone());
                    false
                } else {
                    true
                }
            });
            if !gone.is_empty() {
                expired.push((*peer, gone));
            }
            !addrs.is_empty()
        });
        for (peer, addrs) in expired {
            self.push_event(Event::Expired { peer, addrs });
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the next query, a delayed
    /// answer, or the next expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let answers = self.links.values().filter_map(|l| l.answer_due);
        let expiries = self.peers.values().flat_map(|a| a.values().copied());
        let query = (!self.links.is_empty()).then_some(self.next_query);
        query.into_iter().chain(answers).chain(expiries).min()
    }

    /// The next packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next discovery event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push_transmit(&mut self, link: LinkId, packet: Vec<u8>) {
        if self.transmits.len() >= self.config.max_queued_transmits {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.transmits.push_back(Transmit { link, packet });
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() >= self.config.max_queued_events {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// The instance name we answer for (`<peer-name>._p2p._udp.local.`).
    pub fn instance_name(&self) -> &Name {
        &self.names.instance
    }
}

fn config_initial(config: &Config) -> Duration {
    config.initial_query_interval.min(config.query_interval)
}

fn first_ip(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}
