//! TCP transport on tokio for the modular libp2p.
//!
//! Dials and listens on `/ip4/<ip>/tcp/<port>` and `/ip6/<ip>/tcp/<port>`. A trailing
//! `/p2p/<id>` is accepted (the upgrade pipeline checks it). Names (`/dns4/<name>/tcp/<port>`
//! and the like) are not this transport's business: the host resolves them with `libp2p-dns`
//! before it picks a transport, so every transport shares one resolver. Sockets have
//! `TCP_NODELAY` set by default: libp2p protocols write whole frames and flush when they want
//! them sent ([`Config`] says what else can be set). Listening on port 0 reports the port the
//! system chose; listening on `0.0.0.0` or `::` reports every matching interface address.
//!
//! ```no_run
//! use libp2p_core::{Transport, ListenerEvent};
//! use libp2p_transport_tcp::TcpTransport;
//! use futures::StreamExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tcp = TcpTransport::new();
//! let mut listener = tcp.listen("/ip4/127.0.0.1/tcp/0".parse()?)?;
//! if let Some(ListenerEvent::NewAddress(addr)) = listener.next().await {
//!     let socket = tcp.dial(addr).await?; // a futures::AsyncRead + AsyncWrite
//!     # drop(socket);
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;

pub use config::Config;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use libp2p_core::{ListenerEvent, Multiaddr, Protocol, Transport, TransportError};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// A connected TCP socket with the `futures` I/O traits.
pub type TcpSocket = Compat<TcpStream>;

/// The TCP transport.
#[derive(Debug, Clone, Default)]
pub struct TcpTransport {
    config: Config,
}

impl TcpTransport {
    /// A TCP transport with the default [`Config`] (`TCP_NODELAY` on).
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A TCP transport with these settings.
    pub fn with_config(config: Config) -> Self {
        TcpTransport { config }
    }

    /// Its settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// The socket address to dial or listen on, read off a multiaddr.
fn parse(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut iter = addr.iter();
    let ip: IpAddr = match iter.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let port = match iter.next()? {
        Protocol::Tcp(port) => port,
        _ => return None,
    };
    match iter.next() {
        None | Some(Protocol::P2p(_)) => {}
        Some(_) => return None,
    }
    if iter.next().is_some() {
        return None;
    }
    Some(SocketAddr::new(ip, port))
}

/// The multiaddr of a socket address.
pub fn socket_to_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

async fn connect(addr: SocketAddr, nodelay: bool) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(nodelay)?;
    Ok(stream)
}

/// How the accept loop paces itself after errors: a plain state machine, no clock.
///
/// An accept error such as `EMFILE` (too many open files) leaves the pending connection in
/// the queue, so the listener stays ready and an immediate retry fails again: without a pause
/// the loop would spin at full speed. A run of errors (an episode) is reported once, with its
/// first error; each error doubles the pause from [`Config::accept_backoff_min`] up to
/// [`Config::accept_backoff_max`]; the first successful accept ends the episode and resets the
/// pause.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AcceptBackoff {
    /// The pause after the next error.
    next: Duration,
    /// Errors in the current episode (0: none going on).
    errors: u64,
    min: Duration,
    max: Duration,
}

impl AcceptBackoff {
    fn new(min: Duration, max: Duration) -> Self {
        AcceptBackoff {
            next: min,
            errors: 0,
            min,
            max: max.max(min),
        }
    }

    /// An accept failed: how long to pause, and whether the error starts an episode (and so
    /// is the one to report).
    fn on_error(&mut self) -> (Duration, bool) {
        let first = self.errors == 0;
        self.errors += 1;
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        (pause, first)
    }

    /// An accept succeeded: ends the episode, if one was going on, and tells how many errors
    /// it had.
    fn on_success(&mut self) -> Option<u64> {
        if self.errors == 0 {
            return None;
        }
        let errors = self.errors;
        *self = AcceptBackoff::new(self.min, self.max);
        Some(errors)
    }
}

/// Whether an accept error concerns only the connection being accepted (it went away before
/// we took it), so the next one can be taken at once: no pause, no episode.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// A TCP listener: first its addresses, then incoming connections.
///
/// Accept errors that are about the listener rather than one connection (the descriptor
/// table full, out of memory) do not end it: it pauses (see [`Config::accept_backoff_min`]
/// and [`Config::accept_backoff_max`]) and tries again, and reports only the first error of a run as a
/// [`ListenerEvent::Error`]; the end of the run is logged at debug with its count.
#[derive(Debug)]
pub struct TcpListenStream {
    listener: TcpListener,
    local: SocketAddr,
    announce: VecDeque<Multiaddr>,
    /// The pause after an accept error, while it lasts. Allocated on the first error.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    pausing: bool,
    backoff: AcceptBackoff,
    accept_errors: u64,
}

