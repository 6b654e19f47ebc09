//! Limits on what resolving one address may cost.

use std::time::Duration;

/// How far resolving an address may go. Every field bounds work a remote can cause: the TXT
/// records of `/dnsaddr` are written by whoever runs that domain, and they may point at other
/// `/dnsaddr` names without end.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How many `/dnsaddr` indirections one address may go through (default 8). The IPFS
    /// bootstrap names use two (`bootstrap.libp2p.io` names `<region>.bootstrap.libp2p.io`);
    /// eight leaves room for any real deployment and stops a loop.
    pub max_depth: usize,
    /// How many lookups (A, AAAA or TXT) resolving one address may make in all (default 32):
    /// a bound on the fan-out of a tree of `/dnsaddr` records, beside its depth.
    pub max_lookups: usize,
    /// How many TXT records of one `/dnsaddr` name are read (default 16; the rest are
    /// ignored). A bootstrap name lists a handful.
    pub max_txt_records: usize,
    /// How many addresses one address may resolve to (default 64); the dialer tries them in
    /// order, so more would only make a failing dial slower.
    pub max_addresses: usize,
    /// How long one lookup may take, retries included (default 5 s, what glibc's resolver
    /// allows one server by default).
    pub lookup_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_depth: 8,
            max_lookups: 32,
            max_txt_records: 16,
            max_addresses: 64,
            lookup_timeout: Duration::from_secs(5),
        }
    }
}
