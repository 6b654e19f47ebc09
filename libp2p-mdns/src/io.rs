//! The tokio driver: one IPv4 (`224.0.0.251:5353`) and one IPv6 (`[ff02::fb]:5353`) multicast
//! socket per interface that can multicast (loopback skipped), the [`Mdns`] core between them.
//!
//! Each socket is bound to the mDNS port with `SO_REUSEADDR`/`SO_REUSEPORT` (other responders,
//! or other hosts of ours, may hold it too), tied to its interface (`SO_BINDTODEVICE` where
//! allowed, `IP_MULTICAST_ALL` off on Linux, the group joined and the multicast interface set
//! on that interface only), so that the link a packet arrived on is known and answers carry
//! that interface's addresses. Multicast loop is on: several hosts on one machine see each
//! other, and our own query reaches our own responder, as the spec asks. Every answer is
//! multicast from port 5353 (RFC 6762 §6: responses from another port are ignored).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p_core::{Multiaddr, PeerId};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::core::{Event, LinkId, Mdns};
use crate::error::{SocketError, StartError};
use crate::proto::{IPV4_GROUP, IPV6_GROUP, PORT};
use crate::Config;

/// Datagrams read by the socket tasks and not yet handled: beyond this the readers wait and the
/// kernel's socket buffer absorbs (or drops) the rest.
const RECEIVED_QUEUE: usize = 64;

/// Commands from the [`Handle`] not yet taken by the driver; a caller beyond it waits.
const COMMAND_QUEUE: usize = 16;

/// How long a socket's reader pauses after a receive error, so that a persistent error costs
/// ten wake-ups a second rather than a busy loop.
const RECEIVE_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Commands from the [`Handle`].
enum Command {
    SetListenAddrs(Vec<Multiaddr>),
    Discovered(tokio::sync::oneshot::Sender<Vec<(PeerId, Vec<Multiaddr>)>>),
    Expiries(tokio::sync::oneshot::Sender<Vec<(PeerId, Multiaddr, Instant)>>),
}

/// The application's side of a running driver. Dropping it stops the driver.
#[derive(Debug, Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::SetListenAddrs(a) => f.debug_tuple("SetListenAddrs").field(a).finish(),
            Command::Discovered(_) => f.write_str("Discovered"),
            Command::Expiries(_) => f.write_str("Expiries"),
        }
    }
}

impl Handle {
    /// Replaces the addresses we announce (the host's listen addresses). Returns `false` if the
    /// driver has stopped.
    pub async fn set_listen_addrs(&self, addrs: Vec<Multiaddr>) -> bool {
        self.commands
            .send(Command::SetListenAddrs(addrs))
            .await
            .is_ok()
    }

