//! A hand-written yamux peer that breaks the protocol, over real TCP sockets.

#![allow(dead_code)]

use futures::{AsyncRead, AsyncReadExt};
use libp2p_transport_tcp::{TcpSocket, TcpTransport};

/// The SYN flag: the frame opens a stream.
pub const SYN: u16 = 1;
/// Frame types.
pub const DATA: u8 = 0;
pub const WINDOW_UPDATE: u8 = 1;
pub const GO_AWAY: u8 = 3;

/// A connected pair of TCP sockets: (attacker, target).
pub async fn tcp_pair() -> (TcpSocket, TcpSocket) {
    libp2p_core::testkit::transport_pair(
        &TcpTransport::new(),
        "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
    )
    .await
}

/// One yamux frame: the 12-byte header, then `body`.
pub fn frame(ty: u8, flags: u16, stream: u32, length: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8, ty];
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A data frame on `stream` carrying `body`.
pub fn data(flags: u16, stream: u32, body: &[u8]) -> Vec<u8> {
    frame(DATA, flags, stream, body.len() as u32, body)
}

/// `total` bytes of data on `stream` in frames of at most 16 KiB; the first frame has
/// `first_flags`.
pub fn data_frames(first_flags: u16, stream: u32, total: usize) -> Vec<u8> {
    let chunk = vec![0x61u8; 16 * 1024];
    let mut out = Vec::new();
    let mut left = total;
    let mut flags = first_flags;
    while left > 0 {
        let n = left.min(chunk.len());
        out.extend(data(flags, stream, &chunk[..n]));
        flags = 0;
        left -= n;
    }
    out
}

/// Reads until the end of the socket (or an error such as a reset); returns what came.
pub async fn read_to_end<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The error codes of the GoAway frames in a byte sequence of yamux frames.
pub fn go_aways(mut bytes: &[u8]) -> Vec<u32> {
    let mut codes = Vec::new();
    while bytes.len() >= 12 {
        let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        match bytes[1] {
            DATA => {
                let end = (12 + len as usize).min(bytes.len());
                bytes = &bytes[end..];
                continue;
            }
            GO_AWAY => codes.push(len),
            _ => {}
        }
        bytes = &bytes[12..];
    }
    codes
}
