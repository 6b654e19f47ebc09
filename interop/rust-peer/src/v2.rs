//! The PEER-CLI v2 roles (/work/shared/PEER-CLI-v2.md, mirrored in CONTRACT.md): Kademlia
//! (`--kad`, `--bootstrap`, `--provide`, `--find-providers`, `--find-peer`), gossipsub
//! (`--gossip`, `--publish`, `--count`, `--publish-wait`) and mDNS (`--mdns`), on any mix of
//! TCP, WebSocket and QUIC listen addresses.
//!
//! One event loop drives them all, in the contract's order: the `LISTEN` lines, the
//! connections to `--dial` / `--bootstrap` peers, the bootstrap (`BOOTSTRAP OK`), then the one
//! Kademlia action or the publishing; `GOSSIP` and `MDNS` lines whenever their events come.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::Ordering,
    time::Duration,
};

use futures::StreamExt as _;
use libp2p::{
    gossipsub, identify, kad, mdns,
    multiaddr::Multiaddr,
    swarm::{dial_opts::DialOpts, SwarmEvent},
    PeerId, Swarm,
};
use sha2::{Digest as _, Sha256};
use tokio::time::{sleep_until, Instant};

use super::{
    log_event, other, print_line, Behaviour, BehaviourEvent, Extras, Fail, Listeners, SERVING,
};

/// Pause between two `--publish` messages (the contract's 50 ms).
const PUBLISH_GAP: Duration = Duration::from_millis(50);

/// The v2 part of the command line.
pub(crate) struct Options {
    pub(crate) listen: Vec<Multiaddr>,
    /// `--dial` peers: connected first, like `--bootstrap` ones (never an echo/ping action here).
    pub(crate) dial: Vec<(Multiaddr, PeerId)>,
    pub(crate) bootstrap: Vec<(Multiaddr, PeerId)>,
    pub(crate) kad: bool,
    pub(crate) provide: Option<String>,
    pub(crate) find_providers: Option<String>,
    pub(crate) find_peer: Option<PeerId>,
    pub(crate) gossip: Option<String>,
    pub(crate) publish: Option<String>,
    pub(crate) count: u32,
    pub(crate) publish_wait: Duration,
    pub(crate) mdns: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: Vec::new(),
            dial: Vec::new(),
            bootstrap: Vec::new(),
            kad: false,
            provide: None,
            find_providers: None,
            find_peer: None,
            gossip: None,
            publish: None,
            count: 1,
            publish_wait: Duration::from_secs(10),
            mdns: false,
        }
    }
}

impl Options {
    /// Whether any v2 role was asked for (else the v1 modes run as before).
    pub(crate) fn any(&self) -> bool {
        self.kad_wanted()
            || self.gossip.is_some()
            || self.publish.is_some()
            || self.mdns
            || !self.bootstrap.is_empty()
    }

    fn kad_wanted(&self) -> bool {
        self.kad
            || self.provide.is_some()
            || self.find_providers.is_some()
            || self.find_peer.is_some()
    }

    pub(crate) fn extras(&self) -> Extras {
        Extras {
            kad: self.kad_wanted(),
            gossip: self.gossip.is_some(),
            mdns: self.mdns,
        }
    }

    pub(crate) fn check(&self) -> Result<(), Fail> {
        let finds = self.find_providers.is_some() as u8
            + self.find_peer.is_some() as u8
            + self.provide.is_some() as u8;
        if finds > 1 {
            return Err(Fail::Usage(
                "--provide, --find-providers and --find-peer exclude each other".into(),
            ));
        }
        if self.provide.is_some() && self.listen.is_empty() {
            return Err(Fail::Usage(
                "--provide needs --listen (a provider must be reachable)".into(),
            ));
        }
        if (self.find_providers.is_some() || self.find_peer.is_some()) && !self.listen.is_empty() {
            return Err(Fail::Usage(
                "--find-providers and --find-peer are dial-mode options".into(),
            ));
        }
        if self.publish.is_some() && self.gossip.is_none() {
            return Err(Fail::Usage("--publish needs --gossip".into()));
        }
        if self.listen.is_empty() && self.dial.is_empty() && self.bootstrap.is_empty() && !self.mdns
        {
            return Err(Fail::Usage(
                "nothing to listen on and nobody to connect to".into(),
            ));
        }
        Ok(())
    }
}

