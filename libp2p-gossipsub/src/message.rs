//! Message ids, signing and verification: pure functions over the wire message.

use std::sync::Arc;

use libp2p_core::{Keypair, PeerId, PublicKey};
use prost::Message as _;

use crate::error::MessageError;
use crate::proto;
use crate::types::{Message, MessageId, ValidationMode};

/// The prefix of the bytes a message signature covers.
pub const SIGNING_PREFIX: &[u8] = b"libp2p-pubsub:";

/// A message id function: the same message must give the same id on every peer that should
/// match its IHAVE / IWANT with ours.
pub type MessageIdFn = Arc<dyn Fn(&Message) -> MessageId + Send + Sync>;

/// The spec's default id (pubsub/README.md), also go-libp2p's: the author's peer id bytes
/// followed by the 8-byte big-endian sequence number. A message without author or sequence
/// number (anonymous mode) has no such id; it gets the topic, a zero byte and the payload
/// instead, which is unique but long: anonymous networks should configure a content hash.
pub fn spec_message_id(message: &Message) -> MessageId {
    match (message.source, message.sequence_number) {
        (Some(source), Some(seqno)) => {
            let mut id = source.to_bytes();
            id.extend_from_slice(&seqno.to_be_bytes());
            MessageId(id)
        }
        _ => content_id(message),
    }
}

/// rust-libp2p's default id: the author in base58 followed by the sequence number in decimal
/// (as ASCII). rust-libp2p writes a missing author as the base58 of the bytes `[0, 1, 0]` and a
/// missing sequence number as `0`; so do we, to match it.
pub fn rust_libp2p_message_id(message: &Message) -> MessageId {
    let mut id = match message.source {
        Some(source) => source.to_base58(),
        None => PeerId::from_bytes(&[0, 1, 0])
            .expect("[0, 1, 0] is an identity multihash")
            .to_base58(),
    };
    id.push_str(&message.sequence_number.unwrap_or_default().to_string());
    MessageId(id.into_bytes())
}

/// py-libp2p's default id: the 8-byte sequence number followed by the author's peer id bytes
/// (the reverse of the spec's order).
pub fn py_libp2p_message_id(message: &Message) -> MessageId {
    match (message.source, message.sequence_number) {
        (Some(source), Some(seqno)) => {
            let mut id = seqno.to_be_bytes().to_vec();
            id.extend_from_slice(&source.to_bytes());
            MessageId(id)
        }
        _ => content_id(message),
    }
}

fn content_id(message: &Message) -> MessageId {
    let mut id = message.topic.as_str().as_bytes().to_vec();
    id.push(0);
    id.extend_from_slice(&message.data);
    MessageId(id)
}

/// The bytes a signature covers: the prefix, then the message encoded without `signature` and
/// `key`.
pub fn signed_bytes(message: &proto::Message) -> Vec<u8> {
    let unsigned = proto::Message {
        signature: None,
        key: None,
        ..message.clone()
    };
    let mut bytes = Vec::with_capacity(SIGNING_PREFIX.len() + unsigned.encoded_len());
    bytes.extend_from_slice(SIGNING_PREFIX);
    unsigned
        .encode(&mut bytes)
        .expect("a Vec grows to take any encoded length");
    bytes
}

/// Signs `message` with `key`: sets `signature`, and `key` when the author's peer id does not
/// inline the public key (RSA, ECDSA).
pub fn sign(
    message: &mut proto::Message,
    key: &Keypair,
) -> Result<(), libp2p_core::identity::SigningError> {
    message.signature = None;
    message.key = None;
    let signature = key.sign(&signed_bytes(message))?;
    message.signature = Some(signature);
    let public = key.public();
    if inlined_key(&public.to_peer_id()).is_none() {
        message.key = Some(public.encode_protobuf());
    }
    Ok(())
}

/// The public key a peer id inlines (identity multihash), if it does.
pub fn inlined_key(peer: &PeerId) -> Option<PublicKey> {
    let hash: &libp2p_core::multiaddr::multihash::Multihash<64> = peer.as_ref();
    if hash.code() != 0 {
        return None;
    }
    PublicKey::try_decode_protobuf(hash.digest()).ok()
}

/// Checks a received message against `mode` and decodes its fields: [`decode`], then
/// [`check`].
pub fn verify(raw: &proto::Message, mode: ValidationMode) -> Result<Message, MessageError> {
    let message = decode(raw)?;
    check(raw, &message, mode)?;
    Ok(message)
}

/// Decodes the fields of a received message (author, sequence number) without checking its
/// signature: enough to compute its id and drop a duplicate before paying for a signature
/// check.
pub fn decode(raw: &proto::Message) -> Result<Message, MessageError> {
    let source = match &raw.from {
        Some(bytes) => Some(PeerId::from_bytes(bytes).map_err(|_| MessageError::InvalidAuthor)?),
        None => None,
    };
    let sequence_number = match &raw.seqno {
        Some(bytes) => Some(
            <[u8; 8]>::try_from(bytes.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| MessageError::InvalidSeqno)?,
        ),
        None => None,
    };
    Ok(Message {
        source,
        data: raw.data.clone().unwrap_or_default(),
        sequence_number,
        topic: raw.topic.as_str().into(),
    })
}

