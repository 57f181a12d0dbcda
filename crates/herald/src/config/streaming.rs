//! `http_stream`, `sse` and `emulation`: the streaming transports the SDKs fall back to where a
//! WebSocket cannot get through, and the endpoint that carries their clients' commands; and
//! the unidirectional transports for clients with no SDK (`uni_http_stream`, `uni_sse`,
//! `uni_websocket`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::go_duration;

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
    /// Answer a refused connect with an HTTP response instead of a stream that carries only a
    /// `disconnect` push.
    pub connect_code_to_http_response: ConnectCodeToHttpResponse,
}

impl Default for UniHttpStreamConfig {
    fn default() -> Self {
        UniHttpStreamConfig {
            enabled: false,
            handler_prefix: crate::transport::http_stream::UNI_PATH.into(),
            max_request_body_size: 65536,
            connect_code_to_http_response: ConnectCodeToHttpResponse::default(),
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
    /// Answer a refused connect with an HTTP response instead of a stream that carries only a
    /// `disconnect` push.
    pub connect_code_to_http_response: ConnectCodeToHttpResponse,
}

impl Default for UniSseConfig {
    fn default() -> Self {
        UniSseConfig {
            enabled: false,
            handler_prefix: crate::transport::http_stream::UNI_SSE_PATH.into(),
            max_request_body_size: 65536,
            connect_code_to_http_response: ConnectCodeToHttpResponse::default(),
        }
    }
}

/// `connect_code_to_http_response` of a unidirectional stream: when enabled, the stream's
/// response waits for the connect's outcome, and a refused connect is answered with an HTTP
/// status (and body) instead of a 200 stream whose only message is a `disconnect` push —
/// what a plain `EventSource` or `fetch` can act on (an `EventSource` never sees a push's
/// code, but fails on a non-200 status).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectCodeToHttpResponse {
    /// Turn the transform on.
    pub enabled: bool,
    /// The refusal codes to transform, first match wins; a refusal matching none is answered
    /// 500 with the body `Internal Server Error`, as in Centrifugo.
    pub transforms: Vec<ConnectCodeTransform>,
}

/// One entry of [`ConnectCodeToHttpResponse::transforms`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectCodeTransform {
    /// The code of the refusal: a connect error code (101 unauthorized, 109 token expired…)
    /// or a disconnect code (3501 bad request, 3504 connection limit…).
    pub code: u32,
    /// The response it becomes.
    pub to: HttpResponseTransform,
}

/// The HTTP response a refused connect becomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpResponseTransform {
    /// The status code (required).
    pub status_code: u16,
    /// The body, as text; empty: the refusal's message or reason.
    pub body: String,
}

impl ConnectCodeToHttpResponse {
    /// The response for a connect refused with `code` (`message`: the error's message or the
    /// disconnect's reason): the matching transform's status and body (the message when the
    /// transform has none), or 500 `Internal Server Error` when none matches.
    pub fn response_for(&self, code: u32, message: &str) -> (u16, String) {
        match self.transforms.iter().find(|t| t.code == code) {
            Some(t) if t.to.body.is_empty() => (t.to.status_code, message.to_owned()),
            Some(t) => (t.to.status_code, t.to.body.clone()),
            None => (500, "Internal Server Error".to_owned()),
        }
    }

    /// What is wrong with the transforms, each naming the option at `at`.
    fn problems(&self, at: &str, problems: &mut Vec<String>) {
        for (i, t) in self.transforms.iter().enumerate() {
            if t.code == 0 {
                problems.push(format!("{at}.transforms[{i}].code must be set"));
            }
            if !(100..=999).contains(&t.to.status_code) {
                problems.push(format!(
                    "{at}.transforms[{i}].to.status_code must be an HTTP status (100-999), got {}",
                    t.to.status_code
                ));
            }
        }
    }
}

