//! The wire format: our queries and answers as `hickory-proto` DNS messages, and the reading of
//! queries and responses from any libp2p mDNS implementation. Bounded, no I/O, no clock.
//!
//! Two answer styles are in use and both are read:
//!
//! - rust-libp2p answers with a PTR to a bare peer name and puts TXT `dnsaddr=` records under
//!   that name in the additional section, nothing else;
//! - python-zeroconf (py-libp2p) answers with a PTR to `<peer-name>._p2p._udp.local`, SRV, TXT
//!   and A/AAAA records, one TXT record whose strings are `dnsaddr=`, `dnsaddr2=`, ... (zeroconf
//!   reads TXT strings as a key/value map, so a key appears once).
//!
//! We read every TXT record in the answer and additional sections, whatever its name, and take
//! from it every string whose key is `dnsaddr` or `dnsaddr<digits>`. We answer with what both
//! expect: the PTR to `<peer-name>._p2p._udp.local`, one TXT record carrying every address as
//! `dnsaddr=` (for rust-libp2p, which reads only that key) followed by `dnsaddr2=`, ... for the
//! second address on (for zeroconf, which keeps the first value of a repeated key), and SRV and
//! A/AAAA records so that DNS-SD browsers resolve us without asking again.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, OpCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use libp2p_core::{Multiaddr, PeerId, Protocol};
use rand::RngExt;

use crate::error::{DecodeError, EncodeError, RecordError};

/// The DNS-SD service name of libp2p peers.
pub const SERVICE_NAME: &str = "_p2p._udp.local.";
/// The DNS-SD meta-query name, answered with our service name.
pub const META_QUERY_NAME: &str = "_services._dns-sd._udp.local.";
/// The IPv4 mDNS group.
pub const IPV4_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// The IPv6 mDNS group (link-local scope).
pub const IPV6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
/// The mDNS port.
pub const PORT: u16 = 5353;
/// The length of our random peer names: the spec asks for at least 32 lower-case alphanumeric
/// characters, and a DNS label allows 63.
pub const PEER_NAME_LEN: usize = 32;
/// The most bytes of one TXT string (RFC 1035 `<character-string>`).
const MAX_TXT_STRING: usize = 255;
/// The most rejected entries a [`Response`] keeps (the rest are only counted).
const MAX_KEPT_REJECTIONS: usize = 8;

/// A fresh random peer name: [`PEER_NAME_LEN`] lower-case letters and digits.
pub fn random_peer_name() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..PEER_NAME_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The DNS names one peer answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `_p2p._udp.local.`
    pub service: Name,
    /// `_services._dns-sd._udp.local.`
    pub meta: Name,
    /// `<peer-name>._p2p._udp.local.`: the PTR target, and the name of our TXT and SRV records.
    pub instance: Name,
    /// `<peer-name>.local.`: the SRV target and the name of our A/AAAA records (a one-label
    /// host under `.local`, as RFC 6762 host names are and as py-libp2p does).
    pub host: Name,
}

impl Names {
    /// The names of the peer called `peer_name` (a single DNS label).
    pub fn new(peer_name: &str) -> Result<Self, EncodeError> {
        let parse = |s: &str| {
            Name::from_ascii(s).map_err(|source| EncodeError::InvalidName {
                name: s.to_owned(),
                source,
            })
        };
        if peer_name.is_empty() || peer_name.contains('.') || peer_name.len() > 63 {
            // One label only: a dot would make it several, and 63 is the label limit.
            return Err(EncodeError::InvalidName {
                name: peer_name.to_owned(),
                source: hickory_proto::ProtoError::from("peer name must be one DNS label"),
            });
        }
        Ok(Names {
            service: parse(SERVICE_NAME)?,
            meta: parse(META_QUERY_NAME)?,
            instance: parse(&format!("{peer_name}.{SERVICE_NAME}"))?,
            host: parse(&format!("{peer_name}.local."))?,
        })
    }
}

/// Our query for all peers: one question, `_p2p._udp.local PTR`, multicast-response (QM) form,
/// message id 0 (RFC 6762 §18.1).
pub fn encode_query() -> Result<Vec<u8>, EncodeError> {
    let service = Name::from_ascii(SERVICE_NAME).map_err(EncodeError::Dns)?;
    let mut msg = Message::new(0, MessageType::Query, OpCode::Query);
    msg.add_query(hickory_proto::op::Query::query(service, RecordType::PTR));
    msg.to_vec().map_err(EncodeError::Dns)
}

