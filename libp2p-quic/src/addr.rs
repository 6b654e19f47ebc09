//! QUIC multiaddrs: `/ip4/A/udp/P/quic-v1` and `/ip6/A/udp/P/quic-v1`, optionally followed by
//! `/p2p/<id>`. Pure conversions, no I/O.

use std::net::{IpAddr, SocketAddr};

use libp2p_core::{Multiaddr, PeerId, Protocol};

/// The socket address and the peer named by a QUIC multiaddr, or `None` if it is not one.
/// (DNS names are not resolved here: `/dns*/…/udp/P/quic-v1` is not taken.)
pub fn parse(addr: &Multiaddr) -> Option<(SocketAddr, Option<PeerId>)> {
    let mut iter = addr.iter();
    let ip: IpAddr = match iter.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let port = match iter.next()? {
        Protocol::Udp(port) => port,
        _ => return None,
    };
    match iter.next()? {
        Protocol::QuicV1 => {}
        _ => return None,
    }
    let peer = match iter.next() {
        None => None,
        Some(Protocol::P2p(peer)) => Some(peer),
        Some(_) => return None,
    };
    if iter.next().is_some() {
        return None;
    }
    Some((SocketAddr::new(ip, port), peer))
}

/// The QUIC multiaddr of a socket address.
pub fn to_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Multiaddr::empty()
        .with(ip)
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}

/// The socket address as quinn reports it, without IPv4-mapped IPv6 forms.
pub(crate) fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quic_addresses_only() {
        let peer = PeerId::random();
        let ok: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        assert_eq!(parse(&ok), Some(("127.0.0.1:4001".parse().unwrap(), None)));
        let with_peer = ok.clone().with(Protocol::P2p(peer));
        assert_eq!(parse(&with_peer).unwrap().1, Some(peer));
        let v6: Multiaddr = "/ip6/::1/udp/5/quic-v1".parse().unwrap();
        assert_eq!(parse(&v6).unwrap().0, "[::1]:5".parse().unwrap());
        for bad in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/udp/4001",
            "/ip4/127.0.0.1/udp/4001/quic",
            "/ip4/127.0.0.1/udp/4001/quic-v1/webtransport",
            "/dns4/example.com/udp/4001/quic-v1",
        ] {
            assert_eq!(parse(&bad.parse().unwrap()), None, "{bad}");
        }
        assert_eq!(to_multiaddr("127.0.0.1:4001".parse().unwrap()), ok);
    }

    #[test]
    fn unmaps_v4_in_v6() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:7".parse().unwrap();
        assert_eq!(unmap(mapped), "10.0.0.1:7".parse().unwrap());
    }
}
