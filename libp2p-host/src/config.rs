//! The host's settings: listening addresses, limits and timeouts. Derives serde so that it
//! can come from a TOML or JSON file.

use std::time::Duration;

use libp2p_core::Multiaddr;
use serde::{Deserialize, Serialize};

/// Settings of a [`Host`](crate::Host). Every field has a default (see [`Default`]), so a
/// config file need only name what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Addresses to listen on when the host starts. Default none (a dial-only host).
    pub listen_addrs: Vec<Multiaddr>,
    /// Most connections open at once, inbound and outbound together; an inbound connection
    /// beyond it is closed at once, a dial beyond it fails. Default 256: plenty for an
    /// application node, and a bound on what a flood of inbound connections costs.
    pub max_connections: usize,
    /// Most inbound streams open at once on one connection; further ones are reset. Default
    /// 256, the muxers' own default stream limit.
    pub max_inbound_streams_per_connection: usize,
    /// Bound on a connection's whole upgrade (security and muxer), in milliseconds. Default
    /// 20,000: an RSA handshake across the world fits; a silent peer is dropped soon.
    pub handshake_timeout_ms: u64,
    /// Bound on agreeing the protocol of one stream, in milliseconds. Default 10,000.
    pub negotiation_timeout_ms: u64,
    /// How long an address learned from identify (or given to `connect`) stays in the
    /// peerstore, in seconds. Default 3,600.
    pub address_ttl_secs: u64,
    /// Serve and run identify (`/ipfs/id/1.0.0` and push). Default on: go-libp2p waits for it
    /// before opening streams, py-libp2p runs it on every connection.
    pub identify: bool,
    /// Serve ping (`/ipfs/ping/1.0.0`). Default on.
    pub ping: bool,
    /// The protocol version sent in identify. Default `/ipfs/0.1.0`.
    pub protocol_version: String,
    /// The agent string sent in identify. Default `libp2p-modular/<version>`.
    pub agent_version: String,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            listen_addrs: Vec::new(),
            max_connections: 256,
            max_inbound_streams_per_connection: 256,
            handshake_timeout_ms: 20_000,
            negotiation_timeout_ms: 10_000,
            address_ttl_secs: 3_600,
            identify: true,
            ping: true,
            protocol_version: "/ipfs/0.1.0".into(),
            agent_version: concat!("libp2p-modular/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

impl HostConfig {
    /// The handshake timeout as a `Duration`.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// The negotiation timeout as a `Duration`.
    pub fn negotiation_timeout(&self) -> Duration {
        Duration::from_millis(self.negotiation_timeout_ms)
    }

    /// The address time-to-live as a `Duration`.
    pub fn address_ttl(&self) -> Duration {
        Duration::from_secs(self.address_ttl_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_fills_defaults() {
        let config = HostConfig {
            listen_addrs: vec!["/ip4/0.0.0.0/tcp/4001".parse().unwrap()],
            max_connections: 10,
            ..HostConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        let back: HostConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let partial: HostConfig = serde_json::from_str(r#"{"max_connections": 3}"#).unwrap();
        assert_eq!(partial.max_connections, 3);
        assert_eq!(partial.negotiation_timeout_ms, 10_000);
        assert!(serde_json::from_str::<HostConfig>(r#"{"max_conections": 3}"#).is_err());
    }
}
