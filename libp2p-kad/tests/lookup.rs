//! Lookups over a simulated network of a few hundred cores: bootstrap, providers, records,
//! nodes that go down.

mod sim;

use libp2p_kad::{Config, QueryResult};
use sim::{quantile, Net};

const N: usize = 200;

fn config() -> Config {
    Config::default().with_bootstrap_interval(None)
}

/// Node i joins knowing three nodes that joined before it, then looks itself up (the first
/// step of a bootstrap; the full one is tested apart, it costs ten times the messages).
fn joined_network(n: usize, seed: u64) -> Net {
    let mut net = Net::new(n, config(), seed);
    for i in 1..n {
        for _ in 0..3.min(i) {
            let j = net.rng.below(i);
            net.introduce(i, j);
        }
        let me = net.ids[i];
        let (result, _) = net.query(i, |k, now| k.find_node(&me, now).unwrap());
        assert!(matches!(result, QueryResult::FindNode(Ok(_))), "{result:?}");
    }
    net
}

#[test]
fn bootstrap_fills_the_buckets() {
    let n = 50;
    let mut net = joined_network(n, 5);
    let before: usize = net.nodes.iter().map(|k| k.routing_table().len()).sum();
    for i in 0..n {
        let (result, stats) = net.query(i, |k, now| k.bootstrap(now).unwrap());
        let QueryResult::Bootstrap(Ok(len)) = result else {
            panic!("{result:?}")
        };
        assert_eq!(len, net.nodes[i].routing_table().len());
        // Our own id, then one lookup per non-empty bucket: more than one lookup's worth.
        assert!(stats.requests > 20, "{stats:?}");
    }
    let after: usize = net.nodes.iter().map(|k| k.routing_table().len()).sum();
    assert!(after > before, "{before} -> {after}");
    // With 50 nodes and k = 20, every node knows at least k of the others.
    assert!(net.nodes.iter().all(|k| k.routing_table().len() >= 20));
    // An empty node cannot bootstrap.
    let (result, _) = net.query(0, |k, now| {
        for p in net_ids(k) {
            k.remove_peer(&p);
        }
        k.bootstrap(now).unwrap()
    });
    assert_eq!(
        result,
        QueryResult::Bootstrap(Err(libp2p_kad::BootstrapError::NoKnownPeers))
    );
}

fn net_ids(k: &libp2p_kad::Kad) -> Vec<libp2p_core::PeerId> {
    k.routing_table().iter().map(|e| e.peer).collect()
}

#[test]
fn every_provider_is_found_in_a_few_hops() {
    let mut net = joined_network(N, 7);

    let tables: Vec<usize> = net.nodes.iter().map(|k| k.routing_table().len()).collect();
    assert!(
        tables.iter().all(|&l| l >= 20),
        "every table holds at least k peers"
    );

    // Twenty providers announce a key each.
    let mut keys = Vec::new();
    for p in 0..20 {
        let provider = net.rng.below(N);
        let key = format!("key-{p}").into_bytes();
        let (result, _) = net.query(provider, |k, now| {
            k.start_providing(key.clone(), now).unwrap()
        });
        match result {
            QueryResult::AddProvider(Ok(n)) => assert_eq!(n, 20),
            other => panic!("{other:?}"),
        }
        keys.push((key, provider));
    }

    // Each is looked up from ten other nodes.
    let mut hops = Vec::new();
    let mut messages = Vec::new();
    for (key, provider) in &keys {
        for _ in 0..10 {
            let from = (provider + 1 + net.rng.below(N - 1)) % N;
            let (result, stats) = net.query(from, |k, now| {
                k.get_providers(key.clone(), Some(1), now).unwrap()
            });
            let QueryResult::GetProviders(Ok(found)) = result else {
                panic!("{result:?}")
            };
            let found = found.iter().find(|p| p.id == net.ids[*provider]);
            let found = found.expect("the provider is found");
            assert_eq!(found.addrs, vec![net.addrs[*provider].clone()]);
            hops.push(stats.found_at_hop.expect("found by some hop"));
            messages.push(stats.requests);
        }
    }
    let (h50, h99) = (quantile(&mut hops, 0.5), quantile(&mut hops, 0.99));
    let (m50, m99) = (quantile(&mut messages, 0.5), quantile(&mut messages, 0.99));
    println!("N={N}: GET_PROVIDERS hops median {h50} p99 {h99}, requests median {m50} p99 {m99}");
    // log2(200) is under 8; a lookup among 200 nodes with k = 20 needs very few hops.
    assert!(h99 <= 4, "hops p99 {h99}");
}

