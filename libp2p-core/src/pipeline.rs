//! The upgrade pipeline: `transport.upgrade().authenticate(security).multiplex(muxer)`.
//!
//! Each step is a [`Transport`] wrapping the one before, composed statically: the sockets and
//! streams are concrete types, with no dynamic dispatch on the data path. Every step negotiates
//! its protocol with multistream-select, and one timeout bounds the whole upgrade of a
//! connection, whose future is boxed once (see `bounded`) so that its state is freed when the
//! upgrade ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, Stream};
use libp2p_identity::PeerId;
use libp2p_multistream::{self as multistream, Negotiated};
use multiaddr::Multiaddr;
use tracing::Instrument;

use crate::connection::{Connection, ConnectionInfo, Direction};
use crate::transport::{split_peer_id, ListenerEvent, Stage, Transport, TransportError};
use crate::upgrade::{MuxerUpgrade, Role, SecurityUpgrade, Socket};

/// Settings of the upgrade pipeline.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Bound on the whole upgrade of one connection: for a dial, from the start of the dial
    /// until the muxer is ready; for an inbound connection, from `accept` until then.
    /// Default 20 s: long enough for a slow RSA handshake across the world, short enough that
    /// a silent peer does not hold resources for long.
    pub timeout: Duration,
    /// Limits of multistream-select.
    pub multistream: multistream::Config,
    /// Whether the dialer sends its data right behind a single proposal without waiting for
    /// the listener's confirmation (`V1Lazy`, saves a round trip). Default `V1`.
    pub version: multistream::Version,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(20),
            multistream: multistream::Config::default(),
            version: multistream::Version::V1,
        }
    }
}

/// Extension methods that start the upgrade pipeline on any raw transport.
pub trait TransportExt: Transport + Sized {
    /// Starts the upgrade pipeline with the default [`Config`].
    fn upgrade(self) -> Builder<Self> {
        Builder {
            transport: self,
            config: Config::default(),
        }
    }

    /// This transport, and `other` for the addresses this one cannot take.
    fn or<B: Transport>(self, other: B) -> crate::Or<Self, B> {
        crate::Or::new(self, other)
    }
}

impl<T: Transport> TransportExt for T {}

/// First step of the pipeline: a raw transport waiting for its security upgrade.
#[derive(Debug, Clone)]
pub struct Builder<T> {
    transport: T,
    config: Config,
}

impl<T: Transport> Builder<T>
where
    T::Output: Socket,
{
    /// Replaces the pipeline's settings.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the bound on the whole upgrade of one connection.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Adds the security step. Use a pair `(A, B)` to offer two protocols.
    pub fn authenticate<S: SecurityUpgrade<Negotiated<T::Output>>>(
        self,
        security: S,
    ) -> Authenticated<T, S> {
        Authenticated {
            transport: self.transport,
            security,
            config: Arc::new(self.config),
        }
    }
}

/// A transport whose connections are authenticated and encrypted: its output is
/// `(remote peer id, secured socket)`.
#[derive(Debug, Clone)]
pub struct Authenticated<T, S> {
    transport: T,
    security: S,
    config: Arc<Config>,
}

/// Negotiates a protocol in the given role.
async fn negotiate<C: Socket>(
    socket: C,
    role: Role,
    names: impl Iterator<Item = &'static str> + Clone,
    stage: Stage,
    config: &Config,
) -> Result<(String, Negotiated<C>), TransportError> {
    let result = match role {
        Role::Dialer => {
            multistream::dialer_select(socket, names, config.version, &config.multistream)
                .await
                .map(|(name, io)| (name.to_string(), io))
        }
        Role::Listener => {
            multistream::listener_select(socket, &Names(names), &config.multistream).await
        }
    };
    result.map_err(|source| TransportError::Negotiation { stage, source })
}

/// An upgrade's names as the listener's set: a proposal is matched by walking the borrowed
/// names, nothing collected (only an `ls` answer builds its list).
struct Names<I>(I);

impl<I: Iterator<Item = &'static str> + Clone> multistream::ProtocolSet for Names<I> {
    fn matches(&self, proposed: &str) -> bool {
        self.0.clone().any(|name| name == proposed)
    }
    fn list(&self) -> Vec<String> {
        self.0.clone().map(str::to_string).collect()
    }
}

