//! The configuration of the yamux muxer, and its translation into the yamux crate's.

#[cfg(doc)]
use libp2p_core::{MuxerError, StreamMuxer};
/// The initial (and minimum) receive window of a yamux stream: 256 KiB.
const STREAM_WINDOW: usize = yamux::DEFAULT_CREDIT as usize;

/// The configuration of the yamux muxer.
///
/// The defaults:
///
/// | setting | default |
/// |---|---|
/// | [`max_streams`](Config::max_streams) | 1,024 |
/// | [`max_connection_receive_window`](Config::max_connection_receive_window) | `Some(1 GiB)` |
/// | [`read_after_close`](Config::read_after_close) | `true` |
/// | [`split_send_size`](Config::split_send_size) | 16 KiB |
/// | [`accept_queue`](Config::accept_queue) | 1,024 |
/// | [`write_timeout`](Config::write_timeout) | 60 s |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The maximum number of streams alive at once on a connection, inbound and outbound
    /// together. A stream counts from the moment it is opened or received until it is
    /// dropped (also while it waits in the accept queue). Opening a stream beyond the limit
    /// fails with [`MuxerError::TooManyStreams`]; inbound streams beyond it are reset.
    ///
    /// Default 1,024 (the yamux crate's own default is 512; libp2p applications commonly run
    /// several hundred concurrent streams on one connection). Values below 1 are treated as 1.
    pub max_streams: usize,
    /// The upper bound of the sum of all streams' receive windows on the connection, in
    /// bytes, or `None` for no bound. Each stream starts with a 256 KiB window, which yamux
    /// grows with the connection's bandwidth-delay product while this bound allows.
    ///
    /// It is raised, when needed, to 256 KiB times the number of streams the yamux
    /// connection may hold (at least [`max_streams`](Config::max_streams)), so that every
    /// stream can have the default window. Default `Some(1 GiB)`.
    pub max_connection_receive_window: Option<usize>,
    /// Whether streams may still read data that was buffered before the connection closed.
    /// Default `true`.
    pub read_after_close: bool,
    /// The largest payload of one data frame we send, in bytes: larger writes are split, so
    /// that one stream's bulk data does not hold up the others for long. Default 16 KiB;
    /// values below 1 are treated as 1.
    pub split_send_size: usize,
    /// How many inbound streams may wait for [`StreamMuxer::accept`]; an inbound stream that
    /// finds the queue full is reset. Queued streams count against
    /// [`max_streams`](Config::max_streams), so a queue longer than that limit has no effect.
    ///
    /// Default 1,024, the same as `max_streams`: a yamux peer holds back new streams only
    /// while 256 of them are both unacknowledged and still open for writing, so a peer that
    /// opens many short streams (write, close) can have far more than 256 waiting for us,
    /// and such streams should not be reset while we are within the stream limit. Values
    /// below 1 are treated as 1.
    pub accept_queue: usize,
    /// How long a write to the socket may make no progress at all (the socket refusing every
    /// byte because the remote does not read) before the connection ends with an error of
    /// kind `TimedOut`. Without it a remote that never reads holds the connection, and all
    /// that is queued for it, forever: a ping flood whose pongs it never reads, say. The
    /// clock runs only while we have bytes the socket will not take. `Duration::MAX` turns
    /// it off. Needs a tokio runtime with the time driver.
    ///
    /// Default 60 s: the kernel's send buffer takes megabytes, so no byte accepted for a
    /// minute means a remote that stopped reading (or vanished), never just a slow link.
    pub write_timeout: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_streams: 1024,
            max_connection_receive_window: Some(1 << 30),
            read_after_close: true,
            split_send_size: 16 * 1024,
            accept_queue: 1024,
            write_timeout: std::time::Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Sets [`max_streams`](Config::max_streams).
    pub fn with_max_streams(mut self, n: usize) -> Self {
        self.max_streams = n;
        self
    }

    /// Sets [`max_connection_receive_window`](Config::max_connection_receive_window).
    pub fn with_max_connection_receive_window(mut self, n: Option<usize>) -> Self {
        self.max_connection_receive_window = n;
        self
    }

    /// Sets [`read_after_close`](Config::read_after_close).
    pub fn with_read_after_close(mut self, b: bool) -> Self {
        self.read_after_close = b;
        self
    }

    /// Sets [`split_send_size`](Config::split_send_size).
    pub fn with_split_send_size(mut self, n: usize) -> Self {
        self.split_send_size = n;
        self
    }

    /// Sets [`accept_queue`](Config::accept_queue).
    pub fn with_accept_queue(mut self, n: usize) -> Self {
        self.accept_queue = n;
        self
    }

    /// Sets [`write_timeout`](Config::write_timeout).
    pub fn with_write_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    pub(crate) fn stream_limit(&self) -> usize {
        self.max_streams.max(1)
    }

    /// The yamux crate's configuration for this one.
    ///
    /// The yamux crate terminates the whole connection when a stream would exceed its own
    /// stream limit, so we enforce [`Config::max_streams`] ourselves and give yamux a higher
    /// limit: streams we already dropped stay in yamux's count until the driver processes the
    /// drop, and the remote may open streams beyond our limit (which we reset).
    pub(crate) fn to_yamux(&self) -> yamux::Config {
        let ours = self.stream_limit();
        let wanted = ours.saturating_mul(2).saturating_add(256);
        let (yamux_streams, window) = match self.max_connection_receive_window {
            None => (wanted.min(usize::MAX / STREAM_WINDOW), None),
            Some(window) => {
                let fit = (window / STREAM_WINDOW).min(wanted);
                let streams = fit.max(ours).min(usize::MAX / STREAM_WINDOW);
                (streams, Some(window.max(streams * STREAM_WINDOW)))
            }
        };
        let mut cfg = yamux::Config::default();
        // yamux asserts `window >= streams * 256 KiB` in both setters: lift the window bound
        // first, then set the streams, then the final window (which satisfies the assertion).
        cfg.set_max_connection_receive_window(None);
        cfg.set_max_num_streams(yamux_streams);
        cfg.set_max_connection_receive_window(window);
        cfg.set_read_after_close(self.read_after_close);
        cfg.set_split_send_size(self.split_send_size.max(1));
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn yamux_config_never_panics() {
        for streams in [0, 1, 100, 1024, 5000, usize::MAX / 2, usize::MAX] {
            for window in [
                None,
                Some(0),
                Some(1 << 20),
                Some(1 << 30),
                Some(usize::MAX),
            ] {
                let c = Config::default()
                    .with_max_streams(streams)
                    .with_max_connection_receive_window(window)
                    .with_split_send_size(0)
                    .with_accept_queue(0);
                let _ = c.to_yamux();
            }
        }
    }
}
