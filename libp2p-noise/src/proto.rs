//! The handshake payload, as in the libp2p noise spec:
//!
//! ```protobuf
//! message NoiseExtensions {
//!     repeated bytes webtransport_certhashes = 1;
//!     repeated string stream_muxers = 2;
//! }
//! message NoiseHandshakePayload {
//!     optional bytes identity_key = 1;
//!     optional bytes identity_sig = 2;
//!     optional NoiseExtensions extensions = 4;
//! }
//! ```
//!
//! Field 3 (`data`, from early versions of the spec) and any other unknown field is skipped.

use prost::Message;

/// Extensions a peer may announce; parsed and ignored.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NoiseExtensions {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub(crate) webtransport_certhashes: Vec<Vec<u8>>,
    #[prost(string, repeated, tag = "2")]
    pub(crate) stream_muxers: Vec<String>,
}

/// What each side sends inside its encrypted handshake message.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NoiseHandshakePayload {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub(crate) identity_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub(crate) identity_sig: Option<Vec<u8>>,
    #[prost(message, optional, tag = "4")]
    pub(crate) extensions: Option<NoiseExtensions>,
}

/// Encodes our payload: identity key and signature, no extensions.
pub(crate) fn encode_payload(identity_key: Vec<u8>, identity_sig: Vec<u8>) -> Vec<u8> {
    NoiseHandshakePayload {
        identity_key: Some(identity_key),
        identity_sig: Some(identity_sig),
        extensions: None,
    }
    .encode_to_vec()
}

/// Decodes a remote payload; `None` if it is not a valid protobuf.
pub(crate) fn decode_payload(bytes: &[u8]) -> Option<NoiseHandshakePayload> {
    NoiseHandshakePayload::decode(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_extensions_are_tolerated() {
        let bytes = encode_payload(vec![1, 2, 3], vec![4, 5]);
        // field 1, length 3; field 2, length 2.
        assert_eq!(bytes, [0x0a, 3, 1, 2, 3, 0x12, 2, 4, 5]);
        let with_ext = NoiseHandshakePayload {
            identity_key: Some(vec![9]),
            identity_sig: Some(vec![8]),
            extensions: Some(NoiseExtensions {
                webtransport_certhashes: vec![vec![1, 2]],
                stream_muxers: vec!["/yamux/1.0.0".into()],
            }),
        }
        .encode_to_vec();
        // Plus a legacy field 3.
        let mut legacy = with_ext.clone();
        legacy.extend_from_slice(&[0x1a, 1, 7]);
        let decoded = decode_payload(&legacy).unwrap();
        assert_eq!(decoded.identity_key.as_deref(), Some(&[9u8][..]));
        assert_eq!(decoded.identity_sig.as_deref(), Some(&[8u8][..]));
        assert!(decode_payload(&[0xff, 0xff]).is_none());
    }
}
