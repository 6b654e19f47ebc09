//! What can go wrong while resolving.

use libp2p_core::{Classify, Fault};

/// Why an address could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN), or has no record of the type asked for.
    #[error("{name}: no such name, or no record of the type asked for")]
    NotFound {
        /// The name looked up.
        name: String,
    },
    /// No answer came within the lookup timeout.
    #[error("looking up {name} timed out")]
    Timeout {
        /// The name looked up.
        name: String,
    },
    /// The name server failed or sent something the resolver could not use.
    #[error("looking up {name} failed: {reason}")]
    Lookup {
        /// The name looked up.
        name: String,
        /// The resolver's description of the failure.
        reason: String,
    },
    /// The resolver could not be set up (for the system resolver: `/etc/resolv.conf` could
    /// not be read).
    #[error("no resolver: {0}")]
    NoResolver(String),
    /// `/dnsaddr` records pointed at further `/dnsaddr` names deeper than the configured limit.
    #[error("/dnsaddr records nested deeper than {limit}")]
    TooDeep {
        /// The limit (`Config::max_depth`).
        limit: usize,
    },
    /// Resolving took more lookups than the configured limit.
    #[error("resolving needed more than {limit} lookups")]
    TooManyLookups {
        /// The limit (`Config::max_lookups`).
        limit: usize,
    },
    /// Everything resolved, but to no address (no TXT record matched, for example).
    #[error("{addr} resolved to no address")]
    NoAddresses {
        /// The address given.
        addr: String,
    },
}

impl Classify for DnsError {
    fn fault(&self) -> Fault {
        match self {
            DnsError::NotFound { .. } | DnsError::Lookup { .. } => Fault::Network,
            DnsError::Timeout { .. } => Fault::Timeout,
            DnsError::NoResolver(_) => Fault::Local,
            // What a domain's records say is that domain's doing.
            DnsError::TooDeep { .. }
            | DnsError::TooManyLookups { .. }
            | DnsError::NoAddresses { .. } => Fault::Remote,
        }
    }
}
