//! Hostile peers against the gossipsub service, with scoring on: a flood of invalid
//! signatures, endless IHAVE, GRAFT spam while backed off. The attacker is a raw host that
//! speaks `/meshsub/1.1.0` by hand (RPCs built from the crate's proto types, framed by its
//! codec); the victim V is a real service with two honest neighbours, A and B, over the muxed
//! memory transport. Each test checks that the attacker's score falls, that it is pruned or
//! graylisted (its RPCs dropped unread), and that A's messages still reach B through V.
//!
//! The score parameters (every test): the crate's defaults (thresholds gossip -10, publish
//! -50, graylist -80; behaviour penalty P7 weight -10, threshold 0, decay interval 1 s) with
//! the topic scored by `TopicScoreParams::default()` except: topic weight 1, invalid message
//! deliveries (P4) weight -1, and slow decays (P4 0.9, P7 0.9 per second) so that a score
//! stays where the attack put it for the few seconds a test looks at it.
#![cfg(feature = "service")]

#[path = "common/service.rs"]
mod service_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p_core::MuxedMemoryTransport;
use libp2p_gossipsub::proto::{self, Rpc};
use libp2p_gossipsub::{
    service, Codec, Pubsub, ScoreParams, ServiceConfig, Subscription, Thresholds, TopicHash,
    TopicScoreParams,
};
use libp2p_host::{Host, Keypair, PeerId, Stream};
use service_common::{next_message, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "hostile";
/// The bound on every wait (the tests finish in a few seconds).
const GRAYLIST: f64 = -80.0;
const GOSSIP: f64 = -10.0;

fn config() -> ServiceConfig {
    let mut config = ServiceConfig::default();
    let r = &mut config.router;
    // A quick heartbeat, and broken IWANT promises noticed after a second (default 3 s).
    r.heartbeat_interval = Duration::from_millis(200);
    r.iwant_followup_time = Duration::from_secs(1);
    let mut params = ScoreParams {
        behaviour_penalty_decay: 0.9,
        ..ScoreParams::default()
    };
    params.topics.insert(
        TopicHash::new(TOPIC),
        TopicScoreParams {
            topic_weight: 1.0,
            invalid_message_deliveries_weight: -1.0,
            invalid_message_deliveries_decay: 0.9,
            ..TopicScoreParams::default()
        },
    );
    let thresholds = Thresholds::default();
    assert_eq!((thresholds.gossip, thresholds.graylist), (GOSSIP, GRAYLIST));
    r.score = Some((params, thresholds));
    config
}

struct Node {
    host: Host,
    pubsub: Pubsub,
    sub: Subscription,
}

async fn node() -> Node {
    let key = Keypair::generate_ed25519();
    let (gossipsub, pubsub) = service(config(), key.clone()).unwrap();
    let host = Host::builder(key.clone())
        .listen_on("/memory/0".parse().unwrap())
        .service(gossipsub)
        .build_with_transport(MuxedMemoryTransport::new(key.public().to_peer_id()))
        .await
        .unwrap();
    let sub = pubsub.subscribe(TOPIC).await.unwrap();
    Node { host, pubsub, sub }
}

/// A raw peer: no gossipsub service; it writes RPCs by hand on its stream to the victim and
/// keeps every RPC the victim writes on the victim's stream to it.
struct Attacker {
    host: Host,
    key: Keypair,
    stream: Stream,
    heard: Arc<Mutex<Vec<Rpc>>>,
    codec: Codec,
}

impl Attacker {
    async fn new(victim: &Node) -> Attacker {
        let key = Keypair::generate_ed25519();
        let host = Host::builder(key.clone())
            .build_with_transport(MuxedMemoryTransport::new(key.public().to_peer_id()))
            .await
            .unwrap();
        // Accepting the protocol makes identify advertise it, so the victim opens its stream.
        let mut incoming = host.accept("/meshsub/1.1.0").unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let codec = Codec::new(1 << 20);
        let sink = heard.clone();
        tokio::spawn(async move {
            while let Some(stream) = incoming.next().await {
                tokio::spawn(read_all(stream, codec, sink.clone()));
            }
        });
        host.dial(victim.host.p2p_addrs()[0].clone()).await.unwrap();
        let stream = host
            .new_stream(victim.host.peer_id(), &["/meshsub/1.1.0"])
            .await
            .unwrap();
        Attacker {
            host,
            key,
            stream,
            heard,
            codec,
        }
    }

    fn peer_id(&self) -> PeerId {
        self.host.peer_id()
    }

    /// Writes `rpcs` in one go.
    async fn send(&mut self, rpcs: &[Rpc]) {
        let mut bytes = Vec::new();
        for rpc in rpcs {
            self.codec.encode(rpc, &mut bytes).unwrap();
        }
        self.stream.write_all(&bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The control messages heard from the victim so far, of one kind.
    fn heard<T>(&self, f: impl Fn(&proto::ControlMessage) -> Vec<T>) -> Vec<T> {
        self.heard
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.control.as_ref())
            .flat_map(f)
            .collect()
    }

    /// A message it signs properly.
    fn message(&self, seqno: u64, data: &[u8]) -> proto::Message {
        let mut m = proto::Message {
            from: Some(self.peer_id().to_bytes()),
            data: Some(data.to_vec()),
            seqno: Some(seqno.to_be_bytes().to_vec()),
            topic: TOPIC.into(),
            signature: None,
            key: None,
        };
        libp2p_gossipsub::message::sign(&mut m, &self.key).unwrap();
        m
    }
}

/// Decodes the victim's RPCs until its stream ends.
async fn read_all(mut stream: Stream, codec: Codec, sink: Arc<Mutex<Vec<Rpc>>>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Ok(Some((rpc, used))) = codec.decode(&buf) {
            buf.drain(..used);
            sink.lock().unwrap().push(rpc);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn subscribe() -> Rpc {
    Rpc {
        subscriptions: vec![proto::SubOpts {
            subscribe: Some(true),
            topic_id: Some(TOPIC.into()),
        }],
        ..Default::default()
    }
}

fn control(c: proto::ControlMessage) -> Rpc {
    Rpc {
        control: Some(c),
        ..Default::default()
    }
}

fn graft() -> Rpc {
    control(proto::ControlMessage {
        graft: vec![proto::ControlGraft {
            topic_id: Some(TOPIC.into()),
        }],
        ..Default::default()
    })
}

fn prune(backoff: u64) -> Rpc {
    control(proto::ControlMessage {
        prune: vec![proto::ControlPrune {
            topic_id: Some(TOPIC.into()),
            peers: Vec::new(),
            backoff: Some(backoff),
        }],
        ..Default::default()
    })
}

fn ihave(ids: Vec<Vec<u8>>) -> Rpc {
    control(proto::ControlMessage {
        ihave: vec![proto::ControlIHave {
            topic_id: Some(TOPIC.into()),
            message_ids: ids,
        }],
        ..Default::default()
    })
}

/// `count` IHAVEs of 100 fresh ids each (`batch` numbers them across calls).
fn ihaves(batch: &mut u32, count: usize) -> Vec<Rpc> {
    (0..count)
        .map(|_| {
            *batch += 1;
            let b = *batch;
            ihave(
                (0..100u32)
                    .map(|k| [b.to_be_bytes(), k.to_be_bytes()].concat())
                    .collect(),
            )
        })
        .collect()
}

fn publish(m: proto::Message) -> Rpc {
    Rpc {
        publish: vec![m],
        ..Default::default()
    }
}

/// Polls `f` every 20 ms until it holds, for at most [`WAIT`].
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"));
}

/// V with A and B (both meshed with V), and the attacker subscribed (and, with `graft`, in
/// V's mesh).
async fn setup(graft_in: bool) -> (Node, Node, Node, Attacker) {
    let (v, a, b) = (node().await, node().await, node().await);
    for n in [&a, &b] {
        n.host.dial(v.host.p2p_addrs()[0].clone()).await.unwrap();
    }
    let mut x = Attacker::new(&v).await;
    let mut first = vec![subscribe()];
    if graft_in {
        first.push(graft());
    }
    x.send(&first).await;
    let (pa, pb, px) = (a.host.peer_id(), b.host.peer_id(), x.peer_id());
    until("V meshed with A and B, and knows X", || async {
        let mesh = v.pubsub.mesh_peers(TOPIC).await.unwrap();
        let peers = v.pubsub.topic_peers(TOPIC).await.unwrap();
        mesh.contains(&pa)
            && mesh.contains(&pb)
            && peers.contains(&px)
            && (!graft_in || mesh.contains(&px))
    })
    .await;
    for n in [&a, &b] {
        let pv = v.host.peer_id();
        until("A and B meshed with V", || async {
            n.pubsub.mesh_peers(TOPIC).await.unwrap().contains(&pv)
        })
        .await;
    }
    (v, a, b, x)
}

/// A's message reaches B (through V) and V.
async fn others_still_receive(a: &Node, b: &mut Node, v: &mut Node, data: &str) {
    a.pubsub.publish(TOPIC, data.to_owned()).await.unwrap();
    assert_eq!(next_message(&mut b.sub).await.data, data.as_bytes());
    assert_eq!(next_message(&mut v.sub).await.data, data.as_bytes());
}

async fn score(v: &Node, x: &Attacker) -> f64 {
    v.pubsub
        .peer_score(x.peer_id())
        .await
        .unwrap()
        .expect("scoring is on and X is known")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invalid_signatures_graylists_and_prunes_the_flooder() {
    let (mut v, a, mut b, mut x) = setup(true).await;
    let px = x.peer_id();
    assert!(score(&v, &x).await >= 0.0);
    // Twenty messages with a broken signature, each in its own RPC: P4 = -(n^2), below the
    // graylist threshold (-80) at the ninth; the RPCs after that are dropped unread.
    let mut rpcs = Vec::new();
    for n in 0..20u64 {
        let mut m = x.message(n, b"forged");
        m.signature = Some(vec![0; 64]);
        rpcs.push(publish(m));
    }
    x.send(&rpcs).await;
    until("the flood counted", || async {
        let s = v.pubsub.stats().await.unwrap().router;
        s.invalid + s.graylisted_rpcs >= 20
    })
    .await;
    let stats = v.pubsub.stats().await.unwrap().router;
    assert!(stats.invalid >= 9, "{stats:?}");
    assert!(stats.graylisted_rpcs >= 1, "{stats:?}");
    assert!(score(&v, &x).await < GRAYLIST);
    // Graylisted: even a properly signed message from it is dropped unread.
    x.send(&[publish(x.message(100, b"valid but graylisted"))])
        .await;
    until("the valid message dropped", || async {
        v.pubsub.stats().await.unwrap().router.graylisted_rpcs > stats.graylisted_rpcs
    })
    .await;
    // The heartbeat prunes it from V's mesh, and tells it so.
    until("X pruned", || async {
        !v.pubsub.mesh_peers(TOPIC).await.unwrap().contains(&px)
            && !x.heard(|c| c.prune.clone()).is_empty()
    })
    .await;
    // The others keep receiving; the graylisted message never arrived anywhere.
    others_still_receive(&a, &mut b, &mut v, "after the flood").await;
    assert_eq!(v.pubsub.stats().await.unwrap().router.delivered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_ihave_is_capped_then_ignored_and_its_sender_pruned() {
    let (mut v, a, mut b, mut x) = setup(true).await;
    let px = x.peer_id();
    let max_ihaves = config().router.max_ihave_messages;
    // Fifty IHAVEs in one write, each of 100 ids V never saw: five times the per-heartbeat
    // maximum of IHAVE messages.
    let mut batch = 0u32;
    x.send(&ihaves(&mut batch, 5 * max_ihaves)).await;
    until("the burst handled, V's IWANTs heard", || async {
        v.pubsub.stats().await.unwrap().router.ignored_ihaves > 0
            && !x.heard(|c| c.iwant.clone()).is_empty()
    })
    .await;
    // (Room for the IWANTs still on their way.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    let iwants = x.heard(|c| c.iwant.clone());
    assert!(
        !iwants.is_empty() && iwants.len() < 5 * max_ihaves,
        "{} IWANTs for {} IHAVEs",
        iwants.len(),
        5 * max_ihaves
    );
    // It keeps going, a burst every heartbeat, and never delivers what it announced: each
    // IWANT's promise breaks after a second (P7), its score falls below the gossip threshold
    // and V stops asking.
    tokio::time::timeout(WAIT, async {
        loop {
            x.send(&ihaves(&mut batch, 2 * max_ihaves)).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if score(&v, &x).await < GOSSIP {
                return;
            }
        }
    })
    .await
    .expect("X below the gossip threshold in time");
    let stats = v.pubsub.stats().await.unwrap().router;
    assert!(stats.broken_promises >= 1, "{stats:?}");
    // Now its IHAVEs are ignored whole (below the gossip threshold), or its RPCs dropped
    // unread (below the graylist one, where the broken promises soon put it): no IWANT for a
    // fresh burst.
    let asked_before = x.heard(|c| c.iwant.clone()).len();
    let refused = |s: &libp2p_gossipsub::Stats| s.ignored_ihaves + s.graylisted_rpcs;
    let refused_before = refused(&stats);
    x.send(&ihaves(&mut batch, max_ihaves)).await;
    until("the late burst refused", || async {
        refused(&v.pubsub.stats().await.unwrap().router) >= refused_before + max_ihaves as u64
    })
    .await;
    assert!(score(&v, &x).await < GOSSIP);
    assert_eq!(x.heard(|c| c.iwant.clone()).len(), asked_before);
    // With a negative score it leaves V's mesh at the next heartbeat.
    until("X pruned", || async {
        !v.pubsub.mesh_peers(TOPIC).await.unwrap().contains(&px)
            && !x.heard(|c| c.prune.clone()).is_empty()
    })
    .await;
    others_still_receive(&a, &mut b, &mut v, "after the IHAVEs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graft_spam_while_backed_off_graylists_the_spammer() {
    let (mut v, a, mut b, mut x) = setup(true).await;
    let px = x.peer_id();
    // X leaves V's mesh itself, asking for a minute's backoff...
    x.send(&[prune(60)]).await;
    until("X out of V's mesh", || async {
        !v.pubsub.mesh_peers(TOPIC).await.unwrap().contains(&px)
    })
    .await;
    assert!(score(&v, &x).await >= 0.0);
    // ...then GRAFTs again and again, each in its own RPC. Within the flood threshold each
    // costs two penalties (P7 = -10 * n^2): the first puts it at -40, the second at -160.
    let prunes_before = x.heard(|c| c.prune.clone()).len();
    let spam: Vec<Rpc> = (0..10).map(|_| graft()).collect();
    x.send(&spam).await;
    until("the spam counted", || async {
        let s = v.pubsub.stats().await.unwrap().router;
        s.grafts_during_backoff + s.graylisted_rpcs >= 10
    })
    .await;
    let stats = v.pubsub.stats().await.unwrap().router;
    assert!(stats.grafts_during_backoff >= 2, "{stats:?}");
    assert!(stats.graylisted_rpcs >= 1, "{stats:?}");
    assert!(score(&v, &x).await < GRAYLIST);
    // Each GRAFT it got through was refused with a PRUNE; it never got back in.
    until("the refusals heard", || async {
        x.heard(|c| c.prune.clone()).len() >= prunes_before + 2
    })
    .await;
    assert!(!v.pubsub.mesh_peers(TOPIC).await.unwrap().contains(&px));
    // Graylisted, even its subscription changes go unheard.
    x.send(&[Rpc {
        subscriptions: vec![proto::SubOpts {
            subscribe: Some(false),
            topic_id: Some(TOPIC.into()),
        }],
        ..Default::default()
    }])
    .await;
    until("the unsubscribe dropped", || async {
        v.pubsub.stats().await.unwrap().router.graylisted_rpcs > stats.graylisted_rpcs
    })
    .await;
    assert!(v.pubsub.topic_peers(TOPIC).await.unwrap().contains(&px));
    others_still_receive(&a, &mut b, &mut v, "after the GRAFTs").await;
}
