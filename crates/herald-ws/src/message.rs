//! Whole messages: [`Message`], what the server sends to many connections, and [`Incoming`],
//! what a connection received.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::deflate::{self, DeflateParams};
use crate::frame::{Frame, FrameBuf, MAX_SERVER_HEADER, OpCode};

/// A message the server sends, shared by every connection it goes to (wrap it in an `Arc`).
///
/// It holds the uncompressed frame, encoded when the message is made, and, for
/// permessage-deflate connections without server context takeover, the compressed frame for
/// each window size, made by the first connection that needs it. So a message is framed once
/// and compressed at most once per window size, however many connections it reaches.
pub struct Message {
    plain: Frame,
    opcode: OpCode,
    /// Index: window bits − 9 (window 8 is never compressed, see [`DeflateParams`]).
    deflated: [OnceLock<Frame>; 7],
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("opcode", &self.opcode)
            .field("len", &self.payload().len())
            .finish()
    }
}

impl Message {
    /// A text message. The caller guarantees `text` is UTF-8 by passing a `str`.
    pub fn text(text: &str) -> Message {
        Message::from_frame(Frame::new(OpCode::Text, text.as_bytes()), OpCode::Text)
    }

    /// A binary message.
    pub fn binary(data: &[u8]) -> Message {
        Message::from_frame(Frame::new(OpCode::Binary, data), OpCode::Binary)
    }

    /// A message of the given data opcode (text or binary), copying `payload` into its frame.
    /// For text, `payload` must be UTF-8.
    pub fn new(opcode: OpCode, payload: &[u8]) -> Message {
        Message::from_frame(Frame::new(opcode, payload), opcode)
    }

    /// A message whose payload was serialized straight into a [`FrameBuf`] (no copy). For
    /// text, the payload must be UTF-8, which any JSON serializer guarantees.
    pub fn from_frame_buf(buf: FrameBuf, opcode: OpCode) -> Message {
        Message::from_frame(buf.finish(opcode), opcode)
    }

    fn from_frame(plain: Frame, opcode: OpCode) -> Message {
        Message {
            plain,
            opcode,
            deflated: Default::default(),
        }
    }

    /// The payload, uncompressed.
    pub fn payload(&self) -> &[u8] {
        self.plain.payload()
    }

    /// Whether this is a text message.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// The uncompressed frame.
    pub fn frame(&self) -> &Frame {
        &self.plain
    }

    /// The frame to send on a connection with the given deflate parameters, compressing it on
    /// first use for this window size when the connection shares compression.
    pub fn frame_for(&self, deflate: Option<&DeflateParams>) -> &Frame {
        let Some(params) = deflate else {
            return &self.plain;
        };
        if self.payload().len() < params.min_size || params.server_max_window_bits < 9 {
            return &self.plain;
        }
        let bits = params.server_max_window_bits.min(15);
        self.deflated[usize::from(bits - 9)].get_or_init(|| {
            let mut buf = FrameBuf::with_capacity(self.payload().len() / 2 + 16);
            deflate::compress_shared(bits, params.level, self.payload(), buf.vec_mut());
            if buf.payload_len() >= self.payload().len() {
                // Incompressible: sending it plain is smaller and allowed.
                return self.plain.clone();
            }
            buf.finish_with_flags(true, true, self.opcode)
        })
    }

    /// Whether the frame for `deflate` needs a per-connection compressor (the connection keeps
    /// its compression context) rather than the shared frame.
    pub(crate) fn needs_own_compression(&self, deflate: Option<&DeflateParams>) -> bool {
        matches!(deflate, Some(p) if !p.shares_compression()
            && self.payload().len() >= p.min_size
            && p.server_max_window_bits >= 9)
    }

    /// Compresses the payload with a connection's own context.
    pub(crate) fn compress_with(&self, compress: &mut flate2::Compress) -> Frame {
        let mut buf = FrameBuf::with_capacity(self.payload().len() / 2 + 16);
        deflate::compress_into(compress, self.payload(), buf.vec_mut());
        buf.finish_with_flags(true, true, self.opcode)
    }
}

// The header room of a FrameBuf must match what `Frame` encodes.
const _: () = assert!(MAX_SERVER_HEADER == 10);

/// A complete message received from the peer: data messages are reassembled from their
/// fragments, decompressed, and (for text) checked to be UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A pong frame's payload (pings are answered by the connection itself).
    Pong(Bytes),
    /// Not from the peer: the application's own wake-up, asked for by another task with
    /// [`Outbox::notify`] (a deadline of the application's that passed, say).
    ///
    /// [`Outbox::notify`]: crate::Outbox::notify
    Wake,
}

impl Incoming {
    /// The payload bytes (empty for [`Incoming::Wake`]).
    pub fn data(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::from_static(b"");
        match self {
            Incoming::Text(b) | Incoming::Binary(b) | Incoming::Pong(b) => b,
            Incoming::Wake => &EMPTY,
        }
    }

    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            // The connection validated the UTF-8 before handing the message out.
            Incoming::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}
