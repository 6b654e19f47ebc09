//! The wire format of `/ipfs/kad/1.0.0`: the protobuf `Message` of the libp2p Kademlia spec
//! (github libp2p/specs, kad-dht/README.md), its uvarint length prefix, and the typed
//! requests and responses it carries. No I/O: bytes in, values out, every length bounded.
//!
//! ```protobuf
//! message Record { bytes key = 1; bytes value = 2; string timeReceived = 5; }
//! message Message {
//!     enum MessageType { PUT_VALUE = 0; GET_VALUE = 1; ADD_PROVIDER = 2; GET_PROVIDERS = 3;
//!                        FIND_NODE = 4; PING = 5; }
//!     enum ConnectionType { NOT_CONNECTED = 0; CONNECTED = 1; CAN_CONNECT = 2; CANNOT_CONNECT = 3; }
//!     message Peer { bytes id = 1; repeated bytes addrs = 2; ConnectionType connection = 3; }
//!     MessageType type = 1;  int32 clusterLevelRaw = 10;  bytes key = 2;  Record record = 3;
//!     repeated Peer closerPeers = 8;  repeated Peer providerPeers = 9;
//! }
//! ```
//!
//! Unknown fields (rust-libp2p adds `publisher = 666` and `ttl = 777` to `Record`) are skipped.

use libp2p_core::{Multiaddr, PeerId};
use prost::Message as _;

use crate::error::DecodeError;

/// The protocol name.
pub const PROTOCOL: &str = "/ipfs/kad/1.0.0";

/// The longest uvarint length prefix we read: 10 bytes hold any `u64`.
const MAX_PREFIX_LEN: usize = 10;

/// A record as it travels on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoRecord {
    /// The key that references the record.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    /// When the record was received (RFC 3339), set by the receiver; we send it empty.
    #[prost(string, tag = "5")]
    pub time_received: String,
}

/// A peer as it travels on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoPeer {
    /// The peer id's bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// Its multiaddrs, each in binary form.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
    /// The sender's connection to the peer, a [`ConnectionType`] value.
    #[prost(enumeration = "ConnectionType", tag = "3")]
    pub connection: i32,
}

/// The one message of the protocol, requests and responses alike.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoMessage {
    /// What the message is, a [`MessageType`] value.
    #[prost(enumeration = "MessageType", tag = "1")]
    pub r#type: i32,
    /// The key of PUT_VALUE, GET_VALUE, ADD_PROVIDER, GET_PROVIDERS and FIND_NODE.
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    /// The record of PUT_VALUE and of a GET_VALUE response.
    #[prost(message, optional, tag = "3")]
    pub record: Option<ProtoRecord>,
    /// Peers closer to the key, in responses.
    #[prost(message, repeated, tag = "8")]
    pub closer_peers: Vec<ProtoPeer>,
    /// Providers of the key (GET_PROVIDERS responses, ADD_PROVIDER requests).
    #[prost(message, repeated, tag = "9")]
    pub provider_peers: Vec<ProtoPeer>,
    /// Coral's cluster level; unused by every implementation, sent as 0.
    #[prost(int32, tag = "10")]
    pub cluster_level_raw: i32,
}

/// The message types of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    /// Store a record.
    PutValue = 0,
    /// Fetch a record.
    GetValue = 1,
    /// Announce a provider.
    AddProvider = 2,
    /// Fetch providers.
    GetProviders = 3,
    /// Fetch the peers closest to a key.
    FindNode = 4,
    /// Deprecated liveness check (replaced by `/ipfs/ping/1.0.0`); answered, never sent.
    Ping = 5,
}

/// What the sender of a peer entry knows of its connection to that peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConnectionType {
    /// No connection and nothing known (the default).
    NotConnected = 0,
    /// A live connection.
    Connected = 1,
    /// Recently connected.
    CanConnect = 2,
    /// Recently failed to connect, repeatedly.
    CannotConnect = 3,
}

/// Appends `msg` with its uvarint length prefix to `out`.
pub fn encode_frame(msg: &ProtoMessage, out: &mut Vec<u8>) {
    let len = msg.encoded_len();
    let mut prefix = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(len as u64, &mut prefix));
    out.reserve(len);
    msg.encode_raw(out);
}

/// Reads the uvarint length prefix at the head of `buf`: `Ok(Some((body_len, prefix_len)))`,
/// `Ok(None)` if `buf` is too short to tell, an error if the prefix is malformed or announces
/// more than `max` bytes (checked before anything is allocated).
pub fn decode_length(buf: &[u8], max: usize) -> Result<Option<(usize, usize)>, DecodeError> {
    match unsigned_varint::decode::u64(buf) {
        Ok((len, rest)) => {
            if len > max as u64 {
                return Err(DecodeError::TooLarge { len, max });
            }
            Ok(Some((len as usize, buf.len() - rest.len())))
        }
        Err(unsigned_varint::decode::Error::Insufficient) if buf.len() < MAX_PREFIX_LEN => Ok(None),
        Err(_) => Err(DecodeError::BadLength),
    }
}

