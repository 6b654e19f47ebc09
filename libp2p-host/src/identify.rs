//! `/ipfs/id/1.0.0` (and `/ipfs/id/push/1.0.0`): a peer tells the other who it is, where it
//! listens, which protocols it speaks and at which address it sees the other.
//!
//! The responder writes one length-prefixed `Identify` protobuf and closes the stream; the
//! requester reads until the end of the stream (go-libp2p may split a large record into
//! several messages, which are merged).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p_core::{Multiaddr, PublicKey};
use prost::Message;

/// The protocol name.
pub const PROTOCOL: &str = "/ipfs/id/1.0.0";
/// The push variant: the sender pushes its current info unasked.
pub const PUSH_PROTOCOL: &str = "/ipfs/id/push/1.0.0";

/// Largest single identify message accepted. 64 KiB: a signed peer record with many
/// addresses fits well within it (go-libp2p sends at most a few KiB).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Most messages merged into one identify answer.
pub const MAX_MESSAGES: usize = 10;

/// The wire message (field numbers of the libp2p identify spec).
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdentifyMessage {
    /// The sender's libp2p public key, protobuf-encoded.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub public_key: Option<Vec<u8>>,
    /// The sender's listen addresses, binary multiaddrs.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub listen_addrs: Vec<Vec<u8>>,
    /// Protocols the sender handles.
    #[prost(string, repeated, tag = "3")]
    pub protocols: Vec<String>,
    /// The address the sender sees the receiver at.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub observed_addr: Option<Vec<u8>>,
    /// e.g. `/ipfs/0.1.0`.
    #[prost(string, optional, tag = "5")]
    pub protocol_version: Option<String>,
    /// e.g. `rust-libp2p-modular/0.1.0`.
    #[prost(string, optional, tag = "6")]
    pub agent_version: Option<String>,
    /// A signed peer record (kept as bytes; not verified here).
    #[prost(bytes = "vec", optional, tag = "8")]
    pub signed_peer_record: Option<Vec<u8>>,
}

/// What a peer says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// Its public key.
    pub public_key: PublicKey,
    /// Its protocol version string.
    pub protocol_version: String,
    /// Its agent (implementation) string.
    pub agent_version: String,
    /// Where it listens.
    pub listen_addrs: Vec<Multiaddr>,
    /// Which protocols it speaks.
    pub protocols: Vec<String>,
    /// Where it sees us.
    pub observed_addr: Option<Multiaddr>,
}

/// Errors of identify.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A message exceeded [`MAX_MESSAGE_LEN`] or there were more than [`MAX_MESSAGES`].
    #[error("identify message too large ({len} bytes, limit {max})")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message could not be decoded or lacks the public key.
    #[error("malformed identify message: {0}")]
    Malformed(String),
}

impl Info {
    fn to_message(&self) -> IdentifyMessage {
        IdentifyMessage {
            public_key: Some(self.public_key.encode_protobuf()),
            listen_addrs: self.listen_addrs.iter().map(|a| a.to_vec()).collect(),
            protocols: self.protocols.clone(),
            observed_addr: self.observed_addr.as_ref().map(|a| a.to_vec()),
            protocol_version: Some(self.protocol_version.clone()),
            agent_version: Some(self.agent_version.clone()),
            signed_peer_record: None,
        }
    }

    fn from_message(message: IdentifyMessage) -> Result<Info, IdentifyError> {
        let key = message
            .public_key
            .ok_or_else(|| IdentifyError::Malformed("no public key".into()))?;
        let public_key = PublicKey::try_decode_protobuf(&key)
            .map_err(|e| IdentifyError::Malformed(format!("public key: {e}")))?;
        // Unparsable addresses are skipped, as other implementations do: one odd address
        // from a newer peer must not make the whole answer useless.
        let listen_addrs = message
            .listen_addrs
            .into_iter()
            .filter_map(|bytes| Multiaddr::try_from(bytes).ok())
            .collect();
        Ok(Info {
            public_key,
            protocol_version: message.protocol_version.unwrap_or_default(),
            agent_version: message.agent_version.unwrap_or_default(),
            listen_addrs,
            protocols: message.protocols,
            observed_addr: message
                .observed_addr
                .and_then(|b| Multiaddr::try_from(b).ok()),
        })
    }
}

