//! The HTTP side of the schema: `http_server` (the one listener, with TLS) and what it serves:
//! `websocket`, `http_api`, `admin`, `prometheus` and `health`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::Opaque;
use super::duration::go_duration;

/// Serde adapter for options Centrifugo types as strings but that people write as numbers
/// (`http_server.internal_port`).
mod string_or_number {
    use super::*;

    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Null => Ok(String::new()),
            other => Err(serde::de::Error::custom(format!(
                "expected a string or a number, got {other}"
            ))),
        }
    }
}

/// `http_server`: the one listener for every HTTP route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Interface to bind; `""`, `"0.0.0.0"` or `"::"` mean all interfaces. Default `127.0.0.1`
    /// (Centrifugo's default is all interfaces; Herald starts private).
    pub address: String,
    /// Port to bind; `0` picks a free port (tests). Default 8000.
    pub port: u16,
    /// Centrifugo: a separate address for internal endpoints (API, metrics, admin). Not yet used.
    pub internal_address: String,
    /// Centrifugo: a separate port for internal endpoints. Not yet used.
    #[serde(with = "string_or_number")]
    pub internal_port: String,
    /// TLS on the listener (`https://`, `wss://`); see [`TlsConfig`].
    pub tls: TlsConfig,
    /// Centrifugo ACME certificates. Not implemented: refused when enabled (see
    /// `crate::config::audit`).
    pub tls_autocert: Opaque,
    /// Centrifugo: TLS only on the external port. Not implemented.
    pub tls_external: bool,
    /// Centrifugo TLS for internal endpoints. Not implemented.
    pub internal_tls: Opaque,
    /// Centrifugo HTTP/3. Not implemented.
    pub http3: Opaque,
    /// Centrifugo h2c on the external port. Not implemented.
    pub h2c_external: bool,
    /// Herald: how long a client may take to send a request's body once its headers are in
    /// (server API, admin API, demo sign-in). A slower body gets HTTP 408 and the connection is
    /// closed. Default 10 s (the header read has its own fixed 10 s).
    #[serde(with = "go_duration")]
    pub body_read_timeout: Duration,
    /// Herald: how many requests may be having their body read before they are authorized
    /// (admin log-in, demo sign-in) at once; more get HTTP 503 with `Retry-After`. `0` means no
    /// limit. Default 128.
    pub unauthenticated_request_limit: usize,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            address: "127.0.0.1".into(),
            port: 8000,
            internal_address: String::new(),
            internal_port: String::new(),
            tls: TlsConfig::default(),
            tls_autocert: None,
            tls_external: false,
            internal_tls: None,
            http3: None,
            h2c_external: false,
            body_read_timeout: Duration::from_secs(10),
            unauthenticated_request_limit: 128,
        }
    }
}