/// Checks a decoded message against `mode`: the fields it must or must not carry, and the
/// signature.
pub fn check(
    raw: &proto::Message,
    message: &Message,
    mode: ValidationMode,
) -> Result<(), MessageError> {
    match mode {
        ValidationMode::Strict => {
            let source = message.source.ok_or(MessageError::MissingAuthor)?;
            if message.sequence_number.is_none() {
                return Err(MessageError::InvalidSeqno);
            }
            check_signature(raw, &source)
        }
        ValidationMode::Permissive => match (&raw.signature, message.source) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(MessageError::MissingAuthor),
            (Some(_), Some(source)) => check_signature(raw, &source),
        },
        ValidationMode::Anonymous => {
            if raw.from.is_some()
                || raw.seqno.is_some()
                || raw.signature.is_some()
                || raw.key.is_some()
            {
                Err(MessageError::NotAnonymous)
            } else {
                Ok(())
            }
        }
        ValidationMode::None => Ok(()),
    }
}

fn check_signature(raw: &proto::Message, source: &PeerId) -> Result<(), MessageError> {
    let signature = raw
        .signature
        .as_ref()
        .ok_or(MessageError::MissingSignature)?;
    let key = match &raw.key {
        Some(bytes) => {
            let key =
                PublicKey::try_decode_protobuf(bytes).map_err(|_| MessageError::InvalidKey)?;
            if key.to_peer_id() != *source {
                return Err(MessageError::InvalidKey);
            }
            key
        }
        None => inlined_key(source).ok_or(MessageError::MissingKey)?,
    };
    if key.verify(&signed_bytes(raw), signature) {
        Ok(())
    } else {
        Err(MessageError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(key: &Keypair) -> proto::Message {
        proto::Message {
            from: Some(key.public().to_peer_id().to_bytes()),
            data: Some(b"payload".to_vec()),
            seqno: Some(42u64.to_be_bytes().to_vec()),
            topic: "news".into(),
            signature: None,
            key: None,
        }
    }

    #[test]
    fn signed_message_verifies_and_tampering_fails() {
        for key in [Keypair::generate_ed25519(), Keypair::generate_ecdsa()] {
            let mut m = raw(&key);
            sign(&mut m, &key).unwrap();
            // ECDSA peer ids are hashes: the key must travel in the message.
            assert_eq!(
                m.key.is_some(),
                inlined_key(&key.public().to_peer_id()).is_none()
            );
            let decoded = verify(&m, ValidationMode::Strict).unwrap();
            assert_eq!(decoded.sequence_number, Some(42));
            assert_eq!(decoded.source, Some(key.public().to_peer_id()));
            let mut bad = m.clone();
            bad.data = Some(b"payloaD".to_vec());
            assert_eq!(
                verify(&bad, ValidationMode::Strict),
                Err(MessageError::InvalidSignature)
            );
        }
    }

    #[test]
    fn strict_mode_demands_everything() {
        let key = Keypair::generate_ed25519();
        let m = raw(&key);
        assert_eq!(
            verify(&m, ValidationMode::Strict),
            Err(MessageError::MissingSignature)
        );
        assert!(verify(&m, ValidationMode::Permissive).is_ok());
        assert_eq!(
            verify(&m, ValidationMode::Anonymous),
            Err(MessageError::NotAnonymous)
        );
        let mut signed = m.clone();
        sign(&mut signed, &key).unwrap();
        let other = Keypair::generate_ed25519();
        let mut stolen = signed.clone();
        stolen.from = Some(other.public().to_peer_id().to_bytes());
        assert_eq!(
            verify(&stolen, ValidationMode::Strict),
            Err(MessageError::InvalidSignature)
        );
        stolen.key = Some(key.public().encode_protobuf());
        assert_eq!(
            verify(&stolen, ValidationMode::Strict),
            Err(MessageError::InvalidKey)
        );
        let mut short = signed;
        short.seqno = Some(vec![1, 2]);
        assert_eq!(
            verify(&short, ValidationMode::Strict),
            Err(MessageError::InvalidSeqno)
        );
    }

    #[test]
    fn the_three_id_conventions() {
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let m = Message {
            source: Some(peer),
            data: vec![],
            sequence_number: Some(258),
            topic: "t".into(),
        };
        let mut spec = peer.to_bytes();
        spec.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(spec_message_id(&m).0, spec);
        assert_eq!(
            rust_libp2p_message_id(&m).0,
            format!("{}258", peer.to_base58()).into_bytes()
        );
        let mut py = vec![0, 0, 0, 0, 0, 0, 1, 2];
        py.extend_from_slice(&peer.to_bytes());
        assert_eq!(py_libp2p_message_id(&m).0, py);
        let anonymous = Message {
            source: None,
            sequence_number: None,
            ..m
        };
        assert_eq!(
            rust_libp2p_message_id(&anonymous).0,
            format!("{}0", PeerId::from_bytes(&[0, 1, 0]).unwrap().to_base58()).into_bytes()
        );
    }
}
