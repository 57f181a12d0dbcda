//! Herald's WebSocket layer: RFC 6455 with permessage-deflate (RFC 7692), server side, built
//! for fan-out.
//!
//! * [`handshake`] validates an upgrade request that an HTTP server (hyper) parsed and answers
//!   it, negotiating a subprotocol and compression.
//! * [`Frame`] and [`Message`] are encoded once and shared: writing one message to ten thousand
//!   connections clones a reference, never the bytes, and compresses at most once per window
//!   size.
//! * [`WebSocket`] drives one connection: it decodes with a sans-IO [`Decoder`] from a read
//!   buffer shared by the thread, answers pings, runs the close handshake and timeouts, and
//!   writes everything queued in its [`Outbox`] with one vectored write.
//! * Over TLS (`wss://`, a hyper connection accepted with tokio-rustls), the same connection
//!   runs rustls's sans-I/O session between its socket and its frames (see `tls`).

// No unsafe code: framing, masking and inflate/deflate are all safe Rust, and the crate parses
// bytes from untrusted peers.
#![forbid(unsafe_code)]

pub mod connection;
pub mod contention;
pub mod decoder;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod instant;
pub mod message;
pub mod outbox;
pub mod pacer;
mod tls;

pub use connection::{Config, WebSocket};
pub use decoder::{Decoder, Event, Limits};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{CloseCode, Error, ProtocolError};
pub use frame::{Frame, FrameBuf, FrameHeader, OpCode};
pub use handshake::{HandshakeConfig, HandshakeError, Negotiated};
pub use instant::PackedInstant;
pub use message::{Incoming, Message};
pub use outbox::{Budget, CloseRequest, Outbox, Outgoing, PushError, Queue};
pub use pacer::Pacer;
