//! The limits and sizes of an mplex connection, and the crate's fixed constants in one place.

use std::time::Duration;

#[cfg(doc)]
use crate::MplexError;
#[cfg(doc)]
use libp2p_core::MuxerError;

/// The spec's maximum frame payload: 1 MiB.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

// The fixed sizes of the driver (not worth a knob: none is a limit a remote can push on).

/// The driver yields to the runtime after this many rounds of progress in one poll, so that
/// one busy connection does not starve the other tasks of its worker thread.
pub(crate) const DRIVER_BUDGET: usize = 32;
/// The first read chunk: small, since an idle connection keeps its read buffer.
pub(crate) const INITIAL_READ_CHUNK: usize = 8 * 1024;
/// Largest read chunk the driver grows to (doubling after each read that filled its room):
/// large reads are what makes a fast pipe fast.
pub(crate) const MAX_READ_CHUNK: usize = 256 * 1024;
/// From this read chunk size on, a read buffer the driver moves away from is kept for reuse
/// (bulk transfers); below it, buffers are cheap to allocate and an idle connection should
/// not hold two.
pub(crate) const RECYCLE_MIN: usize = 64 * 1024;
/// Read blocks the driver keeps for reuse beside the one it reads into (bulk transfers only).
/// A block takes reads again only once the streams have dropped every frame of it, so while a
/// stream buffers frames from several reads each of those reads has a block of its own: a
/// stream's 256 KiB buffer over a pipe that gives 64 KiB per read spans four (two blocks were
/// too few there: new, zeroed blocks for every other read). Each block is about 1.5 times
/// [`MAX_READ_CHUNK`] (384 KiB), more only while an unfinished frame needs it.
pub(crate) const SPARE_BLOCKS: usize = 4;
/// The driver stops reading while our own queued output (mostly resets answering the
/// remote's frames) exceeds twice [`Config::write_buffer_len`], or this much if that is
/// larger: a remote that opens streams we reset, without reading the resets, cannot grow our
/// output without bound.
pub(crate) const MIN_OUTPUT_PILE: usize = 64 * 1024;

/// What to do when a stream's receive buffer is full. See the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BufferPolicy {
    /// Stop reading the connection until the stream's reader drains its buffer.
    #[default]
    Block,
    /// Reset the stream whose buffer overflowed.
    ResetStream,
}

/// Limits and sizes of an mplex connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Streams open at once on the connection, both directions counted together (as in
    /// yamux): past it an inbound stream is reset and opening one fails with
    /// [`MuxerError::TooManyStreams`]. Default 1,024.
    pub max_streams: usize,
    /// Bytes a stream buffers for its reader before [`Config::buffer_policy`] applies.
    /// Default 256 KiB.
    pub max_buffer_len: usize,
    /// What happens when a stream's buffer is full. Default [`BufferPolicy::Block`].
    pub buffer_policy: BufferPolicy,
    /// Largest frame payload accepted from the remote; a larger frame ends the connection.
    /// Default (and the spec's maximum) 1 MiB.
    pub max_frame_len: usize,
    /// Largest payload we put in one frame; longer writes are split. Default 64 KiB.
    pub split_send_size: usize,
    /// Bytes the streams may queue for the driver before writes wait. Default 512 KiB.
    pub write_buffer_len: usize,
    /// How long a frame may take from its first byte to its last; past it the connection ends
    /// with [`MplexError::FrameTimeout`] (inside [`MuxerError::Io`], kind `TimedOut`). Without
    /// it a remote could start a frame and never finish it, holding the read buffer (up to
    /// [`max_frame_len`](Config::max_frame_len)) for as long as the connection lives.
    /// The clock stops while a full stream keeps us from reading (that wait is ours).
    /// `Duration::MAX` turns it off. Needs a tokio runtime with the time driver.
    ///
    /// Default 30 s: a 1 MiB frame (the largest allowed) then needs only about 35 KB/s, far
    /// below any link a libp2p connection is useful on, and no real peer pauses inside a frame
    /// (they write frames whole), so only a stalled or hostile peer hits it.
    pub frame_timeout: Duration,
    /// How long a write to the socket may make no progress at all (the socket refusing every
    /// byte because the remote does not read) before the connection ends with
    /// [`MplexError::WriteTimeout`] (inside [`MuxerError::Io`], kind `TimedOut`). mplex has no
    /// flow control, so a remote that sends requests and never reads the answers would
    /// otherwise hold the connection, and what our streams queued for it, forever. The clock
    /// runs only while we have bytes the socket will not take. `Duration::MAX` turns it off.
    /// Needs a tokio runtime with the time driver.
    ///
    /// Default 60 s: the kernel's send buffer takes megabytes, so no byte accepted for a
    /// minute means a remote that stopped reading (or vanished), never just a slow link.
    pub write_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_streams: 1024,
            max_buffer_len: 256 * 1024,
            buffer_policy: BufferPolicy::Block,
            max_frame_len: MAX_FRAME_LEN,
            split_send_size: 64 * 1024,
            write_buffer_len: 512 * 1024,
            frame_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
        }
    }
}
