//! [`QuicTransport`]: dial and listen on QUIC addresses; every connection comes out
//! authenticated (TLS 1.3 with the libp2p certificate) and multiplexed (QUIC streams).
//!
//! One quinn endpoint, that is one UDP socket, per address family serves both directions:
//! a listener's socket is the one dials of its family leave from (so a remote sees our dials
//! come from our listening port, which hole punching will need), as long as it can reach the
//! remote (a listener on the unspecified address reaches all, one on loopback only loopback);
//! before any listener exists,
//! dials leave from a socket bound to an ephemeral port, and a later listen on port 0 of the
//! unspecified address takes that socket over.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures::Stream;
use libp2p_core::{
    Connection, ConnectionInfo, Direction, Keypair, ListenerEvent, Multiaddr, PeerId, Transport,
    TransportError,
};
use libp2p_tls::{MetInstead, Tls};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::addr::{parse, to_multiaddr, unmap};
use crate::error::{HandshakeError, SetupError};
use crate::muxer::QuicMuxer;
use crate::{Config, PROTOCOL};

/// Bytes quinn buffers for one inbound connection attempt before it is accepted (its first
/// packets; a client's Initial is about 1.2 KiB). Per attempt; times
/// [`Config::max_pending_handshakes`] for the whole listener.
const INCOMING_BUFFER: u64 = 64 * 1024;

/// The QUIC transport. Clones share the endpoints.
#[derive(Clone)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("peer", &self.inner.peer)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    peer: PeerId,
    config: Config,
    /// The rustls client configuration for dials to any peer (the base of the per-dial ones),
    /// and the quinn server configuration; or why they could not be made.
    tls: Result<(Arc<rustls::ClientConfig>, quinn::ServerConfig), Arc<SetupError>>,
    /// The identity's TLS side, for the per-dial client configurations.
    identity: Tls,
    endpoints: Mutex<Endpoints>,
}

/// The endpoints of one transport.
#[derive(Default)]
struct Endpoints {
    /// Listening endpoints, oldest first; dials of a family leave from the first of it.
    listening: Vec<Listening>,
    /// Dial-only endpoints, per family (IPv4, IPv6), made on the first dial without listener.
    dial_v4: Option<quinn::Endpoint>,
    dial_v6: Option<quinn::Endpoint>,
    next_id: u64,
}

struct Listening {
    id: u64,
    v4: bool,
    endpoint: quinn::Endpoint,
}

impl Endpoints {
    fn dial_slot(&mut self, v4: bool) -> &mut Option<quinn::Endpoint> {
        if v4 {
            &mut self.dial_v4
        } else {
            &mut self.dial_v6
        }
    }
}

fn family_name(v4: bool) -> &'static str {
    if v4 {
        "ipv4"
    } else {
        "ipv6"
    }
}

/// A UDP socket bound to `addr`; an IPv6 one takes IPv6 only, so that IPv4 has its own.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

impl QuicTransport {
    /// QUIC for the identity `keypair`, with a fresh TLS certificate and the default
    /// [`Config`].
    pub fn new(keypair: Keypair) -> Self {
        Self::with_config(keypair, Config::default())
    }

    /// QUIC for the identity `keypair` with these settings.
    pub fn with_config(keypair: Keypair, config: Config) -> Self {
        Self::with_tls(Tls::new(keypair), config)
    }

    /// QUIC presenting the certificate of `tls` (the same one a TLS-over-TCP stack uses, if
    /// you like). Should its configuration be unusable, every dial and listen says why.
    pub fn with_tls(tls: Tls, config: Config) -> Self {
        let peer = tls.local_peer_id();
        let made = Self::configs(&tls, &config).map_err(|e| {
            tracing::warn!("quic: cannot make the tls configuration: {e}");
            Arc::new(e)
        });
        QuicTransport {
            inner: Arc::new(Inner {
                peer,
                config,
                tls: made,
                identity: tls,
                endpoints: Mutex::default(),
            }),
        }
    }

