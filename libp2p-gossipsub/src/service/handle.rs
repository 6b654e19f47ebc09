//! The application's side: the [`Pubsub`] handle, [`Subscription`]s and [`PeerEvents`].

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::StreamExt;
use libp2p_core::PeerId;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::error::{Closed, Lagged, PublishError, ReportError, SubscribeError};
use crate::router::Stats;
use crate::types::{Acceptance, MessageId, PeerKind, TopicHash};

/// A message received on a topic we subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// Its id (by the configured message id function).
    pub id: MessageId,
    /// Its author, when it names one (always, under the default strict validation).
    pub author: Option<PeerId>,
    /// The payload.
    pub data: Vec<u8>,
    /// The topic.
    pub topic: TopicHash,
    /// The author's sequence number, when there is one.
    pub sequence_number: Option<u64>,
    /// The peer it came from (not necessarily its author).
    pub propagation_source: PeerId,
}

/// Something that happened to the gossipsub peers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A peer speaks gossipsub with us (its first stream negotiated `kind`).
    Connected {
        /// The peer.
        peer: PeerId,
        /// What it speaks.
        kind: PeerKind,
    },
    /// A peer no longer speaks gossipsub with us (disconnected, or its streams failed).
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer joined a topic.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: TopicHash,
    },
    /// A peer left a topic.
    Unsubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: TopicHash,
    },
    /// This stream fell behind and missed this many events (the router never waits for it).
    Missed {
        /// Events lost.
        count: u64,
    },
}

/// Counters of the service and its router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceStats {
    /// The router's own counters.
    pub router: Stats,
    /// Peers the router currently speaks to.
    pub peers: usize,
    /// RPCs dropped because a peer's outbound queue was full or it had no open stream.
    pub dropped_rpcs: u64,
    /// Inbound streams ended for an oversized or malformed RPC.
    pub bad_streams: u64,
    /// Outbound writes that stalled past the write timeout.
    pub stalled_writes: u64,
    /// Bytes written on our outbound streams (RPC frames with their length prefixes), for
    /// every peer since the service started.
    pub bytes_sent: u64,
}

pub(crate) type Reply<T> = oneshot::Sender<T>;

/// The handle's requests to the router.
pub(crate) enum Command {
    Subscribe {
        topic: TopicHash,
        reply: Reply<Result<broadcast::Receiver<Arc<Received>>, crate::error::SubscribeError>>,
    },
    Unsubscribe {
        topic: TopicHash,
        reply: Reply<bool>,
    },
    Publish {
        topic: TopicHash,
        data: Vec<u8>,
        reply: Reply<Result<MessageId, crate::error::PublishError>>,
    },
    Report {
        id: MessageId,
        acceptance: Acceptance,
        reply: Reply<Result<(), crate::error::ReportError>>,
    },
    MeshPeers {
        topic: TopicHash,
        reply: Reply<Vec<PeerId>>,
    },
    TopicPeers {
        topic: TopicHash,
        reply: Reply<Vec<PeerId>>,
    },
    Stats {
        reply: Reply<ServiceStats>,
    },
    PeerScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
}

/// The application's handle on the gossipsub service: subscribe, publish, ask about peers.
/// Cheap to clone; every clone talks to the same router. Each call waits for the router's
/// answer (which never waits on the network), and fails with [`Closed`] once the service has
/// stopped.
#[derive(Clone)]
pub struct Pubsub {
    commands: mpsc::Sender<Command>,
    events: broadcast::WeakSender<PeerEvent>,
    local_peer: PeerId,
}

impl fmt::Debug for Pubsub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pubsub")
            .field("local_peer", &self.local_peer)
            .finish_non_exhaustive()
    }
}

