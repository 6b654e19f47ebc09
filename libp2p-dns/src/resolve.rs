//! The lookups an address needs, behind a trait, and the resolver that makes them.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use crate::DnsError;

/// Which addresses a name lookup wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 and IPv6 (`/dns`).
    Any,
    /// IPv4 only (`/dns4`).
    V4,
    /// IPv6 only (`/dns6`).
    V6,
}

/// The two lookups that resolving a multiaddr needs. [`HickoryResolver`] makes them over the
/// network; tests and applications with a name service of their own implement it themselves.
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `name` (without a trailing dot) of `family`, in the order the answer
    /// gave them.
    fn lookup_ip(
        &self,
        name: &str,
        family: Family,
    ) -> BoxFuture<'static, Result<Vec<IpAddr>, DnsError>>;

    /// The TXT records of `name`, each one's character-strings joined.
    fn lookup_txt(&self, name: &str) -> BoxFuture<'static, Result<Vec<Vec<u8>>, DnsError>>;
}

/// A resolver on `hickory-resolver` over UDP (TCP for truncated answers), with its cache.
///
/// [`HickoryResolver::system`] reads `/etc/resolv.conf` and `/etc/hosts` the first time it
/// is used, not when it is made, so a host that never dials a name never reads them.
#[derive(Clone)]
pub struct HickoryResolver {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    timeout: Duration,
    resolver: OnceLock<Result<TokioResolver, String>>,
}

enum Source {
    System,
    Servers(Vec<SocketAddr>),
}

impl std::fmt::Debug for HickoryResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.inner.source {
            Source::System => "system".to_string(),
            Source::Servers(s) => format!("{s:?}"),
        };
        f.debug_struct("HickoryResolver")
            .field("servers", &source)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl HickoryResolver {
    /// The system's name servers and hosts file; each lookup gives up after `timeout`.
    pub fn system(timeout: Duration) -> Self {
        Self::from_source(Source::System, timeout)
    }

    /// These name servers only (UDP, then TCP when an answer is truncated), no hosts file.
    pub fn with_servers(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self::from_source(Source::Servers(servers), timeout)
    }

    fn from_source(source: Source, timeout: Duration) -> Self {
        HickoryResolver {
            inner: Arc::new(Inner {
                source,
                timeout,
                resolver: OnceLock::new(),
            }),
        }
    }

    fn resolver(&self) -> Result<TokioResolver, DnsError> {
        let made = self.inner.resolver.get_or_init(|| {
            let builder = match &self.inner.source {
                Source::System => TokioResolver::builder_tokio().map_err(|e| e.to_string())?,
                Source::Servers(servers) => {
                    let mut config = ResolverConfig::from_name_servers(Vec::new());
                    for server in servers {
                        let mut ns = NameServerConfig::udp_and_tcp(server.ip());
                        ns.connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                            .into_iter()
                            .map(|mut c| {
                                c.port = server.port();
                                c
                            })
                            .collect();
                        config.add_name_server(ns);
                    }
                    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                }
            };
            let mut builder = builder;
            let opts = builder.options_mut();
            opts.timeout = self.inner.timeout;
            // One retry: the caller's timeout bounds the whole lookup anyway.
            opts.attempts = 1;
            builder.build().map_err(|e| e.to_string())
        });
        made.clone().map_err(DnsError::NoResolver)
    }
}

fn lookup_error(name: &str, error: NetError) -> DnsError {
    let name = name.to_string();
    if error.is_no_records_found() || error.is_nx_domain() {
        DnsError::NotFound { name }
    } else if matches!(error, NetError::Timeout) {
        DnsError::Timeout { name }
    } else {
        DnsError::Lookup {
            name,
            reason: error.to_string(),
        }
    }
}

/// A fully qualified form of `name`, so that no search domain is appended.
fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

impl Resolve for HickoryResolver {
    fn lookup_ip(
        &self,
        name: &str,
        family: Family,
    ) -> BoxFuture<'static, Result<Vec<IpAddr>, DnsError>> {
        let this = self.clone();
        let name = name.to_string();
        async move {
            let resolver = this.resolver()?;
            let query = absolute(&name);
            let ips: Vec<IpAddr> = match family {
                Family::Any => resolver
                    .lookup_ip(query.as_str())
                    .await
                    .map_err(|e| lookup_error(&name, e))?
                    .iter()
                    .collect(),
                Family::V4 | Family::V6 => {
                    let lookup = match family {
                        Family::V4 => resolver.ipv4_lookup(query.as_str()).await,
                        _ => resolver.ipv6_lookup(query.as_str()).await,
                    }
                    .map_err(|e| lookup_error(&name, e))?;
                    lookup
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                            _ => None,
                        })
                        .collect()
                }
            };
            Ok(ips)
        }
        .boxed()
    }

    fn lookup_txt(&self, name: &str) -> BoxFuture<'static, Result<Vec<Vec<u8>>, DnsError>> {
        let this = self.clone();
        let name = name.to_string();
        async move {
            let resolver = this.resolver()?;
            let lookup = resolver
                .txt_lookup(absolute(&name).as_str())
                .await
                .map_err(|e| lookup_error(&name, e))?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .flat_map(|s| s.iter())
                            .copied()
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        }
        .boxed()
    }
}
