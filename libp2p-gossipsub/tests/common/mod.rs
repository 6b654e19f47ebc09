//! Helpers shared by the tests: a router under test with fake peers that we speak for by
//! hand, and a small in-memory network of routers with simulated time.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p_core::{Keypair, PeerId};
use libp2p_gossipsub::proto::{self, Rpc};
use libp2p_gossipsub::{Action, Authenticity, Config, Gossipsub, MessageId, PeerKind, TopicHash};

pub mod lcg;

pub fn topic() -> TopicHash {
    TopicHash::new("topic")
}

/// A signed router with `config`, seeded with `seed`. Its key comes from the seed too, so a
/// network built from the same seeds is the same network on every run (peer ids decide the
/// order the router walks its peers in).
pub fn router(config: Config, seed: u64, now: Instant) -> (Gossipsub, Keypair) {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_be_bytes());
    secret[8] = 1;
    let key = Keypair::ed25519_from_bytes(secret).expect("32 bytes are an ed25519 secret");
    let r = Gossipsub::new(config, Authenticity::Signed(key.clone()), seed, now).unwrap();
    (r, key)
}

pub fn drain(r: &mut Gossipsub) -> Vec<Action> {
    std::iter::from_fn(|| r.poll_action()).collect()
}

/// The RPCs in `actions` for `peer`, merged.
pub fn sent_to(actions: &[Action], peer: &PeerId) -> Rpc {
    let mut merged = Rpc::default();
    for a in actions {
        if let Action::SendRpc { peer: p, rpc } = a {
            if p == peer {
                merged.subscriptions.extend(rpc.subscriptions.clone());
                merged.publish.extend(rpc.publish.clone());
                if let Some(c) = &rpc.control {
                    let m = merged.control.get_or_insert_with(Default::default);
                    m.ihave.extend(c.ihave.clone());
                    m.iwant.extend(c.iwant.clone());
                    m.graft.extend(c.graft.clone());
                    m.prune.extend(c.prune.clone());
                    m.idontwant.extend(c.idontwant.clone());
                }
            }
        }
    }
    merged
}

pub fn control(rpc: &Rpc) -> proto::ControlMessage {
    rpc.control.clone().unwrap_or_default()
}

/// The peers `actions` GRAFT, and those they PRUNE (on any topic).
pub fn grafted(actions: &[Action]) -> Vec<PeerId> {
    peers_with(actions, |c| !c.graft.is_empty())
}

pub fn pruned(actions: &[Action]) -> Vec<PeerId> {
    peers_with(actions, |c| !c.prune.is_empty())
}

fn peers_with(actions: &[Action], f: impl Fn(&proto::ControlMessage) -> bool) -> Vec<PeerId> {
    let mut out: Vec<PeerId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SendRpc { peer, rpc } if rpc.control.as_ref().is_some_and(&f) => Some(*peer),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn delivered(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver { message, .. } => Some(message.data.clone()),
            _ => None,
        })
        .collect()
}

pub fn sub(t: &TopicHash, subscribe: bool) -> Rpc {
    Rpc {
        subscriptions: vec![proto::SubOpts {
            subscribe: Some(subscribe),
            topic_id: Some(t.as_str().into()),
        }],
        ..Default::default()
    }
}

pub fn ctl(c: proto::ControlMessage) -> Rpc {
    Rpc {
        control: Some(c),
        ..Default::default()
    }
}

pub fn graft(t: &TopicHash) -> Rpc {
    ctl(proto::ControlMessage {
        graft: vec![proto::ControlGraft {
            topic_id: Some(t.as_str().into()),
        }],
        ..Default::default()
    })
}

pub fn prune(t: &TopicHash, backoff: Option<u64>, px: &[PeerId]) -> Rpc {
    ctl(proto::ControlMessage {
        prune: vec![proto::ControlPrune {
            topic_id: Some(t.as_str().into()),
            peers: px
                .iter()
                .map(|p| proto::PeerInfo {
                    peer_id: Some(p.to_bytes()),
                    signed_peer_record: None,
                })
                .collect(),
            backoff,
        }],
        ..Default::default()
    })
}

pub fn ihave(t: &TopicHash, ids: &[MessageId]) -> Rpc {
    ctl(proto::ControlMessage {
        ihave: vec![proto::ControlIHave {
            topic_id: Some(t.as_str().into()),
            message_ids: ids.iter().map(|i| i.0.clone()).collect(),
        }],
        ..Default::default()
    })
}

pub fn iwant(ids: &[Vec<u8>]) -> Rpc {
    ctl(proto::ControlMessage {
        iwant: vec![proto::ControlIWant {
            message_ids: ids.to_vec(),
        }],
        ..Default::default()
    })
}

/// A message signed by `key`.
pub fn signed(key: &Keypair, seqno: u64, t: &TopicHash, data: &[u8]) -> proto::Message {
    let mut m = proto::Message {
        from: Some(key.public().to_peer_id().to_bytes()),
        data: Some(data.to_vec()),
        seqno: Some(seqno.to_be_bytes().to_vec()),
        topic: t.as_str().into(),
        signature: None,
        key: None,
    };
    libp2p_gossipsub::message::sign(&mut m, key).unwrap();
    m
}

pub fn publish(m: proto::Message) -> Rpc {
    Rpc {
        publish: vec![m],
        ..Default::default()
    }
}

