//! [`WsTransport`]: `/…/tcp/P/ws` over any raw transport that takes `/…/tcp/P`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, TryFutureExt};
use libp2p_core::{ListenerEvent, Multiaddr, Protocol, Socket, Transport, TransportError};
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use crate::error::UpgradeError;
use crate::stream::{Capped, WsStream};
use crate::Config;

/// The socket under a WebSocket of a raw transport whose sockets are `C`.
pub type WsSocket<C> = WsStream<Capped<Compat<C>>>;

/// WebSocket over `T` (TCP, usually): dials `/ip4|ip6|dns*/A/tcp/P/ws` and listens on
/// `/ip4|ip6/A/tcp/P/ws`; each socket is a byte stream over binary WebSocket messages, for the
/// upgrade pipeline to secure and multiplex as it does a TCP socket.
#[derive(Debug, Clone)]
pub struct WsTransport<T> {
    inner: T,
    config: Config,
}

impl<T> WsTransport<T> {
    /// WebSocket over `inner` with the default [`Config`].
    pub fn new(inner: T) -> Self {
        Self::with_config(inner, Config::default())
    }

    /// WebSocket over `inner` with these settings.
    pub fn with_config(inner: T, config: Config) -> Self {
        WsTransport { inner, config }
    }
}

/// The inner address and the `Host` header value of a `/ws` address: everything before
/// `/ws` (with any `/p2p/<id>` after it kept), or `None` if it is not one.
pub fn split_ws(addr: &Multiaddr) -> Option<(Multiaddr, String)> {
    let mut inner = Multiaddr::empty();
    let mut host = None;
    let mut port = None;
    let mut seen_ws = false;
    for p in addr.iter() {
        match p {
            Protocol::Ws(path) if !seen_ws && port.is_some() => {
                if path != "/" {
                    return None;
                }
                seen_ws = true;
            }
            Protocol::P2p(_) if seen_ws => inner.push(p),
            _ if seen_ws => return None,
            Protocol::Ip4(ip) => {
                host = Some(ip.to_string());
                inner.push(p)
            }
            Protocol::Ip6(ip) => {
                host = Some(format!("[{ip}]"));
                inner.push(p)
            }
            Protocol::Dns(ref n) | Protocol::Dns4(ref n) | Protocol::Dns6(ref n) => {
                host = Some(n.to_string());
                inner.push(p)
            }
            Protocol::Tcp(p2) => {
                port = Some(p2);
                inner.push(Protocol::Tcp(p2))
            }
            _ => return None,
        }
    }
    match (seen_ws, host, port) {
        (true, Some(host), Some(port)) => Some((inner, format!("{host}:{port}"))),
        _ => None,
    }
}

fn with_ws(addr: Multiaddr) -> Multiaddr {
    addr.with(Protocol::Ws("/".into()))
}

/// The HTTP upgrade as a client, under the configured deadline and head cap.
async fn connect<C: Socket>(
    socket: C,
    host: String,
    config: Config,
) -> Result<WsSocket<C>, TransportError> {
    let capped = Capped {
        inner: socket.compat(),
        remaining: Some(config.max_handshake_bytes),
    };
    let request = Request::builder()
        .uri(format!("ws://{host}/"))
        .header("Host", &host)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .map_err(|e| UpgradeError::WebSocket(e.into()))?;
    let handshake =
        tokio_tungstenite::client_async_with_config(request, capped, Some(config.websocket()));
    let (mut ws, _response) = tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .map_err(|_| TransportError::Timeout(config.handshake_timeout))?
        .map_err(|e| head_error(e, &config))?;
    ws.get_mut().remaining = None;
    Ok(WsStream::new(ws, config.max_write_size))
}

/// The HTTP upgrade as a server.
async fn accept<C: Socket>(socket: C, config: Config) -> Result<WsSocket<C>, TransportError> {
    let capped = Capped {
        inner: socket.compat(),
        remaining: Some(config.max_handshake_bytes),
    };
    let handshake = tokio_tungstenite::accept_async_with_config(capped, Some(config.websocket()));
    let mut ws = tokio::time::timeout(config.handshake_timeout, handshake)
        .await
        .map_err(|_| TransportError::Timeout(config.handshake_timeout))?
        .map_err(|e| head_error(e, &config))?;
    ws.get_mut().remaining = None;
    Ok(WsStream::new(ws, config.max_write_size))
}

