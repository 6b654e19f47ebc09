//! Record and provider storage: limits, expiry, republishing, validation.

use std::time::{Duration, Instant};

use libp2p_core::{Multiaddr, PeerId};
use libp2p_kad::proto::{MessageType, ProtoMessage, ProtoPeer, ProtoRecord, Request};
use libp2p_kad::store::Due;
use libp2p_kad::{
    Action, Config, InboundError, Kad, MemoryStore, MemoryStoreConfig, ProviderRecord, Record,
    RecordRejected, RecordStore, StartError, StoreError,
};

const HOUR: Duration = Duration::from_secs(3600);

fn record(key: &[u8], value: &[u8], expires: Option<Instant>) -> Record {
    Record {
        key: key.to_vec(),
        value: value.to_vec(),
        publisher: None,
        expires,
    }
}

#[test]
fn memory_store_limits() {
    let now = Instant::now();
    let me = PeerId::random();
    let config = MemoryStoreConfig {
        max_records: 2,
        max_value_bytes: 10,
        max_key_bytes: 8,
        max_total_bytes: 24,
        max_provider_keys: 1,
        max_providers_per_key: 2,
    };
    let mut store = MemoryStore::new(me, config);
    assert_eq!(
        store.put(record(b"k", &[0; 11], None), None),
        Err(StoreError::ValueTooLarge { len: 11, max: 10 })
    );
    assert_eq!(
        store.put(record(b"123456789", b"v", None), None),
        Err(StoreError::KeyTooLarge { len: 9, max: 8 })
    );
    store.put(record(b"a", &[1; 10], None), None).unwrap();
    store.put(record(b"b", &[2; 10], None), None).unwrap();
    assert_eq!(
        store.put(record(b"c", b"x", None), None),
        Err(StoreError::MaxRecords { max: 2 })
    );
    // Replacing a record counts its new size only.
    store.put(record(b"a", &[3; 2], None), None).unwrap();
    assert_eq!(store.total_bytes(), 3 + 11);
    assert_eq!(
        store
            .put(record(b"a", &[3; 10], None), None)
            .map(|_| store.total_bytes()),
        Ok(22)
    );
    store.remove(b"b");
    assert_eq!(store.total_bytes(), 11);
    assert_eq!(store.get(b"a", now).unwrap().value, vec![3; 10]);

    let provider = |p: PeerId| ProviderRecord {
        key: b"p".to_vec(),
        provider: p,
        addrs: vec![],
        expires: None,
    };
    let (x, y, z) = (PeerId::random(), PeerId::random(), PeerId::random());
    store.add_provider(provider(x), None).unwrap();
    store.add_provider(provider(y), None).unwrap();
    // Full key: a third foreign provider is quietly left out, ours always gets in.
    store.add_provider(provider(z), None).unwrap();
    assert_eq!(store.providers(b"p", now).len(), 2);
    store.add_provider(provider(me), None).unwrap();
    let ids: Vec<PeerId> = store
        .providers(b"p", now)
        .iter()
        .map(|p| p.provider)
        .collect();
    assert!(ids.contains(&me) && ids.contains(&x) && !ids.contains(&z));
    assert_eq!(
        store.add_provider(
            ProviderRecord {
                key: b"q".to_vec(),
                ..provider(x)
            },
            None
        ),
        Err(StoreError::MaxProviderKeys { max: 1 })
    );
}