/// What we announce about ourselves in an answer.
#[derive(Debug, Clone)]
pub struct Announcement<'a> {
    /// Our peer id, appended to every address as `/p2p/<id>`.
    pub peer_id: PeerId,
    /// Our names.
    pub names: &'a Names,
    /// Our addresses, without `/p2p/`.
    pub addrs: &'a [Multiaddr],
    /// The IP addresses of the interface the answer goes out on, for the A/AAAA records.
    pub ips: &'a [IpAddr],
    /// The TTL of every record.
    pub ttl: Duration,
}

/// Our answer to a query for peers: as many packets of at most `max_size` bytes as the
/// addresses need (one, unless there are dozens). Each packet is a complete answer: the PTR,
/// a TXT record with its share of the addresses, SRV, and A/AAAA. An address whose TXT string
/// would exceed 255 bytes is left out (with a warning).
pub fn encode_response(
    ann: &Announcement<'_>,
    max_size: usize,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let entries: Vec<String> = ann
        .addrs
        .iter()
        .filter_map(|addr| {
            let full = format!("{addr}/p2p/{}", ann.peer_id);
            // The longest key we may write is `dnsaddr<n>=`; check against that.
            let longest_key = "dnsaddr".len() + ann.addrs.len().to_string().len() + 1;
            if full.len() + longest_key > MAX_TXT_STRING {
                tracing::warn!(%addr, "address too long for an mDNS TXT string, not announced");
                None
            } else {
                Some(full)
            }
        })
        .collect();
    let mut packets = Vec::new();
    encode_response_chunk(ann, &entries, max_size, &mut packets)?;
    Ok(packets)
}

fn encode_response_chunk(
    ann: &Announcement<'_>,
    entries: &[String],
    max_size: usize,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), EncodeError> {
    let packet = response_message(ann, entries)
        .to_vec()
        .map_err(EncodeError::Dns)?;
    if packet.len() <= max_size || entries.len() <= 1 {
        if packet.len() > max_size {
            tracing::warn!(
                len = packet.len(),
                max_size,
                "mDNS answer over the size limit, not sent"
            );
        } else {
            out.push(packet);
        }
        return Ok(());
    }
    let (a, b) = entries.split_at(entries.len() / 2);
    encode_response_chunk(ann, a, max_size, out)?;
    encode_response_chunk(ann, b, max_size, out)
}

fn response_message(ann: &Announcement<'_>, entries: &[String]) -> Message {
    let ttl = ttl_secs(ann.ttl);
    let names = ann.names;
    let mut msg = Message::response(0, OpCode::Query);
    msg.metadata.authoritative = true;
    msg.add_answer(Record::from_rdata(
        names.service.clone(),
        ttl,
        RData::PTR(PTR(names.instance.clone())),
    ));
    // Every address under the key rust-libp2p reads, then the second one on under the numbered
    // keys zeroconf reads (it keeps only the first `dnsaddr=`).
    let mut strings: Vec<String> = entries.iter().map(|e| format!("dnsaddr={e}")).collect();
    strings.extend(
        entries
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, e)| format!("dnsaddr{}={e}", i + 1)),
    );
    let mut txt = Record::from_rdata(names.instance.clone(), ttl, RData::TXT(TXT::new(strings)));
    txt.mdns_cache_flush = true;
    msg.add_additional(txt);
    let port = ann.addrs.iter().find_map(port_of).unwrap_or(0);
    let mut srv = Record::from_rdata(
        names.instance.clone(),
        ttl,
        RData::SRV(SRV::new(0, 0, port, names.host.clone())),
    );
    srv.mdns_cache_flush = true;
    msg.add_additional(srv);
    for ip in ann.ips {
        let data = match ip {
            IpAddr::V4(ip) => RData::A(A(*ip)),
            IpAddr::V6(ip) => RData::AAAA(AAAA(*ip)),
        };
        let mut rec = Record::from_rdata(names.host.clone(), ttl, data);
        rec.mdns_cache_flush = true;
        msg.add_additional(rec);
    }
    msg
}