/// Sends `info` on `stream` and closes it (the responder's side, and the push sender's).
pub async fn send<S: AsyncWrite + Unpin>(mut stream: S, info: &Info) -> io::Result<()> {
    let body = info.to_message().encode_to_vec();
    let mut prefix = unsigned_varint::encode::usize_buffer();
    let prefix = unsigned_varint::encode::usize(body.len(), &mut prefix);
    let mut frame = Vec::with_capacity(prefix.len() + body.len());
    frame.extend_from_slice(prefix);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    stream.close().await
}

/// Reads one uvarint length, or `None` at a clean end of stream.
async fn read_len<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<usize>, IdentifyError> {
    let mut len = 0usize;
    for i in 0..4 {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await? == 0 {
            return if i == 0 {
                Ok(None)
            } else {
                Err(IdentifyError::Malformed("truncated length".into()))
            };
        }
        len |= usize::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(len));
        }
    }
    Err(IdentifyError::TooLarge {
        len: usize::MAX,
        max: MAX_MESSAGE_LEN,
    })
}

/// Reads the remote's identify answer (the requester's side, and the push receiver's).
pub async fn receive<S: AsyncRead + Unpin>(mut stream: S) -> Result<Info, IdentifyError> {
    let mut merged = IdentifyMessage::default();
    let mut count = 0;
    while let Some(len) = read_len(&mut stream).await? {
        if len > MAX_MESSAGE_LEN {
            return Err(IdentifyError::TooLarge {
                len,
                max: MAX_MESSAGE_LEN,
            });
        }
        count += 1;
        if count > MAX_MESSAGES {
            return Err(IdentifyError::TooLarge {
                len: count,
                max: MAX_MESSAGES,
            });
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        merged
            .merge(body.as_slice())
            .map_err(|e| IdentifyError::Malformed(e.to_string()))?;
    }
    if count == 0 {
        return Err(IdentifyError::Malformed("empty answer".into()));
    }
    Info::from_message(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p_core::Keypair;

    fn info() -> Info {
        Info {
            public_key: Keypair::generate_ed25519().public(),
            protocol_version: "/ipfs/0.1.0".into(),
            agent_version: "test/1".into(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            protocols: vec![PROTOCOL.into(), "/echo/1.0.0".into()],
            observed_addr: Some("/ip4/10.0.0.1/tcp/5555".parse().unwrap()),
        }
    }

    #[test]
    fn round_trip_over_a_buffer() {
        let info = info();
        let mut wire = Vec::new();
        futures::executor::block_on(send(futures::io::Cursor::new(&mut wire), &info)).unwrap();
        let back = futures::executor::block_on(receive(wire.as_slice())).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn split_messages_are_merged() {
        let info = info();
        let mut first = info.to_message();
        first.protocols.clear();
        let second = IdentifyMessage {
            protocols: info.protocols.clone(),
            ..Default::default()
        };
        let mut wire = Vec::new();
        for m in [first, second] {
            let body = m.encode_to_vec();
            wire.push(body.len() as u8);
            wire.extend_from_slice(&body);
        }
        let back = futures::executor::block_on(receive(wire.as_slice())).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn oversized_and_malformed_answers_are_errors() {
        let huge = [0xff, 0xff, 0x7f];
        assert!(matches!(
            futures::executor::block_on(receive(&huge[..])),
            Err(IdentifyError::TooLarge { .. })
        ));
        let garbage = [3u8, 0xff, 0xff, 0xff];
        assert!(futures::executor::block_on(receive(&garbage[..])).is_err());
        assert!(futures::executor::block_on(receive(&[][..])).is_err());
    }
}
