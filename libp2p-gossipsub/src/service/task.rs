//! The router's task: the [`Gossipsub`] core fed by the host's events, the peers' streams, the
//! application's commands and a timer at the core's `poll_timeout`; its actions carried out.
//!
//! Per peer it keeps at most one reader (the peer's inbound stream; a newer one replaces it)
//! and one writer (our outbound stream with its bounded queue). A peer is in the core while it
//! has either; it leaves the core when its last connection closes, when our writer fails, or
//! when it has neither stream left.
//!
//! Bounds: a link exists only for a connected peer (the host's connection limits bound the
//! table); the topics are the core's subscriptions (`Config::max_subscribed_topics`); at most
//! one delayed stream attempt is pending per peer; every queue is a [`ServiceConfig`] field.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use libp2p_core::{
    ConnectionId, Direction, Event, HostContext, Multiaddr, PeerId, Protocol, ServiceContext,
    Stream,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::config::ServiceConfig;
use super::handle::{Command, PeerEvent, Received, ServiceStats};
use super::io::{self, Report, WriterSetup};
use crate::proto::Rpc;
use crate::router::{Action, Gossipsub};
use crate::types::{PeerKind, TopicHash};

/// The protocols we speak, most preferred first.
pub(crate) const PROTOCOLS: [&str; 3] = [
    crate::types::GOSSIPSUB_1_2_PROTOCOL,
    crate::types::GOSSIPSUB_1_1_PROTOCOL,
    crate::types::GOSSIPSUB_1_0_PROTOCOL,
];

struct Writer {
    link: u64,
    queue: mpsc::Sender<Rpc>,
    /// The connection it opened on, once open.
    connection: Option<ConnectionId>,
}

struct Reader {
    link: u64,
    connection: ConnectionId,
    task: JoinHandle<()>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Link {
    reader: Option<Reader>,
    writer: Option<Writer>,
    /// Whether the core knows the peer.
    in_core: bool,
    /// Whether a `TryOpen` is scheduled.
    try_scheduled: bool,
}

pub(crate) struct Task {
    core: Gossipsub,
    config: ServiceConfig,
    host: Arc<dyn HostContext>,
    links: HashMap<PeerId, Link>,
    topics: HashMap<TopicHash, broadcast::Sender<Arc<Received>>>,
    events: broadcast::Sender<PeerEvent>,
    reports_tx: mpsc::Sender<Report>,
    writers: WriterSetup,
    next_link: u64,
    stats: ServiceStats,
}

impl Task {
    pub(crate) async fn run(
        core: Gossipsub,
        config: ServiceConfig,
        events: broadcast::Sender<PeerEvent>,
        mut commands: mpsc::Receiver<Command>,
        mut ctx: ServiceContext,
    ) {
        let (reports_tx, mut reports) = mpsc::channel(config.inbound_queue.max(1));
        let writers = WriterSetup {
            host: ctx.host.clone(),
            protocols: PROTOCOLS.iter().map(|p| p.to_string()).collect(),
            codec: core.codec(),
            open_timeout: config.open_timeout,
            write_timeout: config.write_timeout,
            reports: reports_tx.clone(),
            bytes_sent: Arc::new(AtomicU64::new(0)),
        };
        let mut task = Task {
            core,
            config,
            host: ctx.host.clone(),
            links: HashMap::new(),
            topics: HashMap::new(),
            events,
            reports_tx,
            writers,
            next_link: 0,
            stats: ServiceStats::default(),
        };
        // Connections that came up before we ran.
        for peer in task.host.connected_peers() {
            task.on_connected(peer);
        }
        task.drain();
        let mut handles_alive = true;
        loop {
            let deadline = tokio::time::Instant::from_std(task.core.poll_timeout());
            tokio::select! {
                // The host's events first: a connection's close must be seen before the
                // streams of a connection that came up after it (see `on_connection_closed`).
                biased;
                event = ctx.events.next() => match event {
                    Some(event) => task.on_event(event),
                    None => break,
                },
                command = commands.recv(), if handles_alive => match command {
                    Some(command) => task.on_command(command),
                    // Every handle is gone; the router keeps relaying for the network.
                    None => handles_alive = false,
                },
                report = reports.recv() => {
                    if let Some(report) = report {
                        task.on_report(report);
                    }
                }
                stream = ctx.inbound.next() => match stream {
                    Some(stream) => task.on_inbound(stream),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    task.core.handle_timeout(Instant::now());
                    task.forget_dropped_topics();
                }
            }
            task.drain();
        }
    }