    fn configs(
        tls: &Tls,
        config: &Config,
    ) -> Result<(Arc<rustls::ClientConfig>, quinn::ServerConfig), SetupError> {
        let client = tls.client_config(None).map_err(SetupError::Tls)?;
        let server = tls.server_config().map_err(SetupError::Tls)?;
        let crypto =
            QuicServerConfig::try_from(server).map_err(SetupError::NoInitialCipherSuite)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server
            .transport_config(config.transport())
            .max_incoming(config.max_pending_handshakes as usize)
            .incoming_buffer_size(INCOMING_BUFFER)
            .incoming_buffer_size_total(INCOMING_BUFFER * u64::from(config.max_pending_handshakes));
        // Make sure a client config can be made from the base as well.
        QuicClientConfig::try_from(client.clone()).map_err(SetupError::NoInitialCipherSuite)?;
        Ok((client, server))
    }

    /// The peer id this transport presents.
    pub fn local_peer_id(&self) -> PeerId {
        self.inner.peer
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The local addresses of the UDP sockets in use (listening ones first), for diagnostics.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let endpoints = self
            .inner
            .endpoints
            .lock()
            .expect("quic endpoints poisoned");
        endpoints
            .listening
            .iter()
            .map(|l| &l.endpoint)
            .chain(endpoints.dial_v4.iter())
            .chain(endpoints.dial_v6.iter())
            .filter_map(|e| e.local_addr().ok())
            .collect()
    }
}

impl Inner {
    fn tls(&self) -> Result<&(Arc<rustls::ClientConfig>, quinn::ServerConfig), TransportError> {
        self.tls
            .as_ref()
            .map_err(|e| HandshakeError::Setup(e.clone()).into())
    }

    /// The client configuration for a dial to `expected` (any peer if `None`), and where its
    /// verifier (libp2p-tls's, which also refuses another peer before our certificate goes
    /// out) notes the peer met instead.
    fn client_config(
        &self,
        expected: Option<PeerId>,
    ) -> Result<(quinn::ClientConfig, Option<MetInstead>), TransportError> {
        let (base, _) = self.tls()?;
        let (crypto, seen) = match expected {
            None => (base.clone(), None),
            Some(peer) => {
                let (config, met) = self
                    .identity
                    .client_config_noting(peer)
                    .map_err(|e| HandshakeError::Setup(Arc::new(SetupError::Tls(e))))?;
                (config, Some(met))
            }
        };
        let crypto = QuicClientConfig::try_from(crypto)
            .map_err(|e| HandshakeError::Setup(Arc::new(SetupError::NoInitialCipherSuite(e))))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.config.transport());
        Ok((config, seen))
    }

    /// The endpoint dials to `remote` leave from: the first listening one of its family
    /// that can reach it, else the dial-only one (made now if need be).
    fn dial_endpoint(&self, remote: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
        let v4 = remote.is_ipv4();
        let mut endpoints = self.endpoints.lock().expect("quic endpoints poisoned");
        // A socket bound to one address can only reach what that address routes to: a
        // listener on loopback serves dials to loopback, one on the unspecified address
        // serves every dial of its family.
        let usable = |l: &&Listening| {
            l.v4 == v4
                && l.endpoint.local_addr().is_ok_and(|local| {
                    local.ip().is_unspecified()
                        || local.ip() == remote.ip()
                        || (local.ip().is_loopback() && remote.ip().is_loopback())
                })
        };
        if let Some(l) = endpoints.listening.iter().find(usable) {
            return Ok(l.endpoint.clone());
        }
        if let Some(e) = endpoints.dial_slot(v4) {
            return Ok(e.clone());
        }
        let any: SocketAddr = if v4 {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let e = endpoint(bind(any)?, None)?;
        tracing::debug!(local = ?e.local_addr().ok(), family = family_name(v4), "quic: dial socket");
        *endpoints.dial_slot(v4) = Some(e.clone());
        Ok(e)
    }

    /// A listening endpoint on `local`: the family's dial-only socket when `local` is port 0
    /// of the unspecified address, else a new socket.
    fn listen_endpoint(
        &self,
        local: SocketAddr,
        addr: &Multiaddr,
    ) -> Result<(u64, quinn::Endpoint), TransportError> {
        let (_, server) = self.tls()?;
        let v4 = local.is_ipv4();
        let mut endpoints = self.endpoints.lock().expect("quic endpoints poisoned");
        let reuse = local.ip().is_unspecified() && local.port() == 0;
        let endpoint = match endpoints.dial_slot(v4).take().filter(|_| reuse) {
            Some(e) => {
                e.set_server_config(Some(server.clone()));
                e
            }
            None => {
                let socket = bind(local).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        TransportError::AddressInUse(addr.clone())
                    } else {
                        TransportError::Io(e)
                    }
                })?;
                endpoint(socket, Some(server.clone()))?
            }
        };
        let id = endpoints.next_id;
        endpoints.next_id += 1;
        endpoints.listening.push(Listening {
            id,
            v4,
            endpoint: endpoint.clone(),
        });
        Ok((id, endpoint))
    }

    /// A listener went away: its socket accepts no more connections (the open ones go on),
    /// and serves dials only when its family has no other socket for them.
    fn unlisten(&self, id: u64) {
        let Ok(mut endpoints) = self.endpoints.lock() else {
            return;
        };
        let Some(pos) = endpoints.listening.iter().position(|l| l.id == id) else {
            return;
        };
        let gone = endpoints.listening.remove(pos);
        gone.endpoint.set_server_config(None);
        let v4 = gone.v4;
        let has_other = endpoints.listening.iter().any(|l| l.v4 == v4);
        let slot = endpoints.dial_slot(v4);
        if !has_other && slot.is_none() {
            *slot = Some(gone.endpoint);
        }
    }
}

