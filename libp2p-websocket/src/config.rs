//! The settings of the WebSocket transport.

use std::time::Duration;

/// Settings of [`WsTransport`](crate::WsTransport).
///
/// tungstenite's own defaults allow 64 MiB messages and 16 MiB frames; a libp2p connection
/// over WebSocket carries a security protocol's records (noise: at most 64 KiB each), so ours
/// are far tighter: what one remote can make us buffer stays small.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Largest WebSocket frame accepted from the remote; a larger one fails the connection.
    /// Default 1 MiB: sixteen times a noise record, and what rust-libp2p and browsers send
    /// for such writes is well under it.
    pub max_frame_size: usize,
    /// Largest message (frames of one message together) accepted. Default 1 MiB, as the
    /// frame: libp2p never needs a message to span frames.
    pub max_message_size: usize,
    /// Largest binary message we send: longer writes are split. Default 64 KiB: a noise
    /// record fits in one, and a remote with small limits of its own still takes it.
    pub max_write_size: usize,
    /// Bound on the HTTP upgrade (request and response), dialing or accepting. Default 10 s:
    /// one round trip on a live connection; a remote that stalls is cut off.
    pub handshake_timeout: Duration,
    /// Bytes the HTTP upgrade may read from the remote (its request or response with every
    /// header); past it the upgrade fails. Default 16 KiB, twice what common HTTP servers
    /// accept for a request head (tungstenite itself also stops at 124 headers).
    pub max_handshake_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
            max_write_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_handshake_bytes: 16 * 1024,
        }
    }
}

impl Config {
    /// The same settings with another [`Config::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, limit: Duration) -> Self {
        self.handshake_timeout = limit;
        self
    }

    /// The same settings with other frame and message limits.
    pub fn with_max_sizes(mut self, frame: usize, message: usize) -> Self {
        self.max_frame_size = frame;
        self.max_message_size = message;
        self
    }

    pub(crate) fn websocket(&self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_frame_size(Some(self.max_frame_size))
            .max_message_size(Some(self.max_message_size))
    }
}