/// `http_server.tls`: TLS termination on the listener, with Centrifugo v6's option names.
///
/// The certificate chain and key come from files (`cert_pem_file`/`key_pem_file`, reloaded on
/// SIGHUP and when they change, see `crate::tls`), base64 (`*_pem_b64`) or inline PEM
/// (`*_pem`). Centrifugo takes the first source set and ignores the others; Herald refuses a
/// config that sets two, so that what is served is never a surprise. Client certificates
/// (`client_ca_*`, mutual TLS) are not implemented: refused while TLS is on, warned while off
/// (see `crate::config::audit`). `server_ca_*`, `insecure_skip_verify` and `server_name` only
/// configure outgoing connections in Centrifugo's shared TLS type and do nothing on a
/// listener: warned.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve HTTPS and WSS instead of plain HTTP and WS on `http_server.port`.
    pub enabled: bool,
    /// The certificate chain, inline PEM (leaf first).
    pub cert_pem: String,
    /// The certificate chain, base64 of its PEM.
    pub cert_pem_b64: String,
    /// Path of the certificate chain's PEM file (leaf first); reloaded when it changes.
    pub cert_pem_file: String,
    /// The private key (PKCS#8, PKCS#1 or SEC1), inline PEM.
    pub key_pem: String,
    /// The private key, base64 of its PEM.
    pub key_pem_b64: String,
    /// Path of the private key's PEM file; reloaded when it changes.
    pub key_pem_file: String,
    /// Centrifugo: CA to verify servers Herald connects to. No effect on a listener.
    pub server_ca_pem: String,
    /// Centrifugo: as `server_ca_pem`, base64.
    pub server_ca_pem_b64: String,
    /// Centrifugo: as `server_ca_pem`, from a file.
    pub server_ca_pem_file: String,
    /// Centrifugo: CA that client certificates must chain to (mutual TLS). Not implemented:
    /// refused while TLS is on.
    pub client_ca_pem: String,
    /// Centrifugo: as `client_ca_pem`, base64. Not implemented.
    pub client_ca_pem_b64: String,
    /// Centrifugo: as `client_ca_pem`, from a file. Not implemented.
    pub client_ca_pem_file: String,
    /// Centrifugo: skip verifying servers Herald connects to. No effect on a listener.
    pub insecure_skip_verify: bool,
    /// Centrifugo: the name to verify on servers Herald connects to. No effect on a listener.
    pub server_name: String,
}

impl TlsConfig {
    /// What is wrong with an enabled TLS config: it needs exactly one source for the
    /// certificate and one for the key. Each message names the options. (Options Herald does
    /// not implement here, such as `client_ca_pem`, are [`crate::config::audit`]'s.)
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        let at = "http_server.tls";
        for (what, sources) in [
            (
                "certificate",
                [
                    ("cert_pem_file", &self.cert_pem_file),
                    ("cert_pem_b64", &self.cert_pem_b64),
                    ("cert_pem", &self.cert_pem),
                ],
            ),
            (
                "key",
                [
                    ("key_pem_file", &self.key_pem_file),
                    ("key_pem_b64", &self.key_pem_b64),
                    ("key_pem", &self.key_pem),
                ],
            ),
        ] {
            let named = |(name, _): &(&str, &String)| format!("{at}.{name}");
            let set: Vec<String> = sources
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(named)
                .collect();
            match set.len() {
                0 => problems.push(format!(
                    "{at}.enabled needs a {what}: set one of {}",
                    sources.iter().map(named).collect::<Vec<_>>().join(", ")
                )),
                1 => {}
                _ => problems.push(format!(
                    "{at}: the {what} is set twice ({}): keep one",
                    set.join(" and ")
                )),
            }
        }
        problems
    }
}