/// The remote's identity, from the certificate the handshake verified.
fn peer_of(conn: &quinn::Connection) -> Result<PeerId, HandshakeError> {
    let identity = conn.peer_identity().ok_or(HandshakeError::NoCertificate)?;
    let chain = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| HandshakeError::NoCertificate)?;
    let der = chain.first().ok_or(HandshakeError::NoCertificate)?;
    libp2p_tls::verify_certificate(der.as_ref(), SystemTime::now())
        .map(|c| c.peer_id)
        .map_err(HandshakeError::Certificate)
}

/// Runs a handshake under the configured timeout.
async fn handshake(
    limit: std::time::Duration,
    connecting: quinn::Connecting,
) -> Result<quinn::Connection, HandshakeError> {
    match tokio::time::timeout(limit, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(HandshakeError::Connection(e)),
        // Dropping `connecting` abandons the connection.
        Err(_) => Err(HandshakeError::Timeout(limit)),
    }
}

/// An inbound connection attempt, before its handshake.
pub struct QuicPending {
    incoming: quinn::Incoming,
    local: SocketAddr,
}

impl std::fmt::Debug for QuicPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicPending")
            .field("remote", &self.incoming.remote_address())
            .finish()
    }
}

type AcceptFuture = Pin<Box<dyn Future<Output = Option<quinn::Incoming>> + Send>>;

/// A QUIC listener: first its addresses, then inbound connection attempts. Dropping it stops
/// accepting on its socket; connections already made go on.
pub struct QuicListener {
    inner: Arc<Inner>,
    id: u64,
    endpoint: quinn::Endpoint,
    local: SocketAddr,
    announce: std::collections::VecDeque<Multiaddr>,
    accept: Option<AcceptFuture>,
}

impl std::fmt::Debug for QuicListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl QuicListener {
    /// The socket address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        self.inner.unlisten(self.id);
    }
}