/// Decodes one length-prefixed message from the head of `buf`: `Ok(Some((message,
/// consumed)))`, `Ok(None)` if more bytes are needed, an error for a prefix over `max` or a
/// body that is not a valid message.
pub fn decode_frame(buf: &[u8], max: usize) -> Result<Option<(ProtoMessage, usize)>, DecodeError> {
    let Some((len, prefix)) = decode_length(buf, max)? else {
        return Ok(None);
    };
    if buf.len() - prefix < len {
        return Ok(None);
    }
    let msg = decode_body(&buf[prefix..prefix + len])?;
    Ok(Some((msg, prefix + len)))
}

/// Decodes a message body (the bytes after the length prefix).
pub fn decode_body(body: &[u8]) -> Result<ProtoMessage, DecodeError> {
    Ok(ProtoMessage::decode(body)?)
}

/// Bounds applied when a message is turned into a typed request or response: entries past
/// them are dropped, not an error (a peer may know more than we want to hear).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Peer entries kept per list (closer peers, providers).
    pub max_peers: usize,
    /// Addresses kept per peer.
    pub max_addrs: usize,
}

/// A peer and its addresses, as found in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub id: PeerId,
    /// Its addresses (those that parsed; at most [`PeerLimits::max_addrs`]).
    pub addrs: Vec<Multiaddr>,
    /// What the sender knows of its connection to the peer.
    pub connection: ConnectionType,
}

impl PeerInfo {
    fn to_proto(&self) -> ProtoPeer {
        ProtoPeer {
            id: self.id.to_bytes(),
            addrs: self.addrs.iter().map(|a| a.to_vec()).collect(),
            connection: self.connection as i32,
        }
    }

    /// Entries whose id does not parse are skipped; addresses that do not parse too.
    fn list_from_proto(list: Vec<ProtoPeer>, limits: PeerLimits) -> Vec<PeerInfo> {
        list.into_iter()
            .filter_map(|p| {
                let id = PeerId::from_bytes(&p.id).ok()?;
                let addrs = p
                    .addrs
                    .into_iter()
                    .filter_map(|a| Multiaddr::try_from(a).ok())
                    .take(limits.max_addrs)
                    .collect();
                let connection = ConnectionType::try_from(p.connection).unwrap_or_default();
                Some(PeerInfo {
                    id,
                    addrs,
                    connection,
                })
            })
            .take(limits.max_peers)
            .collect()
    }
}

/// A key and value, as carried by PUT_VALUE and GET_VALUE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRecord {
    /// The record's key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

impl WireRecord {
    fn to_proto(&self) -> ProtoRecord {
        ProtoRecord {
            key: self.key.clone(),
            value: self.value.clone(),
            time_received: String::new(),
        }
    }
}

/// A request, as the server side sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The peers closest to `key` (a peer id's bytes, or any key).
    FindNode {
        /// The key.
        key: Vec<u8>,
    },
    /// The record under `key`, and the peers closest to it.
    GetValue {
        /// The key.
        key: Vec<u8>,
    },
    /// Store `record`.
    PutValue {
        /// The record (its key equals the message's key).
        record: WireRecord,
    },
    /// The providers of `key`, and the peers closest to it.
    GetProviders {
        /// The key.
        key: Vec<u8>,
    },
    /// The sender provides `key`; `providers` should be the sender itself.
    AddProvider {
        /// The key.
        key: Vec<u8>,
        /// The announced providers (only the ones equal to the sender count).
        providers: Vec<PeerInfo>,
    },
    /// The deprecated PING.
    Ping,
}

impl Request {
    /// The message type of the request.
    pub fn message_type(&self) -> MessageType {
        match self {
            Request::FindNode { .. } => MessageType::FindNode,
            Request::GetValue { .. } => MessageType::GetValue,
            Request::PutValue { .. } => MessageType::PutValue,
            Request::GetProviders { .. } => MessageType::GetProviders,
            Request::AddProvider { .. } => MessageType::AddProvider,
            Request::Ping => MessageType::Ping,
        }
    }

    /// Whether the protocol expects an answer to this request (ADD_PROVIDER has none).
    pub fn expects_response(&self) -> bool {
        !matches!(self, Request::AddProvider { .. })
    }

