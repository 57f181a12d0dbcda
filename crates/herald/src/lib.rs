//! Herald: a real-time push server speaking the Centrifugo client protocol and server API.

pub mod auth;
pub mod channel;
pub mod cli;
pub mod config;
pub mod protocol;

/// The WebSocket layer (RFC 6455 + permessage-deflate), re-exported from `herald-ws`.
pub use herald_ws as ws;