#[test]
fn lookups_survive_nodes_going_down() {
    let mut net = joined_network(N, 11);
    let key = b"survivor".to_vec();
    let provider = 5;
    let (result, _) = net.query(provider, |k, now| {
        k.start_providing(key.clone(), now).unwrap()
    });
    assert!(matches!(result, QueryResult::AddProvider(Ok(_))));
    // A fifth of the other nodes go silent: their requests time out.
    for _ in 0..N / 5 {
        let j = net.rng.below(N);
        if j != provider {
            net.down.insert(j);
        }
    }
    for _ in 0..10 {
        let from = loop {
            let f = net.rng.below(N);
            if !net.down.contains(&f) && f != provider {
                break f;
            }
        };
        let (result, stats) = net.query(from, |k, now| {
            k.get_providers(key.clone(), None, now).unwrap()
        });
        let QueryResult::GetProviders(Ok(found)) = result else {
            panic!("{result:?}")
        };
        assert!(found.iter().any(|p| p.id == net.ids[provider]));
        assert!(stats.requests >= stats.successes + stats.failures);
    }
    // FIND_NODE of a live node still ends with it as the closest.
    let target = (0..N).find(|j| !net.down.contains(j) && *j != 0).unwrap();
    let id = net.ids[target];
    let from = (0..N)
        .find(|j| !net.down.contains(j) && *j != target)
        .unwrap();
    let (result, stats) = net.query(from, |k, now| k.find_node(&id, now).unwrap());
    let QueryResult::FindNode(Ok(closest)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(closest.len(), 20);
    assert_eq!(closest[0].id, id);
    assert!(closest.iter().all(|p| !net
        .down
        .contains(&net.ids.iter().position(|x| *x == p.id).unwrap())));
    println!(
        "FIND_NODE with a fifth down: {} requests, {} failed",
        stats.requests, stats.failures
    );
}

#[test]
fn records_are_put_and_got_with_a_quorum() {
    let mut net = joined_network(120, 3);
    let key = b"/v/greeting".to_vec();
    let (result, _) = net.query(1, |k, now| {
        k.put_value(key.clone(), b"hello".to_vec(), 10, now)
            .unwrap()
    });
    assert_eq!(result, QueryResult::PutValue(Ok(20)));
    let (result, stats) = net.query(77, |k, now| k.get_value(key.clone(), 3, now).unwrap());
    assert_eq!(result, QueryResult::GetValue(Ok(b"hello".to_vec())));
    assert!(stats.found_at_hop.is_some());
    let (result, _) = net.query(78, |k, now| {
        k.get_value(b"/v/none".to_vec(), 1, now).unwrap()
    });
    assert!(matches!(
        result,
        QueryResult::GetValue(Err(libp2p_kad::GetValueError::NotFound))
    ));
}

/// Prefers the larger value, as a sequence number would.
struct Larger;

impl libp2p_kad::RecordValidator for Larger {
    fn validate(&self, _: &[u8], _: &[u8]) -> Result<(), libp2p_kad::RecordRejected> {
        Ok(())
    }
    fn select(&self, _: &[u8], values: &[&[u8]]) -> usize {
        (0..values.len()).max_by_key(|&i| values[i]).unwrap_or(0)
    }
}

#[test]
fn a_get_corrects_the_peers_with_an_old_value_or_none() {
    let mut net = joined_network(100, 9);
    for k in &mut net.nodes {
        k.set_validator(Larger);
    }
    let key = b"/v/seq".to_vec();
    let (result, _) = net.query(3, |k, now| {
        k.put_value(key.clone(), b"v2".to_vec(), 20, now).unwrap()
    });
    assert_eq!(result, QueryResult::PutValue(Ok(20)));
    let mut holders: Vec<usize> = (0..100)
        .filter(|&i| i != 3 && net.nodes[i].store().get(&key, net.now).is_some())
        .collect();
    assert_eq!(holders.len(), 20);
    // The two closest to the key (sure to be asked by any lookup of it): one goes back to an
    // old value, the other loses the record.
    let target = libp2p_kad::Key::new(key.clone());
    holders.sort_by_key(|&i| libp2p_kad::Key::from_peer(&net.ids[i]).distance(&target));
    let (old, lost) = (holders[0], holders[1]);
    let stale = libp2p_kad::Record {
        key: key.clone(),
        value: b"v1".to_vec(),
        publisher: None,
        expires: None,
    };
    use libp2p_kad::RecordStore;
    net.nodes[old].store_mut().put(stale, None).unwrap();
    net.nodes[lost].store_mut().remove(&key);
    // A reader asks for more copies than there are, so that its lookup runs to the end;
    // v2 wins and goes back to both.
    let reader = (0..100).find(|i| !holders.contains(i) && *i != 3).unwrap();
    let (result, _) = net.query(reader, |k, now| k.get_value(key.clone(), 50, now).unwrap());
    let QueryResult::GetValue(Err(libp2p_kad::GetValueError::QuorumFailed { best, found, .. })) =
        result
    else {
        panic!("{result:?}")
    };
    assert_eq!(best, Some(b"v2".to_vec()));
    assert!(found >= 19, "{found}");
    let value = |net: &Net, i: usize| net.nodes[i].store().get(&key, net.now).map(|r| r.value);
    assert_eq!(value(&net, old), Some(b"v2".to_vec()));
    assert_eq!(value(&net, lost), Some(b"v2".to_vec()));
}
