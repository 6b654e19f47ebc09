//! The stream drivers: one reader per inbound stream, one writer per outbound stream. Each is
//! a task that talks to the router through its internal queue; neither touches the router's
//! state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libp2p_core::{ConnectionId, HostContext, PeerId, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::error::{OpenError, ReadError, WriteError};
use crate::proto::{Codec, Rpc};

/// What the drivers tell the router. `link` names the reader or writer, so that a report from
/// one that has since been replaced is recognised as stale.
#[derive(Debug)]
pub(crate) enum Report {
    /// Our outbound stream to `peer` is open on `protocol`.
    Opened {
        peer: PeerId,
        link: u64,
        protocol: String,
        connection: ConnectionId,
    },
    /// Our outbound stream to `peer` could not be opened.
    OpenFailed {
        peer: PeerId,
        link: u64,
        error: OpenError,
    },
    /// Our outbound stream to `peer` ended (`None`: its queue was closed by the router).
    WriterEnded {
        peer: PeerId,
        link: u64,
        error: Option<WriteError>,
    },
    /// An RPC from `peer`.
    Rpc { peer: PeerId, link: u64, rpc: Rpc },
    /// The inbound stream of `peer` ended (`None`: the peer closed it).
    ReaderEnded {
        peer: PeerId,
        link: u64,
        error: Option<ReadError>,
    },
    /// Time to try opening an outbound stream to `peer`, if it still has none.
    TryOpen { peer: PeerId },
}

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 16 * 1024;

/// Reads length-prefixed RPCs off `stream` until it ends or breaks a rule, handing each to the
/// router. The buffer never holds more than one frame (at most the codec's maximum, checked
/// from the prefix before the body is read) plus one read.
pub(crate) async fn read_stream(
    mut stream: Stream,
    link: u64,
    codec: Codec,
    reports: mpsc::Sender<Report>,
) {
    let peer = stream.remote_peer();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let error = 'read: loop {
        let mut start = 0;
        loop {
            match codec.decode(&buf[start..]) {
                Ok(Some((rpc, used))) => {
                    start += used;
                    if reports.send(Report::Rpc { peer, link, rpc }).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => break 'read Some(ReadError::Decode(e)),
            }
        }
        buf.drain(..start);
        match stream.read(&mut chunk).await {
            Ok(0) => break None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break Some(ReadError::Io(e)),
        }
    };
    // The stream is dropped here: a peer that broke the framing loses it.
    drop(stream);
    let _ = reports
        .send(Report::ReaderEnded { peer, link, error })
        .await;
}

/// What every writer needs: the host to open streams on, the protocols to offer, the codec,
/// the deadlines and the router's queue.
#[derive(Clone)]
pub(crate) struct WriterSetup {
    pub(crate) host: Arc<dyn HostContext>,
    pub(crate) protocols: Vec<String>,
    pub(crate) codec: Codec,
    pub(crate) open_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) reports: mpsc::Sender<Report>,
    /// Bytes written by every writer, for the stats.
    pub(crate) bytes_sent: Arc<AtomicU64>,
}

/// Opens our outbound stream to `peer` (on a live connection, never dialing) and writes the RPCs of `queue` to it, those queued
/// together in one write, until the queue closes or a write fails or stalls.
pub(crate) async fn write_stream(
    setup: WriterSetup,
    peer: PeerId,
    link: u64,
    mut queue: mpsc::Receiver<Rpc>,
) {
    let WriterSetup {
        host,
        protocols,
        codec,
        open_timeout,
        write_timeout,
        reports,
        bytes_sent,
    } = setup;
    // Only on a live connection: our stream is wanted only while the peer is connected, and a
    // writer started just as the peer left must not dial it back (the core would see a
    // reconnection the peer never asked for).
    let opened =
        tokio::time::timeout(open_timeout, host.new_stream_connected(peer, protocols)).await;
    let mut stream = match opened {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let error = OpenError::Stream(e);
            let _ = reports.send(Report::OpenFailed { peer, link, error }).await;
            return;
        }
        Err(_) => {
            let error = OpenError::Timeout;
            let _ = reports.send(Report::OpenFailed { peer, link, error }).await;
            return;
        }
    };
    let opened = Report::Opened {
        peer,
        link,
        protocol: stream.protocol().to_owned(),
        connection: stream.connection_id(),
    };
    if reports.send(opened).await.is_err() {
        return;
    }
    let mut buf = Vec::new();
    let error = loop {
        let Some(rpc) = queue.recv().await else {
            // The router let go of the peer: close our side politely, within the deadline.
            let _ = tokio::time::timeout(write_timeout, stream.shutdown()).await;
            break None;
        };
        buf.clear();
        encode(&codec, &rpc, &mut buf, peer);
        // Whatever else is queued goes out in the same write, up to one frame's worth more.
        while buf.len() < codec.max_rpc_size() {
            match queue.try_recv() {
                Ok(rpc) => encode(&codec, &rpc, &mut buf, peer),
                Err(_) => break,
            }
        }
        let write = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(())) => {
                bytes_sent.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => break Some(WriteError::Io(e)),
            Err(_) => break Some(WriteError::Timeout),
        }
    };
    drop(stream);
    let _ = reports
        .send(Report::WriterEnded { peer, link, error })
        .await;
}

fn encode(codec: &Codec, rpc: &Rpc, buf: &mut Vec<u8>, peer: PeerId) {
    // The router splits its RPCs to fit the same limit, so this only fails on a bug; the RPC
    // is then dropped rather than sent over the limit the peer enforces too.
    if let Err(e) = codec.encode(rpc, buf) {
        tracing::debug!(%peer, error = %e, "gossipsub RPC not sent");
    }
}
