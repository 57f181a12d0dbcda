//! `http_stream`, `sse` and `emulation`: the streaming transports the SDKs fall back to where a
//! WebSocket cannot get through, and the endpoint that carries their clients' commands.

use serde::{Deserialize, Serialize};

/// `http_stream`: the bidirectional HTTP-streaming transport (a POST whose response streams
/// the connection's replies and pushes; its commands come through `emulation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpStreamConfig {
    /// Serve the transport (off by default, as in Centrifugo).
    pub enabled: bool,
    /// Path of the endpoint. Default `/connection/http_stream`.
    pub handler_prefix: String,
    /// Largest connect request (the POST body), in bytes. Default 65536.
    pub max_request_body_size: usize,
}

impl Default for HttpStreamConfig {
    fn default() -> Self {
        HttpStreamConfig {
            enabled: false,
            handler_prefix: crate::transport::http_stream::PATH.into(),
            max_request_body_size: 65536,
        }
    }
}

/// `sse`: the bidirectional SSE transport (an EventSource GET, its connect command in the
/// `cf_connect` query parameter, or a POST; its commands come through `emulation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// Serve the transport (off by default, as in Centrifugo).
    pub enabled: bool,
    /// Path of the endpoint. Default `/connection/sse`.
    pub handler_prefix: String,
    /// Largest connect request (a POST body), in bytes. Default 65536.
    pub max_request_body_size: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            enabled: false,
            handler_prefix: crate::transport::http_stream::SSE_PATH.into(),
            max_request_body_size: 65536,
        }
    }
}

/// `emulation`: where the SDK of a streaming connection POSTs its commands (served whenever a
/// streaming transport is enabled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulationConfig {
    /// Path of the endpoint. Default `/emulation`.
    pub handler_prefix: String,
    /// Largest emulation request, in bytes. Default 65536.
    pub max_request_body_size: usize,
}

impl Default for EmulationConfig {
    fn default() -> Self {
        EmulationConfig {
            handler_prefix: crate::transport::emulation::PATH.into(),
            max_request_body_size: 65536,
        }
    }
}

/// `uni_http_stream`: the unidirectional HTTP-streaming transport, for clients with no SDK
/// (`curl -N`): the connect request is the POST body, and the stream carries pushes only,
/// newline-delimited (see [`crate::transport::http_stream`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UniHttpStreamConfig {
    /// Serve the transport (off by default, as in Centrifugo).
    pub enabled: bool,
    /// Path of the endpoint. Default `/connection/uni_http_stream`.
    pub handler_prefix: String,
    /// Largest connect request (the POST body), in bytes. Default 65536.
    pub max_request_body_size: usize,
}

impl Default for UniHttpStreamConfig {
    fn default() -> Self {
        UniHttpStreamConfig {
            enabled: false,
            handler_prefix: crate::transport::http_stream::UNI_PATH.into(),
            max_request_body_size: 65536,
        }
    }
}

/// `uni_sse`: the unidirectional SSE transport, for a plain `EventSource`: the connect request
/// is the `cf_connect` query parameter of a GET (or a POST body), and the stream carries
/// pushes only, one event each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UniSseConfig {
    /// Serve the transport (off by default, as in Centrifugo).
    pub enabled: bool,
    /// Path of the endpoint. Default `/connection/uni_sse`.
    pub handler_prefix: String,
    /// Largest connect request (`cf_connect` or a POST body), in bytes. Default 65536.
    pub max_request_body_size: usize,
}

impl Default for UniSseConfig {
    fn default() -> Self {
        UniSseConfig {
            enabled: false,
            handler_prefix: crate::transport::http_stream::UNI_SSE_PATH.into(),
            max_request_body_size: 65536,
        }
    }
}
