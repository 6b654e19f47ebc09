//! The mDNS core without I/O: query/answer round trips in both record styles, the TTL table,
//! rate limits, and junk refused with typed errors. Time is simulated.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use libp2p_core::{Classify, Fault, Keypair, Multiaddr, PeerId};
use libp2p_mdns::proto::{self, Limits, Packet};
use libp2p_mdns::{Config, DecodeError, Event, LinkId, Mdns, RecordError};

const LINK: LinkId = LinkId(7);

fn peer() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

fn from() -> SocketAddr {
    "192.0.2.9:5353".parse().unwrap()
}

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn limits() -> Limits {
    let c = Config::default();
    Limits {
        max_packet_size: c.max_packet_size,
        max_records: c.max_records,
    }
}

fn node(config: Config, now: Instant, addrs: &[&str], ip: &str) -> (Mdns, PeerId) {
    let id = peer();
    let mut m = Mdns::new(config, id, now).unwrap();
    m.set_listen_addrs(addrs.iter().map(|a| ma(a)).collect());
    m.add_link(LINK, vec![ip.parse().unwrap()]);
    (m, id)
}

fn transmits(m: &mut Mdns) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| m.poll_transmit().map(|t| t.packet)).collect()
}

fn events(m: &mut Mdns) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn deliver(m: &mut Mdns, now: Instant, packets: &[Vec<u8>]) {
    for p in packets {
        m.handle_packet(now, LINK, from(), p, p.len()).unwrap();
    }
}

fn is_query(p: &[u8]) -> bool {
    matches!(proto::decode(p, p.len(), limits()), Ok(Packet::Query(_)))
}

/// The strings of the TXT record named `name` in the additional section, as rust-libp2p looks
/// for them.
fn additional_txt(msg: &Message, name: &Name) -> Vec<String> {
    msg.additionals
        .iter()
        .filter(|r| &r.name == name)
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter()),
            _ => None,
        })
        .flatten()
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

#[test]
fn two_cores_discover_each_other() {
    let now = Instant::now();
    let (mut a, a_id) = node(
        Config::default(),
        now,
        &["/ip4/0.0.0.0/tcp/4001"],
        "10.0.0.1",
    );
    let (mut b, b_id) = node(
        Config::default(),
        now,
        &["/ip4/10.0.0.2/tcp/4002"],
        "10.0.0.2",
    );
    // Each sends its query on add_link; multicast reaches both, including the sender.
    let mut out = transmits(&mut a);
    out.extend(transmits(&mut b));
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|p| is_query(p)));
    deliver(&mut a, now, &out);
    deliver(&mut b, now, &out);
    // Each answers once (two queries inside the rate-limit window make one answer).
    let mut answers = transmits(&mut a);
    answers.extend(transmits(&mut b));
    assert_eq!(answers.len(), 2, "one answer each");
    deliver(&mut a, now, &answers);
    deliver(&mut b, now, &answers);
    assert_eq!(
        events(&mut a),
        vec![Event::Discovered {
            peer: b_id,
            addrs: vec![ma("/ip4/10.0.0.2/tcp/4002")]
        }]
    );
    // A's unspecified listen address went out as its link's address.
    assert_eq!(
        events(&mut b),
        vec![Event::Discovered {
            peer: a_id,
            addrs: vec![ma("/ip4/10.0.0.1/tcp/4001")]
        }]
    );
    // Hearing the same answer again refreshes silently.
    deliver(&mut b, now + Duration::from_secs(1), &answers);
    assert!(events(&mut b).is_empty());
    assert_eq!(b.peers().count(), 1, "own answer ignored");
}

/// Node a (at `/ip4/10.0.0.1/tcp/1`, with `a_config`) answers node b's query and b discovers
/// it: a, its id and b.
fn b_discovers_a(a_config: Config, now: Instant) -> (Mdns, PeerId, Mdns) {
    let (mut a, a_id) = node(a_config, now, &["/ip4/10.0.0.1/tcp/1"], "10.0.0.1");
    let (mut b, _) = node(Config::default(), now, &[], "10.0.0.2");
    let q = transmits(&mut b);
    deliver(&mut a, now, &q);
    let answer = transmits(&mut a);
    transmits(&mut a);
    deliver(&mut b, now, &answer);
    assert!(matches!(&events(&mut b)[..], [Event::Discovered { peer, .. }] if *peer == a_id));
    (a, a_id, b)
}

