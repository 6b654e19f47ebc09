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

/// A stream's name: its id and whether we opened it. Each side numbers the streams it opens
/// itself, so the id alone is ambiguous; the flag of every frame says whose id it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StreamKey {
    /// The id the opener gave the stream.
    pub(crate) id: u64,
    /// Whether we opened it.
    pub(crate) ours: bool,
}

impl StreamKey {
    /// The stream a frame from the remote is about: frames from a stream's receiver (odd
    /// flags 1, 3, 5) are about a stream we opened; NewStream and the initiator's frames
    /// about one the remote opened.
    fn of_inbound(id: u64, flag: Flag) -> StreamKey {
        let ours = matches!(
            flag,
            Flag::MessageReceiver | Flag::CloseReceiver | Flag::ResetReceiver
        );
        StreamKey { id, ours }
    }

    /// The flag we send a message with on this stream.
    pub(crate) fn message_flag(self) -> Flag {
        if self.ours {
            Flag::MessageInitiator
        } else {
            Flag::MessageReceiver
        }
    }

    /// The flag we close our side of this stream with.
    pub(crate) fn close_flag(self) -> Flag {
        if self.ours {
            Flag::CloseInitiator
        } else {
            Flag::CloseReceiver
        }
    }

    /// The flag we reset this stream with.
    pub(crate) fn reset_flag(self) -> Flag {
        if self.ours {
            Flag::ResetInitiator
        } else {
            Flag::ResetReceiver
        }
    }
}

/// The head of one whole frame at the front of a read buffer: what it is about, and where
/// its payload lies. The payload stays in the buffer (the driver splits it off without a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The stream, from the id and the flag (built here, once).
    pub(crate) key: StreamKey,
    /// The frame kind.
    pub(crate) flag: Flag,
    /// Bytes of varints before the payload.
    pub(crate) header_len: usize,
    /// Bytes of payload.
    pub(crate) len: usize,
}

impl Header {
    /// The whole frame's length on the wire.
    pub(crate) fn frame_len(&self) -> usize {
        self.header_len + self.len
    }
}

/// What the front of a read buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Not a whole frame yet.
    Incomplete,
    /// A whole frame.
    Frame(Header),
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
    Ok(Decoded::Frame(Header {
        key: StreamKey::of_inbound(header >> 3, flag),
        flag,
        header_len,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_says_whose_stream_it_is() {
        for (flag, ours) in [
            (Flag::NewStream, false),
            (Flag::MessageReceiver, true),
            (Flag::MessageInitiator, false),
            (Flag::CloseReceiver, true),
            (Flag::CloseInitiator, false),
            (Flag::ResetReceiver, true),
            (Flag::ResetInitiator, false),
        ] {
            let mut out = BytesMut::new();
            encode(&mut out, 7, flag, &[]);
            let Decoded::Frame(h) = decode(&out, 1024).unwrap() else {
                panic!("whole frame");
            };
            assert_eq!(h.key, StreamKey { id: 7, ours }, "{flag:?}");
            // What we send on that stream carries the other side's form of the flag.
            let back = match flag {
                Flag::NewStream => continue,
                Flag::MessageReceiver | Flag::MessageInitiator => h.key.message_flag(),
                Flag::CloseReceiver | Flag::CloseInitiator => h.key.close_flag(),
                Flag::ResetReceiver | Flag::ResetInitiator => h.key.reset_flag(),
            };
            assert_ne!(back, flag);
        }
    }

    #[test]
    fn round_trip() {
        let mut out = BytesMut::new();
        encode(&mut out, 300, Flag::MessageInitiator, b"hello");
        // 300 << 3 | 2 = 2402 = 0xe2 0x12 as a varint, then length 5.
        assert_eq!(&out[..], b"\xe2\x12\x05hello");
        assert_eq!(
            decode(&out, 1024).unwrap(),
            Decoded::Frame(Header {
                key: StreamKey {
                    id: 300,
                    ours: false
                },
                flag: Flag::MessageInitiator,
                header_len: 3,
                len: 5
            })
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