    /// The peers discovered so far and not expired, with their addresses; `None` if the
    /// driver has stopped.
    pub async fn discovered(&self) -> Option<Vec<(PeerId, Vec<Multiaddr>)>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands.send(Command::Discovered(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Every discovered address with the moment it expires; `None` if the driver has
    /// stopped.
    pub async fn expiries(&self) -> Option<Vec<(PeerId, Multiaddr, Instant)>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands.send(Command::Expiries(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// The discovery events of a driver, as a [`futures::Stream`]. It ends when the driver stops.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event, or `None` once the driver stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Which socket: an interface and a family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LinkKey {
    interface: String,
    index: u32,
    ipv6: bool,
}

struct LinkSocket {
    id: LinkId,
    ips: Vec<IpAddr>,
    socket: Arc<UdpSocket>,
    dest: SocketAddr,
    reader: tokio::task::JoinHandle<()>,
}

struct Received {
    link: LinkId,
    from: SocketAddr,
    bytes: Vec<u8>,
    len: usize,
}

/// The driver task: owns the sockets and the [`Mdns`] core. Run it with [`Driver::run`] (or
/// let [`spawn`] do it).
pub struct Driver {
    core: Mdns,
    links: HashMap<LinkKey, LinkSocket>,
    next_link: u32,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    received_tx: mpsc::Sender<Received>,
    received_rx: mpsc::Receiver<Received>,
    /// Only interfaces with one of these names are used, when set (tests, and hosts that must
    /// not announce on every network).
    only_interfaces: Option<Vec<String>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("peer_name", &self.core.peer_name())
            .field("links", &self.links.len())
            .finish()
    }
}

impl Driver {
    /// A driver for `local`, announcing `listen_addrs`, with its handle and event stream.
    /// Sockets are opened when it runs.
    pub fn new(
        config: Config,
        local: PeerId,
        listen_addrs: Vec<Multiaddr>,
    ) -> Result<(Driver, Handle, Events), StartError> {
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = mpsc::channel(config.event_channel_capacity.max(1));
        let (rx_tx, rx_rx) = mpsc::channel(RECEIVED_QUEUE);
        let mut core = Mdns::new(config, local, Instant::now())?;
        core.set_listen_addrs(listen_addrs);
        Ok((
            Driver {
                core,
                links: HashMap::new(),
                next_link: 0,
                commands: cmd_rx,
                events: ev_tx,
                received_tx: rx_tx,
                received_rx: rx_rx,
                only_interfaces: None,
            },
            Handle { commands: cmd_tx },
            Events { rx: ev_rx },
        ))
    }

    /// Restricts the driver to the interfaces with these names.
    pub fn only_interfaces(mut self, names: Vec<String>) -> Self {
        self.only_interfaces = Some(names);
        self
    }

    /// Our random peer name.
    pub fn peer_name(&self) -> &str {
        self.core.peer_name()
    }

    /// Runs until the [`Handle`] (all its clones) is dropped, then multicasts our goodbye
    /// (TTL 0) so that peers forget us at once.
    pub async fn run(mut self) -> Result<(), StartError> {
        self.scan_interfaces()?;
        let scan_every = self.core.config().interface_scan_interval;
        let mut next_scan = tokio::time::Instant::now() + scan_every;
        loop {
            self.flush().await;
            let deadline = self
                .core
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or(next_scan)
                .min(next_scan);
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::SetListenAddrs(addrs)) => self.core.set_listen_addrs(addrs),
                    Some(Command::Discovered(reply)) => {
                        let _ = reply.send(self.core.peers().collect());
                    }
                    Some(Command::Expiries(reply)) => {
                        let _ = reply.send(self.core.peer_expiries().collect());
                    }
                    None => break,
                },
                Some(r) = self.received_rx.recv() => {
                    // A refused packet is counted and logged by the core; nothing else to do.
                    let _ = self.core.handle_packet(Instant::now(), r.link, r.from, &r.bytes, r.len);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = tokio::time::Instant::now();
                    if now >= next_scan {
                        if let Err(e) = self.scan_interfaces() {
                            tracing::warn!(error = %e, "mDNS interface scan failed");
                        }
                        next_scan = now + scan_every;
                    }
                    self.core.handle_timeout(Instant::now());
                }
            }
        }
        self.core.goodbye();
        self.flush().await;
        for (_, link) in self.links.drain() {
            link.reader.abort();
        }
        Ok(())
    }

    /// Sends what the core queued and forwards its events.
    async fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let Some(link) = self.links.values().find(|l| l.id == t.link) else {
                continue;
            };
            if let Err(e) = link.socket.send_to(&t.packet, link.dest).await {
                tracing::debug!(dest = %link.dest, error = %e, "mDNS send failed");
            }
        }
        while let Some(ev) = self.core.poll_event() {
            if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(ev) {
                tracing::warn!(?ev, "mDNS event channel full, event dropped");
            }
        }
    }

    /// Opens sockets on new interfaces and closes those of vanished ones.
    fn scan_interfaces(&mut self) -> Result<(), StartError> {
        let ifaces = if_addrs::get_if_addrs().map_err(StartError::Interfaces)?;
        let enable_ipv6 = self.core.config().enable_ipv6;
        // Links by family, each given every address of its interface (both families): the
        // answers on the IPv4 and the IPv6 link of one interface must carry the same addresses,
        // or DNS-SD caches (which flush a TXT record on each new copy) flap between the two.
        let mut wanted: HashMap<LinkKey, Vec<IpAddr>> = HashMap::new();
        let mut iface_ips: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for iface in ifaces {
            if iface.is_loopback() || iface.oper_status == if_addrs::IfOperStatus::Down {
                continue;
            }
            if let Some(only) = &self.only_interfaces {
                if !only.contains(&iface.name) {
                    continue;
                }
            }
            let ip = iface.ip();
            iface_ips.entry(iface.name.clone()).or_default().push(ip);
            if ip.is_ipv6() && !enable_ipv6 {
                continue;
            }
            let Some(index) = iface.index else { continue };
            let key = LinkKey {
                interface: iface.name.clone(),
                index,
                ipv6: ip.is_ipv6(),
            };
            wanted.entry(key).or_default();
        }
        for (key, ips) in wanted.iter_mut() {
            *ips = iface_ips.get(&key.interface).cloned().unwrap_or_default();
        }
        let gone: Vec<LinkKey> = self
            .links
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(link) = self.links.remove(&key) {
                tracing::debug!(interface = %key.interface, ipv6 = key.ipv6, "mDNS link gone");
                link.reader.abort();
                self.core.remove_link(link.id);
            }
        }
        for (key, ips) in wanted {
            if let Some(link) = self.links.get_mut(&key) {
                if link.ips != ips {
                    link.ips = ips.clone();
                    self.core.remove_link(link.id);
                    self.core.add_link(link.id, ips);
                }
                continue;
            }
            match open_socket(&key, &ips) {
                Ok((socket, dest)) => {
                    let id = LinkId(self.next_link);
                    self.next_link += 1;
                    let socket = Arc::new(socket);
                    let reader = tokio::spawn(read_loop(
                        id,
                        socket.clone(),
                        self.core.config().max_packet_size,
                        self.received_tx.clone(),
                    ));
                    tracing::debug!(interface = %key.interface, ipv6 = key.ipv6, ?ips, "mDNS link up");
                    self.core.add_link(id, ips.clone());
                    self.links.insert(
                        key,
                        LinkSocket {
                            id,
                            ips,
                            socket,
                            dest,
                            reader,
                        },
                    );
                }
                Err(e) => tracing::debug!(error = %e, "no mDNS on this interface"),
            }
        }
        Ok(())
    }
}

