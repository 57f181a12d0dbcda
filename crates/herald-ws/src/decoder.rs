//! [`Decoder`]: turns the bytes a client sends into messages and control events, without doing
//! any I/O.
//!
//! It is fed whatever a read returned — a byte, half a header, ten frames — and keeps only what
//! a partial frame needs: at most 13 header bytes, and the payload of the message being
//! received. Payload bytes are unmasked while they are copied out of the read buffer, so the
//! connection can read into a buffer shared by all connections on a thread.

use std::collections::VecDeque;

use bytes::Bytes;
use flate2::Decompress;

use crate::deflate::{self, DeflateParams};
use crate::error::{CloseCode, ProtocolError};
use crate::frame::{FrameHeader, OpCode, apply_mask};
use crate::message::Incoming;

/// Limits on what a peer may send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest message, after reassembly and decompression (over it: close 1009).
    pub max_message_size: usize,
    /// Largest single frame payload (over it: close 1009).
    pub max_frame_size: usize,
    /// Most frames one message may be split into; 0 means no limit (over it: close 1009).
    pub max_fragments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 1 << 20,
            max_frame_size: 1 << 20,
            max_fragments: 1024,
        }
    }
}

/// What the peer sent, as the connection must act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete text or binary message.
    Message(Incoming),
    /// A ping; the connection answers with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: its code and reason, or `None` when it had no payload.
    Close(Option<(CloseCode, String)>),
}

/// Where the decoder is in the stream of frames. A partial header and a frame's payload never
/// need keeping at the same time, so they share their bytes: every connection keeps a decoder.
#[derive(Debug)]
enum Stage {
    /// Between frames: `buf[..len]` is the start of the next header, which a read cut off.
    Header { len: u8, buf: [u8; 14] },
    /// Receiving the payload of a frame.
    Payload(CurrentFrame),
}

impl Stage {
    /// Between frames, with nothing of the next one received.
    const IDLE: Stage = Stage::Header {
        len: 0,
        buf: [0; 14],
    };
}

/// The frame whose payload is being received: only what the payload still needs of its
/// header, to keep [`Stage`] (and so every connection) small.
#[derive(Debug)]
struct CurrentFrame {
    /// Payload bytes still to come.
    remaining: u64,
    /// A control frame's payload (at most 125 bytes), allocated at its full length when the
    /// frame starts and filled from the front: it becomes the event's `Bytes` without a copy,
    /// so a ping costs the one allocation its event needs anyway. Empty for a data frame,
    /// whose payload goes to the message being reassembled.
    control: Box<[u8]>,
    /// The masking key, rotated to the phase of the next payload byte as bytes arrive (so no
    /// count of the bytes received is kept).
    mask: Option<[u8; 4]>,
    opcode: OpCode,
    fin: bool,
}

/// A data message being reassembled.
#[derive(Debug)]
struct Assembly {
    opcode: OpCode,
    compressed: bool,
    buf: Vec<u8>,
    /// Length of the prefix of `buf` known to be valid UTF-8 (text, uncompressed): the check
    /// runs as bytes arrive, so invalid text fails fast, even mid-frame.
    utf8_valid: usize,
    fragments: usize,
}

/// The sans-IO frame decoder of one connection.
#[derive(Debug)]
pub struct Decoder {
    /// The limits, as 32-bit numbers (4 GiB and more mean "no limit" in practice): every
    /// connection keeps a decoder, so its size is paid per connection.
    max_message_size: u32,
    max_frame_size: u32,
    max_fragments: u32,
    /// Whether permessage-deflate was negotiated.
    deflate: bool,
    /// The client compresses with context takeover: its decompressor is kept between messages.
    inflate_takeover: bool,
    /// Whether frames must be masked (true for a server; RFC 6455 §5.1).
    require_mask: bool,
    failed: bool,
    stage: Stage,
    /// Boxed: a message is being reassembled only while one is arriving, and inline the
    /// assembly state would cost every idle connection 40 bytes more.
    message: Option<Box<Assembly>>,
    /// Decompressor kept between messages when the client compresses with context takeover.
    inflater: Option<Box<Decompress>>,
}