    /// The protobuf form.
    pub fn to_proto(&self) -> ProtoMessage {
        let mut msg = ProtoMessage {
            r#type: self.message_type() as i32,
            ..Default::default()
        };
        match self {
            Request::FindNode { key }
            | Request::GetValue { key }
            | Request::GetProviders { key } => msg.key = key.clone(),
            Request::PutValue { record } => {
                msg.key = record.key.clone();
                msg.record = Some(record.to_proto());
            }
            Request::AddProvider { key, providers } => {
                msg.key = key.clone();
                msg.provider_peers = providers.iter().map(PeerInfo::to_proto).collect();
            }
            Request::Ping => {}
        }
        msg
    }

    /// The typed form of a received request.
    pub fn from_proto(msg: ProtoMessage, limits: PeerLimits) -> Result<Request, DecodeError> {
        let ty =
            MessageType::try_from(msg.r#type).map_err(|_| DecodeError::UnknownType(msg.r#type))?;
        Ok(match ty {
            MessageType::FindNode => Request::FindNode { key: msg.key },
            MessageType::GetValue => Request::GetValue { key: msg.key },
            MessageType::GetProviders => Request::GetProviders { key: msg.key },
            MessageType::PutValue => {
                let record = msg.record.ok_or(DecodeError::MissingRecord)?;
                if record.key != msg.key {
                    return Err(DecodeError::RecordKeyMismatch);
                }
                Request::PutValue {
                    record: WireRecord {
                        key: record.key,
                        value: record.value,
                    },
                }
            }
            MessageType::AddProvider => Request::AddProvider {
                key: msg.key,
                providers: PeerInfo::list_from_proto(msg.provider_peers, limits),
            },
            MessageType::Ping => Request::Ping,
        })
    }
}

/// A response, as the client side sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// To FIND_NODE.
    FindNode {
        /// The closest peers the server knows.
        closer: Vec<PeerInfo>,
    },
    /// To GET_VALUE.
    GetValue {
        /// The record, if the server has one.
        record: Option<WireRecord>,
        /// The closest peers the server knows.
        closer: Vec<PeerInfo>,
    },
    /// To PUT_VALUE: the echoed record.
    PutValue {
        /// The echoed record.
        record: WireRecord,
    },
    /// To GET_PROVIDERS.
    GetProviders {
        /// The providers the server knows.
        providers: Vec<PeerInfo>,
        /// The closest peers the server knows.
        closer: Vec<PeerInfo>,
    },
    /// To PING.
    Ping,
}

impl Response {
    /// The message type of the response.
    pub fn message_type(&self) -> MessageType {
        match self {
            Response::FindNode { .. } => MessageType::FindNode,
            Response::GetValue { .. } => MessageType::GetValue,
            Response::PutValue { .. } => MessageType::PutValue,
            Response::GetProviders { .. } => MessageType::GetProviders,
            Response::Ping => MessageType::Ping,
        }
    }

    /// The protobuf form; `key` is the request's key, echoed.
    pub fn to_proto(&self, key: &[u8]) -> ProtoMessage {
        let mut msg = ProtoMessage {
            r#type: self.message_type() as i32,
            key: key.to_vec(),
            ..Default::default()
        };
        match self {
            Response::FindNode { closer } => {
                msg.closer_peers = closer.iter().map(PeerInfo::to_proto).collect()
            }
            Response::GetValue { record, closer } => {
                msg.record = record.as_ref().map(WireRecord::to_proto);
                msg.closer_peers = closer.iter().map(PeerInfo::to_proto).collect();
            }
            Response::PutValue { record } => msg.record = Some(record.to_proto()),
            Response::GetProviders { providers, closer } => {
                msg.provider_peers = providers.iter().map(PeerInfo::to_proto).collect();
                msg.closer_peers = closer.iter().map(PeerInfo::to_proto).collect();
            }
            Response::Ping => {}
        }
        msg
    }