impl<T, S> Authenticated<T, S>
where
    T: Transport,
    T::Output: Socket,
    S: SecurityUpgrade<Negotiated<T::Output>>,
{
    /// Adds the muxer step. Use a pair `(A, B)` to offer two muxers.
    pub fn multiplex<M: MuxerUpgrade<Negotiated<S::Output>>>(
        self,
        muxer: M,
    ) -> Multiplexed<T, S, M> {
        Multiplexed { inner: self, muxer }
    }

    /// Runs security negotiation and the handshake on an established socket; returns the
    /// remote, the secured socket and the protocol agreed.
    fn secure(
        &self,
        socket: T::Output,
        role: Role,
        expected: Option<PeerId>,
    ) -> impl Future<Output = Result<(PeerId, S::Output, String), TransportError>> + Send + 'static
    {
        let security = self.security.clone();
        let config = self.config.clone();
        async move {
            let names = security.protocol_names();
            let (protocol, socket) =
                negotiate(socket, role, names, Stage::Security, &config).await?;
            tracing::debug!(%protocol, ?role, "security protocol agreed");
            let (peer, secured) = security
                .secure(socket, role, expected, &protocol)
                .await
                .map_err(|e| TransportError::Security {
                    protocol: protocol.clone(),
                    source: Box::new(crate::fault::FaultOf::new(e)),
                })?;
            // The one place a remote's id is compared with the one dialed: the security
            // protocols only report who the remote proved to be.
            if let Some(expected) = expected {
                if expected != peer {
                    return Err(TransportError::PeerIdMismatch {
                        expected: Box::new(expected),
                        actual: Box::new(peer),
                    });
                }
            }
            tracing::debug!(%peer, "remote authenticated");
            Ok((peer, secured, protocol))
        }
    }
}

/// Runs `fut` under the pipeline's timeout, boxed: this is the whole upgrade of a connection,
/// and it is allocated once per connection and freed when the upgrade ends.
///
/// Why box: the upgrade's state (several KiB: negotiation, the handshake) would otherwise be
/// part of the future of whatever awaits it. A task that awaits an upgrade and then serves the
/// connection keeps its largest state for the connection's whole life, twice over when the
/// upgrade future was created before the task's `async` block (it is then stored as a captured
/// variable and again as the awaited future), which showed in an idle secio connection's memory.
/// (Not an `async fn` either, for the same reason: its argument would be stored twice.)
fn bounded<F, O>(
    timeout: Duration,
    fut: F,
) -> Pin<Box<dyn Future<Output = Result<O, TransportError>> + Send>>
where
    F: Future<Output = Result<O, TransportError>> + Send + 'static,
    O: 'static,
{
    Box::pin(
        tokio::time::timeout(timeout, fut).map(move |result| match result {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(timeout)),
        }),
    )
}

impl<T, S> Transport for Authenticated<T, S>
where
    T: Transport,
    T::Output: Socket,
    S: SecurityUpgrade<Negotiated<T::Output>>,
{
    type Output = (PeerId, S::Output);
    type Pending = T::Pending;
    type Listener = T::Listener;

    fn can_dial(&self, addr: &Multiaddr) -> bool {
        self.transport.can_dial(addr)
    }

    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let (raw_addr, expected) = split_peer_id(&addr);
        let dial = self.transport.dial(raw_addr);
        let this = self.clone();
        let span = tracing::debug_span!("dial", %addr);
        bounded(
            self.config.timeout,
            async move {
                let socket = dial.await?;
                let (peer, secured, _) = this.secure(socket, Role::Dialer, expected).await?;
                Ok((peer, secured))
            }
            .instrument(span),
        )
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        self.transport.listen(addr)
    }

    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let accept = self.transport.accept(pending);
        let this = self.clone();
        bounded(
            self.config.timeout,
            async move {
                let socket = accept.await?;
                let (peer, secured, _) = this.secure(socket, Role::Listener, None).await?;
                Ok((peer, secured))
            }
            .instrument(tracing::debug_span!("accept")),
        )
    }
}

/// A transport whose connections are authenticated, encrypted and multiplexed: its output is a
/// [`Connection`] (remote peer id, muxed connection, what it was built from). The muxer's
/// driver is spawned on the tokio runtime.
#[derive(Debug, Clone)]
pub struct Multiplexed<T, S, M> {
    inner: Authenticated<T, S>,
    muxer: M,
}