impl TcpListenStream {
    /// The socket address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How many accepts failed since the listener started (reported or not), for
    /// diagnostics.
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors
    }

    /// Handles a failed accept: `Some(event)` to report, `None` to go on polling.
    fn on_accept_error(&mut self, e: io::Error) -> Option<ListenerEvent<TcpStream>> {
        self.accept_errors += 1;
        if is_per_connection(&e) {
            tracing::debug!(error = %e, "tcp accept: connection gone before it was accepted");
            return None;
        }
        let (pause, first) = self.backoff.on_error();
        let deadline = tokio::time::Instant::now() + pause;
        match self.pause.as_mut() {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.pause = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.pausing = true;
        first.then(|| ListenerEvent::Error(TransportError::Io(e)))
    }
}

impl Stream for TcpListenStream {
    type Item = ListenerEvent<TcpStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(addr) = self.announce.pop_front() {
            return Poll::Ready(Some(ListenerEvent::NewAddress(addr)));
        }
        loop {
            if self.pausing {
                if let Some(sleep) = self.pause.as_mut() {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                self.pausing = false;
            }
            match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, remote))) => {
                    if let Some(errors) = self.backoff.on_success() {
                        tracing::debug!(errors, "tcp accept: accepting again after errors");
                    }
                    let local = stream.local_addr().unwrap_or(self.local);
                    return Poll::Ready(Some(ListenerEvent::Incoming {
                        pending: stream,
                        local_addr: socket_to_multiaddr(local),
                        remote_addr: socket_to_multiaddr(remote),
                    }));
                }
                Poll::Ready(Err(e)) => {
                    if let Some(event) = self.on_accept_error(e) {
                        return Poll::Ready(Some(event));
                    }
                }
            }
        }
    }
}

impl Transport for TcpTransport {
    type Output = TcpSocket;
    type Pending = TcpStream;
    type Listener = TcpListenStream;

    fn can_dial(&self, addr: &Multiaddr) -> bool {
        parse(addr).is_some()
    }

    fn local_addr_of(output: &Self::Output) -> Option<Multiaddr> {
        output.get_ref().local_addr().ok().map(socket_to_multiaddr)
    }

    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let target = parse(&addr);
        let nodelay = self.config.nodelay;
        async move {
            let Some(socket) = target else {
                return Err(TransportError::MultiaddrNotSupported(addr));
            };
            tracing::trace!(%socket, "tcp connect");
            Ok(connect(socket, nodelay).await?.compat())
        }
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        let Some(local) = parse(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let socket = if local.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As the standard library's bind does: a restarted node gets its port back while
        // the old connections are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(local).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                TransportError::AddressInUse(addr.clone())
            } else {
                TransportError::Io(e)
            }
        })?;
        let listener = socket.listen(self.config.backlog)?;
        let local = listener.local_addr()?;
        Ok(TcpListenStream {
            listener,
            local,
            announce: libp2p_core::net::listen_addresses(local, socket_to_multiaddr).into(),
            pause: None,
            pausing: false,
            backoff: AcceptBackoff::new(
                self.config.accept_backoff_min,
                self.config.accept_backoff_max,
            ),
            accept_errors: 0,
        })
    }

    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        futures::future::ready(
            pending
                .set_nodelay(self.config.nodelay)
                .map(|()| pending.compat())
                .map_err(TransportError::Io),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_doubling_and_reset_on_success() {
        let config = Config::default();
        let fresh = AcceptBackoff::new(config.accept_backoff_min, config.accept_backoff_max);
        let mut b = fresh.clone();
        assert_eq!(b.on_success(), None, "no episode yet");
        let pauses: Vec<(u64, bool)> = (0..10)
            .map(|_| {
                let (pause, first) = b.on_error();
                (pause.as_millis() as u64, first)
            })
            .collect();
        assert_eq!(
            pauses,
            [
                (10, true),
                (20, false),
                (40, false),
                (80, false),
                (160, false),
                (320, false),
                (640, false),
                (1000, false),
                (1000, false),
                (1000, false),
            ]
        );
        assert_eq!(b.on_success(), Some(10));
        assert_eq!(b, fresh);
        // A new episode starts from the shortest pause and is reported again.
        assert_eq!(b.on_error(), (config.accept_backoff_min, true));
    }

    #[test]
    fn only_listener_wide_errors_pause() {
        for kind in [io::ErrorKind::ConnectionAborted, io::ErrorKind::Interrupted] {
            assert!(is_per_connection(&kind.into()));
        }
        let emfile = io::Error::from_raw_os_error(24);
        assert!(!is_per_connection(&emfile));
    }

    #[test]
    fn parses_supported_addresses() {
        for ok in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip4/1.2.3.4/tcp/5/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        ] {
            assert!(parse(&ok.parse().unwrap()).is_some(), "{ok}");
        }
        for bad in [
            "/ip4/127.0.0.1/udp/1",
            "/memory/5",
            "/ip4/127.0.0.1",
            "/ip4/127.0.0.1/tcp/1/ws",
            // Names are resolved before a transport is picked (libp2p-dns).
            "/dns4/localhost/tcp/1",
        ] {
            assert!(parse(&bad.parse().unwrap()).is_none(), "{bad}");
        }
    }
}