/// `n` fake peers connected to `r` (`outbound`: we dialed them), each subscribed to `t`.
pub fn fake_peers(
    r: &mut Gossipsub,
    n: usize,
    outbound: bool,
    t: &TopicHash,
    now: Instant,
) -> Vec<PeerId> {
    (0..n)
        .map(|_| {
            let p = PeerId::random();
            assert!(r.add_peer(p, PeerKind::Gossipsub1_2, outbound, None));
            r.handle_rpc(p, sub(t, true), now);
            p
        })
        .collect()
}

/// A network of routers in memory; RPCs travel through the codec, in order, with no delay.
pub struct Net {
    pub nodes: Vec<Node>,
    pub now: Instant,
    index: BTreeMap<PeerId, usize>,
    /// RPCs on their way: when they arrive, from, to, the bytes.
    in_flight: VecDeque<(Instant, usize, usize, Vec<u8>)>,
    /// How long an RPC takes over a link (zero: it arrives within the same instant).
    pub latency: Duration,
    /// Bytes sent, per node.
    pub bytes_sent: Vec<u64>,
    /// Nodes whose incoming messages are lost (their control messages still arrive).
    pub drop_publish_to: std::collections::BTreeSet<usize>,
}

pub struct Node {
    pub id: PeerId,
    pub router: Gossipsub,
    pub alive: bool,
    /// Every message delivered, in order.
    pub delivered: Vec<(MessageId, Vec<u8>)>,
    /// When each was delivered (simulated time).
    pub delivered_at: Vec<Instant>,
}

impl Net {
    pub fn new(n: usize, seed: u64, config: impl Fn(usize) -> Config) -> Net {
        let now = Instant::now();
        let mut nodes = Vec::new();
        let mut index = BTreeMap::new();
        for i in 0..n {
            let (router, key) = router(config(i), seed.wrapping_mul(1000) + i as u64, now);
            let id = key.public().to_peer_id();
            index.insert(id, i);
            nodes.push(Node {
                id,
                router,
                alive: true,
                delivered: Vec::new(),
                delivered_at: Vec::new(),
            });
        }
        Net {
            nodes,
            now,
            index,
            in_flight: VecDeque::new(),
            latency: Duration::ZERO,
            bytes_sent: vec![0; n],
            drop_publish_to: Default::default(),
        }
    }

    /// `a` dials `b`.
    pub fn connect(&mut self, a: usize, b: usize) {
        let (ida, idb) = (self.nodes[a].id, self.nodes[b].id);
        if self.nodes[a]
            .router
            .add_peer(idb, PeerKind::Gossipsub1_2, true, None)
        {
            self.nodes[b]
                .router
                .add_peer(ida, PeerKind::Gossipsub1_2, false, None);
        }
        self.settle();
    }

    /// Node `i` dies: its peers see it disconnect; it takes no further part.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        let id = self.nodes[i].id;
        let now = self.now;
        for node in self.nodes.iter_mut().filter(|n| n.alive) {
            node.router.remove_peer(&id, now);
        }
        self.settle();
    }

    /// Moves every RPC due by now, and the ones they cause, until nothing due is left.
    pub fn settle(&mut self) {
        for i in 0..self.nodes.len() {
            self.collect(i);
        }
        // Only the receiver of an RPC has something new to say.
        while self
            .in_flight
            .front()
            .is_some_and(|(due, ..)| *due <= self.now)
        {
            let (_, from, to, bytes) = self.in_flight.pop_front().expect("front exists");
            if !self.nodes[to].alive || !self.nodes[from].alive {
                continue;
            }
            let codec = self.nodes[to].router.codec();
            let (mut rpc, used) = codec.decode(&bytes).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            if self.drop_publish_to.contains(&to) {
                rpc.publish.clear();
            }
            let from_id = self.nodes[from].id;
            let now = self.now;
            self.nodes[to].router.handle_rpc(from_id, rpc, now);
            self.collect(to);
        }
    }

    fn collect(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].router.poll_action() {
            match action {
                Action::SendRpc { peer, rpc } => {
                    let to = self.index[&peer];
                    let mut bytes = Vec::new();
                    self.nodes[i]
                        .router
                        .codec()
                        .encode(&rpc, &mut bytes)
                        .unwrap();
                    self.bytes_sent[i] += bytes.len() as u64;
                    self.in_flight
                        .push_back((self.now + self.latency, i, to, bytes));
                }
                Action::Deliver { id, message, .. } => {
                    self.nodes[i].delivered.push((id, message.data));
                    self.nodes[i].delivered_at.push(self.now);
                }
                _ => {}
            }
        }
    }

    /// Advances the clock by `step` (in ticks of the link latency, if any), running every
    /// heartbeat and delivering every RPC that falls due.
    pub fn advance(&mut self, step: Duration) {
        let target = self.now + step;
        let tick = if self.latency.is_zero() {
            step
        } else {
            self.latency.min(step)
        };
        while self.now < target {
            self.now = (self.now + tick).min(target);
            let now = self.now;
            for node in self.nodes.iter_mut().filter(|n| n.alive) {
                node.router.handle_timeout(now);
            }
            self.settle();
        }
    }

    pub fn subscribe_all(&mut self, t: &TopicHash) {
        let now = self.now;
        for node in self.nodes.iter_mut() {
            node.router.subscribe(t.clone(), now).unwrap();
        }
        self.settle();
    }

    pub fn publish(&mut self, i: usize, t: &TopicHash, data: Vec<u8>) -> MessageId {
        let now = self.now;
        let id = self.nodes[i].router.publish(t.clone(), data, now).unwrap();
        self.settle();
        id
    }
}
