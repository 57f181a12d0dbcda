//! The RFC 6455 frame format: header parsing for frames a client sends, header encoding for
//! frames the server sends, masking, and [`Frame`], an encoded server frame that is built once
//! and written to any number of connections.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{CloseCode, ProtocolError};

/// The longest header a server frame can have: 2 bytes + 8 bytes of extended length (servers
/// never mask).
pub const MAX_SERVER_HEADER: usize = 10;

/// A frame opcode (RFC 6455 §5.2). Reserved opcodes are rejected while parsing the header, so
/// a value of this type is always one the protocol defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// Decodes the low nibble of the first header byte; `None` for reserved opcodes.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Control frames (close, ping, pong) may interleave with a fragmented message and must be
    /// short and unfragmented.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A parsed frame header of an incoming frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: "this message is compressed" under permessage-deflate; validated by the connection,
    /// which knows whether the extension was negotiated.
    pub rsv1: bool,
    pub opcode: OpCode,
    /// The masking key; every client frame must have one (checked by the connection).
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` while `buf` holds only part of the header, otherwise the header and its
    /// length in bytes. Everything that is wrong regardless of negotiated extensions is rejected
    /// here: RSV2/RSV3, reserved opcodes, fragmented or oversized control frames, and 64-bit
    /// lengths with the top bit set.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x30 != 0 {
            return Err(ProtocolError::new(
                CloseCode::PROTOCOL,
                "reserved bits RSV2/RSV3 set",
            ));
        }
        let opcode = OpCode::from_u8(b0 & 0x0F)
            .ok_or(ProtocolError::new(CloseCode::PROTOCOL, "reserved opcode"))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut len) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 {
                    return Err(ProtocolError::new(
                        CloseCode::PROTOCOL,
                        "payload length has the most significant bit set",
                    ));
                }
                (n, 10)
            }
            n => (u64::from(n), 2),
        };
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::new(
                    CloseCode::PROTOCOL,
                    "fragmented control frame",
                ));
            }
            if payload_len > 125 {
                return Err(ProtocolError::new(
                    CloseCode::PROTOCOL,
                    "control frame payload over 125 bytes",
                ));
            }
        }
        let mask = if masked {
            if buf.len() < len + 4 {
                return Ok(None);
            }
            let key = [buf[len], buf[len + 1], buf[len + 2], buf[len + 3]];
            len += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                rsv1: b0 & 0x40 != 0,
                opcode,
                mask,
                payload_len,
            },
            len,
        )))
    }
}

/// Writes a server frame header (never masked) into `dst` and returns its length.
pub fn encode_header(
    dst: &mut [u8; MAX_SERVER_HEADER],
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload_len: usize,
) -> usize {
    dst[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode as u8;
    if payload_len < 126 {
        dst[1] = payload_len as u8;
        2
    } else if payload_len <= usize::from(u16::MAX) {
        dst[1] = 126;
        dst[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
        4
    } else {
        dst[1] = 127;
        dst[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// XORs `buf` with the masking `key`, where `buf` starts `offset` bytes into the payload (so a
/// payload can be unmasked in pieces). Masking twice restores the input.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    // Word-at-a-time XOR: the key repeated to 8 bytes keeps its phase because 8 % 4 == 0.
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// One encoded server frame: header and payload in one reference-counted buffer.
///
/// This is the unit of fan-out. It is encoded once; cloning it only increments a reference
/// count, so the same bytes can sit in the outbound queues of any number of connections and be
/// handed to the kernel from each of them without copying.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
    header_len: u8,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("header", &&self.bytes[..usize::from(self.header_len)])
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

impl Frame {
    /// Encodes a final, uncompressed frame, copying `payload` once.
    pub fn new(opcode: OpCode, payload: &[u8]) -> Frame {
        Frame::with_flags(true, false, opcode, payload)
    }

    /// Encodes a frame with explicit FIN and RSV1 bits, copying `payload` once.
    pub fn with_flags(fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) -> Frame {
        let mut header = [0u8; MAX_SERVER_HEADER];
        let header_len = encode_header(&mut header, fin, rsv1, opcode, payload.len());
        let mut buf = BytesMut::with_capacity(header_len + payload.len());
        buf.put_slice(&header[..header_len]);
        buf.put_slice(payload);
        Frame {
            bytes: buf.freeze(),
            header_len: header_len as u8,
        }
    }

    /// The pong that answers a ping: a static frame (no allocation) when the ping was empty,
    /// as keepalive pings usually are — so a peer that floods them costs a queue slot each,
    /// not an allocation each.
    pub fn pong(payload: &[u8]) -> Frame {
        if payload.is_empty() {
            static EMPTY_PONG: [u8; 2] = [0x80 | 0xA, 0];
            Frame {
                bytes: Bytes::from_static(&EMPTY_PONG),
                header_len: 2,
            }
        } else {
            Frame::new(OpCode::Pong, payload)
        }
    }

    /// A close frame with a status code and a reason. The reason is cut at a character
    /// boundary so that the payload fits the 125-byte limit of control frames.
    pub fn close(code: CloseCode, reason: &str) -> Frame {
        let mut payload = [0u8; 125];
        payload[..2].copy_from_slice(&code.0.to_be_bytes());
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
        Frame::new(OpCode::Close, &payload[..2 + end])
    }

    /// The whole frame, ready for the socket.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The payload part of the frame.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[usize::from(self.header_len)..]
    }

    /// Length of the whole frame in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// A frame always has a header, so it is never empty; provided for API completeness.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Builds a [`Frame`] whose payload is written in place, leaving room for the header in front,
/// so that a serializer can write straight into the frame without a second copy.
///
/// ```
/// use std::io::Write;
/// use herald_ws::{FrameBuf, OpCode};
/// let mut buf = FrameBuf::new();
/// write!(buf, "{{\"hello\":1}}").unwrap();
/// let frame = buf.finish(OpCode::Text);
/// assert_eq!(frame.payload(), b"{\"hello\":1}");
/// ```
#[derive(Debug)]
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl Default for FrameBuf {
    fn default() -> Self {
        FrameBuf::new()
    }
}

