//! The wire format: the pubsub RPC protobuf (pubsub/README.md and gossipsub-v1.x.md of the
//! libp2p specs, field numbers as there) and the uvarint-length-prefixed codec that carries one
//! RPC per frame on the long-lived stream. No I/O: bytes in, RPCs out, every length checked
//! before anything is allocated.

use prost::Message as _;

use crate::error::{DecodeError, EncodeError};

/// One RPC: subscription changes, published messages and control messages, any of them empty.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rpc {
    /// Topics the sender joins or leaves.
    #[prost(message, repeated, tag = "1")]
    pub subscriptions: Vec<SubOpts>,
    /// Messages the sender publishes or forwards.
    #[prost(message, repeated, tag = "2")]
    pub publish: Vec<Message>,
    /// Gossipsub's control messages (absent for floodsub).
    #[prost(message, optional, tag = "3")]
    pub control: Option<ControlMessage>,
}

/// A subscription change.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubOpts {
    /// Joining (`true`) or leaving (`false`) the topic.
    #[prost(bool, optional, tag = "1")]
    pub subscribe: Option<bool>,
    /// The topic.
    #[prost(string, optional, tag = "2")]
    pub topic_id: Option<String>,
}

/// A published message as it travels.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Message {
    /// The author's peer id (its multihash bytes).
    #[prost(bytes = "vec", optional, tag = "1")]
    pub from: Option<Vec<u8>>,
    /// The payload.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    /// The author's sequence number: 8 bytes, big-endian.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub seqno: Option<Vec<u8>>,
    /// The topic (gossipsub v1.1 has exactly one per message).
    #[prost(string, required, tag = "4")]
    pub topic: String,
    /// The author's signature over `"libp2p-pubsub:"` followed by this message encoded with
    /// `signature` and `key` left out.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub signature: Option<Vec<u8>>,
    /// The author's public key (protobuf-encoded), when the peer id does not inline it.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub key: Option<Vec<u8>>,
}

/// The control messages of one RPC.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlMessage {
    /// "I have these message ids" (gossip).
    #[prost(message, repeated, tag = "1")]
    pub ihave: Vec<ControlIHave>,
    /// "Send me these messages" (the answer to gossip).
    #[prost(message, repeated, tag = "2")]
    pub iwant: Vec<ControlIWant>,
    /// "Add me to your mesh for this topic".
    #[prost(message, repeated, tag = "3")]
    pub graft: Vec<ControlGraft>,
    /// "You are out of my mesh for this topic".
    #[prost(message, repeated, tag = "4")]
    pub prune: Vec<ControlPrune>,
    /// "Do not send me these messages, I have them" (v1.2).
    #[prost(message, repeated, tag = "5")]
    pub idontwant: Vec<ControlIDontWant>,
}

/// IHAVE.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlIHave {
    /// The topic the messages belong to.
    #[prost(string, optional, tag = "1")]
    pub topic_id: Option<String>,
    /// Their ids.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub message_ids: Vec<Vec<u8>>,
}

/// IWANT.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlIWant {
    /// The ids wanted.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub message_ids: Vec<Vec<u8>>,
}

/// GRAFT.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlGraft {
    /// The topic.
    #[prost(string, optional, tag = "1")]
    pub topic_id: Option<String>,
}

/// PRUNE, with peer exchange and backoff (v1.1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlPrune {
    /// The topic.
    #[prost(string, optional, tag = "1")]
    pub topic_id: Option<String>,
    /// Other peers of the topic the pruned peer may connect to (peer exchange).
    #[prost(message, repeated, tag = "2")]
    pub peers: Vec<PeerInfo>,
    /// Seconds before the pruned peer may graft again.
    #[prost(uint64, optional, tag = "3")]
    pub backoff: Option<u64>,
}

/// One peer of a peer exchange.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerInfo {
    /// Its peer id bytes.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub peer_id: Option<Vec<u8>>,
    /// Its signed peer record (an envelope), when the sender has one. We send none and ignore
    /// those we receive until signed peer records exist here.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub signed_peer_record: Option<Vec<u8>>,
}

/// IDONTWANT (v1.2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ControlIDontWant {
    /// The ids the sender already has.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub message_ids: Vec<Vec<u8>>,
}

impl Rpc {
    /// Whether the RPC carries nothing at all.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
            && self.publish.is_empty()
            && self.control.as_ref().is_none_or(ControlMessage::is_empty)
    }
}

impl ControlMessage {
    /// Whether no control message is in it.
    pub fn is_empty(&self) -> bool {
        self.ihave.is_empty()
            && self.iwant.is_empty()
            && self.graft.is_empty()
            && self.prune.is_empty()
            && self.idontwant.is_empty()
    }
}

/// The length of a uvarint prefix of at most ten bytes (a `u64`).
const MAX_VARINT_LEN: usize = 10;

/// The uvarint-length-prefixed RPC codec with a maximum frame size.
///
/// [`Codec::decode`] reads the prefix, refuses a length over the maximum before it looks at
/// (let alone allocates for) the body, and decodes the body once all of it is there.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    max_rpc_size: usize,
}

