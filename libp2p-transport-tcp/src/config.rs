//! The TCP transport's settings.

use std::time::Duration;

use libp2p_core::duration::secs;
use serde::{Deserialize, Serialize};

/// Settings of a [`TcpTransport`](crate::TcpTransport). Every field has a default (see
/// [`Default`]); a config file need only name what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// `TCP_NODELAY` on every socket, dialed and accepted. Default on: libp2p protocols write
    /// whole frames and flush when they want them sent, so Nagle's algorithm only adds the
    /// peer's delayed-ACK time (40 ms on Linux) to every small exchange (pings, handshakes).
    pub nodelay: bool,
    /// The listen backlog: connections the kernel completes and queues before we accept them.
    /// Default 1,024: a burst of dials (a restart of a popular node, a bootstrap) waits in the
    /// queue instead of being refused; the kernel caps it at `net.core.somaxconn` (4,096 on
    /// recent Linux). The standard library's 128 is sized for one server thread.
    pub backlog: u32,
    /// The first pause of the accept loop after an error. Default 10 ms: the usual cause (the
    /// descriptor table full, `EMFILE`) often clears within milliseconds as connections close.
    #[serde(with = "secs")]
    pub accept_backoff_min: Duration,
    /// The longest pause of the accept loop after errors: the pause doubles from
    /// `accept_backoff_min` with each error in a row up to this. Default 1 s: a listener that
    /// cannot accept costs about one attempt a second, and accepts again at most a second
    /// after the cause is gone.
    #[serde(with = "secs")]
    pub accept_backoff_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodelay: true,
            backlog: 1024,
            accept_backoff_min: Duration::from_millis(10),
            accept_backoff_max: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_fills_defaults() {
        let config: Config =
            serde_json::from_str(r#"{"backlog": 64, "accept_backoff_max": 0.5}"#).unwrap();
        assert_eq!(config.backlog, 64);
        assert_eq!(config.accept_backoff_max, Duration::from_millis(500));
        assert!(config.nodelay);
        let back: Config = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
        assert!(serde_json::from_str::<Config>(r#"{"nodelay": true, "backlg": 1}"#).is_err());
    }
}