#[test]
fn entries_expire_and_our_own_come_due_for_republishing() {
    let now = Instant::now();
    let me = PeerId::random();
    let mut store = MemoryStore::new(me, MemoryStoreConfig::default());
    store
        .put(record(b"theirs", b"v", Some(now + HOUR)), None)
        .unwrap();
    store
        .put(record(b"ours", b"v", None), Some(now + 2 * HOUR))
        .unwrap();
    store
        .add_provider(
            ProviderRecord {
                key: b"prov".to_vec(),
                provider: PeerId::random(),
                addrs: vec![],
                expires: Some(now + HOUR),
            },
            None,
        )
        .unwrap();
    store
        .add_provider(
            ProviderRecord {
                key: b"mine".to_vec(),
                provider: me,
                addrs: vec![],
                expires: None,
            },
            Some(now + 3 * HOUR),
        )
        .unwrap();
    assert!(store.due(now, 10).is_empty());
    // Expired entries are invisible at once and gone after a sweep.
    assert!(store.get(b"theirs", now + HOUR).is_none());
    assert!(store.providers(b"prov", now + HOUR).is_empty());
    assert_eq!(store.expire(now + HOUR), 2);
    assert_eq!(store.num_records(), 1);
    assert_eq!(store.num_provider_keys(), 1);
    assert_eq!(
        store.due(now + 2 * HOUR, 10),
        vec![Due::Record(b"ours".to_vec())]
    );
    let mut due = store.due(now + 3 * HOUR, 10);
    due.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(
        due,
        vec![
            Due::Provider(b"mine".to_vec()),
            Due::Record(b"ours".to_vec())
        ]
    );
    assert_eq!(store.due(now + 3 * HOUR, 1).len(), 1);
    store.set_republished(&Due::Record(b"ours".to_vec()), now + 5 * HOUR);
    assert_eq!(
        store.due(now + 3 * HOUR, 10),
        vec![Due::Provider(b"mine".to_vec())]
    );
    store.remove_provider(b"mine", &me);
    assert!(store.due(now + 10 * HOUR, 10) == vec![Due::Record(b"ours".to_vec())]);
}

fn put_message(key: &[u8], value: &[u8]) -> ProtoMessage {
    ProtoMessage {
        r#type: MessageType::PutValue as i32,
        key: key.to_vec(),
        record: Some(ProtoRecord {
            key: key.to_vec(),
            value: value.to_vec(),
            time_received: String::new(),
        }),
        ..Default::default()
    }
}

#[test]
fn the_node_expires_what_it_stores_for_others() {
    let now = Instant::now();
    let config = Config::default().with_bootstrap_interval(None);
    let (ttl, provider_ttl) = (config.record_ttl, config.provider_ttl);
    let mut kad = Kad::new(PeerId::random(), config, now);
    let from = PeerId::random();
    let echo = kad
        .handle_request(&from, put_message(b"k", b"v"), now)
        .unwrap();
    assert_eq!(echo, Some(put_message(b"k", b"v")));
    let announce = ProtoMessage {
        r#type: MessageType::AddProvider as i32,
        key: b"cid".to_vec(),
        provider_peers: vec![ProtoPeer {
            id: from.to_bytes(),
            addrs: vec!["/ip4/1.2.3.4/tcp/1".parse::<Multiaddr>().unwrap().to_vec()],
            connection: 0,
        }],
        ..Default::default()
    };
    assert_eq!(kad.handle_request(&from, announce, now).unwrap(), None);
    assert_eq!(kad.store().providers(b"cid", now).len(), 1);
    assert!(kad.store().get(b"k", now).is_some());
    kad.handle_timeout(now + ttl.min(provider_ttl));
    assert_eq!(kad.store().num_records(), 0);
    assert_eq!(kad.store().num_provider_keys(), 0);
}