/// b reports a's address expired and keeps no peer.
fn a_is_gone(b: &mut Mdns, a_id: PeerId) {
    assert_eq!(
        events(b),
        vec![Event::Expired {
            peer: a_id,
            addrs: vec![ma("/ip4/10.0.0.1/tcp/1")]
        }]
    );
    assert_eq!(b.peers().count(), 0);
}

#[test]
fn peers_expire_after_their_ttl() {
    let now = Instant::now();
    let ttl = Duration::from_secs(60);
    let (_, a_id, mut b) = b_discovers_a(Config::default().with_ttl(ttl), now);
    let deadline = b.poll_timeout().unwrap();
    assert!(deadline <= now + ttl);
    b.handle_timeout(now + ttl - Duration::from_secs(1));
    assert!(
        !events(&mut b)
            .iter()
            .any(|e| matches!(e, Event::Expired { .. })),
        "not yet"
    );
    b.handle_timeout(now + ttl);
    a_is_gone(&mut b, a_id);
}

#[test]
fn our_answer_reads_in_both_styles() {
    let now = Instant::now();
    let addrs = [
        "/ip4/10.0.0.1/tcp/4001",
        "/ip6/2001:db8::1/tcp/4001",
        "/ip4/10.0.0.1/udp/4001/quic-v1",
    ];
    let (mut a, a_id) = node(Config::default(), now, &addrs, "10.0.0.1");
    let q = transmits(&mut a);
    deliver(&mut a, now, &q);
    let answers = transmits(&mut a);
    assert_eq!(answers.len(), 1);
    eprintln!(
        "our answer with {} addresses: {} bytes",
        addrs.len(),
        answers[0].len()
    );
    let msg = Message::from_vec(&answers[0]).unwrap();
    assert_eq!(msg.metadata.message_type, MessageType::Response);
    assert!(
        msg.queries.is_empty(),
        "rust-libp2p takes a packet with questions for a query"
    );
    // rust-libp2p's reading: PTR on the service name in the answers, TXT `dnsaddr=` under the
    // PTR target in the additional section.
    let service = Name::from_ascii(proto::SERVICE_NAME).unwrap();
    let target = msg
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::PTR(PTR(t)) if r.name == service => Some(t.clone()),
            _ => None,
        })
        .expect("PTR answer");
    assert_eq!(&target, a.instance_name());
    let strings = additional_txt(&msg, &target);
    let rust_view: Vec<String> = strings
        .iter()
        .filter_map(|s| s.strip_prefix("dnsaddr=").map(str::to_owned))
        .collect();
    let expected: Vec<String> = addrs.iter().map(|a| format!("{a}/p2p/{a_id}")).collect();
    assert_eq!(rust_view, expected);
    // zeroconf's reading: a key/value map where the first value of a key wins, then py-libp2p
    // takes every key starting with `dnsaddr`.
    let mut props: HashMap<String, String> = HashMap::new();
    for s in &strings {
        let (k, v) = s.split_once('=').unwrap();
        props.entry(k.to_owned()).or_insert_with(|| v.to_owned());
    }
    let mut py_view: Vec<String> = props
        .iter()
        .filter(|(k, _)| k.starts_with("dnsaddr"))
        .map(|(_, v)| v.clone())
        .collect();
    py_view.sort();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(py_view, sorted);
    // And the DNS-SD records zeroconf resolves with: SRV to our host name, A for the link.
    let srv = msg
        .additionals
        .iter()
        .find_map(|r| match &r.data {
            RData::SRV(s) if r.name == target => Some(s.clone()),
            _ => None,
        })
        .expect("SRV");
    assert_eq!(srv.port, 4001);
    let a_rec = msg
        .additionals
        .iter()
        .find_map(|r| match &r.data {
            RData::A(A(ip)) if r.name == srv.target => Some(*ip),
            _ => None,
        })
        .expect("A");
    assert_eq!(a_rec, Ipv4Addr::new(10, 0, 0, 1));
    // And our own reading.
    let Packet::Response(r) = proto::decode(&answers[0], answers[0].len(), limits()).unwrap()
    else {
        panic!("not a response")
    };
    assert_eq!(r.peers.len(), 1);
    assert_eq!(r.peers[0].peer_id, a_id);
    let got: Vec<String> = r.peers[0].addrs.iter().map(|a| a.to_string()).collect();
    assert_eq!(got, addrs);
    assert_eq!(r.peers[0].ttl, Config::default().ttl);
}