/// Our answer to the DNS-SD meta query: `_services._dns-sd._udp.local PTR _p2p._udp.local`.
pub fn encode_meta_response(names: &Names, ttl: Duration) -> Result<Vec<u8>, EncodeError> {
    let mut msg = Message::response(0, OpCode::Query);
    msg.metadata.authoritative = true;
    msg.add_answer(Record::from_rdata(
        names.meta.clone(),
        ttl_secs(ttl),
        RData::PTR(PTR(names.service.clone())),
    ));
    msg.to_vec().map_err(EncodeError::Dns)
}

/// The first TCP or UDP port of an address, for the SRV record (DNS-SD wants one port).
fn port_of(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) | Protocol::Udp(port) => Some(port),
        _ => None,
    })
}

fn ttl_secs(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX)
}

/// Limits applied while decoding (from [`Config`](crate::Config)).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// [`Config::max_packet_size`](crate::Config::max_packet_size).
    pub max_packet_size: usize,
    /// [`Config::max_records`](crate::Config::max_records).
    pub max_records: usize,
}

/// A received packet that passed the checks.
#[derive(Debug, Clone)]
pub enum Packet {
    /// Someone asks.
    Query(Query),
    /// Someone answers (to anyone: mDNS answers are multicast).
    Response(Response),
}

/// The parts of a received query we act on.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The questions: name and type.
    pub questions: Vec<(Name, RecordType)>,
    /// The PTR records of its known-answer section (RFC 6762 §7.1): name, target, TTL in
    /// seconds. An answer the asker already holds with at least half its TTL left is not sent.
    pub known_answers: Vec<(Name, Name, u32)>,
}

/// The peers a response tells of.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// One entry per record name carrying `dnsaddr` entries.
    pub peers: Vec<PeerRecord>,
    /// The first few entries that were skipped, and why.
    pub rejected: Vec<RecordError>,
    /// How many entries were skipped in all.
    pub rejected_count: usize,
}

/// One peer of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer, from the `/p2p/` suffix of its addresses.
    pub peer_id: PeerId,
    /// The name of the TXT record(s) (the peer's instance name, or rust-libp2p's bare name).
    pub name: Name,
    /// Its addresses, without the `/p2p/` suffix, deduplicated, in the order received.
    pub addrs: Vec<Multiaddr>,
    /// The smallest TTL among its TXT records and a PTR pointing at them; zero means the peer
    /// says goodbye.
    pub ttl: Duration,
}

/// Decodes one received datagram. `len` is its size as received, which may exceed
/// `bytes.len()` when the receive buffer cut it short.
pub fn decode(bytes: &[u8], len: usize, limits: Limits) -> Result<Packet, DecodeError> {
    if len > limits.max_packet_size || bytes.len() > limits.max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            len: len.max(bytes.len()),
            max: limits.max_packet_size,
        });
    }
    // The counts first, so that a header claiming thousands of records is refused unread.
    let header = Header::from_bytes(bytes).map_err(DecodeError::Malformed)?;
    let c = header.counts;
    let count = usize::from(c.queries)
        + usize::from(c.answers)
        + usize::from(c.authorities)
        + usize::from(c.additionals);
    if count > limits.max_records {
        return Err(DecodeError::TooManyRecords {
            count,
            max: limits.max_records,
        });
    }
    if header.metadata.op_code != OpCode::Query {
        return Err(DecodeError::UnsupportedOpCode {
            op_code: u8::from(header.metadata.op_code),
        });
    }
    let msg = Message::from_vec(bytes).map_err(DecodeError::Malformed)?;
    Ok(match msg.metadata.message_type {
        MessageType::Query => Packet::Query(read_query(&msg)),
        MessageType::Response => Packet::Response(read_response(&msg)),
    })
}

fn read_query(msg: &Message) -> Query {
    Query {
        questions: msg
            .queries
            .iter()
            .map(|q| (q.name().clone(), q.query_type()))
            .collect(),
        known_answers: msg
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(PTR(target)) => Some((r.name.clone(), target.clone(), r.ttl)),
                _ => None,
            })
            .collect(),
    }
}

/// A peer being assembled from the TXT records of one name.
struct Partial {
    peer_id: Option<PeerId>,
    addrs: Vec<Multiaddr>,
    ttl: u32,
}