#[test]
fn the_node_republishes_its_own_records_and_provider_keys() {
    let now = Instant::now();
    let config = Config::default().with_bootstrap_interval(None);
    let (record_every, provider_every) = (
        config.record_republish_interval,
        config.provider_republish_interval,
    );
    let me = PeerId::random();
    let mut kad = Kad::new(me, config, now);
    let peer = PeerId::random();
    kad.add_peer(peer, &["/ip4/1.1.1.1/tcp/1".parse().unwrap()], now);
    assert_eq!(
        kad.start_providing(b"cid".to_vec(), now),
        Err(StartError::NoListenAddress)
    );
    kad.set_listen_addrs(vec!["/ip4/9.9.9.9/tcp/9".parse().unwrap()]);
    let put = kad
        .put_value(b"/v/x".to_vec(), b"1".to_vec(), 1, now)
        .unwrap();
    let provide = kad.start_providing(b"cid".to_vec(), now).unwrap();
    let drain = |kad: &mut Kad| {
        let mut kinds = Vec::new();
        while let Some(a) = kad.poll_action() {
            if let Action::SendRequest { message, .. } = a {
                kinds.push(Request::from_proto(message, kad.config().peer_limits()).unwrap());
            }
        }
        kinds
    };
    // Each starts with a lookup of its key.
    assert_eq!(drain(&mut kad).len(), 2);
    // The peer never answers; forget these two, their outcome is not the point here.
    kad.cancel(put);
    kad.cancel(provide);
    // Nothing is due before the interval.
    kad.handle_timeout(now + record_every.min(provider_every) - Duration::from_secs(120));
    assert!(drain(&mut kad).is_empty());
    // At the interval (within one maintenance sweep) both go out again.
    let t = now + record_every.max(provider_every) + Duration::from_secs(60);
    kad.handle_timeout(t);
    let sent = drain(&mut kad);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|r| matches!(r, Request::FindNode { .. })));
    let keys: Vec<Vec<u8>> = sent
        .iter()
        .map(|r| match r {
            Request::FindNode { key } => key.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert!(keys.contains(&b"/v/x".to_vec()) && keys.contains(&b"cid".to_vec()));
    // And not again right after.
    kad.handle_timeout(t + Duration::from_secs(120));
    assert!(drain(&mut kad).is_empty());
}

#[test]
fn the_validation_hook_guards_puts_both_ways() {
    let now = Instant::now();
    let mut kad = Kad::new(PeerId::random(), Config::default(), now);
    kad.set_validator(|key: &[u8], value: &[u8]| {
        if !key.starts_with(b"/v/") {
            return Err(RecordRejected::UnknownKey);
        }
        if value.is_empty() {
            return Err(RecordRejected::Invalid { reason: "empty" });
        }
        Ok(())
    });
    let from = PeerId::random();
    let err = kad
        .handle_request(&from, put_message(b"/x/1", b"v"), now)
        .unwrap_err();
    assert!(matches!(
        err,
        InboundError::Rejected(RecordRejected::UnknownKey)
    ));
    assert_eq!(
        libp2p_core::Classify::fault(&err),
        libp2p_core::Fault::Remote
    );
    assert!(kad
        .handle_request(&from, put_message(b"/v/1", b""), now)
        .is_err());
    assert_eq!(kad.store().num_records(), 0);
    assert!(kad
        .handle_request(&from, put_message(b"/v/1", b"ok"), now)
        .is_ok());
    assert_eq!(kad.store().num_records(), 1);
    assert_eq!(
        kad.put_value(b"/x/2".to_vec(), b"v".to_vec(), 1, now),
        Err(StartError::Rejected(RecordRejected::UnknownKey))
    );
}

#[test]
fn our_own_record_gives_way_only_to_a_better_one() {
    let now = Instant::now();
    let mut kad = Kad::new(PeerId::random(), Config::default(), now);
    kad.put_value(b"/v/n".to_vec(), b"2".to_vec(), 1, now)
        .unwrap();
    let from = PeerId::random();
    // The default validator keeps what it has.
    let err = kad
        .handle_request(&from, put_message(b"/v/n", b"1"), now)
        .unwrap_err();
    assert!(matches!(
        err,
        InboundError::Rejected(RecordRejected::Outdated)
    ));
    // The same value is fine (a peer storing it back to us).
    assert!(kad
        .handle_request(&from, put_message(b"/v/n", b"2"), now)
        .is_ok());
    // A validator that prefers the larger value lets a newer one in.
    struct Larger;
    impl libp2p_kad::RecordValidator for Larger {
        fn validate(&self, _: &[u8], _: &[u8]) -> Result<(), RecordRejected> {
            Ok(())
        }
        fn select(&self, _: &[u8], values: &[&[u8]]) -> usize {
            (0..values.len()).max_by_key(|&i| values[i]).unwrap_or(0)
        }
    }
    kad.set_validator(Larger);
    assert!(kad
        .handle_request(&from, put_message(b"/v/n", b"1"), now)
        .is_err());
    assert!(kad
        .handle_request(&from, put_message(b"/v/n", b"3"), now)
        .is_ok());
    assert_eq!(kad.store().get(b"/v/n", now).unwrap().value, b"3".to_vec());
}