impl<T, S, M> Multiplexed<T, S, M>
where
    T: Transport,
    T::Output: Socket,
    S: SecurityUpgrade<Negotiated<T::Output>>,
    M: MuxerUpgrade<Negotiated<S::Output>>,
{
    fn multiplex(
        &self,
        secured: S::Output,
        role: Role,
    ) -> impl Future<Output = Result<(M::Muxer, String), TransportError>> + Send + 'static {
        let muxer = self.muxer.clone();
        let config = self.inner.config.clone();
        async move {
            let names = muxer.protocol_names();
            let (protocol, socket) = negotiate(secured, role, names, Stage::Muxer, &config).await?;
            tracing::debug!(%protocol, "muxer agreed");
            let (muxer, driver) =
                muxer
                    .upgrade(socket, role, &protocol)
                    .await
                    .map_err(|source| TransportError::Muxer {
                        protocol: protocol.clone(),
                        source,
                    })?;
            tokio::spawn(async move {
                if let Err(e) = driver.await {
                    tracing::debug!(error = %e, "muxed connection ended with an error");
                }
            });
            Ok((muxer, protocol))
        }
    }
}

impl<T, S, M> Transport for Multiplexed<T, S, M>
where
    T: Transport,
    T::Output: Socket,
    S: SecurityUpgrade<Negotiated<T::Output>>,
    M: MuxerUpgrade<Negotiated<S::Output>>,
{
    type Output = Connection<M::Muxer>;
    type Pending = Inbound<T::Pending>;
    type Listener = WithAddrs<T::Listener>;

    fn can_dial(&self, addr: &Multiaddr) -> bool {
        self.inner.transport.can_dial(addr)
    }

    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let (raw_addr, expected) = split_peer_id(&addr);
        let dial = self.inner.transport.dial(raw_addr.clone());
        let this = self.clone();
        let span = tracing::debug_span!("dial", %addr);
        bounded(
            self.inner.config.timeout,
            async move {
                let socket = dial.await?;
                let local_addr = T::local_addr_of(&socket);
                let (peer, secured, security) =
                    this.inner.secure(socket, Role::Dialer, expected).await?;
                let (muxer, muxer_name) = this.multiplex(secured, Role::Dialer).await?;
                let info = ConnectionInfo::new(
                    security,
                    muxer_name,
                    local_addr,
                    raw_addr,
                    Direction::Outbound,
                );
                Ok(Connection { peer, muxer, info })
            }
            .instrument(span),
        )
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        Ok(WithAddrs(self.inner.transport.listen(addr)?))
    }

    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let Inbound {
            pending,
            local_addr,
            remote_addr,
        } = pending;
        let accept = self.inner.transport.accept(pending);
        let this = self.clone();
        bounded(
            self.inner.config.timeout,
            async move {
                let socket = accept.await?;
                let (peer, secured, security) =
                    this.inner.secure(socket, Role::Listener, None).await?;
                let (muxer, muxer_name) = this.multiplex(secured, Role::Listener).await?;
                let info = ConnectionInfo::new(
                    security,
                    muxer_name,
                    Some(local_addr),
                    remote_addr,
                    Direction::Inbound,
                );
                Ok(Connection { peer, muxer, info })
            }
            .instrument(tracing::debug_span!("accept")),
        )
    }
}

/// An inbound connection of the upgrade pipeline, not yet upgraded: the raw transport's
/// pending connection with the addresses its listener reported, which the finished
/// connection's [`ConnectionInfo`] carries.
#[derive(Debug)]
pub struct Inbound<P> {
    /// The raw transport's pending connection.
    pub pending: P,
    /// Our address of the connection.
    pub local_addr: Multiaddr,
    /// The remote's address of the connection.
    pub remote_addr: Multiaddr,
}

/// A raw listener whose inbound connections keep their addresses ([`Inbound`]).
#[derive(Debug)]
pub struct WithAddrs<L>(L);

impl<L, P> Stream for WithAddrs<L>
where
    L: Stream<Item = ListenerEvent<P>> + Unpin,
{
    type Item = ListenerEvent<Inbound<P>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx).map(|event| {
            event.map(|event| match event {
                ListenerEvent::Incoming {
                    pending,
                    local_addr,
                    remote_addr,
                } => ListenerEvent::Incoming {
                    pending: Inbound {
                        pending,
                        local_addr: local_addr.clone(),
                        remote_addr: remote_addr.clone(),
                    },
                    local_addr,
                    remote_addr,
                },
                ListenerEvent::NewAddress(a) => ListenerEvent::NewAddress(a),
                ListenerEvent::AddressExpired(a) => ListenerEvent::AddressExpired(a),
                ListenerEvent::Error(e) => ListenerEvent::Error(e),
            })
        })
    }
}