impl Pubsub {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        events: &broadcast::Sender<PeerEvent>,
        local_peer: PeerId,
    ) -> Self {
        Pubsub {
            commands,
            events: events.downgrade(),
            local_peer,
        }
    }

    /// The peer id our messages are signed by.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, Closed> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| Closed)?;
        answer.await.map_err(|_| Closed)
    }

    /// Subscribes to `topic`: the router joins it (the first subscription of a topic does)
    /// and every message received on it from now on comes out of the [`Subscription`].
    /// Several subscriptions to one topic each get every message. Dropping the last one
    /// leaves the topic.
    pub async fn subscribe(
        &self,
        topic: impl Into<TopicHash>,
    ) -> Result<Subscription, SubscribeError> {
        let topic = topic.into();
        let receiver = self
            .ask(|reply| Command::Subscribe {
                topic: topic.clone(),
                reply,
            })
            .await??;
        Ok(Subscription::new(topic, receiver))
    }

    /// Leaves `topic`: the router prunes its mesh and tells its peers, and every
    /// subscription of the topic ends (after the messages it holds). False if we were not
    /// subscribed.
    pub async fn unsubscribe(&self, topic: impl Into<TopicHash>) -> Result<bool, Closed> {
        let topic = topic.into();
        self.ask(|reply| Command::Unsubscribe { topic, reply })
            .await
    }

    /// Publishes `data` on `topic` (subscribed or not), signed by our key; returns its id.
    /// Fails with [`crate::PublishError::NoPeers`] inside [`PublishError::Router`] when no
    /// connected peer is subscribed to the topic.
    pub async fn publish(
        &self,
        topic: impl Into<TopicHash>,
        data: impl Into<Vec<u8>>,
    ) -> Result<MessageId, PublishError> {
        let (topic, data) = (topic.into(), data.into());
        Ok(self
            .ask(|reply| Command::Publish { topic, data, reply })
            .await??)
    }

    /// The application's verdict on a received message, when the router's
    /// `Config::validate_messages` is on (it is off by default: messages are then forwarded
    /// as soon as their signature checks).
    pub async fn report_validation(
        &self,
        id: MessageId,
        acceptance: Acceptance,
    ) -> Result<(), ReportError> {
        Ok(self
            .ask(|reply| Command::Report {
                id,
                acceptance,
                reply,
            })
            .await??)
    }

    /// Our mesh peers for `topic` (empty when not subscribed).
    pub async fn mesh_peers(&self, topic: impl Into<TopicHash>) -> Result<Vec<PeerId>, Closed> {
        let topic = topic.into();
        self.ask(|reply| Command::MeshPeers { topic, reply }).await
    }

    /// The connected peers subscribed to `topic`, in our mesh or not.
    pub async fn topic_peers(&self, topic: impl Into<TopicHash>) -> Result<Vec<PeerId>, Closed> {
        let topic = topic.into();
        self.ask(|reply| Command::TopicPeers { topic, reply }).await
    }

    /// The counters of the service and its router.
    pub async fn stats(&self) -> Result<ServiceStats, Closed> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// The router's current score of `peer` (`None`: scoring is off, or the peer is neither
    /// connected nor remembered).
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, Closed> {
        self.ask(|reply| Command::PeerScore { peer, reply }).await
    }

    /// Peers joining and leaving gossipsub and its topics, from now on. Ends when the service
    /// stops.
    pub fn peer_events(&self) -> PeerEvents {
        let inner = match self.events.upgrade() {
            Some(sender) => {
                broadcast_stream(sender.subscribe(), |count| PeerEvent::Missed { count })
            }
            None => futures::stream::empty().boxed(),
        };
        PeerEvents { inner }
    }
}

fn broadcast_stream<T: Clone + Send + 'static>(
    receiver: broadcast::Receiver<T>,
    lagged: impl Fn(u64) -> T + Send + 'static,
) -> BoxStream<'static, T> {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold((receiver, lagged), |(mut receiver, lagged)| async move {
        match receiver.recv().await {
            Ok(item) => Some((item, (receiver, lagged))),
            Err(RecvError::Lagged(count)) => Some((lagged(count), (receiver, lagged))),
            Err(RecvError::Closed) => None,
        }
    })
    .boxed()
}

/// The messages of one topic: a `futures::Stream` of [`Received`] messages, or of a
/// [`Lagged`] notice when this subscriber fell behind and lost some. Ends when the topic is
/// unsubscribed or the service stops.
pub struct Subscription {
    topic: TopicHash,
    missed: u64,
    inner: BoxStream<'static, Result<Arc<Received>, Lagged>>,
}

impl Subscription {
    fn new(topic: TopicHash, receiver: broadcast::Receiver<Arc<Received>>) -> Self {
        let inner = futures::stream::unfold(receiver, |mut receiver| async move {
            use tokio::sync::broadcast::error::RecvError;
            match receiver.recv().await {
                Ok(message) => Some((Ok(message), receiver)),
                Err(RecvError::Lagged(missed)) => Some((Err(Lagged { missed }), receiver)),
                Err(RecvError::Closed) => None,
            }
        })
        .boxed();
        Subscription {
            topic,
            missed: 0,
            inner,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &TopicHash {
        &self.topic
    }

    /// How many messages this subscription has lost so far by falling behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("missed", &self.missed)
            .finish()
    }
}

impl futures::Stream for Subscription {
    type Item = Result<Received, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(Arc::unwrap_or_clone(message)))),
            Poll::Ready(Some(Err(lagged))) => {
                self.missed += lagged.missed;
                Poll::Ready(Some(Err(lagged)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A stream of [`PeerEvent`]s (see [`Pubsub::peer_events`]).
pub struct PeerEvents {
    inner: BoxStream<'static, PeerEvent>,
}

impl fmt::Debug for PeerEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerEvents")
    }
}

impl futures::Stream for PeerEvents {
    type Item = PeerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        self.inner.poll_next_unpin(cx)
    }
}