    /// The typed form of a response to a request of type `expected`. A response of another
    /// type is an error (the remote answered a question we did not ask).
    pub fn from_proto(
        msg: ProtoMessage,
        expected: MessageType,
        limits: PeerLimits,
    ) -> Result<Response, DecodeError> {
        let ty =
            MessageType::try_from(msg.r#type).map_err(|_| DecodeError::UnknownType(msg.r#type))?;
        if ty != expected {
            return Err(DecodeError::UnexpectedType {
                expected,
                actual: ty,
            });
        }
        let closer = PeerInfo::list_from_proto(msg.closer_peers, limits);
        Ok(match ty {
            MessageType::FindNode => Response::FindNode { closer },
            MessageType::GetValue => Response::GetValue {
                record: msg.record.map(|r| WireRecord {
                    key: r.key,
                    value: r.value,
                }),
                closer,
            },
            MessageType::GetProviders => Response::GetProviders {
                providers: PeerInfo::list_from_proto(msg.provider_peers, limits),
                closer,
            },
            MessageType::PutValue => {
                let r = msg.record.ok_or(DecodeError::MissingRecord)?;
                Response::PutValue {
                    record: WireRecord {
                        key: r.key,
                        value: r.value,
                    },
                }
            }
            MessageType::Ping => Response::Ping,
            MessageType::AddProvider => {
                return Err(DecodeError::UnexpectedType {
                    expected,
                    actual: ty,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PeerLimits = PeerLimits {
        max_peers: 20,
        max_addrs: 4,
    };

    #[test]
    fn field_numbers_match_the_spec() {
        let msg = ProtoMessage {
            r#type: MessageType::GetValue as i32,
            cluster_level_raw: 0,
            key: vec![7],
            record: Some(ProtoRecord {
                key: vec![7],
                value: vec![8],
                time_received: "t".into(),
            }),
            closer_peers: vec![ProtoPeer {
                id: vec![1],
                addrs: vec![vec![2]],
                connection: 1,
            }],
            provider_peers: vec![],
        };
        let bytes = msg.encode_to_vec();
        assert_eq!(
            bytes,
            [
                0x08, 1, // type = 1
                0x12, 1, 7, // key
                0x1a, 9, 0x0a, 1, 7, 0x12, 1, 8, 0x2a, 1, b't', // record {1, 2, 5}
                0x42, 8, 0x0a, 1, 1, 0x12, 1, 2, 0x18, 1, // closerPeers = 8 {1, 2, 3}
            ]
        );
        // cluster level is field 10, providers field 9
        let msg = ProtoMessage {
            cluster_level_raw: 3,
            provider_peers: vec![ProtoPeer::default()],
            ..Default::default()
        };
        assert_eq!(msg.encode_to_vec(), [0x4a, 0, 0x50, 3]);
    }

    #[test]
    fn frames_round_trip_and_are_bounded() {
        let req = Request::FindNode { key: vec![1; 40] };
        let mut buf = Vec::new();
        encode_frame(&req.to_proto(), &mut buf);
        assert_eq!(buf[0] as usize, buf.len() - 1);
        for cut in 0..buf.len() {
            assert_eq!(decode_frame(&buf[..cut], 100).unwrap(), None);
        }
        let (msg, used) = decode_frame(&buf, 100).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(Request::from_proto(msg, LIMITS).unwrap(), req);
        assert!(matches!(
            decode_frame(&buf, 10),
            Err(DecodeError::TooLarge { len: 44, max: 10 })
        ));
        // A prefix announcing 2^62 bytes fails on its head alone.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40];
        assert!(matches!(
            decode_frame(&huge, 1 << 14),
            Err(DecodeError::TooLarge { .. })
        ));
        // A prefix that never ends.
        assert!(matches!(
            decode_frame(&[0xff; 11], 1 << 14),
            Err(DecodeError::BadLength)
        ));
    }

    #[test]
    fn junk_is_a_typed_error() {
        assert!(matches!(
            decode_body(&[0xff, 0xff, 0xff]),
            Err(DecodeError::Protobuf(_))
        ));
        let unknown = ProtoMessage {
            r#type: 42,
            ..Default::default()
        };
        assert!(matches!(
            Request::from_proto(unknown, LIMITS),
            Err(DecodeError::UnknownType(42))
        ));
        let put = ProtoMessage {
            r#type: MessageType::PutValue as i32,
            key: vec![1],
            ..Default::default()
        };
        assert!(matches!(
            Request::from_proto(put, LIMITS),
            Err(DecodeError::MissingRecord)
        ));
        let wrong = Response::Ping.to_proto(&[]);
        assert!(matches!(
            Response::from_proto(wrong, MessageType::FindNode, LIMITS),
            Err(DecodeError::UnexpectedType { .. })
        ));
    }

    #[test]
    fn bad_peers_and_addresses_are_dropped_and_lists_capped() {
        let good = PeerId::random();
        let mut peers = vec![ProtoPeer {
            id: vec![0xde, 0xad],
            addrs: vec![],
            connection: 0,
        }];
        for _ in 0..30 {
            peers.push(ProtoPeer {
                id: good.to_bytes(),
                addrs: vec![
                    vec![0xff, 0x01],
                    "/ip4/1.2.3.4/tcp/5".parse::<Multiaddr>().unwrap().to_vec(),
                ],
                connection: 9,
            });
        }
        let msg = ProtoMessage {
            r#type: MessageType::FindNode as i32,
            closer_peers: peers,
            ..Default::default()
        };
        let Response::FindNode { closer } =
            Response::from_proto(msg, MessageType::FindNode, LIMITS).unwrap()
        else {
            panic!("not a FIND_NODE response")
        };
        assert_eq!(closer.len(), 20);
        assert!(closer.iter().all(|p| p.id == good && p.addrs.len() == 1));
        assert_eq!(closer[0].connection, ConnectionType::NotConnected);
    }
}
