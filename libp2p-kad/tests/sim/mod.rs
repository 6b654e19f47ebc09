//! A deterministic network of `Kad` cores wired in memory: every message goes through the
//! codec as bytes, is delivered after a pseudo-random latency in simulated time, and nodes
//! that are down swallow requests (the sender's request then times out).

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p_core::{Fault, Multiaddr, PeerId};
use libp2p_kad::{proto, Action, Config, Event, Kad, QueryId, QueryResult, QueryStats, RequestId};

/// xorshift64*: deterministic, good enough for latencies and picks.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

enum Delivery {
    Request {
        from: usize,
        to: usize,
        id: RequestId,
        frame: Vec<u8>,
        expects_response: bool,
    },
    Response {
        to: usize,
        id: RequestId,
        frame: Vec<u8>,
    },
    Sent {
        to: usize,
        id: RequestId,
    },
    Failed {
        to: usize,
        id: RequestId,
    },
    Liveness {
        to: usize,
        peer: PeerId,
        alive: bool,
    },
    Timer {
        node: usize,
    },
}

pub struct Net {
    pub nodes: Vec<Kad>,
    pub ids: Vec<PeerId>,
    pub addrs: Vec<Multiaddr>,
    index: HashMap<PeerId, usize>,
    pub down: HashSet<usize>,
    pub now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: HashMap<u64, Delivery>,
    seq: u64,
    pub rng: Rng,
    pub messages: u64,
    pub finished: HashMap<(usize, QueryId), (QueryResult, QueryStats)>,
    max_message: usize,
}

impl Net {
    pub fn new(n: usize, config: Config, seed: u64) -> Net {
        let now = Instant::now();
        let mut net = Net {
            nodes: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            addrs: Vec::with_capacity(n),
            index: HashMap::new(),
            down: HashSet::new(),
            now,
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            seq: 0,
            rng: Rng::new(seed),
            messages: 0,
            finished: HashMap::new(),
            max_message: config.max_message_size,
        };
        for i in 0..n {
            // Ids from the seeded generator (sha2-256 multihash form), so that a seed always
            // gives the same network.
            let mut bytes = vec![0x12, 0x20];
            for _ in 0..4 {
                bytes.extend_from_slice(&net.rng.next().to_le_bytes());
            }
            let id = PeerId::from_bytes(&bytes).expect("a sha2-256 multihash");
            let addr: Multiaddr = format!("/memory/{}", i + 1).parse().unwrap();
            let mut kad = Kad::new(id, config.clone(), now);
            kad.set_listen_addrs(vec![addr.clone()]);
            net.index.insert(id, i);
            net.ids.push(id);
            net.addrs.push(addr);
            net.nodes.push(kad);
        }
        net
    }

    fn latency(&mut self) -> Duration {
        Duration::from_millis(5 + self.rng.below(95) as u64)
    }

    fn schedule(&mut self, at: Instant, d: Delivery) {
        self.seq += 1;
        self.pending.insert(self.seq, d);
        self.queue.push(Reverse((at, self.seq)));
    }

    /// Moves every pending action of node `i` onto the wire.
    fn flush(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].poll_action() {
            match action {
                Action::SendRequest {
                    id,
                    peer,
                    message,
                    expects_response,
                    deadline,
                    ..
                } => {
                    self.messages += 1;
                    let mut frame = Vec::new();
                    proto::encode_frame(&message, &mut frame);
                    let at = self.now + self.latency();
                    match self.index.get(&peer) {
                        Some(&to) => self.schedule(
                            at,
                            Delivery::Request {
                                from: i,
                                to,
                                id,
                                frame,
                                expects_response,
                            },
                        ),
                        None => self.schedule(at, Delivery::Failed { to: i, id }),
                    }
                    self.schedule(deadline, Delivery::Timer { node: i });
                }
                Action::CheckLiveness { peer, .. } => {
                    let alive = self
                        .index
                        .get(&peer)
                        .is_some_and(|j| !self.down.contains(j));
                    let at = self.now + self.latency() * 2;
                    self.schedule(at, Delivery::Liveness { to: i, peer, alive });
                }
            }
        }
        while let Some(event) = self.nodes[i].poll_event() {
            if let Event::QueryFinished { id, result, stats } = event {
                self.finished.insert((i, id), (result, stats));
            }
        }
    }

    /// Delivers messages until the network is quiet.
    pub fn run(&mut self) {
        for i in 0..self.nodes.len() {
            self.flush(i);
        }
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            self.now = self.now.max(at);
            let now = self.now;
            let d = self.pending.remove(&seq).expect("scheduled");
            match d {
                Delivery::Request {
                    from,
                    to,
                    id,
                    frame,
                    expects_response,
                } => {
                    if self.down.contains(&to) {
                        // Swallowed: the sender's request times out.
                        continue;
                    }
                    let (msg, used) = proto::decode_frame(&frame, self.max_message)
                        .expect("valid frame")
                        .expect("whole frame");
                    assert_eq!(used, frame.len());
                    let sender = self.ids[from];
                    // What the host's identify tells the receiver: the sender is a server.
                    let sender_addr = self.addrs[from].clone();
                    self.nodes[to].on_identify(sender, &[sender_addr], true, now);
                    let at = now + self.latency();
                    match self.nodes[to].handle_request(&sender, msg, now) {
                        Ok(Some(answer)) => {
                            assert!(expects_response);
                            let mut frame = Vec::new();
                            proto::encode_frame(&answer, &mut frame);
                            assert!(frame.len() <= self.max_message, "answer too large");
                            self.schedule(
                                at,
                                Delivery::Response {
                                    to: from,
                                    id,
                                    frame,
                                },
                            );
                        }
                        Ok(None) => self.schedule(at, Delivery::Sent { to: from, id }),
                        Err(_) => self.schedule(at, Delivery::Failed { to: from, id }),
                    }
                    self.flush(to);
                }
                Delivery::Response { to, id, frame } => {
                    let (msg, _) = proto::decode_frame(&frame, self.max_message)
                        .expect("valid frame")
                        .expect("whole frame");
                    self.nodes[to].on_response(id, msg, now);
                    self.flush(to);
                }
                Delivery::Sent { to, id } => {
                    self.nodes[to].on_sent(id, now);
                    self.flush(to);
                }
                Delivery::Failed { to, id } => {
                    self.nodes[to].on_request_failed(id, Fault::Network, now);
                    self.flush(to);
                }
                Delivery::Liveness { to, peer, alive } => {
                    self.nodes[to].on_liveness(&peer, alive, now);
                    self.flush(to);
                }
                Delivery::Timer { node } => {
                    self.nodes[node].handle_timeout(now);
                    self.flush(node);
                }
            }
        }
    }

    /// Node `i` learns of node `j` as a server.
    pub fn introduce(&mut self, i: usize, j: usize) {
        let (id, addr) = (self.ids[j], self.addrs[j].clone());
        self.nodes[i].add_peer(id, &[addr], self.now);
        self.flush(i);
    }

    /// Runs `f` on node `i` at the current time, then delivers until quiet; returns the
    /// query's result.
    pub fn query(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Kad, Instant) -> QueryId,
    ) -> (QueryResult, QueryStats) {
        let now = self.now;
        let id = f(&mut self.nodes[i], now);
        self.flush(i);
        self.run();
        self.finished.remove(&(i, id)).expect("query finished")
    }
}

/// The value at quantile `q` of `v` (sorted here).
pub fn quantile(v: &mut [u32], q: f64) -> u32 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}