    fn new_link_id(&mut self) -> u64 {
        self.next_link += 1;
        self.next_link
    }

    // ------------------------------------------------------------ the application

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Subscribe { topic, reply } => {
                let result = match self.topics.get(&topic) {
                    Some(sender) => Ok(sender.subscribe()),
                    None => match self.core.subscribe(topic.clone(), now) {
                        Ok(_) => {
                            let (sender, receiver) =
                                broadcast::channel(self.config.subscription_buffer.max(1));
                            self.topics.insert(topic, sender);
                            Ok(receiver)
                        }
                        Err(e) => Err(e),
                    },
                };
                let _ = reply.send(result);
            }
            Command::Unsubscribe { topic, reply } => {
                self.topics.remove(&topic);
                let _ = reply.send(self.core.unsubscribe(&topic, now));
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.core.publish(topic, data, now));
            }
            Command::Report {
                id,
                acceptance,
                reply,
            } => {
                let _ = reply.send(self.core.report_validation(&id, acceptance, now));
            }
            Command::MeshPeers { topic, reply } => {
                let _ = reply.send(self.core.mesh_peers(&topic).copied().collect());
            }
            Command::TopicPeers { topic, reply } => {
                let _ = reply.send(self.core.topic_peers(&topic).copied().collect());
            }
            Command::Stats { reply } => {
                let mut stats = self.stats.clone();
                stats.router = self.core.stats().clone();
                stats.peers = self.links.values().filter(|l| l.in_core).count();
                stats.bytes_sent = self.writers.bytes_sent.load(Ordering::Relaxed);
                let _ = reply.send(stats);
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.core.peer_score(&peer, now));
            }
        }
    }

    /// Leaves the topics whose subscriptions have all been dropped.
    fn forget_dropped_topics(&mut self) {
        let gone: Vec<TopicHash> = self
            .topics
            .iter()
            .filter(|(_, sender)| sender.receiver_count() == 0)
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in gone {
            self.topics.remove(&topic);
            self.core.unsubscribe(&topic, Instant::now());
        }
    }

    // ------------------------------------------------------------ the core's actions

    fn drain(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::SendRpc { peer, rpc } => self.send(peer, rpc),
                Action::Deliver {
                    id,
                    message,
                    propagation_source,
                } => {
                    let Some(sender) = self.topics.get(&message.topic) else {
                        continue;
                    };
                    let received = Received {
                        id,
                        author: message.source,
                        data: message.data,
                        topic: message.topic,
                        sequence_number: message.sequence_number,
                        propagation_source,
                    };
                    if sender.send(Arc::new(received)).is_err() {
                        // Nobody listens any more: leave the topic.
                        self.forget_dropped_topics();
                    }
                }
                Action::PeerSubscribed { peer, topic } => {
                    let _ = self.events.send(PeerEvent::Subscribed { peer, topic });
                }
                Action::PeerUnsubscribed { peer, topic } => {
                    let _ = self.events.send(PeerEvent::Unsubscribed { peer, topic });
                }
                Action::PeerExchange { topic, peers } => {
                    for peer in peers {
                        if self.host.peerstore().addrs(&peer).is_empty() {
                            continue;
                        }
                        tracing::debug!(%peer, %topic, "gossipsub: connecting to an exchanged peer");
                        let connect = self.host.connect(peer);
                        let wait = self.config.open_timeout;
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(wait, connect).await;
                        });
                    }
                }
                Action::InvalidMessage { peer, topic, error } => {
                    tracing::debug!(%peer, %topic, %error, "gossipsub: invalid message");
                }
            }
        }
    }

    fn send(&mut self, peer: PeerId, rpc: Rpc) {
        let Some(writer) = self.links.get(&peer).and_then(|l| l.writer.as_ref()) else {
            self.stats.dropped_rpcs += 1;
            return;
        };
        match writer.queue.try_send(rpc) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped_rpcs += 1;
                tracing::debug!(%peer, "gossipsub: outbound queue full, RPC dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.stats.dropped_rpcs += 1,
        }
    }

    // ------------------------------------------------------------ the host

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ConnectionEstablished { peer, .. } => self.on_connected(peer),
            Event::Identified { peer, info } => {
                let speaks = info
                    .protocols
                    .iter()
                    .any(|p| PROTOCOLS.contains(&p.as_str()));
                if speaks && self.is_connected(&peer) {
                    self.ensure_writer(peer);
                }
            }
            Event::ConnectionClosed {
                id,
                peer,
                remaining,
                ..
            } => self.on_connection_closed(peer, id, remaining),
            Event::Missed { count } => {
                tracing::debug!(count, "gossipsub: missed host events; resynchronising");
                self.resync();
            }
            _ => {}
        }
    }

    fn is_connected(&self, peer: &PeerId) -> bool {
        !self.host.connections(peer).is_empty()
    }

    /// A connection to `peer` is up: open our stream if identify said (on an earlier
    /// connection) that it speaks gossipsub; else wait for identify, then try anyway.
    fn on_connected(&mut self, peer: PeerId) {
        let known = self.host.peerstore().protocols(&peer);
        if known.iter().any(|p| PROTOCOLS.contains(&p.as_str())) {
            self.ensure_writer(peer);
        } else if known.is_empty() {
            self.schedule_try(peer);
        }
    }

    fn schedule_try(&mut self, peer: PeerId) {
        let link = self.links.entry(peer).or_default();
        if link.writer.is_some() || link.try_scheduled {
            return;
        }
        link.try_scheduled = true;
        let reports = self.reports_tx.clone();
        let wait = self.config.identify_wait;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = reports.send(Report::TryOpen { peer }).await;
        });
    }

    /// A connection to `peer` closed, leaving `remaining` others at that moment.
    ///
    /// When none remained, the peer forgot us as we forget it: a gossipsub router keeps a
    /// peer's subscriptions and mesh only while connected, and sends its own anew to a peer
    /// that comes back. So the peer goes out of the core even if it has reconnected by the
    /// time this event is read (were it kept, its old entry would take in the new session's
    /// subscriptions and hold our old mesh, and neither side would graft the other again),
    /// and then is met again over the new connection.
    fn on_connection_closed(&mut self, peer: PeerId, id: ConnectionId, remaining: usize) {
        if remaining == 0 {
            self.forget(peer);
            if self.is_connected(&peer) {
                self.on_connected(peer);
            }
            return;
        }
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if link.reader.as_ref().is_some_and(|r| r.connection == id) {
            link.reader = None;
        }
        if link
            .writer
            .as_ref()
            .is_some_and(|w| w.connection == Some(id))
        {
            link.writer = None;
        }
        if self.is_connected(&peer) {
            // Another connection remains: carry on over it.
            self.ensure_writer(peer);
            self.forget_if_idle(peer);
        } else {
            self.forget(peer);
        }
    }

    /// After missed events: forget peers no longer connected, meet the new ones.
    fn resync(&mut self) {
        let known: Vec<PeerId> = self.links.keys().copied().collect();
        for peer in known {
            if !self.is_connected(&peer) {
                self.forget(peer);
            }
        }
        for peer in self.host.connected_peers() {
            let has_writer = self.links.get(&peer).is_some_and(|l| l.writer.is_some());
            if !has_writer {
                self.on_connected(peer);
            }
        }
    }

    // ------------------------------------------------------------ streams

    fn on_inbound(&mut self, stream: Stream) {
        let peer = stream.remote_peer();
        let Some(kind) = PeerKind::from_protocol(stream.protocol()) else {
            return;
        };
        let connection = stream.connection_id();
        let link_id = self.new_link_id();
        let task = tokio::spawn(io::read_stream(
            stream,
            link_id,
            self.core.codec(),
            self.reports_tx.clone(),
        ));
        // A newer inbound stream (the peer reconnected, or reopened) replaces the old one.
        let link = self.links.entry(peer).or_default();
        link.reader = Some(Reader {
            link: link_id,
            connection,
            task,
        });
        if link.in_core {
            // A new stream from a peer we know: it may have started over without our seeing
            // its connection close (a reconnect that overlapped the old connection here).
            self.core.reannounce(&peer);
        } else {
            self.add_to_core(peer, kind);
        }
        self.ensure_writer(peer);
    }

    fn ensure_writer(&mut self, peer: PeerId) {
        let link_id = self.new_link_id();
        let link = self.links.entry(peer).or_default();
        if link.writer.is_some() {
            return;
        }
        let (queue, rx) = mpsc::channel(self.config.outbound_queue.max(1));
        link.writer = Some(Writer {
            link: link_id,
            queue,
            connection: None,
        });
        tokio::spawn(io::write_stream(self.writers.clone(), peer, link_id, rx));
    }

    fn add_to_core(&mut self, peer: PeerId, kind: PeerKind) {
        let link = self.links.entry(peer).or_default();
        if link.in_core {
            return;
        }
        let (outbound, ip) = match self.host.connections(&peer).first() {
            Some((_, info)) => (
                info.direction == Direction::Outbound,
                ip_of(&info.remote_addr),
            ),
            None => (false, None),
        };
        if self.core.add_peer(peer, kind, outbound, ip) {
            link.in_core = true;
            let _ = self.events.send(PeerEvent::Connected { peer, kind });
        }
    }

    fn remove_from_core(&mut self, peer: PeerId) {
        if let Some(link) = self.links.get_mut(&peer) {
            if link.in_core {
                link.in_core = false;
                self.core.remove_peer(&peer, Instant::now());
                let _ = self.events.send(PeerEvent::Disconnected { peer });
            }
        }
    }

    /// Drops everything of `peer` (its last connection is gone).
    fn forget(&mut self, peer: PeerId) {
        self.remove_from_core(peer);
        self.links.remove(&peer);
    }

    /// A peer with neither stream left is no gossipsub peer any more.
    fn forget_if_idle(&mut self, peer: PeerId) {
        let idle = self
            .links
            .get(&peer)
            .is_some_and(|l| l.reader.is_none() && l.writer.is_none());
        if idle {
            self.remove_from_core(peer);
            if !self.is_connected(&peer) {
                self.links.remove(&peer);
            }
        }
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Rpc { peer, link, rpc } => {
                let current = self
                    .links
                    .get(&peer)
                    .and_then(|l| l.reader.as_ref())
                    .is_some_and(|r| r.link == link);
                if current {
                    self.core.handle_rpc(peer, rpc, Instant::now());
                }
            }
            Report::ReaderEnded { peer, link, error } => {
                let Some(l) = self.links.get_mut(&peer) else {
                    return;
                };
                if l.reader.as_ref().is_none_or(|r| r.link != link) {
                    return;
                }
                l.reader = None;
                match &error {
                    Some(super::error::ReadError::Decode(e)) => {
                        self.stats.bad_streams += 1;
                        tracing::debug!(%peer, error = %e, "gossipsub: bad RPC, inbound stream dropped");
                    }
                    Some(e) => {
                        tracing::debug!(%peer, error = %e, "gossipsub: inbound stream failed")
                    }
                    None => {}
                }
                self.forget_if_idle(peer);
            }
            Report::Opened {
                peer,
                link,
                protocol,
                connection,
            } => {
                let Some(writer) = self
                    .links
                    .get_mut(&peer)
                    .and_then(|l| l.writer.as_mut())
                    .filter(|w| w.link == link)
                else {
                    return;
                };
                writer.connection = Some(connection);
                if let Some(kind) = PeerKind::from_protocol(&protocol) {
                    self.add_to_core(peer, kind);
                }
            }
            Report::OpenFailed { peer, link, error } => {
                if !self.drop_writer(peer, link) {
                    return;
                }
                tracing::debug!(%peer, %error, "gossipsub: no outbound stream");
                self.forget_if_idle(peer);
            }
            Report::WriterEnded { peer, link, error } => {
                if !self.drop_writer(peer, link) {
                    return;
                }
                if let Some(error) = error {
                    if matches!(error, super::error::WriteError::Timeout) {
                        self.stats.stalled_writes += 1;
                    }
                    tracing::debug!(%peer, %error, "gossipsub: outbound stream given up");
                }
                // Without a stream to it, the peer cannot be in our meshes: out of the core,
                // and back in when a new stream opens (on its next stream to us, or a retry).
                self.remove_from_core(peer);
                if self.is_connected(&peer) {
                    self.schedule_try(peer);
                } else {
                    self.forget(peer);
                }
            }
            Report::TryOpen { peer } => {
                if let Some(link) = self.links.get_mut(&peer) {
                    link.try_scheduled = false;
                }
                // Identify may have answered meanwhile that the peer speaks no gossipsub.
                let known = self.host.peerstore().protocols(&peer);
                let refused =
                    !known.is_empty() && !known.iter().any(|p| PROTOCOLS.contains(&p.as_str()));
                if self.is_connected(&peer) && !refused {
                    self.ensure_writer(peer);
                } else {
                    self.forget_if_idle(peer);
                }
            }
        }
    }

    /// Drops the writer of `peer` if it is the one numbered `link`.
    fn drop_writer(&mut self, peer: PeerId, link: u64) -> bool {
        match self.links.get_mut(&peer) {
            Some(l) if l.writer.as_ref().is_some_and(|w| w.link == link) => {
                l.writer = None;
                true
            }
            _ => false,
        }
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}