/// A response as rust-libp2p builds it: PTR to a bare random label, TXT records under that
/// label in the additional section, one `dnsaddr=` each, nothing else.
fn rust_libp2p_style(id: PeerId, addrs: &[&str], ttl: u32) -> Vec<u8> {
    let service = Name::from_ascii(proto::SERVICE_NAME).unwrap();
    let bare = Name::from_ascii("x8r2k5p0q9w7e3t1y6u4i2o0a1s3d5f7.").unwrap();
    let mut msg = Message::response(0x1234, OpCode::Query);
    msg.add_answer(Record::from_rdata(
        service,
        ttl,
        RData::PTR(PTR(bare.clone())),
    ));
    for a in addrs {
        msg.add_additional(Record::from_rdata(
            bare.clone(),
            ttl,
            RData::TXT(TXT::new(vec![format!("dnsaddr={a}/p2p/{id}")])),
        ));
    }
    msg.to_vec().unwrap()
}

/// A response as python-zeroconf builds it for py-libp2p: everything in the answer section, one
/// TXT record with `dnsaddr=`, `dnsaddr2=`, SRV and A, cache-flush bits set.
fn zeroconf_style(id: PeerId, addrs: &[&str], ttl: u32) -> Vec<u8> {
    let service = Name::from_ascii(proto::SERVICE_NAME).unwrap();
    let instance = Name::from_ascii("abc123def._p2p._udp.local.").unwrap();
    let host = Name::from_ascii("abc123def.local.").unwrap();
    let mut msg = Message::response(0, OpCode::Query);
    msg.metadata.authoritative = true;
    msg.add_answer(Record::from_rdata(
        service,
        ttl,
        RData::PTR(PTR(instance.clone())),
    ));
    let mut strings = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let key = if i == 0 {
            "dnsaddr".to_owned()
        } else {
            format!("dnsaddr{}", i + 1)
        };
        strings.push(format!("{key}={a}/p2p/{id}"));
    }
    let mut txt = Record::from_rdata(instance.clone(), ttl, RData::TXT(TXT::new(strings)));
    txt.mdns_cache_flush = true;
    msg.add_answer(txt);
    let mut srv = Record::from_rdata(
        instance,
        120,
        RData::SRV(SRV::new(0, 0, 4001, host.clone())),
    );
    srv.mdns_cache_flush = true;
    msg.add_answer(srv);
    let mut a = Record::from_rdata(host, 120, RData::A(A(Ipv4Addr::new(10, 0, 0, 5))));
    a.mdns_cache_flush = true;
    msg.add_answer(a);
    msg.to_vec().unwrap()
}

/// A fresh node receives the answer `style` builds for a new peer at `addrs` and reports that
/// peer discovered at exactly those addresses; returns the node and the peer.
fn discovers(
    style: fn(PeerId, &[&str], u32) -> Vec<u8>,
    now: Instant,
    addrs: &[&str],
    ttl: u32,
) -> (Mdns, PeerId) {
    let (mut b, _) = node(Config::default(), now, &[], "10.0.0.2");
    let id = peer();
    deliver(&mut b, now, &[style(id, addrs, ttl)]);
    assert_eq!(
        events(&mut b),
        vec![Event::Discovered {
            peer: id,
            addrs: addrs.iter().map(|a| ma(a)).collect()
        }]
    );
    (b, id)
}