impl Codec {
    /// A codec for frames of at most `max_rpc_size` bytes (the prefix not counted).
    pub fn new(max_rpc_size: usize) -> Self {
        Codec { max_rpc_size }
    }

    /// The maximum frame size.
    pub fn max_rpc_size(&self) -> usize {
        self.max_rpc_size
    }

    /// Appends `rpc` as one frame (prefix and body) to `out`.
    pub fn encode(&self, rpc: &Rpc, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = rpc.encoded_len();
        if len > self.max_rpc_size {
            return Err(EncodeError::TooLarge {
                len,
                max: self.max_rpc_size,
            });
        }
        out.reserve(len + MAX_VARINT_LEN);
        prost::encoding::encode_varint(len as u64, out);
        rpc.encode(out)
            .expect("a Vec grows to take any encoded length");
        Ok(())
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` if the frame is not complete yet
    /// (read more and call again), else the RPC and the number of bytes it took.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Rpc, usize)>, DecodeError> {
        let Some((len, head)) = read_uvarint(buf)? else {
            return Ok(None);
        };
        if len > self.max_rpc_size as u64 {
            return Err(DecodeError::TooLarge {
                len,
                max: self.max_rpc_size,
            });
        }
        let len = len as usize;
        if buf.len() - head < len {
            return Ok(None);
        }
        let rpc = Rpc::decode(&buf[head..head + len]).map_err(DecodeError::Protobuf)?;
        Ok(Some((rpc, head + len)))
    }
}

/// A uvarint from the front of `buf` and its length; `None` if it is cut short.
fn read_uvarint(buf: &[u8]) -> Result<Option<(u64, usize)>, DecodeError> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate().take(MAX_VARINT_LEN) {
        let low = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && low > 1 {
            return Err(DecodeError::VarintOverflow);
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        return Err(DecodeError::VarintOverflow);
    }
    Ok(None)
}

/// The encoded size of a length-delimited field of `len` bytes with a one-byte tag.
pub(crate) fn field_len(len: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rpc {
        Rpc {
            subscriptions: vec![SubOpts {
                subscribe: Some(true),
                topic_id: Some("t".into()),
            }],
            publish: vec![Message {
                from: Some(vec![1, 2]),
                data: Some(b"hi".to_vec()),
                seqno: Some(7u64.to_be_bytes().to_vec()),
                topic: "t".into(),
                signature: None,
                key: None,
            }],
            control: Some(ControlMessage {
                prune: vec![ControlPrune {
                    topic_id: Some("t".into()),
                    peers: vec![PeerInfo {
                        peer_id: Some(vec![9]),
                        signed_peer_record: None,
                    }],
                    backoff: Some(60),
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let codec = Codec::new(1024);
        let mut wire = Vec::new();
        codec.encode(&sample(), &mut wire).unwrap();
        for cut in 0..wire.len() {
            assert_eq!(codec.decode(&wire[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (rpc, used) = codec.decode(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(rpc, sample());
    }

    #[test]
    fn field_numbers_are_the_specs() {
        // SubOpts { subscribe = 1 (varint), topicid = 2 (bytes) } inside RPC field 1.
        let rpc = Rpc {
            subscriptions: vec![SubOpts {
                subscribe: Some(true),
                topic_id: Some("a".into()),
            }],
            ..Default::default()
        };
        assert_eq!(rpc.encode_to_vec(), [0x0a, 5, 0x08, 1, 0x12, 1, b'a']);
        // Message.topic is field 4, PRUNE.backoff field 3 (varint), IDONTWANT control field 5.
        let m = Message {
            topic: "a".into(),
            ..Default::default()
        };
        assert_eq!(m.encode_to_vec(), [0x22, 1, b'a']);
        let c = ControlMessage {
            idontwant: vec![ControlIDontWant {
                message_ids: vec![vec![3]],
            }],
            prune: vec![ControlPrune {
                topic_id: None,
                peers: vec![],
                backoff: Some(2),
            }],
            ..Default::default()
        };
        assert_eq!(c.encode_to_vec(), [0x22, 2, 0x18, 2, 0x2a, 3, 0x0a, 1, 3]);
    }

    #[test]
    fn oversized_length_refused_before_the_body() {
        let codec = Codec::new(100);
        let mut wire = Vec::new();
        prost::encoding::encode_varint(101, &mut wire);
        assert!(matches!(
            codec.decode(&wire),
            Err(DecodeError::TooLarge { len: 101, max: 100 })
        ));
        let huge = [0xff; 11];
        assert!(matches!(
            codec.decode(&huge),
            Err(DecodeError::VarintOverflow)
        ));
        let mut out = Vec::new();
        let big = Rpc {
            publish: vec![Message {
                data: Some(vec![0; 200]),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(matches!(
            codec.encode(&big, &mut out),
            Err(EncodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_body_is_an_error() {
        let codec = Codec::new(100);
        assert!(matches!(
            codec.decode(&[2, 0xff, 0xff]),
            Err(DecodeError::Protobuf(_))
        ));
    }
}
