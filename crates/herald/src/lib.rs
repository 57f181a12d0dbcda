//! Herald: a real-time push server speaking the Centrifugo client protocol and server API.

pub mod alarm;
pub mod api;
pub mod auth;
pub mod channel;
pub mod cli;
pub mod client;
pub mod client_id;
pub mod config;
pub mod control;
pub mod delta;
pub mod demo_secrets;
pub mod engine;
pub mod glob;
pub mod http_guard;
pub mod hub;
pub mod keepalive;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod policy;
pub mod prepared;
pub mod protocol;
pub mod server;
pub mod session;
pub mod sync;
pub mod tags_filter;
pub mod time;
pub mod tls;
pub mod transport;
pub mod web;
pub mod webhooks;

/// The WebSocket layer (RFC 6455 + permessage-deflate), re-exported from `herald-ws`.
pub use herald_ws as ws;