#[test]
fn reads_rust_libp2p_answers() {
    let addrs = ["/ip4/10.0.0.3/tcp/1", "/ip4/10.0.0.3/udp/1/quic-v1"];
    discovers(rust_libp2p_style, Instant::now(), &addrs, 360);
}

#[test]
fn reads_zeroconf_answers() {
    let now = Instant::now();
    let addrs = ["/ip4/10.0.0.5/tcp/4001", "/ip6/2001:db8::5/tcp/4001"];
    let (mut b, id) = discovers(zeroconf_style, now, &addrs, 4500);
    // Its goodbye (TTL 0) withdraws the addresses at once.
    let bye = zeroconf_style(id, &["/ip4/10.0.0.5/tcp/4001"], 0);
    deliver(&mut b, now, &[bye]);
    assert_eq!(
        events(&mut b),
        vec![Event::Expired {
            peer: id,
            addrs: vec![ma("/ip4/10.0.0.5/tcp/4001")]
        }]
    );
}

#[test]
fn received_ttls_are_capped() {
    let now = Instant::now();
    let config = Config::default();
    let max_ttl = config.max_ttl;
    let (mut b, _) = node(config, now, &[], "10.0.0.2");
    let p = rust_libp2p_style(peer(), &["/ip4/10.0.0.3/tcp/1"], u32::MAX);
    deliver(&mut b, now, &[p]);
    events(&mut b);
    b.handle_timeout(now + max_ttl);
    assert!(matches!(&events(&mut b)[..], [Event::Expired { .. }]));
}

#[test]
fn junk_packets_are_refused_with_typed_errors() {
    let now = Instant::now();
    let (mut b, _) = node(Config::default(), now, &[], "10.0.0.2");
    let mut refuse = |bytes: &[u8], len: usize| {
        let e = b.handle_packet(now, LINK, from(), bytes, len).unwrap_err();
        assert_eq!(
            e.fault(),
            if matches!(e, DecodeError::UnsupportedOpCode { .. }) {
                Fault::Incompatible
            } else {
                Fault::Remote
            }
        );
        e
    };
    // Too short for a header.
    assert!(matches!(refuse(&[1, 2, 3], 3), DecodeError::Malformed(_)));
    // A header promising a question that is not there.
    let truncated = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    assert!(matches!(refuse(&truncated, 12), DecodeError::Malformed(_)));
    // A header announcing more records than the limit, refused before parsing.
    let many = [0, 0, 0x84, 0, 0, 0, 0x10, 0, 0, 0, 0, 0];
    assert!(matches!(
        refuse(&many, 12),
        DecodeError::TooManyRecords {
            count: 4096,
            max: 256
        }
    ));
    // Over the size limit (as the driver reports a datagram its buffer cut).
    let big = vec![0u8; 9000];
    assert!(matches!(
        refuse(&big, 9001),
        DecodeError::PacketTooLarge {
            len: 9001,
            max: 9000
        }
    ));
    // A DNS UPDATE.
    let mut update = Message::new(0, MessageType::Query, OpCode::Update);
    update.add_query(Query::query(
        Name::from_ascii("x.local.").unwrap(),
        RecordType::SOA,
    ));
    let update = update.to_vec().unwrap();
    assert!(matches!(
        refuse(&update, update.len()),
        DecodeError::UnsupportedOpCode { op_code: 5 }
    ));
    // Random bytes of a plausible size.
    let noise: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
    let _ = b.handle_packet(now, LINK, from(), &noise, noise.len());
    assert!(b.stats().packets_refused >= 5);
    assert!(events(&mut b).is_empty());
    assert!(b.peers().next().is_none());
}

