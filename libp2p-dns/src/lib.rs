//! DNS for the modular libp2p: `/dns`, `/dns4`, `/dns6` and `/dnsaddr` addresses turned into
//! addresses a transport can dial.
//!
//! `/dns4/example.com/tcp/4001` becomes one `/ip4/.../tcp/4001` per A record. `/dnsaddr/<d>`
//! reads the TXT records of `_dnsaddr.<d>`, each `dnsaddr=<multiaddr>`, and resolves those in
//! turn (they may name further `/dnsaddr` domains), so the IPFS bootstrap list can be given as
//! is. When the address goes on past the `/dnsaddr` part (usually `/p2p/<id>`), only records
//! that end the same way are kept. [`Config`] bounds depth, lookups, records and addresses.
//! `localhost` is answered without asking anyone (RFC 6761).
//!
//! The lookups themselves sit behind [`Resolve`]; [`HickoryResolver`] makes them with
//! `hickory-resolver`. The host resolves through a [`Dns`] before it picks a transport, so
//! every transport shares one resolver.
//!
//! ```no_run
//! use libp2p_dns::{Config, Dns, HickoryResolver};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let dns = Dns::new(HickoryResolver::system(Config::default().lookup_timeout), Config::default());
//! let addrs = dns.resolve(&"/dnsaddr/bootstrap.libp2p.io".parse()?).await?;
//! for addr in addrs {
//!     println!("{addr}");
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
mod resolve;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use libp2p_core::{Multiaddr, Protocol};

pub use config::Config;
pub use error::DnsError;
pub use resolve::{Family, HickoryResolver, Resolve};

/// The prefix of a `/dnsaddr` TXT record.
const DNSADDR_PREFIX: &[u8] = b"dnsaddr=";

/// Resolves multiaddrs through a [`Resolve`], within the bounds of a [`Config`].
#[derive(Clone)]
pub struct Dns {
    resolver: Arc<dyn Resolve>,
    config: Config,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").field("config", &self.config).finish()
    }
}

impl Default for Dns {
    /// The system's resolver with the default limits.
    fn default() -> Self {
        let config = Config::default();
        Dns::new(HickoryResolver::system(config.lookup_timeout), config)
    }
}

/// Whether `addr` has a part that needs a lookup (`/dns`, `/dns4`, `/dns6`, `/dnsaddr`).
pub fn needs_resolving(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| {
        matches!(
            p,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)
        )
    })
}

impl Dns {
    /// Resolves with `resolver` within `config`'s limits.
    pub fn new(resolver: impl Resolve, config: Config) -> Self {
        Dns {
            resolver: Arc::new(resolver),
            config,
        }
    }