/// The DHT key of a KEY string: the sha2-256 multihash of its UTF-8 bytes (`0x12 0x20 ||
/// sha256(KEY)`), as a CIDv1 raw of it carries.
pub(crate) fn dht_key(key: &str) -> kad::RecordKey {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend_from_slice(&Sha256::digest(key.as_bytes()));
    kad::RecordKey::new(&bytes)
}

/// Where the node is in the contract's sequence.
#[derive(PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for every `LISTEN` line.
    Listening,
    /// Waiting for every `--dial` / `--bootstrap` connection.
    Connecting,
    /// The Kademlia bootstrap query runs.
    Bootstrapping(kad::QueryId),
    /// The Kademlia action runs (`--provide`, `--find-*`).
    Acting(kad::QueryId),
    /// Waiting for a mesh peer before publishing, until the deadline.
    MeshWait(Instant),
    /// Publishing: the next message (1-based) and when.
    Publishing(u32, Instant),
    /// Nothing left to do but serve (and print what arrives).
    Serving,
}

struct Node {
    swarm: Swarm<Behaviour>,
    options: Options,
    phase: Phase,
    /// `--dial` and `--bootstrap` peers not yet connected.
    pending: HashSet<PeerId>,
    topic: Option<gossipsub::IdentTopic>,
    /// Peers mDNS found (each printed once), and those whose `MDNS CONNECTED` is printed.
    mdns_seen: HashSet<PeerId>,
    mdns_connected: HashSet<PeerId>,
    /// Providers found so far by `--find-providers`.
    providers: HashSet<PeerId>,
}

/// Runs the v2 roles until the last result line (dial mode) or the timeout (serving roles).
pub(crate) async fn run(mut swarm: Swarm<Behaviour>, options: Options) -> Result<String, Fail> {
    let serving = !options.listen.is_empty() || options.gossip.is_some() || options.mdns;
    SERVING.store(serving, Ordering::SeqCst);
    let mut listeners = Listeners::start(&mut swarm, &options.listen)?;
    let topic = options.gossip.as_ref().map(gossipsub::IdentTopic::new);
    if let (Some(topic), Some(g)) = (&topic, swarm.behaviour_mut().gossipsub.as_mut()) {
        g.subscribe(topic)
            .map_err(|e| other(format!("subscribe {topic}: {e}")))?;
    }
    let mut node = Node {
        swarm,
        options,
        phase: Phase::Listening,
        pending: HashSet::new(),
        topic,
        mdns_seen: HashSet::new(),
        mdns_connected: HashSet::new(),
        providers: HashSet::new(),
    };
    if listeners.all_printed() {
        node.connect()?;
    }
    loop {
        let wake = match node.phase {
            Phase::MeshWait(_) | Phase::Publishing(..) => {
                Instant::now() + Duration::from_millis(10)
            }
            _ => Instant::now() + Duration::from_secs(3600),
        };
        let event = tokio::select! {
            event = node.swarm.select_next_some() => Some(event),
            _ = sleep_until(wake) => None,
        };
        if let Some(event) = event {
            log_event(&event);
            if let SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } = &event
            {
                listeners.bound(*listener_id, address.clone());
                if node.phase == Phase::Listening && listeners.all_printed() {
                    node.connect()?;
                }
                continue;
            }
            if let Some(line) = node.on_event(event)? {
                return Ok(line);
            }
        }
        node.on_tick()?;
    }
}