fn read_response(msg: &Message) -> Response {
    let service = Name::from_ascii(SERVICE_NAME).expect("constant name");
    let mut resp = Response::default();
    let reject = |resp: &mut Response, e: RecordError| {
        resp.rejected_count += 1;
        if resp.rejected.len() < MAX_KEPT_REJECTIONS {
            resp.rejected.push(e);
        }
    };
    // PTR targets of the service name, with their TTL (answers or additional: both styles).
    let mut ptr_ttl: HashMap<Name, u32> = HashMap::new();
    let records = || msg.answers.iter().chain(msg.additionals.iter());
    for r in records() {
        if let RData::PTR(PTR(target)) = &r.data {
            if r.name == service {
                let e = ptr_ttl.entry(target.clone()).or_insert(r.ttl);
                *e = (*e).min(r.ttl);
            }
        }
    }
    // TXT records by name, in the order first seen.
    let mut order: Vec<Name> = Vec::new();
    let mut partial: HashMap<Name, Partial> = HashMap::new();
    for r in records() {
        let RData::TXT(txt) = &r.data else { continue };
        for s in txt.txt_data.iter() {
            let Some(value) = dnsaddr_value(s) else {
                continue;
            };
            let Ok(value) = std::str::from_utf8(value) else {
                reject(&mut resp, RecordError::NotUtf8);
                continue;
            };
            let mut addr: Multiaddr = match value.parse() {
                Ok(a) => a,
                Err(_) => {
                    reject(
                        &mut resp,
                        RecordError::InvalidMultiaddr {
                            value: value.to_owned(),
                        },
                    );
                    continue;
                }
            };
            let Some(Protocol::P2p(peer_id)) = addr.pop() else {
                reject(
                    &mut resp,
                    RecordError::MissingPeerId {
                        value: value.to_owned(),
                    },
                );
                continue;
            };
            let p = partial.entry(r.name.clone()).or_insert_with(|| {
                order.push(r.name.clone());
                Partial {
                    peer_id: None,
                    addrs: Vec::new(),
                    ttl: r.ttl,
                }
            });
            p.ttl = p.ttl.min(r.ttl);
            match p.peer_id {
                None => p.peer_id = Some(peer_id),
                Some(expected) if expected != peer_id => {
                    reject(
                        &mut resp,
                        RecordError::PeerIdMismatch {
                            expected,
                            actual: peer_id,
                        },
                    );
                    continue;
                }
                Some(_) => {}
            }
            if !p.addrs.contains(&addr) {
                p.addrs.push(addr);
            }
        }
    }
    for name in order {
        let Some(p) = partial.remove(&name) else {
            continue;
        };
        let Some(peer_id) = p.peer_id else { continue };
        let ttl = ptr_ttl.get(&name).map_or(p.ttl, |t| p.ttl.min(*t));
        resp.peers.push(PeerRecord {
            peer_id,
            name,
            addrs: p.addrs,
            ttl: Duration::from_secs(u64::from(ttl)),
        });
    }
    resp
}

/// The value of a TXT string whose key is `dnsaddr` or `dnsaddr<digits>` (case-insensitive,
/// as DNS-SD keys are), or `None` for any other string.
fn dnsaddr_value(s: &[u8]) -> Option<&[u8]> {
    let eq = s.iter().position(|&b| b == b'=')?;
    let (key, value) = (&s[..eq], &s[eq + 1..]);
    if key.len() < 7 || !key[..7].eq_ignore_ascii_case(b"dnsaddr") {
        return None;
    }
    if !key[7..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsaddr_keys() {
        assert_eq!(
            dnsaddr_value(b"dnsaddr=/ip4/1.2.3.4"),
            Some(&b"/ip4/1.2.3.4"[..])
        );
        assert_eq!(dnsaddr_value(b"dnsaddr12=/x"), Some(&b"/x"[..]));
        assert_eq!(dnsaddr_value(b"DNSADDR=/x"), Some(&b"/x"[..]));
        assert_eq!(dnsaddr_value(b"dnsaddrx=/x"), None);
        assert_eq!(dnsaddr_value(b"id=Qm"), None);
        assert_eq!(dnsaddr_value(b"dnsaddr"), None);
    }

    #[test]
    fn peer_names_are_one_label() {
        let name = random_peer_name();
        assert_eq!(name.len(), PEER_NAME_LEN);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert!(Names::new(&name).is_ok());
        assert!(Names::new("a.b").is_err());
        assert!(Names::new("").is_err());
        assert!(Names::new(&"a".repeat(64)).is_err());
    }
}
