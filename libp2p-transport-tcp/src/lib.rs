//! TCP transport on tokio for the modular libp2p.
//!
//! Dials and listens on `/ip4/<ip>/tcp/<port>` and `/ip6/<ip>/tcp/<port>`, dials
//! `/dns/<name>/tcp/<port>`, `/dns4/...` and `/dns6/...`. A trailing `/p2p/<id>` is accepted
//! (the upgrade pipeline checks it). Sockets have `TCP_NODELAY` set: libp2p protocols write
//! whole frames and flush when they want them sent. Listening on port 0 reports the port the
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
#![warn(missing_docs)]

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
    _private: (),
}

impl TcpTransport {
    /// A TCP transport with `TCP_NODELAY` on.
    pub fn new() -> Self {
        TcpTransport { _private: () }
    }
}

/// Where to dial or listen, read off a multiaddr.
enum Target {
    Socket(SocketAddr),
    Dns {
        name: String,
        port: u16,
        family: Family,
    },
}

#[derive(Clone, Copy)]
enum Family {
    Any,
    V4,
    V6,
}

fn parse(addr: &Multiaddr) -> Option<Target> {
    let mut iter = addr.iter();
    let host = iter.next()?;
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
    Some(match host {
        Protocol::Ip4(ip) => Target::Socket(SocketAddr::new(ip.into(), port)),
        Protocol::Ip6(ip) => Target::Socket(SocketAddr::new(ip.into(), port)),
        Protocol::Dns(name) => Target::Dns {
            name: name.to_string(),
            port,
            family: Family::Any,
        },
        Protocol::Dns4(name) => Target::Dns {
            name: name.to_string(),
            port,
            family: Family::V4,
        },
        Protocol::Dns6(name) => Target::Dns {
            name: name.to_string(),
            port,
            family: Family::V6,
        },
        _ => return None,
    })
}

/// The multiaddr of a socket address.
pub fn socket_to_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

async fn resolve(name: String, port: u16, family: Family) -> io::Result<Vec<SocketAddr>> {
    let found = tokio::net::lookup_host((name.as_str(), port)).await?;
    let addrs: Vec<SocketAddr> = found
        .filter(|a| match family {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        })
        .collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} has no address of the requested family"),
        ));
    }
    Ok(addrs)
}

async fn connect(addrs: Vec<SocketAddr>) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

/// The addresses a listener bound to `local` is reachable at.
fn listen_addresses(local: SocketAddr) -> Vec<Multiaddr> {
    if !local.ip().is_unspecified() {
        return vec![socket_to_multiaddr(local)];
    }
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list interfaces; reporting the unspecified address");
            return vec![socket_to_multiaddr(local)];
        }
    };
    let mut addrs: Vec<Multiaddr> = interfaces
        .into_iter()
        .map(|iface| iface.ip())
        .filter(|ip| ip.is_ipv4() == local.is_ipv4())
        .map(|ip| socket_to_multiaddr(SocketAddr::new(ip, local.port())))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// A TCP listener: first its addresses, then incoming connections.
#[derive(Debug)]
pub struct TcpListenStream {
    listener: TcpListener,
    local: SocketAddr,
    announce: VecDeque<Multiaddr>,
    /// After an accept error (such as too many open files) wait a little before trying
    /// again, instead of spinning.
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TcpListenStream {
    /// The socket address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Stream for TcpListenStream {
    type Item = ListenerEvent<TcpStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(addr) = self.announce.pop_front() {
            return Poll::Ready(Some(ListenerEvent::NewAddress(addr)));
        }
        if let Some(sleep) = self.backoff.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.backoff = None;
        }
        match self.listener.poll_accept(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok((stream, remote))) => {
                let local = stream.local_addr().unwrap_or(self.local);
                Poll::Ready(Some(ListenerEvent::Incoming {
                    pending: stream,
                    local_addr: socket_to_multiaddr(local),
                    remote_addr: socket_to_multiaddr(remote),
                }))
            }
            Poll::Ready(Err(e)) => {
                self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                Poll::Ready(Some(ListenerEvent::Error(TransportError::Io(e))))
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
        async move {
            let addrs = match target {
                None => return Err(TransportError::MultiaddrNotSupported(addr)),
                Some(Target::Socket(sa)) => vec![sa],
                Some(Target::Dns { name, port, family }) => resolve(name, port, family).await?,
            };
            tracing::trace!(?addrs, "tcp connect");
            Ok(connect(addrs).await?.compat())
        }
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        let local = match parse(&addr) {
            Some(Target::Socket(sa)) => sa,
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        };
        let std_listener = std::net::TcpListener::bind(local).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                TransportError::AddressInUse(addr.clone())
            } else {
                TransportError::Io(e)
            }
        })?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let local = listener.local_addr()?;
        Ok(TcpListenStream {
            listener,
            local,
            announce: listen_addresses(local).into(),
            backoff: None,
        })
    }

    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        futures::future::ready(
            pending
                .set_nodelay(true)
                .map(|()| pending.compat())
                .map_err(TransportError::Io),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_addresses() {
        for ok in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip6/::1/tcp/1",
            "/dns/localhost/tcp/1",
            "/dns4/localhost/tcp/1",
            "/dns6/localhost/tcp/1",
            "/ip4/1.2.3.4/tcp/5/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        ] {
            assert!(parse(&ok.parse().unwrap()).is_some(), "{ok}");
        }
        for bad in [
            "/ip4/127.0.0.1/udp/1",
            "/memory/5",
            "/ip4/127.0.0.1",
            "/ip4/127.0.0.1/tcp/1/ws",
        ] {
            assert!(parse(&bad.parse().unwrap()).is_none(), "{bad}");
        }
    }
}
