//! `/plaintext/2.0.0`: each side sends its peer id and public key, and nothing is encrypted.
//!
//! For tests and interop checks without cryptography. The wire format is the one go-libp2p
//! and rust-libp2p speak: one `Exchange` protobuf message (`id` = 1, `pubkey` = 2, the latter
//! the libp2p `PublicKey` protobuf) behind an unsigned-varint length, sent by both sides at
//! once. Each side checks that the remote's peer id is the one its key gives.
//!
//! ```no_run
//! use libp2p_core::{Keypair, Transport, TransportExt};
//! use libp2p_plaintext::Plaintext;
//! # fn needs_a_transport<T: Transport>(t: T) where T::Output: libp2p_core::Socket {
//! let secured = t.upgrade().authenticate(Plaintext::new(Keypair::generate_ed25519()));
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use libp2p_core::framing::{self, Codec, FrameError};
use libp2p_core::{
    Classify, Fault, Keypair, PeerId, PublicKey, Role, SecurityUpgrade, Socket, UpgradeInfo,
};
use prost::Message;
use std::future::Future;
use std::io;

/// The protocol name.
pub const PROTOCOL: &str = "/plaintext/2.0.0";

/// Limits of the plaintext handshake.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest `Exchange` message accepted from the remote. Default 4 KiB: an RSA-4096 public
    /// key with its peer id takes under 1 KiB, so this leaves room without letting a peer make
    /// us allocate much.
    pub max_exchange_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_exchange_len: 4096,
        }
    }
}

/// What can go wrong in the plaintext exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaintextError {
    /// Reading or writing the socket failed (including the remote closing it).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The remote announced an exchange message larger than we accept.
    #[error("exchange message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Announced length.
        len: u64,
        /// Configured maximum.
        max: usize,
    },
    /// The length prefix is not a valid unsigned varint.
    #[error("invalid length prefix")]
    InvalidLength,
    /// The message is not a valid `Exchange` protobuf, or lacks a field.
    #[error("malformed exchange message: {0}")]
    Malformed(#[source] Malformed),
    /// The announced peer id does not belong to the announced public key.
    #[error("remote peer id {claimed} does not match its public key (which gives {derived})")]
    IdKeyMismatch {
        /// The peer id the remote sent.
        claimed: Box<PeerId>,
        /// The peer id its key gives.
        derived: Box<PeerId>,
    },
}

/// How the remote's `Exchange` message is malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Not a valid protobuf.
    #[error("not an Exchange protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The `pubkey` field is missing.
    #[error("no public key")]
    NoPublicKey,
    /// The `id` field is missing.
    #[error("no peer id")]
    NoPeerId,
    /// The public key does not decode.
    #[error("public key: {0}")]
    PublicKey(#[from] libp2p_core::identity::DecodingError),
    /// The peer id does not decode.
    #[error("peer id: {0}")]
    PeerId(#[from] libp2p_core::identity::ParseError),
}

impl From<FrameError> for PlaintextError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => PlaintextError::Io(e),
            FrameError::TooLong { len, max } => PlaintextError::MessageTooLarge { len, max },
            // Our own message is far below any limit; everything else is a bad head.
            _ => PlaintextError::InvalidLength,
        }
    }
}

impl Classify for PlaintextError {
    fn fault(&self) -> Fault {
        match self {
            PlaintextError::Io(e) => e.fault(),
            PlaintextError::MessageTooLarge { .. }
            | PlaintextError::InvalidLength
            | PlaintextError::Malformed(_)
            | PlaintextError::IdKeyMismatch { .. } => Fault::Remote,
        }
    }
}

/// The `/plaintext/2.0.0` security upgrade.
#[derive(Clone)]
pub struct Plaintext {
    public: PublicKey,
    config: Config,
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plaintext")
            .field("peer", &self.public.to_peer_id())
            .finish()
    }
}

impl Plaintext {
    /// Plaintext with the identity of `keypair` (only its public half is used).
    pub fn new(keypair: Keypair) -> Self {
        Self::with_config(keypair, Config::default())
    }

    /// Plaintext with explicit limits.
    pub fn with_config(keypair: Keypair, config: Config) -> Self {
        Plaintext {
            public: keypair.public(),
            config,
        }
    }
}

/// The `Exchange` message.
#[derive(Clone, PartialEq, prost::Message)]
struct Exchange {
    #[prost(bytes = "vec", optional, tag = "1")]
    id: Option<Vec<u8>>,
    /// The libp2p `PublicKey` protobuf, carried as an embedded message.
    #[prost(bytes = "vec", optional, tag = "2")]
    pubkey: Option<Vec<u8>>,
}

fn encode_exchange(public: &PublicKey) -> Vec<u8> {
    let message = Exchange {
        id: Some(public.to_peer_id().to_bytes()),
        pubkey: Some(public.encode_protobuf()),
    };
    let mut out = Vec::new();
    Codec::uvarint(usize::MAX)
        .encode(&message.encode_to_vec(), &mut out)
        .expect("no limit on our own message");
    out
}

