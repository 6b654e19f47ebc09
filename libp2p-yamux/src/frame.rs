//! The yamux frame header (12 bytes: version, type, flags, stream id, length), as far as the
//! adapter reads it: the socket wrapper follows the frames that pass in both directions
//! without buffering them, so it parses headers only and skips data bodies.

/// Size of a yamux frame header: version, type, flags (2 bytes), stream id (4), length (4).
pub(crate) const HEADER_LEN: usize = 12;
/// The frame type of a data frame (whose length field counts the body that follows).
pub(crate) const TYPE_DATA: u8 = 0;
/// The frame type of a window update (whose length field is the credit granted; no body).
pub(crate) const TYPE_WINDOW_UPDATE: u8 = 1;
/// The frame type of a GoAway (whose length field is the error code; no body).
pub(crate) const TYPE_GO_AWAY: u8 = 3;
/// The flag that opens a new stream.
pub(crate) const FLAG_SYN: u16 = 1;

/// One decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The frame type (data, window update, ping, GoAway).
    pub(crate) ty: u8,
    /// The flags (SYN, ACK, FIN, RST).
    pub(crate) flags: u16,
    /// The stream the frame is about (0 for the session).
    pub(crate) stream_id: u32,
    /// The body length of a data frame, the credit of a window update, the opaque value of a
    /// ping or the error code of a GoAway.
    pub(crate) length: u32,
}

impl Header {
    /// Decodes a header (the version byte is yamux's business, not checked here).
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        Header {
            ty: bytes[1],
            flags: u16::from_be_bytes([bytes[2], bytes[3]]),
            stream_id: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            length: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        }
    }

    /// Whether the header opens a stream (SYN set).
    pub(crate) fn is_syn(&self) -> bool {
        self.flags & FLAG_SYN != 0
    }
}

/// Follows a byte sequence of yamux frames, in chunks of any size, and reports each header
/// as soon as its last byte arrives. Only data frames have a body; every other frame is a
/// bare header. Holds 12 bytes at most.
#[derive(Debug, Default)]
pub(crate) struct FrameTracker {
    /// The header being assembled.
    header: [u8; HEADER_LEN],
    /// How many bytes of `header` arrived.
    have: usize,
    /// Body bytes of the current data frame still to come.
    body_left: u64,
}

impl FrameTracker {
    /// Takes the next bytes of the sequence; calls `on_header` for every header they
    /// complete, in order.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], mut on_header: impl FnMut(&Header)) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER_LEN {
                self.have = 0;
                let header = Header::parse(&self.header);
                if header.ty == TYPE_DATA {
                    self.body_left = u64::from(header.length);
                }
                on_header(&header);
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn encode(ty: u8, flags: u16, id: u32, len: u32) -> Vec<u8> {
    let mut h = vec![0u8, ty];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_across_any_chunking_and_bodies_are_skipped() {
        // A data frame whose body looks like two headers, then a window update and a GoAway.
        let mut bytes = encode(TYPE_DATA, FLAG_SYN, 1, 24);
        bytes.extend(encode(TYPE_GO_AWAY, 0, 0, 1));
        bytes.extend(encode(TYPE_WINDOW_UPDATE, 0, 3, 7));
        bytes.extend(encode(TYPE_WINDOW_UPDATE, FLAG_SYN, 5, 1000));
        bytes.extend(encode(TYPE_GO_AWAY, 0, 0, 2));
        let want = vec![
            (TYPE_DATA, 1, 24),
            (TYPE_WINDOW_UPDATE, 5, 1000),
            (TYPE_GO_AWAY, 0, 2),
        ];
        for step in [1, 5, 7, 12, 13, bytes.len()] {
            let mut tracker = FrameTracker::default();
            let mut seen = Vec::new();
            for chunk in bytes.chunks(step) {
                tracker.feed(chunk, |h| seen.push((h.ty, h.stream_id, h.length)));
            }
            assert_eq!(seen, want, "step {step}");
        }
    }
}