fn head_error(e: tokio_tungstenite::tungstenite::Error, config: &Config) -> TransportError {
    use tokio_tungstenite::tungstenite::Error as E;
    match &e {
        E::Io(io) if io.kind() == std::io::ErrorKind::InvalidData && io.get_ref().is_some() => {
            UpgradeError::HeadTooLarge {
                max: config.max_handshake_bytes,
            }
            .into()
        }
        _ => UpgradeError::WebSocket(e).into(),
    }
}

/// The listener of a [`WsTransport`]: the inner listener's events, addresses with `/ws`.
#[derive(Debug)]
pub struct WsListener<L> {
    inner: L,
}

impl<L, P> Stream for WsListener<L>
where
    L: Stream<Item = ListenerEvent<P>> + Unpin,
{
    type Item = ListenerEvent<P>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|event| {
            event.map(|event| match event {
                ListenerEvent::NewAddress(a) => ListenerEvent::NewAddress(with_ws(a)),
                ListenerEvent::AddressExpired(a) => ListenerEvent::AddressExpired(with_ws(a)),
                ListenerEvent::Incoming {
                    pending,
                    local_addr,
                    remote_addr,
                } => ListenerEvent::Incoming {
                    pending,
                    local_addr: with_ws(local_addr),
                    remote_addr: with_ws(remote_addr),
                },
                other => other,
            })
        })
    }
}

impl<T> Transport for WsTransport<T>
where
    T: Transport,
    T::Output: Socket,
{
    type Output = WsSocket<T::Output>;
    type Pending = T::Pending;
    type Listener = WsListener<T::Listener>;

    fn can_dial(&self, addr: &Multiaddr) -> bool {
        split_ws(addr).is_some_and(|(inner, _)| self.inner.can_dial(&inner))
    }

    fn dial(
        &self,
        addr: Multiaddr,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let split = split_ws(&addr);
        let inner = self.inner.clone();
        let config = self.config.clone();
        async move {
            let (inner_addr, host) = split.ok_or(TransportError::MultiaddrNotSupported(addr))?;
            let (inner_addr, _) = libp2p_core::split_peer_id(&inner_addr);
            let socket = inner.dial(inner_addr).await?;
            connect(socket, host, config).await
        }
    }

    fn listen(&self, addr: Multiaddr) -> Result<Self::Listener, TransportError> {
        let (inner, _) =
            split_ws(&addr).ok_or_else(|| TransportError::MultiaddrNotSupported(addr.clone()))?;
        Ok(WsListener {
            inner: self.inner.listen(inner)?,
        })
    }

    fn accept(
        &self,
        pending: Self::Pending,
    ) -> impl Future<Output = Result<Self::Output, TransportError>> + Send + 'static {
        let config = self.config.clone();
        self.inner
            .accept(pending)
            .and_then(move |socket| accept(socket, config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_ws_addresses() {
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/4001/ws".parse().unwrap();
        let (inner, host) = split_ws(&a).unwrap();
        assert_eq!(inner.to_string(), "/ip4/127.0.0.1/tcp/4001");
        assert_eq!(host, "127.0.0.1:4001");
        let v6: Multiaddr = "/ip6/::1/tcp/5/ws".parse().unwrap();
        assert_eq!(split_ws(&v6).unwrap().1, "[::1]:5");
        let dns: Multiaddr = "/dns4/example.com/tcp/80/ws".parse().unwrap();
        assert_eq!(split_ws(&dns).unwrap().1, "example.com:80");
        for bad in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/tcp/4001/wss",
            "/ip4/127.0.0.1/udp/4001/quic-v1",
            "/ip4/127.0.0.1/tcp/4001/ws/ws",
        ] {
            assert!(split_ws(&bad.parse().unwrap()).is_none(), "{bad}");
        }
    }
}
