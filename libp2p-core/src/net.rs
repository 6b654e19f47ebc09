//! What every IP transport needs of the machine's network: the addresses a listening socket
//! is reachable at.

use std::net::{IpAddr, SocketAddr};

use multiaddr::Multiaddr;

/// The IP addresses a socket bound to `local` is reachable at: `local` itself, or, when it is
/// bound to the unspecified address (`0.0.0.0`, `::`), each interface address of its family,
/// sorted and without repeats. Each goes through `to_multiaddr` (the transport adds its own
/// protocols: `/tcp/P`, `/udp/P/quic-v1`...). Should the interfaces not be listable, the
/// unspecified address is reported as it is, with a warning.
pub fn listen_addresses(
    local: SocketAddr,
    to_multiaddr: impl Fn(SocketAddr) -> Multiaddr,
) -> Vec<Multiaddr> {
    if !local.ip().is_unspecified() {
        return vec![to_multiaddr(local)];
    }
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list interfaces; reporting the unspecified address");
            return vec![to_multiaddr(local)];
        }
    };
    let mut addrs: Vec<Multiaddr> = interfaces
        .into_iter()
        .map(|iface| iface.ip())
        .filter(|ip: &IpAddr| ip.is_ipv4() == local.is_ipv4())
        .map(|ip| to_multiaddr(SocketAddr::new(ip, local.port())))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiaddr::Protocol;

    fn tcp(addr: SocketAddr) -> Multiaddr {
        Multiaddr::from(addr.ip()).with(Protocol::Tcp(addr.port()))
    }

    #[test]
    fn a_bound_address_is_itself_and_the_unspecified_one_expands_to_loopback_too() {
        let bound: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        assert_eq!(listen_addresses(bound, tcp), vec![tcp(bound)]);
        let any = listen_addresses("0.0.0.0:4001".parse().unwrap(), tcp);
        assert!(any.contains(&tcp(bound)), "{any:?}");
        assert!(any
            .iter()
            .all(|a| a.iter().any(|p| p == Protocol::Tcp(4001))));
        let mut sorted = any.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(any, sorted);
    }
}