#[test]
fn bad_entries_are_skipped_and_named() {
    let id = peer();
    let other = peer();
    let service = Name::from_ascii(proto::SERVICE_NAME).unwrap();
    let name = Name::from_ascii("junk._p2p._udp.local.").unwrap();
    let mut msg = Message::response(0, OpCode::Query);
    msg.add_answer(Record::from_rdata(
        service,
        60,
        RData::PTR(PTR(name.clone())),
    ));
    msg.add_additional(Record::from_rdata(
        name,
        60,
        RData::TXT(TXT::new(vec![
            "dnsaddr=not a multiaddr".to_owned(),
            "dnsaddr=/ip4/10.0.0.1/tcp/1".to_owned(),
            format!("dnsaddr=/ip4/10.0.0.1/tcp/2/p2p/{id}"),
            format!("dnsaddr2=/ip4/10.0.0.1/tcp/3/p2p/{other}"),
            "unrelated=1".to_owned(),
        ])),
    ));
    let bytes = msg.to_vec().unwrap();
    let Packet::Response(r) = proto::decode(&bytes, bytes.len(), limits()).unwrap() else {
        panic!("not a response")
    };
    assert_eq!(r.rejected_count, 3);
    assert!(matches!(
        r.rejected[0],
        RecordError::InvalidMultiaddr { .. }
    ));
    assert!(matches!(r.rejected[1], RecordError::MissingPeerId { .. }));
    assert_eq!(
        r.rejected[2],
        RecordError::PeerIdMismatch {
            expected: id,
            actual: other
        }
    );
    assert_eq!(r.rejected[0].fault(), Fault::Remote);
    assert_eq!(r.peers.len(), 1);
    assert_eq!(r.peers[0].addrs, vec![ma("/ip4/10.0.0.1/tcp/2")]);
}

#[test]
fn answers_are_rate_limited_per_link() {
    let now = Instant::now();
    let (mut a, _) = node(Config::default(), now, &["/ip4/10.0.0.1/tcp/1"], "10.0.0.1");
    let query = transmits(&mut a);
    deliver(&mut a, now, &query);
    assert_eq!(transmits(&mut a).len(), 1, "first query answered at once");
    // Three more queries within the second: one answer, when the second is over.
    for ms in [100, 200, 300] {
        deliver(&mut a, now + Duration::from_millis(ms), &query);
    }
    assert!(transmits(&mut a).is_empty());
    let due = now + Duration::from_secs(1);
    assert!(a.poll_timeout().unwrap() <= due);
    a.handle_timeout(due - Duration::from_millis(1));
    assert!(
        transmits(&mut a).iter().all(|p| is_query(p)),
        "no answer yet"
    );
    a.handle_timeout(due);
    let out = transmits(&mut a);
    assert_eq!(out.iter().filter(|p| !is_query(p)).count(), 1);
    assert_eq!(a.stats().answers_sent, 2);
}

#[test]
fn queries_back_off_to_the_interval() {
    let now = Instant::now();
    let config = Config::default()
        .with_initial_query_interval(Duration::from_millis(500))
        .with_query_interval(Duration::from_secs(4));
    let (mut a, _) = node(config, now, &[], "10.0.0.1");
    assert_eq!(transmits(&mut a).len(), 1, "a query when the link comes up");
    let mut t = now;
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let next = a.poll_timeout().unwrap();
        gaps.push(next - t);
        t = next;
        a.handle_timeout(t);
        let out = transmits(&mut a);
        assert_eq!(out.len(), 1);
        assert!(is_query(&out[0]));
    }
    let ms = |m| Duration::from_millis(m);
    assert_eq!(
        gaps,
        vec![ms(500), ms(1000), ms(2000), ms(4000), ms(4000), ms(4000)]
    );
}

#[test]
fn known_answers_suppress_our_answer() {
    let now = Instant::now();
    let (mut a, _) = node(Config::default(), now, &["/ip4/10.0.0.1/tcp/1"], "10.0.0.1");
    transmits(&mut a);
    let service = Name::from_ascii(proto::SERVICE_NAME).unwrap();
    let mut q = Message::new(0, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(service.clone(), RecordType::PTR));
    q.add_answer(Record::from_rdata(
        service,
        300,
        RData::PTR(PTR(a.instance_name().clone())),
    ));
    let q = q.to_vec().unwrap();
    deliver(&mut a, now, &[q]);
    assert!(transmits(&mut a).is_empty());
}