/// Decodes and checks the remote's `Exchange`; returns its peer id.
fn decode_exchange(body: &[u8]) -> Result<PeerId, PlaintextError> {
    let malformed = |e: Malformed| PlaintextError::Malformed(e);
    let message = Exchange::decode(body).map_err(|e| malformed(e.into()))?;
    let key_bytes = message.pubkey.ok_or(malformed(Malformed::NoPublicKey))?;
    let key = PublicKey::try_decode_protobuf(&key_bytes).map_err(|e| malformed(e.into()))?;
    let derived = key.to_peer_id();
    let id_bytes = message.id.ok_or(malformed(Malformed::NoPeerId))?;
    let claimed = PeerId::from_bytes(&id_bytes).map_err(|e| malformed(e.into()))?;
    if claimed != derived {
        return Err(PlaintextError::IdKeyMismatch {
            claimed: Box::new(claimed),
            derived: Box::new(derived),
        });
    }
    Ok(derived)
}

/// Sends ours, reads theirs (one frame, not a byte past it, so the socket is handed on as
/// it is) and returns the peer id the remote proved.
async fn handshake<C: Socket>(
    mut socket: C,
    ours: Vec<u8>,
    max: usize,
) -> Result<(PeerId, C), PlaintextError> {
    use futures::AsyncWriteExt;
    // Both sides send at once; writing first cannot deadlock since the message is small.
    socket.write_all(&ours).await?;
    socket.flush().await?;
    let body = framing::read_frame(&mut socket, max).await?;
    let peer = decode_exchange(&body)?;
    Ok((peer, socket))
}

impl UpgradeInfo for Plaintext {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once(PROTOCOL)
    }
}

impl<C: Socket> SecurityUpgrade<C> for Plaintext {
    type Output = C;
    type Error = PlaintextError;

    fn secure(
        &self,
        socket: C,
        _role: Role,
        _expected: Option<PeerId>,
        _protocol: &str,
    ) -> impl Future<Output = Result<(PeerId, C), PlaintextError>> + Send + 'static {
        let ours = encode_exchange(&self.public);
        let max_exchange_len = self.config.max_exchange_len;
        // The exchange's deadline is the upgrade pipeline's.
        handshake(socket, ours, max_exchange_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_round_trip_for_every_key_type() {
        for key in [
            Keypair::generate_ed25519(),
            Keypair::generate_secp256k1(),
            Keypair::generate_ecdsa(),
        ] {
            let framed = encode_exchange(&key.public());
            let (len, body) = unsigned_varint::decode::usize(&framed).unwrap();
            assert_eq!(len, body.len());
            assert_eq!(decode_exchange(body).unwrap(), key.public().to_peer_id());
        }
    }

    #[test]
    fn exchange_with_someone_elses_id_is_refused() {
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let message = Exchange {
            id: Some(other.public().to_peer_id().to_bytes()),
            pubkey: Some(key.public().encode_protobuf()),
        };
        assert!(matches!(
            decode_exchange(&message.encode_to_vec()),
            Err(PlaintextError::IdKeyMismatch { .. })
        ));
    }

    #[test]
    fn exchange_missing_fields_is_malformed() {
        let key = Keypair::generate_ed25519();
        let no_id = Exchange {
            id: None,
            pubkey: Some(key.public().encode_protobuf()),
        };
        let no_key = Exchange {
            id: Some(key.public().to_peer_id().to_bytes()),
            pubkey: None,
        };
        let bad_id = Exchange {
            id: Some(vec![1, 2, 3]),
            pubkey: Some(key.public().encode_protobuf()),
        };
        for message in [&no_id, &no_key, &bad_id] {
            assert!(matches!(
                decode_exchange(&message.encode_to_vec()),
                Err(PlaintextError::Malformed(_))
            ));
        }
        for message in [&no_id, &no_key] {
            assert!(matches!(
                decode_exchange(&message.encode_to_vec()),
                Err(PlaintextError::Malformed(
                    Malformed::NoPeerId | Malformed::NoPublicKey
                ))
            ));
        }
        assert!(decode_exchange(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn every_error_has_its_class() {
        let eof = PlaintextError::Io(io::ErrorKind::UnexpectedEof.into());
        assert_eq!(eof.fault(), Fault::Network);
        let too_large = PlaintextError::from(FrameError::TooLong { len: 9, max: 1 });
        assert!(matches!(
            too_large,
            PlaintextError::MessageTooLarge { len: 9, max: 1 }
        ));
        assert_eq!(too_large.fault(), Fault::Remote);
        assert_eq!(PlaintextError::InvalidLength.fault(), Fault::Remote);
        assert_eq!(
            PlaintextError::Malformed(Malformed::NoPeerId).fault(),
            Fault::Remote
        );
        let key = Keypair::generate_ed25519().public().to_peer_id();
        let mismatch = PlaintextError::IdKeyMismatch {
            claimed: Box::new(key),
            derived: Box::new(key),
        };
        assert_eq!(mismatch.fault(), Fault::Remote);
    }

    #[test]
    fn wire_bytes_match_the_spec_layout() {
        // field 1 (id), wire type 2 => 0x0a; field 2 (pubkey), wire type 2 => 0x12.
        let key = Keypair::ed25519_from_bytes([7u8; 32]).unwrap();
        let framed = encode_exchange(&key.public());
        let (_, body) = unsigned_varint::decode::usize(&framed).unwrap();
        let id = key.public().to_peer_id().to_bytes();
        assert_eq!(body[0], 0x0a);
        assert_eq!(usize::from(body[1]), id.len());
        assert_eq!(&body[2..2 + id.len()], &id[..]);
        assert_eq!(body[2 + id.len()], 0x12);
    }
}