/// `websocket`: the bidirectional WebSocket transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Turn the WebSocket endpoint off.
    pub disabled: bool,
    /// Path of the WebSocket endpoint. Default `/connection/websocket`.
    pub handler_prefix: String,
    /// Offer permessage-deflate (RFC 7692).
    pub compression: bool,
    /// Do not compress messages smaller than this many bytes.
    pub compression_min_size: usize,
    /// Deflate level 0–9 (0 = store only). Default 1.
    pub compression_level: u32,
    /// Centrifugo read buffer size. Accepted.
    pub read_buffer_size: usize,
    /// Centrifugo write buffer pool. Accepted.
    pub use_write_buffer_pool: bool,
    /// Centrifugo write buffer size. Accepted.
    pub write_buffer_size: usize,
    /// A write that takes longer than this disconnects the client. Default 1s.
    #[serde(with = "go_duration")]
    pub write_timeout: Duration,
    /// Largest message accepted from a client, in bytes. Default 65536.
    pub message_size_limit: usize,
    /// Largest message after decompression; 0 = same as `message_size_limit`.
    pub decompressed_message_size_limit: usize,
    /// Herald: a connection that wrote less than this long ago waits until this long after
    /// that write before it writes again, so that a burst of publications leaves in one system
    /// call instead of one per message; the first message after a quiet period goes out at
    /// once, and so does a reply to the client's own command. `0s` writes every message as
    /// soon as it is queued. Default 5ms: of 2, 3, 5 and 8 ms it gave the lowest p99 at
    /// 1,000 subscribers × 1,000 msg/s (bench/RESULTS.md).
    #[serde(with = "go_duration")]
    pub write_coalesce: Duration,
    /// Herald: write pacing's budget, in writes per second per worker thread. While more
    /// connections are busy than `write_budget × write_coalesce` per worker, each one's wait
    /// grows so that all of them together stay near this many writes a second (see
    /// `herald_ws::Pacer`). Default 50,000: about a third of a core's time in loopback
    /// `sendmsg`. While the server's threads wait for a core (the machine is overcommitted)
    /// the budget in force shrinks on its own, to as little as 40 % of this; lower it further
    /// by hand on a machine the server shares with busy processes.
    pub write_budget: u64,
    /// Herald: the longest wait write pacing may give a busy connection. Default 200ms; at
    /// most 200ms.
    #[serde(with = "go_duration")]
    pub write_max_hold: Duration,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            disabled: false,
            handler_prefix: crate::server::WEBSOCKET_PATH.into(),
            compression: false,
            compression_min_size: 0,
            compression_level: 1,
            read_buffer_size: 0,
            use_write_buffer_pool: false,
            write_buffer_size: 0,
            write_timeout: Duration::from_secs(1),
            message_size_limit: 65_536,
            decompressed_message_size_limit: 0,
            write_coalesce: Duration::from_millis(5),
            write_budget: 50_000,
            write_max_hold: Duration::from_millis(200),
        }
    }
}

/// `http_api`: the server HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpApiConfig {
    /// Turn the API off.
    pub disabled: bool,
    /// Path prefix of the API. Default `/api`.
    pub handler_prefix: String,
    /// API key expected in `X-API-Key` / `Authorization: apikey …` / `?api_key=`.
    pub key: String,
    /// `transport` makes API errors HTTP status codes (see protocol.md §8).
    pub error_mode: String,
    /// Centrifugo: expose on the external port when an internal port is set. Accepted.
    pub external: bool,
    /// DANGEROUS: no API key required.
    pub insecure: bool,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            disabled: false,
            handler_prefix: "/api".into(),
            key: String::new(),
            error_mode: String::new(),
            external: false,
            insecure: false,
        }
    }
}

/// `admin`: the admin web UI.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin UI.
    pub enabled: bool,
    /// Path prefix of the admin UI; empty = root.
    pub handler_prefix: String,
    /// Password to log into the admin UI.
    pub password: String,
    /// Secret that signs admin session tokens.
    pub secret: String,
    /// DANGEROUS: no admin login.
    pub insecure: bool,
    /// Serve the UI from this directory instead of the embedded one.
    pub web_path: String,
    /// Proxy the UI to this address (UI development).
    pub web_proxy_address: String,
    /// Centrifugo: expose on the external port. Accepted.
    pub external: bool,
}

/// `prometheus`: metrics endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Serve metrics.
    pub enabled: bool,
    /// Path of the metrics endpoint. Default `/metrics`.
    pub handler_prefix: String,
    /// Centrifugo: per-handler HTTP metrics. Accepted.
    pub instrument_http_handlers: bool,
    /// Centrifugo: recovered-publications histogram. Accepted.
    pub recovered_publications_histogram: bool,
    /// Centrifugo: native histograms. Accepted.
    pub native_histograms: bool,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            enabled: false,
            handler_prefix: "/metrics".into(),
            instrument_http_handlers: false,
            recovered_publications_histogram: false,
            native_histograms: false,
        }
    }
}

/// `health`: health-check endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Serve the health check.
    pub enabled: bool,
    /// Path of the health endpoint. Default `/health`.
    pub handler_prefix: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: false,
            handler_prefix: "/health".into(),
        }
    }
}