impl Decoder {
    /// A decoder for the server side of a connection.
    pub fn new(limits: Limits, deflate: Option<DeflateParams>) -> Decoder {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Decoder {
            max_message_size: clamp(limits.max_message_size),
            max_frame_size: clamp(limits.max_frame_size),
            max_fragments: clamp(limits.max_fragments),
            deflate: deflate.is_some(),
            inflate_takeover: deflate.is_some_and(|p| !p.client_no_context_takeover),
            require_mask: true,
            failed: false,
            stage: Stage::IDLE,
            message: None,
            inflater: None,
        }
    }

    /// Whether a frame or a fragmented message has started and not finished (the connection's
    /// read timeout applies only then).
    pub fn in_progress(&self) -> bool {
        matches!(
            self.stage,
            Stage::Header { len: 1.., .. } | Stage::Payload(_)
        ) || self.message.is_some()
    }

    /// Whether this decoder holds nothing a new one would not: no frame or message started,
    /// no decompressor kept between messages, no failure. A connection drops such a decoder
    /// between reads and makes a new one for the next.
    pub fn at_rest(&self) -> bool {
        !self.failed && !self.in_progress() && self.inflater.is_none()
    }

    /// Decodes `input`, appending what it completes to `events`. After an error the decoder
    /// stays failed and ignores further input.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        events: &mut VecDeque<Event>,
    ) -> Result<(), ProtocolError> {
        if self.failed {
            return Ok(());
        }
        let result = (|| {
            while !input.is_empty() {
                match &mut self.stage {
                    Stage::Header { len, buf } => {
                        let Some((header, used)) = read_header(len, buf, input)? else {
                            return Ok(());
                        };
                        input = &input[used..];
                        self.start_frame(header)?;
                    }
                    Stage::Payload(_) => {
                        let used = self.read_payload(input)?;
                        input = &input[used..];
                    }
                }
                if matches!(&self.stage, Stage::Payload(frame) if frame.remaining == 0) {
                    self.finish_frame(events)?;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            self.failed = true;
            self.message = None;
            if let Stage::Payload(_) = self.stage {
                self.stage = Stage::IDLE;
            }
        }
        result
    }

    /// Checks a new frame against the connection state and limits.
    fn start_frame(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        if self.require_mask && header.mask.is_none() {
            return Err(ProtocolError::new(
                CloseCode::PROTOCOL,
                "client frames must be masked",
            ));
        }
        let len = header.payload_len;
        if header.opcode.is_control() {
            if header.rsv1 {
                return Err(ProtocolError::new(
                    CloseCode::PROTOCOL,
                    "RSV1 set on a control frame",
                ));
            }
        } else {
            if len > u64::from(self.max_frame_size) {
                return Err(ProtocolError::new(CloseCode::TOO_BIG, "frame too big"));
            }
            match (header.opcode, &mut self.message) {
                (OpCode::Continuation, None) => {
                    return Err(ProtocolError::new(
                        CloseCode::PROTOCOL,
                        "continuation frame without a message to continue",
                    ));
                }
                (OpCode::Continuation, Some(message)) => {
                    if header.rsv1 {
                        return Err(ProtocolError::new(
                            CloseCode::PROTOCOL,
                            "RSV1 set on a continuation frame",
                        ));
                    }
                    message.fragments += 1;
                    if self.max_fragments != 0 && message.fragments > self.max_fragments as usize {
                        return Err(ProtocolError::new(
                            CloseCode::TOO_BIG,
                            "message split into too many fragments",
                        ));
                    }
                    if message.buf.len() as u64 + len > u64::from(self.max_message_size) {
                        return Err(ProtocolError::new(CloseCode::TOO_BIG, "message too big"));
                    }
                }
                (_, Some(_)) => {
                    return Err(ProtocolError::new(
                        CloseCode::PROTOCOL,
                        "new message started before the fragmented one finished",
                    ));
                }
                (opcode, None) => {
                    if header.rsv1 && !self.deflate {
                        return Err(ProtocolError::new(
                            CloseCode::PROTOCOL,
                            "RSV1 set without a negotiated extension",
                        ));
                    }
                    if len > u64::from(self.max_message_size) {
                        return Err(ProtocolError::new(CloseCode::TOO_BIG, "message too big"));
                    }
                    // Reserve what the header announces, up to a cap, so a lying length
                    // cannot make the server allocate memory it was never sent.
                    let reserve = (len as usize).min(64 * 1024);
                    self.message = Some(Box::new(Assembly {
                        opcode,
                        compressed: header.rsv1,
                        buf: Vec::with_capacity(reserve),
                        utf8_valid: 0,
                        fragments: 1,
                    }));
                }
            }
        }
        let control = if header.opcode.is_control() {
            // At most 125 bytes: `FrameHeader::parse` rejects longer control frames.
            vec![0; len as usize].into_boxed_slice()
        } else {
            Box::default()
        };
        self.stage = Stage::Payload(CurrentFrame {
            remaining: len,
            control,
            mask: header.mask,
            opcode: header.opcode,
            fin: header.fin,
        });
        Ok(())
    }

    /// Copies and unmasks payload bytes; returns how many bytes of `input` were used.
    fn read_payload(&mut self, input: &[u8]) -> Result<usize, ProtocolError> {
        let Stage::Payload(frame) = &mut self.stage else {
            return Ok(0);
        };
        let take = input
            .len()
            .min(usize::try_from(frame.remaining).unwrap_or(usize::MAX));
        let control = frame.opcode.is_control();
        let dst = if control {
            // Filled from the front: what is still to come is the end of the payload.
            let start = frame.control.len() - frame.remaining as usize;
            let dst = &mut frame.control[start..start + take];
            dst.copy_from_slice(&input[..take]);
            dst
        } else {
            let Some(message) = &mut self.message else {
                return Ok(0);
            };
            let start = message.buf.len();
            message.buf.extend_from_slice(&input[..take]);
            &mut message.buf[start..]
        };
        if let Some(key) = &mut frame.mask {
            apply_mask(dst, *key, 0);
            key.rotate_left(take % 4);
        }
        frame.remaining -= take as u64;
        if !control {
            self.check_utf8_so_far(false)?;
        }
        Ok(take)
    }

    /// Validates the text received so far; incomplete code points at the end are allowed
    /// unless the message is complete.
    fn check_utf8_so_far(&mut self, complete: bool) -> Result<(), ProtocolError> {
        let Some(message) = &mut self.message else {
            return Ok(());
        };
        if message.opcode != OpCode::Text || message.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&message.buf[message.utf8_valid..]) {
            Ok(_) => message.utf8_valid = message.buf.len(),
            Err(e) => {
                if e.error_len().is_some() || complete {
                    return Err(ProtocolError::new(
                        CloseCode::INVALID_PAYLOAD,
                        "text message is not valid UTF-8",
                    ));
                }
                message.utf8_valid += e.valid_up_to();
            }
        }
        Ok(())
    }

    /// Acts on a frame whose payload is complete.
    fn finish_frame(&mut self, events: &mut VecDeque<Event>) -> Result<(), ProtocolError> {
        let Stage::Payload(frame) = std::mem::replace(&mut self.stage, Stage::IDLE) else {
            return Ok(());
        };
        match frame.opcode {
            OpCode::Ping => events.push_back(Event::Ping(Bytes::from(frame.control))),
            OpCode::Pong => events.push_back(Event::Pong(Bytes::from(frame.control))),
            OpCode::Close => events.push_back(Event::Close(parse_close(&frame.control)?)),
            _ if frame.fin => {
                if let Some(message) = self.message.take() {
                    events.push_back(Event::Message(self.complete(*message)?));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Decompresses and validates a reassembled message.
    fn complete(&mut self, message: Assembly) -> Result<Incoming, ProtocolError> {
        let data = if message.compressed {
            let limit = self.max_message_size as usize;
            let mut out = Vec::with_capacity((message.buf.len() * 3).min(limit).max(64));
            match self.inflate_takeover {
                true => {
                    let inflater = self
                        .inflater
                        .get_or_insert_with(|| Box::new(deflate::new_decompressor()));
                    deflate::decompress_into(inflater, &message.buf, limit, &mut out)?;
                }
                false => deflate::decompress_shared(&message.buf, limit, &mut out)?,
            }
            if message.opcode == OpCode::Text && std::str::from_utf8(&out).is_err() {
                return Err(ProtocolError::new(
                    CloseCode::INVALID_PAYLOAD,
                    "text message is not valid UTF-8",
                ));
            }
            out
        } else {
            if message.opcode == OpCode::Text
                && std::str::from_utf8(&message.buf[message.utf8_valid..]).is_err()
            {
                return Err(ProtocolError::new(
                    CloseCode::INVALID_PAYLOAD,
                    "text message is not valid UTF-8",
                ));
            }
            message.buf
        };
        let data = Bytes::from(data);
        Ok(match message.opcode {
            OpCode::Text => Incoming::Text(data),
            _ => Incoming::Binary(data),
        })
    }
}

/// Consumes header bytes, with `buf[..*len]` the part of the header a previous read left;
/// returns the header and how many bytes of `input` it used once it is complete, or `None`
/// when all of `input` went into a still-partial header.
fn read_header(
    len: &mut u8,
    buf: &mut [u8; 14],
    input: &[u8],
) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    if *len == 0 {
        return match FrameHeader::parse(input)? {
            Some(parsed) => Ok(Some(parsed)),
            None => {
                // Shorter than a header, so shorter than `buf` (the longest header).
                buf[..input.len()].copy_from_slice(input);
                *len = input.len() as u8;
                Ok(None)
            }
        };
    }
    let old = usize::from(*len);
    let take = input.len().min(buf.len() - old);
    buf[old..old + take].copy_from_slice(&input[..take]);
    match FrameHeader::parse(&buf[..old + take])? {
        Some((header, used)) => {
            *len = 0;
            Ok(Some((header, used - old)))
        }
        None => {
            *len = (old + take) as u8;
            Ok(None)
        }
    }
}

/// Parses a close frame's payload (RFC 6455 §5.5.1, §7.4).
fn parse_close(payload: &[u8]) -> Result<Option<(CloseCode, String)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::new(
            CloseCode::PROTOCOL,
            "close frame with a one-byte payload",
        )),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_allowed_on_wire() {
                return Err(ProtocolError::new(
                    CloseCode::PROTOCOL,
                    "close frame with an invalid status code",
                ));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| {
                ProtocolError::new(CloseCode::INVALID_PAYLOAD, "close reason is not UTF-8")
            })?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MAX_SERVER_HEADER;

    /// Encodes a masked client frame.
    pub(crate) fn client_frame(
        fin: bool,
        rsv1: bool,
        opcode: u8,
        payload: &[u8],
        key: [u8; 4],
    ) -> Vec<u8> {
        let mut header = [0u8; MAX_SERVER_HEADER];
        let op = OpCode::from_u8(opcode).unwrap_or(OpCode::Binary);
        let n = crate::frame::encode_header(&mut header, fin, rsv1, op, payload.len());
        header[0] = (header[0] & 0xF0) | opcode;
        let mut out = header[..n].to_vec();
        out[1] |= 0x80;
        out.extend_from_slice(&key);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], key, 0);
        out
    }

    fn decode_all(chunks: &[&[u8]], limits: Limits) -> Result<Vec<Event>, ProtocolError> {
        let mut decoder = Decoder::new(limits, None);
        let mut events = VecDeque::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut events)?;
        }
        Ok(events.into_iter().collect())
    }

    #[test]
    fn decodes_a_frame_split_at_every_byte_boundary() {
        let mut stream = client_frame(true, false, 1, "héllo wörld".as_bytes(), [1, 2, 3, 4]);
        stream.extend(client_frame(true, false, 9, b"ping", [9, 8, 7, 6]));
        stream.extend(client_frame(false, false, 2, &[0u8; 300], [5, 5, 5, 5]));
        stream.extend(client_frame(true, false, 0, &[1u8; 70000], [0, 1, 0, 1]));
        let expected = decode_all(&[&stream], Limits::default()).unwrap();
        assert_eq!(expected.len(), 3);
        for split in 0..=stream.len().min(800) {
            let (a, b) = stream.split_at(split);
            assert_eq!(
                decode_all(&[a, b], Limits::default()).unwrap(),
                expected,
                "split at {split}"
            );
        }
        // Every boundary of the small frames, one byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(&bytes, Limits::default()).unwrap(), expected);
    }

    #[test]
    fn reassembles_fragments_with_interleaved_control_frames() {
        let mut stream = client_frame(false, false, 1, b"frag", [1, 1, 1, 1]);
        stream.extend(client_frame(true, false, 9, b"p", [2, 2, 2, 2]));
        stream.extend(client_frame(false, false, 0, b"men", [3, 3, 3, 3]));
        stream.extend(client_frame(true, false, 0, b"ted", [4, 4, 4, 4]));
        let events = decode_all(&[&stream], Limits::default()).unwrap();
        assert_eq!(
            events,
            vec![
                Event::Ping(Bytes::from_static(b"p")),
                Event::Message(Incoming::Text(Bytes::from_static(b"fragmented"))),
            ]
        );
    }

    #[test]
    fn invalid_utf8_fails_fast_mid_message() {
        let mut decoder = Decoder::new(Limits::default(), None);
        let mut events = VecDeque::new();
        let frame = client_frame(false, false, 1, &[b'a', 0xFF, b'b'], [0, 0, 0, 0]);
        // The frame is not final, yet the invalid byte is reported at once.
        let err = decoder.feed(&frame, &mut events).unwrap_err();
        assert_eq!(err.code, CloseCode::INVALID_PAYLOAD);
        // A code point split across fragments is fine.
        let euro = "€".as_bytes();
        let mut stream = client_frame(false, false, 1, &euro[..1], [1, 2, 3, 4]);
        stream.extend(client_frame(true, false, 0, &euro[1..], [1, 2, 3, 4]));
        let events = decode_all(&[&stream], Limits::default()).unwrap();
        assert_eq!(
            events,
            vec![Event::Message(Incoming::Text(Bytes::from_static(
                "€".as_bytes()
            )))]
        );
        // But not a truncated one at the end of the message.
        let stream = client_frame(true, false, 1, &euro[..2], [1, 2, 3, 4]);
        assert!(decode_all(&[&stream], Limits::default()).is_err());
    }

    #[test]
    fn enforces_limits_with_1009() {
        let limits = Limits {
            max_message_size: 100,
            max_frame_size: 60,
            max_fragments: 3,
        };
        let big_frame = client_frame(true, false, 2, &[0; 61], [0; 4]);
        let mut big_message = client_frame(false, false, 2, &[0; 60], [0; 4]);
        big_message.extend(client_frame(true, false, 0, &[0; 41], [0; 4]));
        let mut many = Vec::new();
        for i in 0..4 {
            many.extend(client_frame(
                i == 3,
                false,
                if i == 0 { 2 } else { 0 },
                b"x",
                [0; 4],
            ));
        }
        for stream in [big_frame, big_message, many] {
            let err = decode_all(&[&stream], limits.clone()).unwrap_err();
            assert_eq!(err.code, CloseCode::TOO_BIG);
        }
    }

    #[test]
    fn protocol_violations_are_1002() {
        let cases: Vec<Vec<u8>> = vec![
            // unmasked
            vec![0x81, 0x01, b'a'],
            // continuation with nothing to continue
            client_frame(true, false, 0, b"a", [0; 4]),
            // RSV1 without deflate
            client_frame(true, true, 1, b"a", [0; 4]),
            // new message inside a fragmented one
            [
                client_frame(false, false, 1, b"a", [0; 4]),
                client_frame(true, false, 1, b"b", [0; 4]),
            ]
            .concat(),
            // close with a one-byte payload and with a forbidden code
            client_frame(true, false, 8, &[3], [0; 4]),
            client_frame(true, false, 8, &1005u16.to_be_bytes(), [0; 4]),
        ];
        for stream in cases {
            let err = decode_all(&[&stream], Limits::default()).unwrap_err();
            assert_eq!(err.code, CloseCode::PROTOCOL, "{stream:?}");
        }
    }

    #[test]
    fn decodes_compressed_messages() {
        let params = crate::deflate::negotiate(
            &[crate::deflate::Offer::default()],
            &crate::deflate::DeflateConfig {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                ..Default::default()
            },
        )
        .unwrap()
        .0;
        let text = "compress me ".repeat(50);
        let mut compressor = crate::deflate::new_compressor(15, 6);
        let mut stream = Vec::new();
        // Two messages with context takeover: the second refers back into the first.
        for _ in 0..2 {
            let mut compressed = Vec::new();
            crate::deflate::compress_into(&mut compressor, text.as_bytes(), &mut compressed);
            stream.extend(client_frame(true, true, 1, &compressed, [7, 7, 7, 7]));
        }
        let mut decoder = Decoder::new(Limits::default(), Some(params));
        let mut events = VecDeque::new();
        for byte in stream.chunks(3) {
            decoder.feed(byte, &mut events).unwrap();
        }
        let expected = Event::Message(Incoming::Text(Bytes::from(text)));
        assert_eq!(Vec::from(events), vec![expected.clone(), expected]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A message split into fragments at the given cut points, each fragment masked with
        /// its own key, with a ping interleaved after chosen fragments.
        fn encode_message(
            text: bool,
            payload: &[u8],
            cuts: &[usize],
            keys: &[[u8; 4]],
            pings_after: &[bool],
        ) -> Vec<u8> {
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
            points.sort_unstable();
            points.dedup();
            let mut bounds = vec![0];
            bounds.extend(points.into_iter().filter(|&p| p > 0 && p < payload.len()));
            bounds.push(payload.len());
            let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &payload[w[0]..w[1]]).collect();
            let mut out = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                let first = i == 0;
                let last = i + 1 == pieces.len();
                let opcode = if !first {
                    0
                } else if text {
                    1
                } else {
                    2
                };
                out.extend(client_frame(
                    last,
                    false,
                    opcode,
                    piece,
                    keys[i % keys.len()],
                ));
                if !last && pings_after.get(i).copied().unwrap_or(false) {
                    out.extend(client_frame(true, false, 9, b"hi", keys[0]));
                }
            }
            out
        }

        proptest! {
            #[test]
            fn any_message_and_fragmentation_round_trips(
                text in any::<bool>(),
                ascii in "[ -~]{0,300}",
                binary in proptest::collection::vec(any::<u8>(), 0..300),
                cuts in proptest::collection::vec(any::<usize>(), 0..6),
                keys in proptest::collection::vec(any::<[u8; 4]>(), 1..4),
                pings_after in proptest::collection::vec(any::<bool>(), 0..6),
                read_size in 1usize..64,
            ) {
                let payload = if text { ascii.into_bytes() } else { binary };
                let stream = encode_message(text, &payload, &cuts, &keys, &pings_after);
                let mut decoder = Decoder::new(Limits::default(), None);
                let mut events = VecDeque::new();
                for chunk in stream.chunks(read_size) {
                    decoder.feed(chunk, &mut events).unwrap();
                }
                let messages: Vec<Event> = events
                    .into_iter()
                    .filter(|e| !matches!(e, Event::Ping(_)))
                    .collect();
                let data = Bytes::from(payload);
                let expected = if text { Incoming::Text(data) } else { Incoming::Binary(data) };
                prop_assert_eq!(messages, vec![Event::Message(expected)]);
                prop_assert!(!decoder.in_progress());
            }

            #[test]
            fn server_frames_parse_back(
                payload in proptest::collection::vec(any::<u8>(), 0..70_000),
                fin in any::<bool>(),
                rsv1 in any::<bool>(),
            ) {
                let frame = crate::frame::Frame::with_flags(fin, rsv1, OpCode::Binary, &payload);
                let (header, len) = FrameHeader::parse(frame.as_bytes()).unwrap().unwrap();
                prop_assert_eq!(header.fin, fin);
                prop_assert_eq!(header.rsv1, rsv1);
                prop_assert_eq!(header.mask, None);
                prop_assert_eq!(header.payload_len as usize, payload.len());
                prop_assert_eq!(&frame.as_bytes()[len..], &payload[..]);
            }

            #[test]
            fn compressed_messages_round_trip(
                words in proptest::collection::vec("[a-e]{1,8}", 0..200),
                read_size in 1usize..100,
            ) {
                let text = words.join(" ");
                let mut compressed = Vec::new();
                crate::deflate::compress_shared(15, 1, text.as_bytes(), &mut compressed);
                let stream = client_frame(true, true, 1, &compressed, [1, 2, 3, 4]);
                let params = crate::deflate::negotiate(
                    &[crate::deflate::Offer { client_no_context_takeover: true, ..Default::default() }],
                    &crate::deflate::DeflateConfig::default(),
                ).unwrap().0;
                let mut decoder = Decoder::new(Limits::default(), Some(params));
                let mut events = VecDeque::new();
                for chunk in stream.chunks(read_size) {
                    decoder.feed(chunk, &mut events).unwrap();
                }
                prop_assert_eq!(
                    Vec::from(events),
                    vec![Event::Message(Incoming::Text(Bytes::from(text)))]
                );
            }
        }
    }
}