impl Stream for QuicListener {
    type Item = ListenerEvent<QuicPending>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(addr) = self.announce.pop_front() {
            return Poll::Ready(Some(ListenerEvent::NewAddress(addr)));
        }
        let this = &mut *self;
        let accept = this.accept.get_or_insert_with(|| {
            let endpoint = this.endpoint.clone();
            Box::pin(async move { endpoint.accept().await })
        });
        match accept.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.accept = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(incoming)) => {
                this.accept = None;
                let local = match incoming.local_ip() {
                    Some(ip) => SocketAddr::new(ip, this.local.port()),
                    None => this.local,
                };
                let remote = unmap(incoming.remote_address());
                Poll::Ready(Some(ListenerEvent::Incoming {
                    pending: QuicPending {
                        incoming,
                        local: unmap(local),
                    },
                    local_addr: to_multiaddr(unmap(local)),
                    remote_addr: to_multiaddr(remote),
                }))
            }
        }
    }
}

impl Transport for QuicTransport {
    type Output = Connection<QuicMuxer>;
    type Pending = QuicPending;
    type Listener = QuicListener;

    fn can_dial(&self, addr: &Multiaddr) -> bool {
        parse(addr).is_some()
    }

    fn local_addr_of(output: &Self::Output) -> Option<Multiaddr> {
        output.info.local_addr.clone()
    }

    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let (remote, expected) =
                parse(&addr).ok_or_else(|| TransportError::MultiaddrNotSupported(addr.clone()))?;
            let endpoint = inner.dial_endpoint(remote)?;
            let (config, seen) = inner.client_config(expected)?;
            // No SNI is sent for an IP address, as the libp2p TLS spec asks.
            let connecting = endpoint
                .connect_with(config, remote, &remote.ip().to_string())
                .map_err(HandshakeError::Connect)?;
            let conn = match handshake(inner.config.handshake_timeout, connecting).await {
                Ok(conn) => conn,
                Err(e) => {
                    let actual = seen.and_then(|met| met.take());
                    return Err(match (expected, actual) {
                        (Some(expected), Some(actual)) => TransportError::PeerIdMismatch {
                            expected: Box::new(expected),
                            actual: Box::new(actual),
                        },
                        _ => e.into(),
                    });
                }
            };
            let peer = peer_of(&conn)?;
            if let Some(expected) = expected {
                if expected != peer {
                    conn.close(0u32.into(), b"");
                    return Err(TransportError::PeerIdMismatch {
                        expected: Box::new(expected),
                        actual: Box::new(peer),
                    });
                }
            }
            let local = endpoint.local_addr().ok().map(|a| to_multiaddr(unmap(a)));
            let (raw, _) = libp2p_core::split_peer_id(&addr);
            Ok(Connection {
                peer,
                muxer: QuicMuxer::new(conn, inner.config.open_timeout),
                info: ConnectionInfo::new(PROTOCOL, PROTOCOL, local, raw, Direction::Outbound),
            })
        }
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        let (local, _) =
            parse(&addr).ok_or_else(|| TransportError::MultiaddrNotSupported(addr.clone()))?;
        let (id, endpoint) = self.inner.listen_endpoint(local, &addr)?;
        let local = match endpoint.local_addr() {
            Ok(a) => a,
            Err(e) => {
                self.inner.unlisten(id);
                return Err(TransportError::Io(e));
            }
        };
        tracing::debug!(%local, "quic: listening");
        Ok(QuicListener {
            inner: self.inner.clone(),
            id,
            endpoint,
            local,
            announce: libp2p_core::net::listen_addresses(local, to_multiaddr).into(),
            accept: None,
        })
    }

    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let limit = self.inner.config.handshake_timeout;
        let open_timeout = self.inner.config.open_timeout;
        async move {
            let QuicPending { incoming, local } = pending;
            let remote = unmap(incoming.remote_address());
            let connecting = incoming.accept().map_err(HandshakeError::Connection)?;
            let conn = handshake(limit, connecting).await?;
            let peer = peer_of(&conn)?;
            Ok(Connection {
                peer,
                muxer: QuicMuxer::new(conn, open_timeout),
                info: ConnectionInfo::new(
                    PROTOCOL,
                    PROTOCOL,
                    Some(to_multiaddr(local)),
                    to_multiaddr(remote),
                    Direction::Inbound,
                ),
            })
        }
    }
}
