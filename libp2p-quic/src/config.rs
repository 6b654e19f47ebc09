//! The settings of the QUIC transport.

use std::sync::Arc;
use std::time::Duration;

/// Settings of [`QuicTransport`](crate::QuicTransport).
///
/// Every limit bounds what one remote can make us hold: streams, unread bytes, handshakes in
/// progress. The windows are credit the remote may use before we read, not buffers allocated
/// up front; memory grows only as far as a remote actually sends and nobody reads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Bound on a connection's handshake (QUIC and TLS together), dialing or accepting; past
    /// it the attempt fails with a timeout. Default 10 s, as the TLS upgrade over TCP: the
    /// handshake is one or two round trips, so this only cuts off a remote that stalls.
    pub handshake_timeout: Duration,
    /// A connection on which neither side sent anything for this long is closed (QUIC's
    /// `max_idle_timeout`; the smaller of ours and the remote's applies). Default 30 s, the
    /// same as quinn's own, but see [`Config::keep_alive_interval`]: with keep-alives an
    /// idle connection stays open as long as the remote answers, as a TCP connection does.
    pub idle_timeout: Duration,
    /// How often an otherwise silent connection sends a keep-alive (a PING frame), or `None`
    /// for never. Default 5 s. Without it quinn drops an idle connection after the idle
    /// timeout, where TCP keeps it; 5 s keeps connections open even to remotes whose idle
    /// timeout is as short as rust-libp2p's (10 s), at the cost of one small packet per
    /// connection every 5 s of silence.
    pub keep_alive_interval: Option<Duration>,
    /// Streams the remote may have open towards us at once on one connection (QUIC's
    /// bidirectional stream limit; more wait on the remote's side until one ends). Default
    /// 256, the host's default per-connection inbound stream limit and rust-libp2p's. quinn
    /// keeps state for every stream the remote may open, so this also sets much of an idle
    /// connection's memory, growing with the limit (the `peer` program's `--hold` shows it).
    pub max_concurrent_streams: u32,
    /// Bound on opening a stream: how long `open` waits for the remote to allow one more
    /// (QUIC grants streams as credit; at its limit, opens wait for its streams to end).
    /// Default 30 s: a burst of opens past the limit gets through as earlier streams end,
    /// while a remote that never grants credit (its limit at zero, its streams never closed)
    /// fails the open instead of holding it forever.
    pub open_timeout: Duration,
    /// Bytes the remote may send on one stream before we read them (the stream's flow-control
    /// window). Default 8 MiB: enough for a single stream to fill a fast path with a long
    /// round trip (8 MiB per 20 ms is over 3 Gbit/s), while a stalled reader holds at most
    /// this much per stream.
    pub stream_receive_window: u32,
    /// Bytes the remote may send on one connection, all streams together, before we read
    /// them. Default 24 MiB: three full stream windows, the bound on what one connection's
    /// stalled readers can make us buffer.
    pub connection_receive_window: u32,
    /// Bytes of our own unacknowledged data in flight per connection, all streams together
    /// (writes wait beyond it). Default 24 MiB, matching the receive window we offer.
    pub send_window: u64,
    /// Inbound connections whose handshake may be in progress at once per listening socket;
    /// further attempts are refused until one finishes. Default 128, as TCP's usual listen
    /// backlog: it bounds the handshake state (and CPU) a flood of attempts can cost.
    pub max_pending_handshakes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            keep_alive_interval: Some(Duration::from_secs(5)),
            max_concurrent_streams: 256,
            open_timeout: Duration::from_secs(30),
            stream_receive_window: 8 << 20,
            connection_receive_window: 24 << 20,
            send_window: 24 << 20,
            max_pending_handshakes: 128,
        }
    }
}

impl Config {
    /// The same settings with another [`Config::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, limit: Duration) -> Self {
        self.handshake_timeout = limit;
        self
    }

    /// The same settings with another [`Config::idle_timeout`].
    pub fn with_idle_timeout(mut self, limit: Duration) -> Self {
        self.idle_timeout = limit;
        self
    }

    /// The same settings with another [`Config::keep_alive_interval`].
    pub fn with_keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.keep_alive_interval = interval;
        self
    }

    /// The same settings with another [`Config::max_concurrent_streams`].
    pub fn with_max_concurrent_streams(mut self, streams: u32) -> Self {
        self.max_concurrent_streams = streams;
        self
    }

    /// The same settings with another [`Config::open_timeout`].
    pub fn with_open_timeout(mut self, limit: Duration) -> Self {
        self.open_timeout = limit;
        self
    }

    /// The same settings with other flow-control windows (see
    /// [`Config::stream_receive_window`], [`Config::connection_receive_window`] and
    /// [`Config::send_window`]).
    pub fn with_windows(mut self, stream: u32, connection: u32, send: u64) -> Self {
        self.stream_receive_window = stream;
        self.connection_receive_window = connection;
        self.send_window = send;
        self
    }

    /// The same settings with another [`Config::max_pending_handshakes`].
    pub fn with_max_pending_handshakes(mut self, handshakes: u32) -> Self {
        self.max_pending_handshakes = handshakes;
        self
    }

    /// quinn's transport parameters for these settings.
    pub(crate) fn transport(&self) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        // An idle timeout past QUIC's varint range means "never"; keep-alives still run.
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout).ok();
        t.max_idle_timeout(idle)
            .keep_alive_interval(self.keep_alive_interval)
            .max_concurrent_bidi_streams(self.max_concurrent_streams.into())
            // libp2p opens bidirectional streams only.
            .max_concurrent_uni_streams(0u32.into())
            .stream_receive_window(self.stream_receive_window.into())
            .receive_window(self.connection_receive_window.into())
            .send_window(self.send_window)
            // No datagrams in libp2p: nothing buffered for them.
            .datagram_receive_buffer_size(None);
        Arc::new(t)
    }
}