impl Node {
    /// After the `LISTEN` lines: dial every `--dial` and `--bootstrap` peer.
    fn connect(&mut self) -> Result<(), Fail> {
        self.phase = Phase::Connecting;
        let peers: Vec<_> = self
            .options
            .dial
            .iter()
            .chain(&self.options.bootstrap)
            .cloned()
            .collect();
        for (addr, peer) in peers {
            if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
                k.add_address(&peer, without_p2p(&addr));
            }
            if self.pending.insert(peer) {
                self.swarm
                    .dial(addr.clone())
                    .map_err(|e| other(format!("dial {addr}: {e}")))?;
            }
        }
        self.connected_check()
    }

    /// Once every peer to connect is connected: the bootstrap, or what comes after it.
    fn connected_check(&mut self) -> Result<(), Fail> {
        if self.phase != Phase::Connecting || !self.pending.is_empty() {
            return Ok(());
        }
        let kad_wanted = self.options.kad_wanted();
        if !self.options.bootstrap.is_empty() {
            if kad_wanted {
                let kad = self.swarm.behaviour_mut().kad.as_mut().expect("kad is on");
                let id = kad
                    .bootstrap()
                    .map_err(|e| other(format!("bootstrap: {e}")))?;
                self.phase = Phase::Bootstrapping(id);
                return Ok(());
            }
            // Gossip without Kademlia: --bootstrap only connects.
            print_line(&format!(
                "BOOTSTRAP OK {}",
                self.swarm.connected_peers().count()
            ));
        }
        self.act()
    }

    /// After the bootstrap: the Kademlia action, or the publishing, or nothing.
    fn act(&mut self) -> Result<(), Fail> {
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            let query = if let Some(key) = &self.options.provide {
                Some(
                    kad.start_providing(dht_key(key))
                        .map_err(|e| other(format!("provide: {e}")))?,
                )
            } else if let Some(key) = &self.options.find_providers {
                Some(kad.get_providers(dht_key(key)))
            } else {
                self.options
                    .find_peer
                    .map(|peer| kad.get_closest_peers(peer))
            };
            if let Some(id) = query {
                self.phase = Phase::Acting(id);
                return Ok(());
            }
        }
        self.after_kad()
    }

    fn after_kad(&mut self) -> Result<(), Fail> {
        if self.options.publish.is_some() {
            self.phase = Phase::MeshWait(Instant::now() + self.options.publish_wait);
            return Ok(());
        }
        self.phase = Phase::Serving;
        Ok(())
    }

    fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .as_mut()
            .map(|k| k.kbuckets().map(|b| b.num_entries()).sum())
            .unwrap_or(0)
    }

    /// Dial mode ends after its last result line; serving roles go on.
    fn done(&mut self, line: String) -> Result<Option<String>, Fail> {
        if self.options.listen.is_empty() && self.options.gossip.is_none() && !self.options.mdns {
            return Ok(Some(line));
        }
        print_line(&line);
        self.after_kad()?;
        Ok(None)
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Result<Option<String>, Fail> {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if self.mdns_seen.contains(&peer_id) && self.mdns_connected.insert(peer_id) {
                    print_line(&format!("MDNS CONNECTED {peer_id}"));
                }
                if self.pending.remove(&peer_id) {
                    self.connected_check()?;
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if self.pending.contains(&peer) => {
                if self.phase == Phase::Connecting && !self.swarm.is_connected(&peer) {
                    return Err(other(format!("connect {peer}: {error}")));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // Kademlia learns a peer's listen addresses from identify (as rust-libp2p's
                // examples do): the routing table then holds dialable addresses.
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    if info.protocols.contains(&kad::PROTOCOL_NAME) {
                        for addr in info.listen_addrs {
                            kad.add_address(&peer_id, addr);
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => return self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => {
                let author = message
                    .source
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into());
                print_line(&format!(
                    "GOSSIP {author} {}",
                    String::from_utf8_lossy(&message.data)
                ));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    if peer == *self.swarm.local_peer_id() || !self.mdns_seen.insert(peer) {
                        continue;
                    }
                    print_line(&format!("MDNS {peer}"));
                    if self.swarm.is_connected(&peer) {
                        self.mdns_connected.insert(peer);
                        print_line(&format!("MDNS CONNECTED {peer}"));
                    } else {
                        // A failure shows as no `MDNS CONNECTED` line (the remote may dial us).
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(addrs).build());
                    }
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn on_kad(&mut self, event: kad::Event) -> Result<Option<String>, Fail> {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return Ok(None);
        };
        match (&self.phase, result) {
            (Phase::Bootstrapping(q), kad::QueryResult::Bootstrap(result)) if *q == id => {
                let finished = match result {
                    Ok(ok) => ok.num_remaining == 0 || step.last,
                    // A lookup that found nobody new times out harmlessly: the table is what it is.
                    Err(e) => {
                        eprintln!("rust-peer: bootstrap: {e}");
                        step.last
                    }
                };
                if finished {
                    let size = self.routing_table_size();
                    print_line(&format!("BOOTSTRAP OK {size}"));
                    self.act()?;
                }
            }
            (Phase::Acting(q), kad::QueryResult::StartProviding(result)) if *q == id => {
                result.map_err(|e| other(format!("provide: {e}")))?;
                return self.done("PROVIDE OK".into());
            }
            (Phase::Acting(q), kad::QueryResult::GetProviders(result)) if *q == id => {
                match result {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        self.providers.extend(providers)
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("rust-peer: get providers: {e}"),
                }
                if !self.providers.is_empty() {
                    let mut ids: Vec<String> =
                        self.providers.iter().map(|p| p.to_string()).collect();
                    ids.sort();
                    if let Some(mut q) = self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .as_mut()
                        .and_then(|k| k.query_mut(&id))
                    {
                        q.finish();
                    }
                    return self.done(format!("PROVIDERS {}", ids.join(",")));
                }
                if step.last {
                    return Err(other("no provider found"));
                }
            }
            (Phase::Acting(q), kad::QueryResult::GetClosestPeers(result)) if *q == id => {
                let target = self.options.find_peer.expect("find-peer query");
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                let found = peers
                    .iter()
                    .any(|p| p.peer_id == target && !p.addrs.is_empty())
                    || self.in_routing_table(&target);
                if found {
                    return self.done(format!("PEER {target}"));
                }
                if step.last {
                    return Err(other(format!("peer {target} not found")));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn in_routing_table(&mut self, peer: &PeerId) -> bool {
        let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() else {
            return false;
        };
        kad.kbucket(*peer).is_some_and(|b| {
            b.iter()
                .any(|e| e.node.key.preimage() == peer && e.node.value.iter().next().is_some())
        })
    }

    /// Publishing: wait for a mesh peer (bounded by `--publish-wait`), then the messages 50 ms
    /// apart.
    fn on_tick(&mut self) -> Result<(), Fail> {
        let now = Instant::now();
        let (Some(topic), Some(msg)) = (self.topic.clone(), self.options.publish.clone()) else {
            return Ok(());
        };
        match self.phase {
            Phase::MeshWait(deadline) => {
                let g = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .as_ref()
                    .expect("gossip is on");
                if g.mesh_peers(&topic.hash()).next().is_some() || now >= deadline {
                    self.phase = Phase::Publishing(1, now);
                }
            }
            Phase::Publishing(i, at) if now >= at => {
                let g = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .as_mut()
                    .expect("gossip is on");
                g.publish(topic.clone(), format!("{msg}-{i}").into_bytes())
                    .map_err(|e| other(format!("publish {msg}-{i}: {e}")))?;
                if i >= self.options.count {
                    print_line(&format!("PUBLISHED {}", self.options.count));
                    self.phase = Phase::Serving;
                } else {
                    self.phase = Phase::Publishing(i + 1, now + PUBLISH_GAP);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The address without its `/p2p/<id>` suffix (Kademlia's routing table keeps bare addresses).
fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}