/// Creates a driver and spawns it on the current tokio runtime.
pub fn spawn(
    config: Config,
    local: PeerId,
    listen_addrs: Vec<Multiaddr>,
) -> Result<(Handle, Events), StartError> {
    let (driver, handle, events) = Driver::new(config, local, listen_addrs)?;
    tokio::spawn(async move {
        if let Err(e) = driver.run().await {
            tracing::warn!(error = %e, "mDNS driver stopped");
        }
    });
    Ok((handle, events))
}

async fn read_loop(
    link: LinkId,
    socket: Arc<UdpSocket>,
    max_packet_size: usize,
    tx: mpsc::Sender<Received>,
) {
    // One byte over the limit, so that an oversized datagram shows as one.
    let mut buf = vec![0u8; max_packet_size + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, from)) => {
                let r = Received {
                    link,
                    from,
                    bytes: buf[..len.min(max_packet_size)].to_vec(),
                    len,
                };
                if tx.send(r).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "mDNS receive failed");
                // Errors such as ICMP-induced ones are transient; do not spin on a hard one.
                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
            }
        }
    }
}

fn open_socket(key: &LinkKey, ips: &[IpAddr]) -> Result<(UdpSocket, SocketAddr), SocketError> {
    let err = |step: &'static str| {
        let interface = key.interface.clone();
        move |source| SocketError::Io {
            interface,
            step,
            source,
        }
    };
    let domain = if key.ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err("socket"))?;
    socket.set_reuse_address(true).map_err(err("reuseaddr"))?;
    #[cfg(unix)]
    socket.set_reuse_port(true).map_err(err("reuseport"))?;
    // Binding to the device needs privileges on old kernels; the multicast options below pin
    // the interface anyway, so this is best effort.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket.bind_device(Some(key.interface.as_bytes())) {
        tracing::trace!(error = %e, "SO_BINDTODEVICE refused");
    }
    let dest = if key.ipv6 {
        socket.set_only_v6(true).map_err(err("only_v6"))?;
        let bind = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, PORT, 0, 0);
        socket.bind(&bind.into()).map_err(err("bind"))?;
        socket
            .join_multicast_v6(&IPV6_GROUP, key.index)
            .map_err(err("join"))?;
        socket
            .set_multicast_if_v6(key.index)
            .map_err(err("multicast_if"))?;
        socket.set_multicast_loop_v6(true).map_err(err("loop"))?;
        socket.set_multicast_hops_v6(255).map_err(err("hops"))?;
        #[cfg(target_os = "linux")]
        socket
            .set_multicast_all_v6(false)
            .map_err(err("multicast_all"))?;
        SocketAddr::V6(SocketAddrV6::new(IPV6_GROUP, PORT, 0, key.index))
    } else {
        let own = ips
            .iter()
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let bind = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT);
        socket.bind(&bind.into()).map_err(err("bind"))?;
        socket
            .join_multicast_v4(&IPV4_GROUP, &own)
            .map_err(err("join"))?;
        socket
            .set_multicast_if_v4(&own)
            .map_err(err("multicast_if"))?;
        socket.set_multicast_loop_v4(true).map_err(err("loop"))?;
        socket.set_multicast_ttl_v4(255).map_err(err("ttl"))?;
        #[cfg(target_os = "linux")]
        socket
            .set_multicast_all_v4(false)
            .map_err(err("multicast_all"))?;
        SocketAddr::V4(SocketAddrV4::new(IPV4_GROUP, PORT))
    };
    socket.set_nonblocking(true).map_err(err("nonblocking"))?;
    let socket = UdpSocket::from_std(socket.into()).map_err(err("tokio"))?;
    Ok((socket, dest))
}