#[test]
fn meta_query_and_direct_questions_are_answered() {
    let now = Instant::now();
    let (mut a, _) = node(Config::default(), now, &["/ip4/10.0.0.1/tcp/1"], "10.0.0.1");
    transmits(&mut a);
    let mut q = Message::new(0, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii(proto::META_QUERY_NAME).unwrap(),
        RecordType::PTR,
    ));
    deliver(&mut a, now, &[q.to_vec().unwrap()]);
    let out = transmits(&mut a);
    assert_eq!(out.len(), 1, "the meta answer only");
    let service = Name::from_ascii(proto::SERVICE_NAME).unwrap();
    let meta = out.iter().map(|p| Message::from_vec(p).unwrap()).any(|m| {
        m.answers
            .iter()
            .any(|r| matches!(&r.data, RData::PTR(PTR(t)) if *t == service))
    });
    assert!(meta, "meta query answered with the service name");
    // A TXT question for our instance name, as a DNS-SD resolver asks.
    let later = now + Duration::from_secs(2);
    let mut q = Message::new(0, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(a.instance_name().clone(), RecordType::TXT));
    deliver(&mut a, later, &[q.to_vec().unwrap()]);
    assert_eq!(transmits(&mut a).len(), 1);
    // A question for someone else's name is not ours to answer.
    let later = later + Duration::from_secs(2);
    let mut q = Message::new(0, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii("other._p2p._udp.local.").unwrap(),
        RecordType::TXT,
    ));
    deliver(&mut a, later, &[q.to_vec().unwrap()]);
    assert!(transmits(&mut a).is_empty());
}

#[test]
fn tables_are_capped() {
    let now = Instant::now();
    let config = Config::default()
        .with_max_peers(2)
        .with_max_addrs_per_peer(2);
    let (mut b, _) = node(config, now, &[], "10.0.0.2");
    let first = peer();
    let p = rust_libp2p_style(
        first,
        &[
            "/ip4/10.0.0.3/tcp/1",
            "/ip4/10.0.0.3/tcp/2",
            "/ip4/10.0.0.3/tcp/3",
        ],
        60,
    );
    deliver(&mut b, now, &[p]);
    for _ in 0..3 {
        deliver(
            &mut b,
            now,
            &[rust_libp2p_style(peer(), &["/ip4/10.0.0.4/tcp/1"], 60)],
        );
    }
    assert_eq!(b.peers().count(), 2);
    let (_, addrs) = b.peers().find(|(p, _)| *p == first).unwrap();
    assert_eq!(addrs.len(), 2);
    assert_eq!(b.stats().addrs_ignored, 1);
    assert_eq!(b.stats().peers_ignored, 2);
}

#[test]
fn large_answers_are_split_under_the_packet_limit() {
    let id = peer();
    let names = proto::Names::new(&proto::random_peer_name()).unwrap();
    let addrs: Vec<Multiaddr> = (0..100)
        .map(|i| {
            ma(&format!(
                "/ip4/10.0.{}.{}/tcp/{}",
                i / 250,
                i % 250 + 1,
                4000 + i
            ))
        })
        .collect();
    let ips: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
    let ann = proto::Announcement {
        peer_id: id,
        names: &names,
        addrs: &addrs,
        ips: &ips,
        ttl: Duration::from_secs(360),
    };
    let packets = proto::encode_response(&ann, 1500).unwrap();
    assert!(packets.len() > 1);
    let mut seen = Vec::new();
    for p in &packets {
        assert!(p.len() <= 1500, "packet of {} bytes", p.len());
        let Packet::Response(r) = proto::decode(p, p.len(), limits()).unwrap() else {
            panic!("not a response")
        };
        seen.extend(r.peers.into_iter().flat_map(|p| p.addrs));
    }
    assert_eq!(seen, addrs);
}