    /// The limits.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every address `addr` stands for, in the order the records gave them (at most
    /// `max_addresses`). An address with nothing to look up is returned as it is. A branch of a
    /// `/dnsaddr` tree that fails is skipped when another one gives addresses; when none does,
    /// the first failure is the error.
    pub async fn resolve(&self, addr: &Multiaddr) -> Result<Vec<Multiaddr>, DnsError> {
        let mut queue = VecDeque::from([(addr.clone(), 0usize)]);
        let mut found = Vec::new();
        let mut first_error = None;
        let mut lookups = 0usize;
        while let Some((next, depth)) = queue.pop_front() {
            if found.len() >= self.config.max_addresses {
                break;
            }
            let Some((index, part)) = first_lookup(&next) else {
                if !found.contains(&next) {
                    found.push(next);
                }
                continue;
            };
            if lookups >= self.config.max_lookups {
                first_error.get_or_insert(DnsError::TooManyLookups {
                    limit: self.config.max_lookups,
                });
                break;
            }
            let expanded = match part {
                Lookup::Name(name, family) => {
                    lookups += 1;
                    self.lookup_ip(&name, family).await.map(|ips| {
                        ips.into_iter()
                            .map(|ip| replace(&next, index, ip_protocol(ip)))
                            .map(|a| (a, depth))
                            .collect::<Vec<_>>()
                    })
                }
                Lookup::Dnsaddr(name) => {
                    if depth >= self.config.max_depth {
                        first_error.get_or_insert(DnsError::TooDeep {
                            limit: self.config.max_depth,
                        });
                        continue;
                    }
                    lookups += 1;
                    let suffix: Vec<Protocol<'static>> =
                        next.iter().skip(index + 1).map(|p| p.acquire()).collect();
                    self.dnsaddr_records(&name).await.map(|records| {
                        records
                            .into_iter()
                            .filter(|r| ends_with(r, &suffix))
                            .map(|r| (r, depth + 1))
                            .collect()
                    })
                }
            };
            match expanded {
                // Depth first, in record order: a record's own addresses before its siblings'.
                Ok(list) => {
                    for item in list.into_iter().rev() {
                        queue.push_front(item);
                    }
                }
                Err(e) => {
                    tracing::debug!(addr = %next, error = %e, "lookup failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        if found.is_empty() {
            return Err(first_error.unwrap_or_else(|| DnsError::NoAddresses {
                addr: addr.to_string(),
            }));
        }
        Ok(found)
    }

    async fn lookup_ip(&self, name: &str, family: Family) -> Result<Vec<IpAddr>, DnsError> {
        let name = name.trim_end_matches('.');
        if name.eq_ignore_ascii_case("localhost") {
            let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
            return Ok(match family {
                Family::Any => vec![v4, v6],
                Family::V4 => vec![v4],
                Family::V6 => vec![v6],
            });
        }
        let limit = self.config.lookup_timeout;
        let ips = tokio_timeout(limit, self.resolver.lookup_ip(name, family))
            .await
            .ok_or_else(|| DnsError::Timeout {
                name: name.to_string(),
            })??;
        let ips: Vec<IpAddr> = ips
            .into_iter()
            .filter(|ip| match family {
                Family::Any => true,
                Family::V4 => ip.is_ipv4(),
                Family::V6 => ip.is_ipv6(),
            })
            .collect();
        if ips.is_empty() {
            return Err(DnsError::NotFound {
                name: name.to_string(),
            });
        }
        Ok(ips)
    }

    /// The multiaddrs in the TXT records of `_dnsaddr.<name>` (malformed ones skipped).
    async fn dnsaddr_records(&self, name: &str) -> Result<Vec<Multiaddr>, DnsError> {
        let query = format!("_dnsaddr.{}", name.trim_end_matches('.'));
        let limit = self.config.lookup_timeout;
        let records = tokio_timeout(limit, self.resolver.lookup_txt(&query))
            .await
            .ok_or_else(|| DnsError::Timeout {
                name: query.clone(),
            })??;
        let addrs = records
            .iter()
            .filter_map(|r| r.strip_prefix(DNSADDR_PREFIX))
            .take(self.config.max_txt_records)
            .filter_map(|r| match std::str::from_utf8(r).ok()?.parse::<Multiaddr>() {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::debug!(name = %query, error = %e, "malformed dnsaddr record skipped");
                    None
                }
            })
            .collect();
        Ok(addrs)
    }
}

/// What the first part needing a lookup asks for.
enum Lookup {
    Name(String, Family),
    Dnsaddr(String),
}

fn first_lookup(addr: &Multiaddr) -> Option<(usize, Lookup)> {
    addr.iter().enumerate().find_map(|(i, p)| {
        let lookup = match p {
            Protocol::Dns(n) => Lookup::Name(n.to_string(), Family::Any),
            Protocol::Dns4(n) => Lookup::Name(n.to_string(), Family::V4),
            Protocol::Dns6(n) => Lookup::Name(n.to_string(), Family::V6),
            Protocol::Dnsaddr(n) => Lookup::Dnsaddr(n.to_string()),
            _ => return None,
        };
        Some((i, lookup))
    })
}

fn ip_protocol(ip: IpAddr) -> Protocol<'static> {
    match ip {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    }
}

/// `addr` with its part at `index` replaced by `with`.
fn replace(addr: &Multiaddr, index: usize, with: Protocol<'static>) -> Multiaddr {
    addr.iter()
        .enumerate()
        .map(|(i, p)| if i == index { with.clone() } else { p })
        .collect()
}

fn ends_with(addr: &Multiaddr, suffix: &[Protocol<'_>]) -> bool {
    let parts: Vec<Protocol<'_>> = addr.iter().collect();
    parts.len() >= suffix.len() && parts[parts.len() - suffix.len()..] == *suffix
}

/// `future` or `None` after `limit` (a lookup must not hang a dial, whatever the resolver).
async fn tokio_timeout<F: std::future::Future>(
    limit: std::time::Duration,
    future: F,
) -> Option<F::Output> {
    tokio::time::timeout(limit, future).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_part_to_look_up() {
        let a: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
        assert!(!needs_resolving(&a));
        let b: Multiaddr =
            "/dnsaddr/example.com/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .unwrap();
        assert!(needs_resolving(&b));
        assert!(matches!(first_lookup(&b), Some((0, Lookup::Dnsaddr(n))) if n == "example.com"));
    }

    #[test]
    fn suffix_match_compares_whole_parts() {
        let a: Multiaddr =
            "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .unwrap();
        let suffix: Vec<_> = a.iter().skip(2).collect();
        assert!(ends_with(&a, &suffix));
        assert!(ends_with(&a, &[]));
        let other: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
        assert!(!ends_with(&other, &suffix));
    }
}
