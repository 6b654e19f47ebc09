//! Junk from a peer costs it its request or stream, never our routing table or store.

use std::time::{Duration, Instant};

use libp2p_core::{Classify, Fault, Multiaddr, PeerId};
use libp2p_kad::proto::{self, MessageType, ProtoMessage, ProtoPeer, ProtoRecord};
use libp2p_kad::{
    Action, Config, DecodeError, Event, FindNodeError, InboundError, Kad, Mode, QueryResult,
};

fn addr() -> Multiaddr {
    "/ip4/10.1.1.1/tcp/4001".parse().unwrap()
}

#[test]
fn junk_requests_are_typed_errors_and_change_nothing() {
    let now = Instant::now();
    let mut kad = Kad::new(PeerId::random(), Config::default(), now);
    let known = PeerId::random();
    kad.add_peer(known, &[addr()], now);
    let from = PeerId::random();
    let junk = [
        ProtoMessage {
            r#type: 99,
            ..Default::default()
        },
        // PUT_VALUE without a record, and with a record under another key.
        ProtoMessage {
            r#type: MessageType::PutValue as i32,
            key: b"a".to_vec(),
            ..Default::default()
        },
        ProtoMessage {
            r#type: MessageType::PutValue as i32,
            key: b"a".to_vec(),
            record: Some(ProtoRecord {
                key: b"b".to_vec(),
                value: b"v".to_vec(),
                time_received: String::new(),
            }),
            ..Default::default()
        },
    ];
    for msg in junk {
        let err = kad.handle_request(&from, msg, now).unwrap_err();
        assert!(matches!(err, InboundError::Decode(_)), "{err:?}");
        assert_eq!(err.fault(), Fault::Remote);
    }
    // An ADD_PROVIDER for someone else is ignored.
    let other = ProtoMessage {
        r#type: MessageType::AddProvider as i32,
        key: b"cid".to_vec(),
        provider_peers: vec![ProtoPeer {
            id: PeerId::random().to_bytes(),
            addrs: vec![addr().to_vec()],
            connection: 0,
        }],
        ..Default::default()
    };
    assert_eq!(kad.handle_request(&from, other, now).unwrap(), None);
    assert_eq!(kad.store().num_provider_keys(), 0);
    assert_eq!(kad.store().num_records(), 0);
    assert_eq!(kad.routing_table().len(), 1);
    // Bytes that are no message at all, and a length over the limit.
    assert!(matches!(
        proto::decode_frame(&[3, 0xff, 0xff, 0xff], 100),
        Err(DecodeError::Protobuf(_))
    ));
    let mut big = Vec::new();
    proto::encode_frame(
        &ProtoMessage {
            key: vec![0; 20_000],
            ..Default::default()
        },
        &mut big,
    );
    let max = Config::default().max_message_size;
    assert!(matches!(
        proto::decode_frame(&big[..4], max),
        Err(DecodeError::TooLarge {
            len: 20_004,
            max: 16384
        })
    ));
}