#[test]
fn loopback_is_not_announced_and_p2p_suffixes_are_dropped() {
    let now = Instant::now();
    let me = peer();
    let mut a = Mdns::new(Config::default(), me, now).unwrap();
    a.set_listen_addrs(vec![
        ma("/ip4/127.0.0.1/tcp/1"),
        ma(&format!("/ip4/10.0.0.1/tcp/2/p2p/{me}")),
        ma("/ip6/::/tcp/3"),
    ]);
    a.add_link(
        LINK,
        vec!["fe80::1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
    );
    let q = transmits(&mut a);
    deliver(&mut a, now, &q);
    let out = transmits(&mut a);
    let Packet::Response(r) = proto::decode(&out[0], out[0].len(), limits()).unwrap() else {
        panic!("not a response")
    };
    assert_eq!(
        r.peers[0].addrs,
        vec![ma("/ip4/10.0.0.1/tcp/2"), ma("/ip6/2001:db8::1/tcp/3")]
    );
}

#[test]
fn goodbye_withdraws_our_addresses_at_once() {
    let now = Instant::now();
    let (mut a, a_id, mut b) = b_discovers_a(Config::default(), now);
    a.goodbye();
    let bye = transmits(&mut a);
    assert_eq!(bye.len(), 1);
    deliver(&mut b, now + Duration::from_secs(1), &bye);
    a_is_gone(&mut b, a_id);
}

#[test]
fn loopback_and_unspecified_addresses_received_are_dropped() {
    let now = Instant::now();
    let (mut b, _) = node(Config::default(), now, &[], "10.0.0.2");
    let id = peer();
    let p = rust_libp2p_style(
        id,
        &[
            "/ip4/127.0.0.1/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip4/0.0.0.0/tcp/1",
            "/ip4/10.0.0.3/tcp/1",
        ],
        60,
    );
    deliver(&mut b, now, &[p]);
    assert_eq!(
        events(&mut b),
        vec![Event::Discovered {
            peer: id,
            addrs: vec![ma("/ip4/10.0.0.3/tcp/1")]
        }]
    );
    // A peer with nothing usable is not a peer at all.
    let p = rust_libp2p_style(peer(), &["/ip4/127.0.0.1/tcp/1"], 60);
    deliver(&mut b, now, &[p]);
    assert!(events(&mut b).is_empty());
    assert_eq!(b.peers().count(), 1);
}

/// Every truncation and many byte flips of real packets of both styles: the core must refuse
/// or accept each one without panicking, and never learn a peer from a refused packet.
#[test]
fn mutated_packets_never_panic() {
    let now = Instant::now();
    let (mut a, _) = node(Config::default(), now, &["/ip4/10.0.0.1/tcp/1"], "10.0.0.1");
    let q = transmits(&mut a);
    deliver(&mut a, now, &q);
    let ours = transmits(&mut a).remove(0);
    let id = peer();
    let samples = [
        ours,
        q[0].clone(),
        rust_libp2p_style(id, &["/ip4/10.0.0.3/tcp/1"], 60),
        zeroconf_style(
            id,
            &["/ip4/10.0.0.5/tcp/4001", "/ip6/2001:db8::5/tcp/4001"],
            4500,
        ),
    ];
    let (mut b, _) = node(Config::default(), now, &[], "10.0.0.2");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let (mut refused, mut accepted) = (0, 0);
    for sample in &samples {
        for cut in 0..sample.len() {
            let peers_before = b.peers().count();
            match b.handle_packet(now, LINK, from(), &sample[..cut], cut) {
                Ok(()) => accepted += 1,
                Err(e) => {
                    refused += 1;
                    assert_eq!(e.fault(), Fault::Remote);
                    assert_eq!(b.peers().count(), peers_before);
                }
            }
        }
        for _ in 0..2000 {
            let mut m = sample.clone();
            for _ in 0..1 + next() % 4 {
                let i = next() % m.len();
                m[i] = next() as u8;
            }
            match b.handle_packet(now, LINK, from(), &m, m.len()) {
                Ok(()) => accepted += 1,
                Err(_) => refused += 1,
            }
        }
    }
    assert!(
        refused > 0 && accepted > 0,
        "refused {refused}, accepted {accepted}"
    );
    assert!(b.peers().count() <= Config::default().max_peers);
}