/// `uni_websocket`: the unidirectional WebSocket, for clients with no SDK (`wscat`, a browser's
/// plain `WebSocket`): the connect request is the first message (or the `cf_connect` query
/// parameter), and the server sends pushes only, each a bare push in a text frame of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UniWebSocketConfig {
    /// Serve the transport (off by default, as in Centrifugo).
    pub enabled: bool,
    /// Path of the endpoint. Default `/connection/uni_websocket`.
    pub handler_prefix: String,
    /// Offer permessage-deflate (RFC 7692).
    pub compression: bool,
    /// Do not compress messages smaller than this many bytes.
    pub compression_min_size: usize,
    /// Deflate level 0–9. Default 1.
    pub compression_level: u32,
    /// Centrifugo's read buffer size: warned about, Herald sizes its buffers itself.
    pub read_buffer_size: usize,
    /// Centrifugo's write buffer pool: warned about, as above.
    pub use_write_buffer_pool: bool,
    /// Centrifugo's write buffer size: warned about, as above.
    pub write_buffer_size: usize,
    /// A socket that takes no output for this long while output waits is dropped. Default 1s.
    #[serde(with = "go_duration")]
    pub write_timeout: Duration,
    /// Largest message (the connect request) accepted from a client, in bytes. Default 65536.
    pub message_size_limit: usize,
    /// Largest message after decompression; 0 = the same as `message_size_limit`.
    pub decompressed_message_size_limit: usize,
    /// Centrifugo's switch back to closing without a close frame: warned about, Herald always
    /// sends one.
    pub disable_closing_handshake: bool,
    /// Say a disconnect with the close frame only, without the `disconnect` push before it.
    pub disable_disconnect_push: bool,
    /// Centrifugo's permission to join pushes into one frame: warned about, Herald sends each
    /// push in a frame of its own (which a client that splits joined frames reads alike).
    pub join_push_messages: bool,
}

impl Default for UniWebSocketConfig {
    fn default() -> Self {
        UniWebSocketConfig {
            enabled: false,
            handler_prefix: crate::transport::uni_websocket::PATH.into(),
            compression: false,
            compression_min_size: 0,
            compression_level: 1,
            read_buffer_size: 0,
            use_write_buffer_pool: false,
            write_buffer_size: 0,
            write_timeout: Duration::from_secs(1),
            message_size_limit: 65_536,
            decompressed_message_size_limit: 0,
            disable_closing_handshake: false,
            disable_disconnect_push: false,
            join_push_messages: false,
        }
    }
}

/// What is wrong in the sections of this module, each problem naming its option (called by
/// [`super::Config::validate`]).
pub(super) fn problems(config: &super::Config, problems: &mut Vec<String>) {
    for (name, prefix) in [
        ("http_stream", &config.http_stream.handler_prefix),
        ("sse", &config.sse.handler_prefix),
        ("emulation", &config.emulation.handler_prefix),
        ("uni_http_stream", &config.uni_http_stream.handler_prefix),
        ("uni_sse", &config.uni_sse.handler_prefix),
        ("uni_websocket", &config.uni_websocket.handler_prefix),
    ] {
        if !prefix.starts_with('/') {
            problems.push(format!(
                "{name}.handler_prefix must start with \"/\", got \"{prefix}\""
            ));
        }
    }
    config
        .uni_http_stream
        .connect_code_to_http_response
        .problems("uni_http_stream.connect_code_to_http_response", problems);
    config
        .uni_sse
        .connect_code_to_http_response
        .problems("uni_sse.connect_code_to_http_response", problems);
    let uni = &config.uni_websocket;
    if uni.message_size_limit == 0 {
        problems.push("uni_websocket.message_size_limit must be greater than zero".to_owned());
    }
    if uni.write_timeout.is_zero() {
        problems.push("uni_websocket.write_timeout must be greater than zero".to_owned());
    }
    if uni.compression_level > 9 {
        problems.push(format!(
            "uni_websocket.compression_level must be between 0 and 9, got {}",
            uni.compression_level
        ));
    }
}