#[test]
fn a_client_serves_nothing() {
    let now = Instant::now();
    let mut kad = Kad::new(
        PeerId::random(),
        Config::default().with_mode(Mode::Client),
        now,
    );
    let ping = ProtoMessage {
        r#type: MessageType::Ping as i32,
        ..Default::default()
    };
    let err = kad
        .handle_request(&PeerId::random(), ping.clone(), now)
        .unwrap_err();
    assert!(matches!(err, InboundError::ClientMode));
    // A server answers the deprecated PING in kind.
    let mut server = Kad::new(PeerId::random(), Config::default(), now);
    let pong = server
        .handle_request(&PeerId::random(), ping, now)
        .unwrap()
        .unwrap();
    assert_eq!(pong.r#type, MessageType::Ping as i32);
}

#[test]
fn a_junk_or_late_response_fails_the_request_but_keeps_the_peer() {
    let now = Instant::now();
    let mut kad = Kad::new(
        PeerId::random(),
        Config::default().with_bootstrap_interval(None),
        now,
    );
    let (a, b) = (PeerId::random(), PeerId::random());
    kad.add_peer(a, &[addr()], now);
    kad.add_peer(b, &["/ip4/10.1.1.2/tcp/4001".parse().unwrap()], now);
    let query = kad.find_node(&PeerId::random(), now).unwrap();
    let mut ids = Vec::new();
    while let Some(action) = kad.poll_action() {
        if let Action::SendRequest {
            id,
            peer,
            expects_response,
            deadline,
            ..
        } = action
        {
            assert!(expects_response);
            assert_eq!(deadline, now + Config::default().request_timeout);
            ids.push((id, peer));
        }
    }
    assert_eq!(ids.len(), 2);
    // The first answers with a response of the wrong type.
    let wrong = ProtoMessage {
        r#type: MessageType::GetValue as i32,
        ..Default::default()
    };
    kad.on_response(ids[0].0, wrong, now);
    // The second never answers: its request times out.
    let late = now + Config::default().request_timeout;
    kad.handle_timeout(late);
    let mut finished = None;
    while let Some(e) = kad.poll_event() {
        if let Event::QueryFinished { id, result, stats } = e {
            assert_eq!(id, query);
            assert_eq!((stats.requests, stats.failures, stats.successes), (2, 2, 0));
            finished = Some(result);
        }
    }
    assert_eq!(finished, Some(QueryResult::FindNode(Ok(vec![]))));
    // A response after the timeout is ignored.
    let fine = ProtoMessage {
        r#type: MessageType::FindNode as i32,
        ..Default::default()
    };
    kad.on_response(ids[1].0, fine, late + Duration::from_secs(1));
    assert!(kad.poll_event().is_none());
    // Both are still in the table: junk costs the request, not the entry.
    assert_eq!(kad.routing_table().len(), 2);
}

#[test]
fn an_empty_table_has_nobody_to_ask() {
    let now = Instant::now();
    let mut kad = Kad::new(PeerId::random(), Config::default(), now);
    let id = kad.find_node(&PeerId::random(), now).unwrap();
    assert_eq!(
        kad.poll_event(),
        Some(Event::QueryFinished {
            id,
            result: QueryResult::FindNode(Err(FindNodeError::NoKnownPeers)),
            stats: libp2p_kad::QueryStats {
                requests: 0,
                successes: 0,
                failures: 0,
                hops: 0,
                found_at_hop: None,
                started: now,
                finished: now,
            }
        })
    );
}

#[test]
fn queries_are_capped_until_their_results_are_taken() {
    let now = Instant::now();
    let config = Config {
        max_queries: 2,
        ..Default::default()
    };
    let mut kad = Kad::new(PeerId::random(), config, now);
    // With an empty table each query finishes at once, but its result waits to be polled.
    kad.find_node(&PeerId::random(), now).unwrap();
    kad.find_node(&PeerId::random(), now).unwrap();
    assert_eq!(
        kad.find_node(&PeerId::random(), now),
        Err(libp2p_kad::StartError::TooManyQueries { max: 2 })
    );
    assert!(kad.poll_event().is_some());
    assert!(kad.find_node(&PeerId::random(), now).is_ok());
}

/// xorshift64*, for reproducible junk.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn mutated_messages_never_panic_and_never_touch_the_table() {
    let now = Instant::now();
    let mut kad = Kad::new(PeerId::random(), Config::default(), now);
    let known = PeerId::random();
    kad.add_peer(known, &[addr()], now);
    let peer = ProtoPeer {
        id: PeerId::random().to_bytes(),
        addrs: vec![addr().to_vec()],
        connection: 1,
    };
    let seeds: Vec<ProtoMessage> = [0, 1, 2, 3, 4, 5]
        .into_iter()
        .map(|ty| ProtoMessage {
            r#type: ty,
            key: b"some key".to_vec(),
            record: Some(ProtoRecord {
                key: b"some key".to_vec(),
                value: b"value".to_vec(),
                time_received: String::new(),
            }),
            closer_peers: vec![peer.clone()],
            provider_peers: vec![peer.clone()],
            cluster_level_raw: 0,
        })
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let from = PeerId::random();
    let (mut decoded, mut served) = (0, 0);
    for round in 0..20_000 {
        let mut frame = Vec::new();
        proto::encode_frame(&seeds[round % seeds.len()], &mut frame);
        // Flip up to four bytes past the length prefix, sometimes cut the tail.
        for _ in 0..1 + next(&mut state) % 4 {
            let at = 1 + (next(&mut state) as usize) % (frame.len() - 1);
            frame[at] ^= 1 << (next(&mut state) % 8);
        }
        if next(&mut state).is_multiple_of(8) {
            let len = 1 + (next(&mut state) as usize) % frame.len();
            frame.truncate(len);
        }
        if let Ok(Some((msg, _))) = proto::decode_frame(&frame, 16 * 1024) {
            decoded += 1;
            if kad.handle_request(&from, msg.clone(), now).is_ok() {
                served += 1;
            }
            for ty in [
                MessageType::FindNode,
                MessageType::GetValue,
                MessageType::GetProviders,
            ] {
                let _ =
                    proto::Response::from_proto(msg.clone(), ty, Config::default().peer_limits());
            }
        }
    }
    assert!(
        decoded > 1000 && served > 100,
        "{decoded} decoded, {served} served"
    );
    assert_eq!(kad.routing_table().len(), 1);
    assert!(kad.routing_table().get(&known).is_some());
}
