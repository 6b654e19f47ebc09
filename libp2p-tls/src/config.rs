//! The settings of the TLS upgrade.

use std::time::Duration;

/// Settings of the `/tls/1.0.0` upgrade.
///
/// The sizes that bound what a remote can make us hold stay rustls' own, which are already
/// tight: a handshake message is refused past 64 KiB (a libp2p certificate is well under
/// 1 KiB, an RSA one under 2 KiB), a TLS record past 16 KiB of plaintext, and at most 64 KiB
/// of our own unsent plaintext is buffered before writes wait.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Bound on the whole handshake; past it the upgrade fails with
    /// [`crate::TlsError::Timeout`]. Default 10 s: the handshake is two round trips and a few
    /// signatures, so this only ever cuts off a peer that stalls, which would otherwise hold
    /// the socket for as long as it likes. (The pipeline bounds the whole upgrade as well.)
    pub handshake_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The same settings with another [`Config::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, limit: Duration) -> Self {
        self.handshake_timeout = limit;
        self
    }
}