impl FrameBuf {
    /// An empty payload. Allocates nothing until the first write (a connection keeps one for
    /// its replies; idle, it should cost no heap memory).
    pub fn new() -> FrameBuf {
        FrameBuf { buf: Vec::new() }
    }

    /// Makes the header room in front of the payload, on first use.
    fn room(&mut self) {
        if self.buf.is_empty() {
            self.buf.reserve(MAX_SERVER_HEADER + 64);
            self.buf.resize(MAX_SERVER_HEADER, 0);
        }
    }

    /// An empty payload with header room and `capacity` payload bytes reserved.
    pub fn with_capacity(capacity: usize) -> FrameBuf {
        let mut buf = Vec::with_capacity(MAX_SERVER_HEADER + capacity);
        buf.resize(MAX_SERVER_HEADER, 0);
        FrameBuf { buf }
    }

    /// The payload written so far.
    pub fn payload(&self) -> &[u8] {
        self.buf.get(MAX_SERVER_HEADER..).unwrap_or_default()
    }

    /// The payload buffer, for APIs that append to a `Vec<u8>` (the header room in front must be
    /// left alone; use [`FrameBuf::payload_len`] to find where the payload ends).
    pub(crate) fn vec_mut(&mut self) -> &mut Vec<u8> {
        self.room();
        &mut self.buf
    }

    /// Number of payload bytes written so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len().saturating_sub(MAX_SERVER_HEADER)
    }

    /// Drops the last `n` payload bytes.
    pub fn truncate_payload(&mut self, n: usize) {
        if self.buf.is_empty() {
            return;
        }
        let len = self.buf.len().saturating_sub(n).max(MAX_SERVER_HEADER);
        self.buf.truncate(len);
    }

    /// Writes the header in front of the payload and freezes the frame. No payload copy.
    pub fn finish(self, opcode: OpCode) -> Frame {
        self.finish_with_flags(true, false, opcode)
    }

    /// Like [`FrameBuf::finish`] with explicit FIN and RSV1 bits.
    pub fn finish_with_flags(mut self, fin: bool, rsv1: bool, opcode: OpCode) -> Frame {
        self.room();
        let mut header = [0u8; MAX_SERVER_HEADER];
        let header_len = encode_header(&mut header, fin, rsv1, opcode, self.payload_len());
        let start = MAX_SERVER_HEADER - header_len;
        self.buf[start..MAX_SERVER_HEADER].copy_from_slice(&header[..header_len]);
        let bytes = Bytes::from(self.buf).slice(start..);
        Frame {
            bytes,
            header_len: header_len as u8,
        }
    }
}

impl std::io::Write for FrameBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.room();
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.room();
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_use_the_minimal_encoding() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let frame = Frame::new(OpCode::Binary, &vec![7u8; len]);
            assert_eq!(frame.len(), len + header_len, "payload {len}");
            assert_eq!(frame.payload().len(), len);
        }
    }

    #[test]
    fn frame_buf_matches_frame_new() {
        for len in [0usize, 1, 125, 126, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = FrameBuf::new();
            std::io::Write::write_all(&mut buf, &payload).unwrap();
            assert_eq!(buf.finish(OpCode::Text), Frame::new(OpCode::Text, &payload));
        }
    }

    #[test]
    fn an_unwritten_frame_buf_allocates_nothing_and_finishes_empty() {
        let buf = FrameBuf::new();
        assert_eq!(buf.buf.capacity(), 0);
        assert_eq!(buf.payload_len(), 0);
        assert!(buf.payload().is_empty());
        assert_eq!(buf.finish(OpCode::Text), Frame::new(OpCode::Text, b""));
        let mut buf = FrameBuf::new();
        buf.truncate_payload(3);
        std::io::Write::write_all(&mut buf, b"abc").unwrap();
        buf.truncate_payload(1);
        assert_eq!(buf.finish(OpCode::Text), Frame::new(OpCode::Text, b"ab"));
    }

    #[test]
    fn mask_is_an_involution_at_any_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        // Unmasking in two pieces at every split point gives the same result.
        for split in 0..data.len() {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(pieces, whole, "split at {split}");
        }
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, data);
    }

    #[test]
    fn rejects_what_rfc_6455_forbids() {
        let bad: [(&[u8], &str); 5] = [
            (&[0x93, 0x80, 0, 0, 0, 0], "reserved opcode"),
            (&[0xA1, 0x80, 0, 0, 0, 0], "RSV2"),
            (&[0x09, 0x80, 0, 0, 0, 0], "fragmented ping"),
            (&[0x89, 0xFE, 0, 126, 0, 0, 0, 0], "long ping"),
            (&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], "63-bit length"),
        ];
        for (bytes, what) in bad {
            let err = FrameHeader::parse(bytes).expect_err(what);
            assert_eq!(err.code, CloseCode::PROTOCOL, "{what}");
        }
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let reason = "é".repeat(100);
        let frame = Frame::close(CloseCode::NORMAL, &reason);
        assert!(frame.payload().len() <= 125);
        assert!(std::str::from_utf8(&frame.payload()[2..]).is_ok());
    }
}
