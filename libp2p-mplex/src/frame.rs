//! The mplex frame: `uvarint(id << 3 | flag) ‖ uvarint(length) ‖ data`.

use bytes::BytesMut;
use libp2p_core::MuxerError;

/// A 64-bit unsigned varint takes at most this many bytes.
const MAX_VARINT_LEN: usize = 10;

/// The frame kinds. "Receiver" frames come from the side that accepted the stream,
/// "initiator" frames from the side that opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    NewStream = 0,
    MessageReceiver = 1,
    MessageInitiator = 2,
    CloseReceiver = 3,
    CloseInitiator = 4,
    ResetReceiver = 5,
    ResetInitiator = 6,
}

impl Flag {
    fn from_bits(bits: u64) -> Option<Flag> {
        Some(match bits {
            0 => Flag::NewStream,
            1 => Flag::MessageReceiver,
            2 => Flag::MessageInitiator,
            3 => Flag::CloseReceiver,
            4 => Flag::CloseInitiator,
            5 => Flag::ResetReceiver,
            6 => Flag::ResetInitiator,
            _ => return None,
        })
    }

    /// Whether the payload is data to deliver (messages); other frames' payloads are skipped
    /// (a NewStream's name, or bytes a Close or Reset should not carry).
    pub(crate) fn carries_data(self) -> bool {
        matches!(self, Flag::MessageReceiver | Flag::MessageInitiator)
    }
}

/// Appends one frame.
pub(crate) fn encode(out: &mut BytesMut, id: u64, flag: Flag, data: &[u8]) {
    let mut hbuf = unsigned_varint::encode::u64_buffer();
    let mut lbuf = unsigned_varint::encode::usize_buffer();
    let header = unsigned_varint::encode::u64((id << 3) | flag as u64, &mut hbuf);
    let len = unsigned_varint::encode::usize(data.len(), &mut lbuf);
    out.reserve(header.len() + len.len() + data.len());
    out.extend_from_slice(header);
    out.extend_from_slice(len);
    out.extend_from_slice(data);
}

/// What the front of a read buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Not a whole frame yet.
    Incomplete,
    /// A whole frame: `header_len` bytes of varints, then `len` bytes of payload.
    Frame {
        id: u64,
        flag: Flag,
        header_len: usize,
        len: usize,
    },
}

fn varint(buf: &[u8], what: &str) -> Result<Option<(u64, usize)>, MuxerError> {
    match unsigned_varint::decode::u64(buf) {
        Ok((value, rest)) => Ok(Some((value, buf.len() - rest.len()))),
        Err(unsigned_varint::decode::Error::Insufficient) if buf.len() < MAX_VARINT_LEN => Ok(None),
        Err(_) => Err(MuxerError::Protocol(format!(
            "malformed mplex {what} varint"
        ))),
    }
}

/// Looks at the front of `buf`. Lengths above `max` are refused before any payload is awaited.
pub(crate) fn decode(buf: &[u8], max: usize) -> Result<Decoded, MuxerError> {
    let Some((header, hlen)) = varint(buf, "header")? else {
        return Ok(Decoded::Incomplete);
    };
    let flag = Flag::from_bits(header & 7)
        .ok_or_else(|| MuxerError::Protocol(format!("unknown mplex flag {}", header & 7)))?;
    let Some((len, llen)) = varint(&buf[hlen..], "length")? else {
        return Ok(Decoded::Incomplete);
    };
    if len > max as u64 {
        return Err(MuxerError::Protocol(format!(
            "mplex frame of {len} bytes exceeds the limit of {max}"
        )));
    }
    let header_len = hlen + llen;
    let len = len as usize;
    if buf.len() - header_len < len {
        return Ok(Decoded::Incomplete);
    }
    Ok(Decoded::Frame {
        id: header >> 3,
        flag,
        header_len,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = BytesMut::new();
        encode(&mut out, 300, Flag::MessageInitiator, b"hello");
        // 300 << 3 | 2 = 2402 = 0xe2 0x12 as a varint, then length 5.
        assert_eq!(&out[..], b"\xe2\x12\x05hello");
        assert_eq!(
            decode(&out, 1024).unwrap(),
            Decoded::Frame {
                id: 300,
                flag: Flag::MessageInitiator,
                header_len: 3,
                len: 5
            }
        );
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut], 1024).unwrap(), Decoded::Incomplete);
        }
    }

    #[test]
    fn flags_on_the_wire() {
        for (flag, bits) in [
            (Flag::NewStream, 0),
            (Flag::MessageReceiver, 1),
            (Flag::MessageInitiator, 2),
            (Flag::CloseReceiver, 3),
            (Flag::CloseInitiator, 4),
            (Flag::ResetReceiver, 5),
            (Flag::ResetInitiator, 6),
        ] {
            let mut out = BytesMut::new();
            encode(&mut out, 1, flag, &[]);
            assert_eq!(&out[..], &[8 | bits, 0]);
        }
    }

    #[test]
    fn malformed_frames() {
        // Flag 7 does not exist.
        assert!(decode(&[0x0f, 0x00], 1024).is_err());
        // Over-long length: refused from the header alone.
        assert!(decode(&[0x08, 0x80, 0x80, 0x80, 0x01], 1024).is_err());
        // A varint that never ends.
        assert!(decode(&[0xff; 11], 1024).is_err());
        assert!(decode(
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            1024
        )
        .is_err());
    }
}
