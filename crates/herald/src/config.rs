//! Herald's configuration: one typed [`Config`], read from a file (JSON, TOML or YAML), then
//! from `HERALD_*` environment variables, then from command-line flags (applied by `main`).
//!
//! Option names and nesting follow Centrifugo v6 (`http_server.port`, `client.token.hmac_secret_key`,
//! `channel.namespaces[].history_size`, …) so that a Centrifugo config file works unchanged.
//! Centrifugo sections that Herald does not implement yet (`grpc_api`, `consumers`, `proxies`…)
//! are accepted as opaque values; [`crate::config_audit`] decides for every accepted option that
//! Herald does not implement whether setting it is refused ([`Config::validate`]) or warned
//! about ([`Config::warnings`]).
//!
//! Anything else is an error that names the option with its full path: a typo such as
//! `client.pingg_interval` gives `unknown option "client.pingg_interval" (did you mean
//! "client.ping_interval"?)`, and a value of the wrong type gives e.g.
//! `client.ping_interval: expected a duration like "25s", got 25`.
//!
//! Durations are Go-style strings (`"25s"`, `"720h"`, `"1m30s"`, `"500ms"`), as in Centrifugo.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Prefix of the environment variables that override config options:
/// `HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY` sets `client.token.hmac_secret_key`.
pub const ENV_PREFIX: &str = "HERALD_";

/// The most worker threads `workers` may ask for: far more than any machine's cores, and few
/// enough that a typo (an extra zero or three) is an error rather than thousands of threads.
pub const MAX_WORKERS: usize = 1024;

/// The file name `herald genconfig` writes, and that the CLI reads when no `--config` is given
/// and the file exists in the working directory (as Centrifugo does).
pub const DEFAULT_CONFIG_FILE: &str = "config.json";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a configuration could not be loaded, parsed or accepted.
///
/// Every message names the file, option path or environment variable at fault so that a user can
/// fix it without reading Herald's source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An explicitly named config file does not exist.
    #[error("config file {} not found (create one with `herald genconfig`)", .path.display())]
    NotFound {
        /// The path that was asked for.
        path: PathBuf,
    },
    /// The config file exists but could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file name does not say which format the file is in.
    #[error(
        "cannot tell the format of config file {}: name it *.json, *.toml, *.yaml or *.yml",
        .path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The text is not valid JSON/TOML/YAML.
    #[error("{origin} is not valid {format}: {message}")]
    Syntax {
        /// Where the text came from (a file path, or "config").
        origin: String,
        /// "JSON", "TOML" or "YAML".
        format: &'static str,
        /// The parser's message, with line and column where the parser gives them.
        message: String,
    },
    /// An option Herald (and Centrifugo) does not know: usually a typo.
    #[error("unknown option \"{path}\"{}", unknown_hint(.suggestion.as_deref(), .origin.as_deref()))]
    UnknownOption {
        /// Full dotted path, e.g. `client.pingg_interval` or `channel.namespaces[0].presense`.
        path: String,
        /// The closest known option at the same level, if one is close.
        suggestion: Option<String>,
        /// The environment variable the option came from, if it came from one.
        origin: Option<String>,
    },
    /// An option has a value of the wrong type or an unusable value.
    #[error("{path}{}: {message}", origin_suffix(.origin.as_deref()))]
    InvalidValue {
        /// Full dotted path of the option.
        path: String,
        /// What was expected and what was found.
        message: String,
        /// The environment variable the value came from, if it came from one.
        origin: Option<String>,
    },
    /// An environment variable could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// The options parse but do not make sense together (see [`Config::validate`]).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// Several problems, all reported at once (each names its option).
    #[error("{} problems in the configuration:{}", .0.len(), list_problems(.0))]
    Problems(Vec<ConfigError>),
    /// A config could not be rendered (genconfig).
    #[error("cannot render the config as {format}: {message}")]
    Render {
        /// The target format.
        format: &'static str,
        /// The serializer's message.
        message: String,
    },
}

fn list_problems(problems: &[ConfigError]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

impl ConfigError {
    /// `Ok` for no problems, the problem itself for one, [`ConfigError::Problems`] for more.
    pub fn from_problems(mut problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Problems(problems)),
        }
    }

    /// The individual problems: this one, or each of [`ConfigError::Problems`].
    pub fn into_problems(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Problems(all) => all,
            one => vec![one],
        }
    }
}

fn unknown_hint(suggestion: Option<&str>, origin: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(origin) = origin {
        s.push_str(&format!(" (from {origin})"));
    }
    if let Some(suggestion) = suggestion {
        s.push_str(&format!(" (did you mean \"{suggestion}\"?)"));
    }
    s
}

fn origin_suffix(origin: Option<&str>) -> String {
    origin.map(|o| format!(" (from {o})")).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

/// Parses a Go-style duration as used in Centrifugo configs: a sequence of decimal numbers, each
/// with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `"25s"`, `"1m30s"`, `"1.5h"`,
/// `"500ms"`; `"0"` alone means zero. Negative durations are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err("a negative duration is not allowed".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("expected a number at \"{rest}\""));
        }
        // Longest unit first: "ms" before "m", "ns"/"us" before nothing else clashes.
        let unit = UNITS
            .iter()
            .filter(|(name, _)| rest.starts_with(name))
            .max_by_key(|(name, _)| name.len());
        let Some(&(name, nanos_per_unit)) = unit else {
            return Err(if rest.is_empty() {
                "missing unit (use ns, us, ms, s, m or h)".to_string()
            } else {
                format!("unknown unit at \"{rest}\" (use ns, us, ms, s, m or h)")
            });
        };
        rest = &rest[name.len()..];
        let overflow = || "duration is too large".to_string();
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = int.checked_mul(nanos_per_unit).ok_or_else(overflow)?;
        if !frac_part.is_empty() {
            // Keep at most 18 fractional digits: more cannot change a nanosecond count.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().map_err(|_| overflow())?;
            let scale = 10u128.pow(digits.len() as u32);
            nanos = nanos
                .checked_add(frac * nanos_per_unit / scale)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "duration is too large")?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a duration the way [`parse_duration`] reads it, compactly: `"25s"`, `"720h"`,
/// `"1m30s"`, `"500ms"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        ((secs / 60) % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from((nanos / 1_000) % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// Serde adapter for `Duration` fields written as Go-style strings.
mod go_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    const EXPECTED: &str = "expected a duration like \"25s\"";

    impl serde::de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration like \"25s\"")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(|why| E::custom(format!("{EXPECTED}, got \"{v}\" ({why})")))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(E::custom(format!("{EXPECTED}, got {v}")))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(format!("{EXPECTED}, got {v}")))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!("{EXPECTED}, got {v}")))
        }

        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Duration, E> {
            Err(E::custom(format!("{EXPECTED}, got {v}")))
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// The config types
// ---------------------------------------------------------------------------------------------

/// A Centrifugo section that Herald accepts (so Centrifugo configs load) but does not implement
/// yet; kept verbatim. [`crate::config_audit`] refuses or warns about the ones that are set.
pub type Opaque = Option<Value>;

/// The whole Herald configuration. Build it with [`Config::load`] (file + environment), adjust it
/// with command-line flags, then [`Config::validate`] it.
///
/// Field names are the config option names; the doc of each field says what it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener: WebSocket, SSE, server API, admin, metrics all share it.
    pub http_server: HttpServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// Where cross-node delivery, history and presence live.
    pub engine: EngineConfig,
    /// Centrifugo's separate broker selection (overrides `engine` for PUB/SUB and history when
    /// `broker.enabled`).
    pub broker: BrokerConfig,
    /// Centrifugo's separate presence-manager selection (overrides `engine` for presence when
    /// `presence_manager.enabled`).
    pub presence_manager: PresenceManagerConfig,
    /// Real-time client connections: tokens, origins, ping/pong, limits.
    pub client: ClientConfig,
    /// Channels and namespaces.
    pub channel: ChannelConfig,
    /// The bidirectional WebSocket transport.
    pub websocket: WebSocketConfig,
    /// The server HTTP API (`POST /api/publish`…).
    pub http_api: HttpApiConfig,
    /// The admin web UI.
    pub admin: AdminConfig,
    /// The Prometheus metrics endpoint.
    pub prometheus: PrometheusConfig,
    /// The health-check endpoint.
    pub health: HealthConfig,
    /// Herald: how the embedded engine stores history.
    pub history: HistoryConfig,
    /// Herald: directory of the embedded engine's durable data (history database).
    pub data_dir: PathBuf,
    /// Herald: serve the demo chat app and enable a permissive demo namespace.
    pub demo: bool,
    /// Herald: threads that run client connections and server work; `0` (the default) means
    /// one per CPU core. HTTP (the API, handshakes) has a thread of its own besides these.
    /// Fewer than the cores can serve faster on a machine whose other cores are busy with
    /// other work (bench/RESULTS.md shows one such case).
    pub workers: usize,
    /// Path of a file to write the process id to; empty = none.
    pub pid_file: String,
    /// Centrifugo: enables unreleased features. Accepted; Herald has none.
    pub enable_unreleased_features: bool,

    /// Centrifugo `map_broker` (keyed-state channels). Not implemented.
    pub map_broker: Opaque,
    /// Centrifugo `controller`. Not implemented.
    pub controller: Opaque,
    /// Centrifugo `shared_poll`. Not implemented.
    pub shared_poll: Opaque,
    /// Centrifugo `rpc` (RPC namespaces / proxy). Not implemented.
    pub rpc: Opaque,
    /// Centrifugo named `proxies`. Not implemented.
    pub proxies: Opaque,
    /// Centrifugo `grpc_api`. Not implemented.
    pub grpc_api: Opaque,
    /// Centrifugo `consumers` (Kafka, PostgreSQL outbox). Not implemented.
    pub consumers: Opaque,
    /// Centrifugo bidirectional SSE transport. Not implemented yet.
    pub sse: Opaque,
    /// Centrifugo bidirectional HTTP-streaming transport. Not implemented yet.
    pub http_stream: Opaque,
    /// Centrifugo WebTransport. Not implemented.
    pub webtransport: Opaque,
    /// Centrifugo unidirectional SSE transport. Not implemented yet.
    pub uni_sse: Opaque,
    /// Centrifugo unidirectional HTTP-streaming transport. Not implemented yet.
    pub uni_http_stream: Opaque,
    /// Centrifugo unidirectional WebSocket transport. Not implemented yet.
    pub uni_websocket: Opaque,
    /// Centrifugo unidirectional gRPC transport. Not implemented.
    pub uni_grpc: Opaque,
    /// Centrifugo emulation endpoint. Not implemented yet.
    pub emulation: Opaque,
    /// Centrifugo Swagger UI. Not implemented.
    pub swagger: Opaque,
    /// Centrifugo Go pprof endpoints. Not applicable.
    pub debug: Opaque,
    /// Centrifugo connection-init endpoint. Not implemented.
    pub init: Opaque,
    /// Centrifugo OpenTelemetry export. Not implemented.
    pub opentelemetry: Opaque,
    /// Centrifugo Graphite export. Not implemented.
    pub graphite: Opaque,
    /// Centrifugo usage statistics. Herald never sends any.
    pub usage_stats: Opaque,
    /// Centrifugo node naming. Not implemented yet.
    pub node: Opaque,
    /// Centrifugo graceful-shutdown settings. Not implemented yet.
    pub shutdown: Opaque,

    /// Notes produced while loading (e.g. unknown `HERALD_*` environment variables), for `main`
    /// to log once logging is set up. Not a config option.
    #[serde(skip)]
    pub load_warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_server: HttpServerConfig::default(),
            log: LogConfig::default(),
            engine: EngineConfig::default(),
            broker: BrokerConfig::default(),
            presence_manager: PresenceManagerConfig::default(),
            client: ClientConfig::default(),
            channel: ChannelConfig::default(),
            websocket: WebSocketConfig::default(),
            http_api: HttpApiConfig::default(),
            admin: AdminConfig::default(),
            prometheus: PrometheusConfig::default(),
            health: HealthConfig::default(),
            history: HistoryConfig::default(),
            data_dir: PathBuf::from("./herald-data"),
            demo: false,
            workers: 0,
            pid_file: String::new(),
            enable_unreleased_features: false,
            map_broker: None,
            controller: None,
            shared_poll: None,
            rpc: None,
            proxies: None,
            grpc_api: None,
            consumers: None,
            sse: None,
            http_stream: None,
            webtransport: None,
            uni_sse: None,
            uni_http_stream: None,
            uni_websocket: None,
            uni_grpc: None,
            emulation: None,
            swagger: None,
            debug: None,
            init: None,
            opentelemetry: None,
            graphite: None,
            usage_stats: None,
            node: None,
            shutdown: None,
            load_warnings: Vec::new(),
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
    /// `crate::config_audit`).
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
/// (see `crate::config_audit`). `server_ca_*`, `insecure_skip_verify` and `server_name` only
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
    /// not implement here, such as `client_ca_pem`, are [`crate::config_audit`]'s.)
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

/// Minimum level of log records that are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// No logs at all.
    None,
    /// Everything, very verbose.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (default).
    #[default]
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The level as a `tracing` filter directive (`"off"` for [`LogLevel::None`]).
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::None => "off",
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// How log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `log`: logging settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Minimum level: none, trace, debug, info (default), warn, error.
    pub level: LogLevel,
    /// Write logs to this file instead of stdout; empty = stdout.
    pub file: String,
    /// Herald: `text` (default) or `json`. Also `--log-format`.
    pub format: LogFormat,
}

/// A backend for PUB/SUB, history and presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineType {
    /// This node only; history stored durably on local disk under `data_dir` (default).
    #[default]
    Embedded,
    /// Centrifugo's name for the single-node in-process engine; accepted so Centrifugo configs
    /// load (the server decides whether it means [`EngineType::Embedded`]).
    Memory,
    /// Redis: cross-node PUB/SUB, shared history and presence.
    Redis,
    /// NATS: cross-node PUB/SUB.
    Nats,
}

/// `engine`: the combined broker + presence manager.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// `embedded` (default), `memory`, `redis` or `nats`.
    #[serde(rename = "type")]
    pub kind: EngineType,
    /// Redis connection settings (Centrifugo names). Kept verbatim until the Redis engine lands.
    pub redis: Opaque,
    /// Herald: NATS connection settings. Kept verbatim until the NATS engine lands.
    pub nats: Opaque,
}

/// `broker`: Centrifugo's separate PUB/SUB + history backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Use this broker instead of the engine's.
    pub enabled: bool,
    /// Broker type.
    #[serde(rename = "type")]
    pub kind: EngineType,
    /// Redis settings (verbatim).
    pub redis: Opaque,
    /// NATS settings (verbatim).
    pub nats: Opaque,
    /// Centrifugo PostgreSQL stream broker (verbatim; not implemented).
    pub postgres: Opaque,
    /// Centrifugo Redis+NATS broker (verbatim; not implemented).
    pub redisnats: Opaque,
}

/// `presence_manager`: Centrifugo's separate presence backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceManagerConfig {
    /// Use this presence manager instead of the engine's.
    pub enabled: bool,
    /// Presence manager type.
    #[serde(rename = "type")]
    pub kind: EngineType,
    /// Redis settings (verbatim).
    pub redis: Opaque,
}

/// How hard the embedded engine pushes history writes to disk before acknowledging a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync before acknowledging: an acknowledged publish survives power loss (default).
    #[default]
    Fsync,
    /// Hand writes to the OS: survives a process crash, not necessarily power loss; faster.
    Os,
}

/// `history` (Herald): embedded history storage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// `fsync` (default) or `os`.
    pub durability: Durability,
}

/// Defines two structs from one list of option fields: `$Opts` (the options alone) and `$Wrapper`
/// (one key field plus the options), where the wrapper reads and writes the key and the options
/// FLAT in the same object (Centrifugo's `squash`), with unknown keys refused and exact error
/// paths kept (serde's `flatten` would lose both).
macro_rules! flat_options {
    (
        $(#[$ometa:meta])*
        options $Opts:ident;
        $(#[$wmeta:meta])*
        wrapper $Wrapper:ident { $(#[$kmeta:meta])* $key:ident : $kty:ty, $optfield:ident }
        via $Raw:ident = $raw_name:literal;
        fields {
            $( $(#[$fmeta:meta])* $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$ometa])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $Opts {
            $( $(#[$fmeta])* pub $field: $fty, )*
        }

        $(#[$wmeta])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(from = $raw_name, into = $raw_name)]
        pub struct $Wrapper {
            $(#[$kmeta])*
            pub $key: $kty,
            /// The options, written flat beside the key in the config file.
            pub $optfield: $Opts,
        }

        #[derive(Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct $Raw {
            $key: $kty,
            $( $(#[$fmeta])* $field: $fty, )*
        }

        impl From<$Raw> for $Wrapper {
            fn from(raw: $Raw) -> Self {
                $Wrapper { $key: raw.$key, $optfield: $Opts { $( $field: raw.$field, )* } }
            }
        }

        impl From<$Wrapper> for $Raw {
            fn from(w: $Wrapper) -> Self {
                let o = w.$optfield;
                $Raw { $key: w.$key, $( $field: o.$field, )* }
            }
        }
    };
}

flat_options! {
    /// `client.token`: how connection JWTs are verified (see [`crate::auth`]).
    ///
    /// A token's `alg` must match a configured key: HS* needs `hmac_secret_key`, RS* needs
    /// `rsa_public_key`, ES* needs `ecdsa_public_key`; RS*, ES* and EdDSA tokens with a `kid`
    /// use `jwks_public_endpoint` when it is set.
    options TokenConfig;
    /// `client.subscription_token`: a separate key set for subscription JWTs; when not `enabled`,
    /// subscription tokens are verified with `client.token`.
    wrapper SubscriptionTokenConfig {
        /// Verify subscription tokens with these settings instead of `client.token`.
        enabled: bool, token
    }
    via RawSubscriptionToken = "RawSubscriptionToken";
    fields {
        /// Shared secret for HS256/HS384/HS512 tokens.
        hmac_secret_key: String,
        /// The previous HMAC secret, still accepted during a key rotation.
        hmac_previous_secret_key: String,
        /// Unix seconds after which `hmac_previous_secret_key` is no longer accepted; 0 = forever.
        hmac_previous_secret_key_valid_until: i64,
        /// PEM public key for RS256/RS384/RS512 tokens.
        rsa_public_key: String,
        /// PEM public key (P-256 or P-384) for ES256/ES384 tokens.
        ecdsa_public_key: String,
        /// JWKS (RFC 7517) URL to fetch RSA, EC and Ed25519 verification keys from, by the
        /// token's `kid`: fetched at startup and hourly, and again (at most every 10 s) when a
        /// token names an unknown `kid`. http(s) only; no per-tenant templates.
        jwks_public_endpoint: String,
        /// When set, a token's `aud` must contain this value.
        audience: String,
        /// When set, some value of a token's `aud` must match this regex (unanchored, as in
        /// Centrifugo: write `^…$`). Not together with `audience`.
        audience_regex: String,
        /// When set, a token's `iss` must equal this value.
        issuer: String,
        /// When set, a token's `iss` must match this regex (unanchored). Not together with
        /// `issuer`.
        issuer_regex: String,
        /// Read the user id from this claim (dotted path) instead of `sub`.
        user_id_claim: String,
        /// Centrifugo's safety switch for templated (per-tenant) JWKS endpoints. Accepted; no
        /// effect, since Herald refuses templated endpoints.
        insecure_skip_jwks_endpoint_safety_check: bool,
    }
}

impl TokenConfig {
    /// Whether any verification key is configured (so tokens can be checked at all).
    pub fn has_key(&self) -> bool {
        !self.hmac_secret_key.is_empty()
            || !self.rsa_public_key.is_empty()
            || !self.ecdsa_public_key.is_empty()
            || !self.jwks_public_endpoint.is_empty()
    }
}

/// `client.subscribe_to_user_personal_channel`: subscribe every authenticated connection to its
/// user's personal channel server-side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersonalChannelConfig {
    /// Turn the feature on: on connect, a user's connections are subscribed to `ns:#user`.
    pub enabled: bool,
    /// Namespace of the personal channel (`ns:#user`); empty = no namespace.
    pub personal_channel_namespace: String,
    /// Keep a single connection per user: a new connection closes the user's others with
    /// 3504 (connection limit), as Centrifugo does.
    pub single_connection: bool,
}

/// `client`: real-time client connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Centrifugo connect/refresh proxy. Not implemented.
    pub proxy: Opaque,
    /// Browser origins allowed to connect (`Origin` header); `"*"` allows all. Empty = only
    /// same-origin and non-browser clients (no `Origin` header).
    pub allowed_origins: Vec<String>,
    /// Connection token verification.
    pub token: TokenConfig,
    /// Subscription token verification (falls back to `token` unless enabled).
    pub subscription_token: SubscriptionTokenConfig,
    /// Allow a connect without any token, as an anonymous user.
    pub allow_anonymous_connect_without_token: bool,
    /// Refuse connection tokens with an empty `sub`.
    pub disallow_anonymous_connection_tokens: bool,
    /// How often the server pings an idle client. Default 25s.
    #[serde(with = "go_duration")]
    pub ping_interval: Duration,
    /// How long the server waits for a pong after a ping before disconnecting. Default 8s.
    #[serde(with = "go_duration")]
    pub pong_timeout: Duration,
    /// Extra time given to a client whose connection expired before it is closed. Default 25s.
    #[serde(with = "go_duration")]
    pub expired_close_delay: Duration,
    /// Same for an expired subscription. Default 25s.
    #[serde(with = "go_duration")]
    pub expired_sub_close_delay: Duration,
    /// A connection that sends no `connect` within this time is closed (3502). Default 10s.
    #[serde(with = "go_duration")]
    pub stale_close_delay: Duration,
    /// Maximum channels per connection (3505 beyond). Default 128.
    pub channel_limit: usize,
    /// Maximum bytes queued for one slow client before it is disconnected (3008). Default 1 MiB.
    pub queue_max_size: usize,
    /// How often presence entries are refreshed. Default 27s.
    #[serde(with = "go_duration")]
    pub presence_update_interval: Duration,
    /// Centrifugo command concurrency per connection. Not implemented (warned about): Herald
    /// handles a connection's commands in order.
    pub concurrency: usize,
    /// How often a positioned subscription's stream position is checked. Default 40s.
    #[serde(with = "go_duration")]
    pub channel_position_check_delay: Duration,
    /// Centrifugo position-check lag tolerance. Accepted.
    #[serde(with = "go_duration")]
    pub channel_position_max_time_lag: Duration,
    /// Maximum open WebSocket connections on this node (a handshake beyond gets HTTP 503; see
    /// [`crate::limits`]); 0 = unlimited.
    pub connection_limit: usize,
    /// Maximum connections of one user on this node; 0 = unlimited.
    pub user_connection_limit: usize,
    /// Maximum new WebSocket connections per second on this node (beyond: HTTP 503; see
    /// [`crate::limits`]); 0 = unlimited.
    pub connection_rate_limit: usize,
    /// Include the server time in the connect reply.
    pub connect_include_server_time: bool,
    /// Maximum publications returned by one history call. Default 300.
    pub history_max_publication_limit: usize,
    /// Maximum publications a recovering subscription may receive. Default 300.
    pub recovery_max_publication_limit: usize,
    /// DANGEROUS: accept tokens without checking their signature. Accepted; development only.
    pub insecure_skip_token_signature_verify: bool,
    /// Take the user id from this HTTP header (behind an authenticating proxy).
    pub user_id_http_header: String,
    /// DANGEROUS, development only: Centrifugo's insecure client mode. Clients connect without
    /// a token (anonymous) and may subscribe to every channel but private ones, publish, and
    /// read presence and history; connections never expire. Logged as a WARN at start-up.
    pub insecure: bool,
    /// Server-side subscription to the user's personal channel.
    pub subscribe_to_user_personal_channel: PersonalChannelConfig,
    /// Centrifugo unidirectional disconnect-code mapping. Not implemented.
    pub connect_code_to_unidirectional_disconnect: Opaque,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            proxy: None,
            allowed_origins: Vec::new(),
            token: TokenConfig::default(),
            subscription_token: SubscriptionTokenConfig::default(),
            allow_anonymous_connect_without_token: false,
            disallow_anonymous_connection_tokens: false,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            expired_close_delay: Duration::from_secs(25),
            expired_sub_close_delay: Duration::from_secs(25),
            stale_close_delay: Duration::from_secs(10),
            channel_limit: 128,
            queue_max_size: 1_048_576,
            presence_update_interval: Duration::from_secs(27),
            concurrency: 0,
            channel_position_check_delay: Duration::from_secs(40),
            channel_position_max_time_lag: Duration::ZERO,
            connection_limit: 0,
            user_connection_limit: 0,
            connection_rate_limit: 0,
            connect_include_server_time: false,
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            insecure_skip_token_signature_verify: false,
            user_id_http_header: String::new(),
            insecure: false,
            subscribe_to_user_personal_channel: PersonalChannelConfig::default(),
            connect_code_to_unidirectional_disconnect: None,
        }
    }
}

impl ClientConfig {
    /// Whether a browser page from `origin` may connect. Entries are matched ignoring ASCII
    /// case, and `*` in an entry matches any run of characters (as Centrifugo's glob patterns):
    /// `"*"` allows all, `"https://*.example.com"` allows every subdomain.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.allowed_origins
            .iter()
            .any(|allowed| glob_match(&allowed.to_ascii_lowercase(), &origin))
    }

    /// The token settings to verify subscription tokens with.
    pub fn subscription_token_config(&self) -> &TokenConfig {
        if self.subscription_token.enabled {
            &self.subscription_token.token
        } else {
            &self.token
        }
    }
}

/// `*`-only glob matching (no other metacharacters), iterative with backtracking to the last star.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// How a recovering subscription catches up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryMode {
    /// Replay every missed publication from history (default; Centrifugo's `""` means this).
    #[default]
    #[serde(alias = "")]
    Stream,
    /// Only the latest publication is returned.
    Cache,
}

flat_options! {
    /// Options of a channel namespace (and of channels without a namespace). All Centrifugo
    /// names; everything is off by default, as in Centrifugo.
    options NamespaceOptions;
    /// One entry of `channel.namespaces`: a `name` plus its options, written flat.
    wrapper ChannelNamespace {
        /// The namespace name: the `ns` in channel `ns:rest`.
        name: String, options
    }
    via RawNamespace = "RawNamespace";
    fields {
        /// Keep presence (who is subscribed) for channels.
        presence: bool,
        /// Send join/leave pushes to subscribers who ask for them.
        join_leave: bool,
        /// Send join/leave pushes to all subscribers.
        force_push_join_leave: bool,
        /// Centrifugo map-presence channel prefix. Not implemented.
        map_clients_presence_channel_prefix: String,
        /// Centrifugo map-presence channel prefix. Not implemented.
        map_users_presence_channel_prefix: String,
        /// How many publications a channel's history keeps; 0 = no history.
        history_size: usize,
        /// How long publications stay in history; 0 = no history.
        #[serde(with = "go_duration")]
        history_ttl: Duration,
        /// How long a stream's meta (offset, epoch) outlives its last publication; 0 = use
        /// `channel.history_meta_ttl`.
        #[serde(with = "go_duration")]
        history_meta_ttl: Duration,
        /// Track every subscriber's stream position (needs history).
        force_positioning: bool,
        /// Let clients ask for position tracking.
        allow_positioning: bool,
        /// Recover missed publications on every resubscribe (needs history).
        force_recovery: bool,
        /// Let clients ask for recovery.
        allow_recovery: bool,
        /// `stream` (default) or `cache`.
        force_recovery_mode: RecoveryMode,
        /// Centrifugo cache auto-recovery. Accepted.
        auto_cache_recover: bool,
        /// Delta compression types clients may ask for in subscribe (`fossil`, the only one).
        allowed_delta_types: Vec<String>,
        /// Let subscribers filter publications by tags.
        allow_tags_filter: bool,
        /// Every publication is sent as a delta to subscribers that negotiated deltas (not only
        /// publishes with `delta: true`).
        delta_publish: bool,
        /// Anonymous users may subscribe without a subscription token.
        allow_subscribe_for_anonymous: bool,
        /// Any authenticated client may subscribe without a subscription token.
        allow_subscribe_for_client: bool,
        /// Anonymous users may publish.
        allow_publish_for_anonymous: bool,
        /// Subscribers of a channel may publish to it.
        allow_publish_for_subscriber: bool,
        /// Any authenticated client may publish.
        allow_publish_for_client: bool,
        /// Anonymous users may ask for presence.
        allow_presence_for_anonymous: bool,
        /// Subscribers may ask for presence.
        allow_presence_for_subscriber: bool,
        /// Any authenticated client may ask for presence.
        allow_presence_for_client: bool,
        /// Anonymous users may read history.
        allow_history_for_anonymous: bool,
        /// Subscribers may read history.
        allow_history_for_subscriber: bool,
        /// Any authenticated client may read history.
        allow_history_for_client: bool,
        /// Channels ending in `#user1,user2` may be subscribed by those users only.
        allow_user_limited_channels: bool,
        /// Centrifugo channel-name regex. Not implemented yet: refused by validation.
        channel_regex: String,
        /// Centrifugo publication data format. Accepted.
        publication_data_format: String,
        /// Centrifugo subscribe proxy. Not implemented.
        subscribe_proxy_enabled: bool,
        /// Centrifugo subscribe proxy name.
        subscribe_proxy_name: String,
        /// Centrifugo publish proxy. Not implemented.
        publish_proxy_enabled: bool,
        /// Centrifugo publish proxy name.
        publish_proxy_name: String,
        /// Centrifugo sub-refresh proxy. Not implemented.
        sub_refresh_proxy_enabled: bool,
        /// Centrifugo sub-refresh proxy name.
        sub_refresh_proxy_name: String,
        /// Centrifugo subscribe-stream proxy. Not implemented.
        subscribe_stream_proxy_enabled: bool,
        /// Centrifugo subscribe-stream proxy name.
        subscribe_stream_proxy_name: String,
        /// Centrifugo bidirectional subscribe-stream proxy. Not implemented.
        subscribe_stream_proxy_bidirectional: bool,
        /// Centrifugo subscription type (map, shared poll). Not implemented.
        subscription_type: String,
        /// Centrifugo map subscription settings. Not implemented.
        map: Opaque,
        /// Centrifugo shared-poll settings. Not implemented.
        shared_poll: Opaque,
    }
}

impl NamespaceOptions {
    /// Whether channels with these options keep a history (both size and TTL set).
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
}

/// `channel`: channel naming and namespaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelConfig {
    /// Centrifugo channel proxies. Not implemented.
    pub proxy: Opaque,
    /// Options of channels without a namespace (no `:` in the name).
    pub without_namespace: NamespaceOptions,
    /// Named namespaces (`ns:…` channels).
    pub namespaces: Vec<ChannelNamespace>,
    /// Default lifetime of a stream's meta after its last publication. Default 720h (30 days).
    #[serde(with = "go_duration")]
    pub history_meta_ttl: Duration,
    /// Centrifugo publication data format. Accepted.
    pub publication_data_format: String,
    /// Longest channel name accepted, in bytes. Default 255.
    pub max_length: usize,
    /// A channel name starting with this needs a subscription token; empty = no private
    /// channels. Default `$`. (Applied by [`crate::channel`], as the three below.)
    pub private_prefix: String,
    /// Separates namespace from the rest of a channel name. Default `:`; must not be empty.
    pub namespace_boundary: String,
    /// Starts the user list of a user-limited channel; empty = no user-limited channels.
    /// Default `#`.
    pub user_boundary: String,
    /// Separates users in a user-limited channel; empty = the list is one user id. Default `,`.
    pub user_separator: String,
}

impl ChannelConfig {
    /// The strings that structure channel names (`private_prefix`, `namespace_boundary`,
    /// `user_boundary`, `user_separator`), for [`crate::channel::parse_with`].
    pub fn naming(&self) -> crate::channel::Naming<'_> {
        crate::channel::Naming {
            private_prefix: &self.private_prefix,
            namespace_boundary: &self.namespace_boundary,
            user_boundary: &self.user_boundary,
            user_separator: &self.user_separator,
        }
    }
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            proxy: None,
            without_namespace: NamespaceOptions::default(),
            namespaces: Vec::new(),
            history_meta_ttl: Duration::from_secs(720 * 3600),
            publication_data_format: String::new(),
            max_length: 255,
            private_prefix: "$".into(),
            namespace_boundary: ":".into(),
            user_boundary: "#".into(),
            user_separator: ",".into(),
        }
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
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            disabled: false,
            handler_prefix: "/connection/websocket".into(),
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

// ---------------------------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------------------------

/// The text format of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigFormat {
    /// JSON (Centrifugo's usual format).
    Json,
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

impl ConfigFormat {
    /// The format a file name says: `.json`, `.toml`, `.yaml`/`.yml` (any case); `None` otherwise.
    pub fn from_path(path: &Path) -> Option<ConfigFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(ConfigFormat::Json),
            "toml" => Some(ConfigFormat::Toml),
            "yaml" | "yml" => Some(ConfigFormat::Yaml),
            _ => None,
        }
    }

    /// The format's name for messages: "JSON", "TOML", "YAML".
    pub fn name(self) -> &'static str {
        match self {
            ConfigFormat::Json => "JSON",
            ConfigFormat::Toml => "TOML",
            ConfigFormat::Yaml => "YAML",
        }
    }
}

fn parse_tree(text: &str, format: ConfigFormat, origin: &str) -> Result<Value, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        origin: origin.to_string(),
        format: format.name(),
        message,
    };
    let tree: Value = match format {
        ConfigFormat::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
        ConfigFormat::Toml => toml::from_str(text).map_err(|e| syntax(e.to_string()))?,
        ConfigFormat::Yaml => {
            if text.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                serde_yaml_ng::from_str(text).map_err(|e| syntax(e.to_string()))?
            }
        }
    };
    match tree {
        Value::Object(_) => Ok(tree),
        Value::Null => Ok(Value::Object(Map::new())),
        other => Err(syntax(format!(
            "the top level must be an object of options, found {}",
            kind_name(&other)
        ))),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// The process's environment variables with names and values as strings.
fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
}

/// Which option paths were set from which environment variable (for error messages).
#[derive(Default)]
struct Origins(Vec<(String, String)>);

impl Origins {
    /// The environment variable that set `path` or one of its parents.
    fn for_path(&self, path: &str) -> Option<String> {
        self.0
            .iter()
            .filter(|(p, _)| {
                path == p
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(_, var)| var.clone())
    }
}

impl Config {
    /// Loads the config: defaults, then the file at `path` (format from its extension) when
    /// given, then `HERALD_*` environment variables; then [`Config::validate`]s it.
    ///
    /// Command-line flags are applied by the caller afterwards (see `cli::Cli::load_config`),
    /// which validates again.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, process_env())
    }

    /// [`Config::read_with_env`] with the process's environment.
    pub fn read(path: Option<&Path>) -> Result<ConfigReport, ConfigError> {
        Config::read_with_env(path, process_env())
    }

    /// [`Config::load`] with the environment given explicitly (tests; embedding).
    pub fn load_with_env<I>(path: Option<&Path>, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut report = Config::read_with_env(path, env)?;
        if let Some(config) = &report.config {
            if let Err(e) = config.validate() {
                report.problems.extend(e.into_problems());
            }
        }
        report.into_config()
    }

    /// Reads the config like [`Config::load_with_env`] but without validating it, and goes on
    /// after unknown options so that all of them are reported at once. Fails only when the file
    /// or an environment variable cannot be read at all.
    pub fn read_with_env<I>(path: Option<&Path>, env: I) -> Result<ConfigReport, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut tree = match path {
            Some(path) => {
                let format =
                    ConfigFormat::from_path(path).ok_or_else(|| ConfigError::UnknownFormat {
                        path: path.to_path_buf(),
                    })?;
                let text = std::fs::read_to_string(path).map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound {
                        ConfigError::NotFound {
                            path: path.to_path_buf(),
                        }
                    } else {
                        ConfigError::Read {
                            path: path.to_path_buf(),
                            source,
                        }
                    }
                })?;
                parse_tree(&text, format, &path.display().to_string())?
            }
            None => Value::Object(Map::new()),
        };
        let (origins, mut warnings) = apply_env(&mut tree, env)?;
        let loaded = from_tree_lenient(tree, &origins);
        warnings.extend(loaded.warnings);
        let config = loaded.config.map(|mut config| {
            config.load_warnings = warnings;
            config
        });
        Ok(ConfigReport {
            config,
            problems: loaded.problems,
        })
    }

    /// Parses config text in the given format (no environment, no validation): for tests and for
    /// checking a file's content.
    pub fn from_str_with_format(text: &str, format: ConfigFormat) -> Result<Config, ConfigError> {
        let tree = parse_tree(text, format, "config")?;
        from_tree(tree, &Origins::default())
    }

    /// The options of namespace `name`; `""` gives the options of channels without a namespace.
    /// `None` when no such namespace is configured (the client gets "unknown channel", 102).
    pub fn namespace(&self, name: &str) -> Option<&NamespaceOptions> {
        if name.is_empty() {
            return Some(&self.channel.without_namespace);
        }
        self.channel
            .namespaces
            .iter()
            .find(|ns| ns.name == name)
            .map(|ns| &ns.options)
    }

    /// Checks that the options make sense together and that no option is set that Herald would
    /// ignore to the user's harm (the "refused" ones of [`crate::config_audit`]). Every message
    /// names the option at fault, and all problems are reported at once
    /// ([`ConfigError::Problems`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems: Vec<String> = Vec::new();
        let c = &self.client;
        for (name, d) in [
            ("client.ping_interval", c.ping_interval),
            ("client.pong_timeout", c.pong_timeout),
            ("client.stale_close_delay", c.stale_close_delay),
            ("websocket.write_timeout", self.websocket.write_timeout),
            (
                "http_server.body_read_timeout",
                self.http_server.body_read_timeout,
            ),
        ] {
            if d.is_zero() {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if c.pong_timeout >= c.ping_interval {
            problems.push(format!(
                "client.pong_timeout ({}) must be shorter than client.ping_interval ({})",
                format_duration(c.pong_timeout),
                format_duration(c.ping_interval)
            ));
        }
        for (name, n) in [
            ("client.queue_max_size", c.queue_max_size),
            ("client.channel_limit", c.channel_limit),
            (
                "websocket.message_size_limit",
                self.websocket.message_size_limit,
            ),
            ("channel.max_length", self.channel.max_length),
        ] {
            if n == 0 {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if self.workers > MAX_WORKERS {
            problems.push(format!(
                "workers must be at most {MAX_WORKERS} (0 = one per CPU core), got {}",
                self.workers
            ));
        }
        if self.websocket.compression_level > 9 {
            problems.push(format!(
                "websocket.compression_level must be between 0 and 9, got {}",
                self.websocket.compression_level
            ));
        }
        for (name, prefix) in [
            ("http_api.handler_prefix", &self.http_api.handler_prefix),
            ("websocket.handler_prefix", &self.websocket.handler_prefix),
            ("prometheus.handler_prefix", &self.prometheus.handler_prefix),
            ("health.handler_prefix", &self.health.handler_prefix),
        ] {
            if !prefix.starts_with('/') {
                problems.push(format!("{name} must start with \"/\", got \"{prefix}\""));
            }
        }
        if !self.admin.handler_prefix.is_empty() && !self.admin.handler_prefix.starts_with('/') {
            problems.push(format!(
                "admin.handler_prefix must be empty or start with \"/\", got \"{}\"",
                self.admin.handler_prefix
            ));
        }
        if let Some(i) = c.allowed_origins.iter().position(|o| o.trim().is_empty()) {
            problems.push(format!("client.allowed_origins[{i}] is empty"));
        }
        if self.admin.enabled
            && !self.admin.insecure
            && (self.admin.password.is_empty() || self.admin.secret.is_empty())
        {
            problems.push(
                "admin.enabled needs admin.password and admin.secret (or admin.insecure)"
                    .to_string(),
            );
        }
        if self.channel.namespace_boundary.is_empty() {
            problems.push("channel.namespace_boundary must not be empty".to_string());
        }
        if self.demo && self.channel.naming() != crate::channel::DEFAULT_NAMING {
            problems.push(
                "demo: the demo chat names its channels with the default channel.private_prefix, \
                 namespace_boundary, user_boundary and user_separator: remove those options or \
                 demo"
                    .to_string(),
            );
        }
        if self.demo
            && self.websocket.handler_prefix.trim_end_matches('/') != "/connection/websocket"
        {
            problems.push(
                "demo: the demo chat connects to /connection/websocket: remove \
                 websocket.handler_prefix or demo"
                    .to_string(),
            );
        }
        if self.channel.history_meta_ttl.is_zero() {
            problems.push("channel.history_meta_ttl must be greater than zero".to_string());
        }
        problems.extend(self.http_server.tls.problems());

        if let Err(e) = crate::auth::TokenVerifier::new(&c.token) {
            problems.push(format!("client.token: {e}"));
        }
        if c.subscription_token.enabled {
            if !c.subscription_token.token.has_key() {
                problems.push(
                    "client.subscription_token.enabled needs a key \
                     (client.subscription_token.hmac_secret_key, rsa_public_key, ecdsa_public_key \
                     or jwks_public_endpoint)"
                        .to_string(),
                );
            }
            if let Err(e) = crate::auth::TokenVerifier::new(&c.subscription_token.token) {
                problems.push(format!("client.subscription_token: {e}"));
            }
        }

        validate_namespace_options(
            "channel.without_namespace",
            &self.channel.without_namespace,
            self.channel.history_meta_ttl,
            &mut problems,
        );
        let mut seen = BTreeSet::new();
        for (i, ns) in self.channel.namespaces.iter().enumerate() {
            let at = format!("channel.namespaces[{i}]");
            if ns.name.is_empty() {
                problems.push(format!("{at}.name is missing"));
            }
            if !ns
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                problems.push(format!(
                    "{at}.name \"{}\" may only contain letters, digits, '_', '-' and '.'",
                    ns.name
                ));
            }
            let boundary = self.channel.namespace_boundary.as_str();
            if !boundary.is_empty() && ns.name.contains(boundary) {
                problems.push(format!(
                    "{at}.name \"{}\" contains channel.namespace_boundary \"{boundary}\", so no \
                     channel name can reach it: rename the namespace or change the boundary",
                    ns.name
                ));
            }
            if !seen.insert(ns.name.as_str()) {
                problems.push(format!("{at}.name \"{}\" is used twice", ns.name));
            }
            validate_namespace_options(
                &format!("{at} (\"{}\")", ns.name),
                &ns.options,
                self.channel.history_meta_ttl,
                &mut problems,
            );
        }
        let personal = &c.subscribe_to_user_personal_channel;
        if personal.enabled
            && !personal.personal_channel_namespace.is_empty()
            && self
                .namespace(&personal.personal_channel_namespace)
                .is_none()
        {
            problems.push(format!(
                "client.subscribe_to_user_personal_channel.personal_channel_namespace \"{}\" \
                 is not in channel.namespaces",
                personal.personal_channel_namespace
            ));
        }
        problems.extend(
            crate::config_audit::audit(self)
                .into_iter()
                .filter(|f| f.severity == crate::config_audit::Severity::Refused)
                .map(|f| f.to_string()),
        );
        ConfigError::from_problems(problems.into_iter().map(ConfigError::Invalid).collect())
    }

    /// Options that are set but that Herald does not implement and that are harmless to
    /// ignore, each as `path: what happens` (the "warned" ones of [`crate::config_audit`]), for
    /// `main` to log as warnings at start-up and `checkconfig` to list.
    pub fn warnings(&self) -> Vec<String> {
        crate::config_audit::audit(self)
            .into_iter()
            .filter(|f| f.severity == crate::config_audit::Severity::Warned)
            .map(|f| f.to_string())
            .collect()
    }

    /// Renders the whole config (every option, defaults included) in `format`.
    pub fn render(&self, format: ConfigFormat) -> Result<String, ConfigError> {
        let tree = serde_json::to_value(self).map_err(|e| ConfigError::Render {
            format: format.name(),
            message: e.to_string(),
        })?;
        render_tree(&drop_nulls(tree), format)
    }
}

/// Whether an opaque section's value turns something on (so ignoring it matters): `false`, `0`,
/// `""`, empty lists/objects and objects of only such values do not.
pub(crate) fn is_active(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => m.values().any(is_active),
    }
}

fn validate_namespace_options(
    at: &str,
    o: &NamespaceOptions,
    global_meta_ttl: Duration,
    out: &mut Vec<String>,
) {
    let mut problems: Vec<String> = Vec::new();
    if o.history_ttl.subsec_nanos() != 0 || o.history_meta_ttl.subsec_nanos() != 0 {
        problems.push("history_ttl and history_meta_ttl must be whole seconds".to_string());
    }
    if (o.history_size == 0) != o.history_ttl.is_zero() {
        problems.push("history needs both history_size and history_ttl (or neither)".to_string());
    }
    let meta_ttl = if o.history_meta_ttl.is_zero() {
        global_meta_ttl
    } else {
        o.history_meta_ttl
    };
    if o.history_ttl > meta_ttl {
        problems.push(format!(
            "history_ttl ({}) can not be longer than history_meta_ttl ({})",
            format_duration(o.history_ttl),
            format_duration(meta_ttl)
        ));
    }
    if o.force_recovery && !o.history_enabled() {
        problems.push("force_recovery needs history (history_size and history_ttl)".to_string());
    }
    if o.force_positioning && !o.history_enabled() {
        problems.push("force_positioning needs history (history_size and history_ttl)".to_string());
    }
    if o.auto_cache_recover && (!o.force_recovery || o.force_recovery_mode != RecoveryMode::Cache) {
        problems.push(
            "auto_cache_recover needs force_recovery and force_recovery_mode \"cache\"".to_string(),
        );
    }
    if let Some(t) = o
        .allowed_delta_types
        .iter()
        .find(|t| t.as_str() != "fossil")
    {
        problems.push(format!(
            "allowed_delta_types: unknown delta type \"{t}\" (only \"fossil\")"
        ));
    }
    out.extend(problems.into_iter().map(|m| format!("{at}: {m}")));
}

/// Turns the file/env tree into a typed config: unknown keys are refused with their path, scalar
/// strings are coerced where the option is a number or boolean (as Centrifugo's loader does),
/// then serde checks every value's type, reporting the option's path.
fn from_tree(tree: Value, origins: &Origins) -> Result<Config, ConfigError> {
    let loaded = from_tree_lenient(tree, origins);
    ConfigError::from_problems(loaded.problems)?;
    loaded
        .config
        .ok_or_else(|| ConfigError::Invalid("the configuration could not be read".to_string()))
}

/// What [`Config::read_with_env`] found: the config (when every known option has a value of
/// the right type; its `load_warnings` hold the notes made while reading) and every problem.
#[derive(Debug)]
pub struct ConfigReport {
    /// The config, unless a value had the wrong type.
    pub config: Option<Config>,
    /// Unknown options, values of the wrong type and (once validated) inconsistent or refused
    /// options; empty when the config is usable.
    pub problems: Vec<ConfigError>,
}

impl ConfigReport {
    /// The config when there are no problems; all the problems otherwise.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        ConfigError::from_problems(self.problems)?;
        self.config
            .ok_or_else(|| ConfigError::Invalid("the configuration could not be read".to_string()))
    }
}

/// What [`from_tree_lenient`] made of a tree.
struct Loaded {
    /// The config, when the known options all have values of the right type.
    config: Option<Config>,
    /// Unknown options (each removed from the tree so that the rest could be read) and the
    /// first value of the wrong type.
    problems: Vec<ConfigError>,
    /// Options that Centrifugo knows and Herald does not (ignored, with a warning).
    warnings: Vec<String>,
}

/// [`from_tree`] that goes on after unknown options, so that all of them are reported at once.
fn from_tree_lenient(mut tree: Value, origins: &Origins) -> Loaded {
    let template = default_tree();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    check_and_coerce(
        &mut tree,
        &template,
        "",
        origins,
        &mut problems,
        &mut warnings,
    );
    let config = match serde_path_to_error::deserialize::<_, Config>(tree) {
        Ok(config) => Some(config),
        Err(err) => {
            let path = err.path().to_string();
            problems.push(ConfigError::InvalidValue {
                origin: origins.for_path(&path),
                message: err.into_inner().to_string(),
                path,
            });
            None
        }
    };
    Loaded {
        config,
        problems,
        warnings,
    }
}

/// The default config as a JSON tree: the set of known option paths and their value kinds.
fn default_tree() -> Value {
    // Serializing plain data structs to a `Value` cannot fail (all keys are strings).
    serde_json::to_value(Config::default()).unwrap_or(Value::Null)
}

/// Element templates of lists whose elements are option objects.
fn element_template(path: &str) -> Option<Value> {
    match path {
        "channel.namespaces" => serde_json::to_value(ChannelNamespace::default()).ok(),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check_and_coerce(
    input: &mut Value,
    template: &Value,
    path: &str,
    origins: &Origins,
    problems: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    match (input, template) {
        (Value::Object(map), Value::Object(known)) => {
            map.retain(|key, _| {
                if known.contains_key(key) {
                    return true;
                }
                let child = join(path, key);
                if crate::config_audit::is_centrifugo_option(&child) {
                    warnings.push(format!(
                        "{child}: a Centrifugo option that Herald does not implement; ignored"
                    ));
                } else {
                    problems.push(ConfigError::UnknownOption {
                        suggestion: closest(key, known.keys()).map(|k| join(path, k)),
                        origin: origins.for_path(&child),
                        path: child,
                    });
                }
                false
            });
            for (key, value) in map.iter_mut() {
                if let Some(t) = known.get(key) {
                    check_and_coerce(value, t, &join(path, key), origins, problems, warnings);
                }
            }
        }
        (Value::Array(items), Value::Array(_)) => {
            if let Some(t) = element_template(path) {
                for (i, item) in items.iter_mut().enumerate() {
                    let at = format!("{path}[{i}]");
                    check_and_coerce(item, &t, &at, origins, problems, warnings);
                }
            }
        }
        (value @ Value::String(_), Value::Number(_)) => {
            if let Some(n) = value.as_str().and_then(parse_number) {
                *value = n;
            }
        }
        (value @ Value::String(_), Value::Bool(_)) => {
            if let Some(b) = value.as_str().and_then(parse_bool) {
                *value = Value::Bool(b);
            }
        }
        _ => {}
    }
}

fn parse_number(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(Value::from(n));
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(Value::from(n));
    }
    s.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

/// Go's `strconv.ParseBool`, which Centrifugo uses for environment variables.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The known key closest to `key` (typo suggestions), if it is close enough to be useful.
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The environment variable for an option path: `client.token.hmac_secret_key` →
/// `HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY`.
pub fn env_var_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "_").to_ascii_uppercase()
    )
}

/// Every option path (objects included, parents before children) that an environment variable
/// can set, with the default value that tells its kind.
fn env_paths(template: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    if let Value::Object(map) = template {
        for (key, value) in map {
            let child = join(path, key);
            out.push((child.clone(), value.clone()));
            env_paths(value, &child, out);
        }
    }
}

/// Applies `HERALD_*` variables onto the tree. Scalars are set as strings (coerced to numbers or
/// booleans later, by option kind); objects and opaque sections take JSON; lists take JSON or a
/// comma/space-separated list of strings. Returns where each path came from, and warnings for
/// `HERALD_*` variables that name no option.
///
/// Named namespaces also take Centrifugo's environment form (see [`apply_namespace_env`]):
/// `HERALD_CHANNEL_NAMESPACES=chat news` plus `HERALD_CHANNEL_NAMESPACES_CHAT_PRESENCE=true`.
fn apply_env<I>(tree: &mut Value, env: I) -> Result<(Origins, Vec<String>), ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    let mut origins = Origins::default();
    let mut warnings = Vec::new();
    if vars.is_empty() {
        return Ok((origins, warnings));
    }
    let mut paths = Vec::new();
    env_paths(&default_tree(), "", &mut paths);
    let mut known = BTreeSet::new();
    for (path, kind) in &paths {
        let var = env_var_name(path);
        known.insert(var.clone());
        let Some(raw) = vars.get(&var) else { continue };
        let env_err = |message: String| ConfigError::Env {
            var: var.clone(),
            message,
        };
        let value = env_value(path, kind, raw).map_err(env_err)?;
        set_path(tree, path, value).map_err(env_err)?;
        origins.0.push((path.clone(), var.clone()));
    }
    apply_namespace_env(tree, &vars, &mut origins, &mut known)?;
    for var in vars.keys().filter(|v| !known.contains(*v)) {
        warnings.push(format!(
            "environment variable {var} does not name a Herald option and was ignored"
        ));
    }
    Ok((origins, warnings))
}

/// The value of option `path` (whose default is `kind`) from the environment string `raw`.
fn env_value(path: &str, kind: &Value, raw: &str) -> Result<Value, String> {
    Ok(match kind {
        Value::Object(_) => match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Object(_)) => v,
            Ok(other) => {
                return Err(format!(
                    "{path} is a group of options: expected a JSON object, got {}",
                    kind_name(&other)
                ));
            }
            Err(e) => {
                return Err(format!(
                    "{path} is a group of options: expected a JSON object ({e})"
                ));
            }
        },
        Value::Array(_) => {
            if raw.trim_start().starts_with('[') {
                serde_json::from_str(raw)
                    .map_err(|e| format!("{path}: not a valid JSON list ({e})"))?
            } else if element_template(path).is_some() {
                // A list of named option groups (namespaces): Centrifugo's environment form
                // is their names, separated by spaces; their options come from variables of
                // their own (see `apply_namespace_env`).
                Value::Array(
                    raw.split_whitespace()
                        .map(|name| serde_json::json!({ "name": name }))
                        .collect(),
                )
            } else {
                Value::Array(
                    raw.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                )
            }
        }
        Value::Null => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
        _ => Value::String(raw.to_owned()),
    })
}

/// Centrifugo's per-namespace environment variables: for each namespace in
/// `channel.namespaces` (from the file or from `HERALD_CHANNEL_NAMESPACES`, in either form),
/// `HERALD_CHANNEL_NAMESPACES_<NAME>_<OPTION>` sets that option of it. `<NAME>` is the
/// namespace's name in capitals with `.` and `-` as `_`, as Centrifugo spells it; the
/// variables it reads are added to `known`.
fn apply_namespace_env(
    tree: &mut Value,
    vars: &BTreeMap<String, String>,
    origins: &mut Origins,
    known: &mut BTreeSet<String>,
) -> Result<(), ConfigError> {
    const LIST: &str = "channel.namespaces";
    let Some(template) = element_template(LIST) else {
        return Ok(());
    };
    let mut options = Vec::new();
    env_paths(&template, "", &mut options);
    let list_var = env_var_name(LIST);
    let Some(Value::Array(namespaces)) = tree.pointer_mut("/channel/namespaces") else {
        return Ok(());
    };
    for (i, namespace) in namespaces.iter_mut().enumerate() {
        let Some(name) = namespace.get("name").and_then(Value::as_str) else {
            continue;
        };
        let prefix = format!(
            "{list_var}_{}_",
            name.replace(['.', '-'], "_").to_ascii_uppercase()
        );
        for (option, kind) in options.iter().filter(|(o, _)| o != "name") {
            let var = format!("{prefix}{}", option.replace('.', "_").to_ascii_uppercase());
            let Some(raw) = vars.get(&var) else { continue };
            known.insert(var.clone());
            let path = format!("{LIST}[{i}].{option}");
            let env_err = |message: String| ConfigError::Env {
                var: var.clone(),
                message,
            };
            let value = env_value(&path, kind, raw).map_err(env_err)?;
            set_path(namespace, option, value).map_err(env_err)?;
            origins.0.push((path, var.clone()));
        }
    }
    Ok(())
}

fn set_path(tree: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut node = tree;
    let mut walked = String::new();
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        let Value::Object(map) = node else {
            return Err(format!(
                "cannot set {path}: {walked} in the config file is not a group of options"
            ));
        };
        if keys.peek().is_none() {
            map.insert(key.to_string(), value);
            return Ok(());
        }
        walked = join(&walked, key);
        node = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Demo mode
// ---------------------------------------------------------------------------------------------

/// Namespace of the demo chat's rooms (`rooms:general`…).
pub const DEMO_ROOMS_NAMESPACE: &str = "rooms";
/// Namespace of the demo chat's private inboxes (`inbox:#bob`).
pub const DEMO_INBOX_NAMESPACE: &str = "inbox";

impl Config {
    /// Turns on what the demo chat app needs when `demo` is set (`--demo` or `"demo": true`),
    /// leaving alone whatever the config already says:
    ///
    /// * namespace `rooms` (unless configured): anyone signed in may subscribe; subscribers may
    ///   publish, read history and presence; durable history with forced recovery; presence
    ///   and join/leave;
    /// * namespace `inbox` (unless configured): user-limited channels (`inbox:#bob` is bob's),
    ///   any signed-in user may publish into any inbox; durable history with forced recovery;
    /// * the admin UI, always (a demo shows its admin, even from a `herald genconfig` config,
    ///   which writes `admin.enabled: false`): with the configured password, else the one from
    ///   the demo's secrets file (`crate::demo_secrets`, filled in before this by
    ///   `Cli::load_config`), else a password and session secret generated here (the password
    ///   is then in [`Config::load_warnings`]).
    ///
    /// Call it after the flags are applied and before [`Config::validate`]. Does nothing when
    /// `demo` is off.
    pub fn apply_demo(&mut self) {
        if !self.demo {
            return;
        }
        let history = |size: usize| NamespaceOptions {
            history_size: size,
            history_ttl: Duration::from_secs(720 * 3600),
            force_recovery: true,
            allow_history_for_subscriber: true,
            ..NamespaceOptions::default()
        };
        if self.namespace(DEMO_ROOMS_NAMESPACE).is_none() {
            self.channel.namespaces.push(ChannelNamespace {
                name: DEMO_ROOMS_NAMESPACE.to_owned(),
                options: NamespaceOptions {
                    allow_subscribe_for_client: true,
                    allow_publish_for_subscriber: true,
                    presence: true,
                    join_leave: true,
                    force_push_join_leave: true,
                    allow_presence_for_subscriber: true,
                    ..history(500)
                },
            });
        }
        if self.namespace(DEMO_INBOX_NAMESPACE).is_none() {
            self.channel.namespaces.push(ChannelNamespace {
                name: DEMO_INBOX_NAMESPACE.to_owned(),
                options: NamespaceOptions {
                    allow_user_limited_channels: true,
                    allow_publish_for_client: true,
                    ..history(1000)
                },
            });
        }
        if self.client.recovery_max_publication_limit < 1000 {
            self.client.recovery_max_publication_limit = 1000;
        }
        let admin = &mut self.admin;
        admin.enabled = true;
        if admin.password.is_empty() && !admin.insecure {
            admin.password = random_secret(16);
            let path = match admin.handler_prefix.trim_end_matches('/') {
                "" => "/admin",
                prefix => prefix,
            };
            self.load_warnings.push(format!(
                "demo: admin UI at {path}/, password for this run: {} (set admin.password to \
                 choose one)",
                admin.password
            ));
        }
        if admin.enabled && admin.secret.is_empty() {
            admin.secret = random_secret(32);
        }
    }
}

#[cfg(test)]
mod demo_tests {
    use super::*;

    #[test]
    fn demo_off_changes_nothing() {
        let mut c = Config::default();
        c.apply_demo();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn demo_adds_the_chat_namespaces_and_an_admin_login() {
        let mut c = Config {
            demo: true,
            ..Config::default()
        };
        c.apply_demo();
        let rooms = c.namespace(DEMO_ROOMS_NAMESPACE).unwrap();
        assert!(rooms.history_enabled() && rooms.force_recovery && rooms.presence);
        assert!(rooms.join_leave && rooms.allow_subscribe_for_client);
        assert!(rooms.allow_publish_for_subscriber && rooms.allow_presence_for_subscriber);
        let inbox = c.namespace(DEMO_INBOX_NAMESPACE).unwrap();
        assert!(inbox.history_enabled() && inbox.force_recovery);
        assert!(inbox.allow_user_limited_channels && inbox.allow_publish_for_client);
        assert!(!inbox.allow_subscribe_for_client);
        assert!(c.admin.enabled && !c.admin.password.is_empty() && !c.admin.secret.is_empty());
        assert!(
            c.load_warnings
                .iter()
                .any(|w| w.contains(&c.admin.password))
        );
        c.validate().unwrap();
        // Twice is the same as once.
        let once = c.clone();
        c.apply_demo();
        assert_eq!(c.channel.namespaces, once.channel.namespaces);
    }

    #[test]
    fn demo_keeps_what_the_config_says() {
        let mut c = Config::from_str_with_format(
            r#"{"demo": true, "channel": {"namespaces": [{"name": "rooms"}]},
                "admin": {"enabled": true, "password": "pw", "secret": "s"}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        c.apply_demo();
        assert!(!c.namespace("rooms").unwrap().presence);
        assert!(c.namespace("inbox").is_some());
        assert_eq!(
            (c.admin.password.as_str(), c.admin.secret.as_str()),
            ("pw", "s")
        );
        assert!(c.load_warnings.is_empty());

        // A `herald genconfig` config writes the admin off; the demo shows it anyway, with the
        // config's password.
        let mut c = Config::from_str_with_format(
            r#"{"demo": true, "admin": {"enabled": false, "password": "pw", "secret": "s"}}"#,
            ConfigFormat::Json,
        )
        .unwrap();
        c.apply_demo();
        assert!(c.admin.enabled);
        assert_eq!(c.admin.password, "pw");
    }
}

// ---------------------------------------------------------------------------------------------
// genconfig
// ---------------------------------------------------------------------------------------------

/// A random secret of `len` letters and digits (`rand`'s thread RNG, a CSPRNG).
pub fn random_secret(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A minimal starter config in `format`, like `centrifugo genconfig`: fresh random
/// `client.token.hmac_secret_key`, `http_api.key`, `admin.password` and `admin.secret`, an empty
/// `client.allowed_origins`, and the admin UI off.
pub fn genconfig(format: ConfigFormat) -> Result<String, ConfigError> {
    let tree = serde_json::json!({
        "client": {
            "allowed_origins": [],
            "token": { "hmac_secret_key": random_secret(48) },
        },
        "http_api": { "key": random_secret(48) },
        "admin": {
            "enabled": false,
            "password": random_secret(24),
            "secret": random_secret(48),
        },
    });
    render_tree(&tree, format)
}

fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

fn render_tree(tree: &Value, format: ConfigFormat) -> Result<String, ConfigError> {
    let render = |message: String| ConfigError::Render {
        format: format.name(),
        message,
    };
    let mut text = match format {
        ConfigFormat::Json => {
            serde_json::to_string_pretty(tree).map_err(|e| render(e.to_string()))?
        }
        ConfigFormat::Toml => toml::to_string_pretty(tree).map_err(|e| render(e.to_string()))?,
        ConfigFormat::Yaml => serde_yaml_ng::to_string(tree).map_err(|e| render(e.to_string()))?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// A Centrifugo v6 style config touching every area Herald reads.
    const FULL_JSON: &str = r#"{
      "http_server": { "address": "0.0.0.0", "port": 9000, "internal_port": 9001,
                       "tls": { "enabled": false } },
      "log": { "level": "debug" },
      "engine": { "type": "redis", "redis": { "address": "redis:6379", "presence_ttl": "30s" } },
      "client": {
        "allowed_origins": ["http://localhost:3000", "https://example.com"],
        "token": { "hmac_secret_key": "s3cret", "audience": "herald", "issuer": "me" },
        "allow_anonymous_connect_without_token": true,
        "ping_interval": "12s",
        "pong_timeout": "5s",
        "queue_max_size": 2097152,
        "channel_limit": 64,
        "stale_close_delay": "1m30s",
        "expired_close_delay": "500ms",
        "user_connection_limit": 3,
        "history_max_publication_limit": 100,
        "recovery_max_publication_limit": 200,
        "subscribe_to_user_personal_channel": { "enabled": true, "personal_channel_namespace": "personal" },
        "proxy": { "connect": { "endpoint": "http://backend/connect" } }
      },
      "channel": {
        "max_length": 128,
        "history_meta_ttl": "168h",
        "without_namespace": { "presence": true, "allow_subscribe_for_client": true },
        "namespaces": [
          { "name": "chat", "presence": true, "join_leave": true, "force_push_join_leave": true,
            "history_size": 100, "history_ttl": "720h", "history_meta_ttl": "2160h",
            "force_recovery": true, "force_positioning": true, "force_recovery_mode": "cache",
            "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
            "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true,
            "allow_user_limited_channels": true, "allow_tags_filter": true },
          { "name": "personal", "allow_recovery": true, "allow_positioning": true,
            "force_recovery_mode": "" }
        ]
      },
      "websocket": { "message_size_limit": 131072, "compression": true, "write_timeout": "2s" },
      "http_api": { "key": "api-key", "handler_prefix": "/herald/api" },
      "admin": { "enabled": true, "password": "pw", "secret": "adm" },
      "prometheus": { "enabled": true },
      "health": { "enabled": true },
      "history": { "durability": "os" },
      "data_dir": "/var/lib/herald",
      "demo": true,
      "usage_stats": { "disabled": true },
      "grpc_api": { "enabled": true, "port": 10000 }
    }"#;

    const FULL_TOML: &str = r#"
data_dir = "/var/lib/herald"
demo = true

[http_server]
address = "0.0.0.0"
port = 9000
internal_port = 9001
tls = { enabled = false }

[log]
level = "debug"

[engine]
type = "redis"
redis = { address = "redis:6379", presence_ttl = "30s" }

[client]
allowed_origins = ["http://localhost:3000", "https://example.com"]
allow_anonymous_connect_without_token = true
ping_interval = "12s"
pong_timeout = "5s"
queue_max_size = 2097152
channel_limit = 64
stale_close_delay = "1m30s"
expired_close_delay = "500ms"
user_connection_limit = 3
history_max_publication_limit = 100
recovery_max_publication_limit = 200
subscribe_to_user_personal_channel = { enabled = true, personal_channel_namespace = "personal" }
proxy = { connect = { endpoint = "http://backend/connect" } }

[client.token]
hmac_secret_key = "s3cret"
audience = "herald"
issuer = "me"

[channel]
max_length = 128
history_meta_ttl = "168h"

[channel.without_namespace]
presence = true
allow_subscribe_for_client = true

[[channel.namespaces]]
name = "chat"
presence = true
join_leave = true
force_push_join_leave = true
history_size = 100
history_ttl = "720h"
history_meta_ttl = "2160h"
force_recovery = true
force_positioning = true
force_recovery_mode = "cache"
allow_subscribe_for_client = true
allow_publish_for_subscriber = true
allow_history_for_subscriber = true
allow_presence_for_subscriber = true
allow_user_limited_channels = true
allow_tags_filter = true

[[channel.namespaces]]
name = "personal"
allow_recovery = true
allow_positioning = true
force_recovery_mode = ""

[websocket]
message_size_limit = 131072
compression = true
write_timeout = "2s"

[http_api]
key = "api-key"
handler_prefix = "/herald/api"

[admin]
enabled = true
password = "pw"
secret = "adm"

[prometheus]
enabled = true

[health]
enabled = true

[history]
durability = "os"

[usage_stats]
disabled = true

[grpc_api]
enabled = true
port = 10000
"#;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn json(text: &str) -> Result<Config, ConfigError> {
        Config::from_str_with_format(text, ConfigFormat::Json)
    }

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "herald-config-test-{}-{}",
            std::process::id(),
            random_secret(8)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_match_centrifugo() {
        let c = Config::default();
        assert_eq!(c.http_server.address, "127.0.0.1");
        assert_eq!(c.http_server.port, 8000);
        assert_eq!(c.client.ping_interval, Duration::from_secs(25));
        assert_eq!(c.client.pong_timeout, Duration::from_secs(8));
        assert_eq!(c.client.queue_max_size, 1_048_576);
        assert_eq!(c.client.channel_limit, 128);
        assert_eq!(c.client.stale_close_delay, Duration::from_secs(10));
        assert_eq!(c.client.expired_close_delay, Duration::from_secs(25));
        assert_eq!(c.client.history_max_publication_limit, 300);
        assert_eq!(c.client.recovery_max_publication_limit, 300);
        assert_eq!(c.websocket.message_size_limit, 65_536);
        assert_eq!(c.websocket.write_timeout, Duration::from_secs(1));
        assert_eq!(c.http_api.handler_prefix, "/api");
        assert_eq!(c.http_server.body_read_timeout, Duration::from_secs(10));
        assert_eq!(c.http_server.unauthenticated_request_limit, 128);
        assert_eq!(c.channel.max_length, 255);
        assert_eq!(c.data_dir, PathBuf::from("./herald-data"));
        assert_eq!(c.history.durability, Durability::Fsync);
        assert!(c.client.allowed_origins.is_empty());
        assert!(!c.client.allow_anonymous_connect_without_token);
        c.validate().unwrap();
        // An empty file is the defaults.
        assert_eq!(json("{}").unwrap(), c);
        assert_eq!(
            Config::from_str_with_format("", ConfigFormat::Toml).unwrap(),
            c
        );
        assert_eq!(
            Config::from_str_with_format("", ConfigFormat::Yaml).unwrap(),
            c
        );
    }

    #[test]
    fn full_centrifugo_json_config_loads() {
        let c = json(FULL_JSON).unwrap();
        // Parsed whole; what Herald does not implement is refused (all of it at once) or
        // warned about, each by its path.
        let refused: Vec<String> = c
            .validate()
            .expect_err("a Redis engine and an internal port are refused")
            .into_problems()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains("engine.type: \"redis\" is not implemented"));
        assert!(refused[1].contains("http_server.internal_port: not implemented"));
        assert_eq!(c.http_server.address, "0.0.0.0");
        assert_eq!(c.http_server.port, 9000);
        assert_eq!(c.http_server.internal_port, "9001");
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.engine.kind, EngineType::Redis);
        assert!(c.engine.redis.is_some());
        assert_eq!(c.client.token.hmac_secret_key, "s3cret");
        assert_eq!(c.client.token.audience, "herald");
        assert!(c.client.allow_anonymous_connect_without_token);
        assert_eq!(c.client.ping_interval, Duration::from_secs(12));
        assert_eq!(c.client.pong_timeout, Duration::from_secs(5));
        assert_eq!(c.client.stale_close_delay, Duration::from_secs(90));
        assert_eq!(c.client.expired_close_delay, Duration::from_millis(500));
        assert_eq!(c.client.queue_max_size, 2_097_152);
        assert_eq!(c.client.channel_limit, 64);
        assert_eq!(c.client.user_connection_limit, 3);
        assert!(c.client.origin_allowed("https://EXAMPLE.com"));
        assert!(!c.client.origin_allowed("https://evil.com"));
        let mut client = ClientConfig::default();
        assert!(!client.origin_allowed("https://a.com"));
        client.allowed_origins = vec!["https://*.example.com".into()];
        assert!(client.origin_allowed("https://chat.Example.com"));
        assert!(!client.origin_allowed("https://example.com"));
        assert!(!client.origin_allowed("https://chat.example.com.evil.net"));
        client.allowed_origins = vec!["*".into()];
        assert!(client.origin_allowed("http://anything:8080"));
        assert_eq!(c.channel.max_length, 128);
        assert_eq!(c.channel.history_meta_ttl, Duration::from_secs(168 * 3600));
        let chat = c.namespace("chat").unwrap();
        assert!(chat.presence && chat.join_leave && chat.force_push_join_leave);
        assert_eq!(chat.history_size, 100);
        assert_eq!(chat.history_ttl, Duration::from_secs(720 * 3600));
        assert_eq!(chat.force_recovery_mode, RecoveryMode::Cache);
        assert!(chat.history_enabled());
        let personal = c.namespace("personal").unwrap();
        assert_eq!(personal.force_recovery_mode, RecoveryMode::Stream);
        assert!(c.namespace("").unwrap().presence);
        assert!(c.namespace("nope").is_none());
        assert!(c.websocket.compression);
        assert_eq!(c.websocket.write_timeout, Duration::from_secs(2));
        assert_eq!(c.http_api.key, "api-key");
        assert_eq!(c.http_api.handler_prefix, "/herald/api");
        assert!(c.admin.enabled && c.prometheus.enabled && c.health.enabled);
        assert_eq!(c.history.durability, Durability::Os);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/herald"));
        assert!(c.demo);
        let warned: Vec<String> = c
            .warnings()
            .iter()
            .map(|w| w.split(':').next().unwrap_or_default().to_string())
            .collect();
        // `allow_tags_filter` is implemented; only the gRPC API is not.
        assert_eq!(warned, ["grpc_api"]);
    }

    #[test]
    fn toml_and_yaml_equal_json() {
        let from_json = json(FULL_JSON).unwrap();
        let from_toml = Config::from_str_with_format(FULL_TOML, ConfigFormat::Toml).unwrap();
        assert_eq!(from_toml, from_json);
        let yaml =
            serde_yaml_ng::to_string(&serde_json::from_str::<Value>(FULL_JSON).unwrap()).unwrap();
        let from_yaml = Config::from_str_with_format(&yaml, ConfigFormat::Yaml).unwrap();
        assert_eq!(from_yaml, from_json);
    }

    #[test]
    fn load_picks_format_from_extension() {
        // The full configs set options Herald refuses: both formats are read alike, and
        // refused alike.
        let path = write_temp("herald.toml", FULL_TOML);
        let from_toml = Config::load_with_env(Some(&path), no_env()).unwrap_err();
        assert!(from_toml.to_string().contains("engine.type"), "{from_toml}");
        let path = write_temp("herald.json", FULL_JSON);
        let from_json = Config::load_with_env(Some(&path), no_env()).unwrap_err();
        assert_eq!(from_json.to_string(), from_toml.to_string());
        let path = write_temp("herald.toml", "[http_server]\nport = 9000\n");
        let c = Config::load_with_env(Some(&path), no_env()).unwrap();
        assert_eq!(c.http_server.port, 9000);
        let path = write_temp("herald.json", r#"{"http_server": {"port": 9000}}"#);
        assert_eq!(Config::load_with_env(Some(&path), no_env()).unwrap(), c);

        let path = write_temp("herald.ini", "x=1");
        let err = Config::load_with_env(Some(&path), no_env()).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownFormat { .. }), "{err}");
        let err =
            Config::load_with_env(Some(Path::new("/nonexistent/h.json")), no_env()).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = json(r#"{"client": {"pingg_interval": "25s"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(r#"unknown option "client.pingg_interval""#),
            "{msg}"
        );
        assert!(
            msg.contains(r#"did you mean "client.ping_interval""#),
            "{msg}"
        );

        let err = json(r#"{"totally_unrelated": 1}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"unknown option "totally_unrelated""#);

        let err = json(
            r#"{"channel": {"namespaces": [{"name": "a"}, {"name": "b", "presense": true}]}}"#,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(r#"unknown option "channel.namespaces[1].presense""#),
            "{msg}"
        );
        assert!(
            msg.contains(r#"did you mean "channel.namespaces[1].presence""#),
            "{msg}"
        );

        let err = Config::from_str_with_format(
            "[client.token]\nhmac_secret = \"x\"\n",
            ConfigFormat::Toml,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(r#"unknown option "client.token.hmac_secret""#),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_type() {
        let err = json(r#"{"client": {"ping_interval": 25}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"client.ping_interval: expected a duration like "25s", got 25"#
        );
        let err = json(r#"{"client": {"ping_interval": "25 seconds"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                r#"client.ping_interval: expected a duration like "25s", got "25 seconds""#
            ),
            "{msg}"
        );
        let err = json(r#"{"channel": {"namespaces": [{"name": "a", "history_ttl": true}]}}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("channel.namespaces[0].history_ttl: "),
            "{err}"
        );
        let err = json(r#"{"http_server": {"port": "eighty"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("http_server.port: ") && msg.contains("u16"),
            "{msg}"
        );
        let err = json(r#"{"http_server": {"port": 70000}}"#).unwrap_err();
        assert!(err.to_string().starts_with("http_server.port: "), "{err}");
        let err = json(r#"{"engine": {"type": "postgres"}}"#).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("engine.type: ") && msg.contains("redis"),
            "{msg}"
        );
        let err = json(r#"{"client": {"allowed_origins": "*"}}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("client.allowed_origins: "),
            "{err}"
        );
        let err = json(r#"{"client": 5}"#).unwrap_err();
        assert!(err.to_string().starts_with("client: "), "{err}");
        let err = json(r#"{"client": "#).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        let err = json("[1]").unwrap_err();
        assert!(
            err.to_string().contains("top level must be an object"),
            "{err}"
        );
    }

    #[test]
    fn quoted_numbers_and_booleans_are_accepted_like_centrifugo() {
        let c =
            json(r#"{"http_server": {"port": "9000"}, "client": {"insecure": "true"}}"#).unwrap();
        assert_eq!(c.http_server.port, 9000);
        assert!(c.client.insecure);
    }

    #[test]
    fn env_overrides_file() {
        let path = write_temp(
            "c.json",
            r#"{"http_server": {"port": 9000}, "http_api": {"key": "file"}}"#,
        );
        let c = Config::load_with_env(
            Some(&path),
            env(&[
                ("HERALD_HTTP_API_KEY", "from-env"),
                ("HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY", "env-secret"),
                ("HERALD_HTTP_SERVER_PORT", "8123"),
                ("HERALD_CLIENT_PING_INTERVAL", "40s"),
                (
                    "HERALD_CLIENT_ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN",
                    "true",
                ),
                (
                    "HERALD_CLIENT_ALLOWED_ORIGINS",
                    "http://a.test, http://b.test",
                ),
                (
                    "HERALD_CHANNEL_NAMESPACES",
                    r#"[{"name":"chat","presence":true}]"#,
                ),
                ("HERALD_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE", "10"),
                ("HERALD_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL", "1h"),
                ("HERALD_DATA_DIR", "/tmp/hd"),
                ("HERALD_HISTORY_DURABILITY", "os"),
                ("HERALD_LOG_LEVEL", "warn"),
                ("HERALD_HTTP_SERVER_BODY_READ_TIMEOUT", "2500ms"),
                ("HERALD_HTTP_SERVER_UNAUTHENTICATED_REQUEST_LIMIT", "7"),
                ("HERALD_NOT_AN_OPTION", "x"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http_api.key, "from-env");
        assert_eq!(c.client.token.hmac_secret_key, "env-secret");
        assert_eq!(c.http_server.port, 8123);
        assert_eq!(c.client.ping_interval, Duration::from_secs(40));
        assert!(c.client.allow_anonymous_connect_without_token);
        assert_eq!(
            c.client.allowed_origins,
            vec!["http://a.test", "http://b.test"]
        );
        assert!(c.namespace("chat").unwrap().presence);
        assert!(c.namespace("").unwrap().history_enabled());
        assert_eq!(c.data_dir, PathBuf::from("/tmp/hd"));
        assert_eq!(c.history.durability, Durability::Os);
        assert_eq!(c.log.level, LogLevel::Warn);
        assert_eq!(c.http_server.body_read_timeout, Duration::from_millis(2500));
        assert_eq!(c.http_server.unauthenticated_request_limit, 7);
        assert_eq!(c.load_warnings.len(), 1);
        assert!(c.load_warnings[0].contains("HERALD_NOT_AN_OPTION"));
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let err = Config::load_with_env(None, env(&[("HERALD_CLIENT_PING_INTERVAL", "soon")]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "client.ping_interval (from HERALD_CLIENT_PING_INTERVAL): expected a duration"
            ),
            "{msg}"
        );
        let err =
            Config::load_with_env(None, env(&[("HERALD_HTTP_SERVER_PORT", "x")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_HTTP_SERVER_PORT"), "{err}");
        let err = Config::load_with_env(None, env(&[("HERALD_CLIENT", "nope")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_CLIENT"), "{err}");
        let err = Config::load_with_env(
            None,
            env(&[("HERALD_CHANNEL_NAMESPACES", r#"[{"name":"a","bogus":1}]"#)]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(
                r#"unknown option "channel.namespaces[0].bogus" (from HERALD_CHANNEL_NAMESPACES)"#
            ),
            "{msg}"
        );
    }

    #[test]
    fn named_namespaces_take_centrifugos_environment_form() {
        // Centrifugo v6: the list as space-separated names, each namespace's options from
        // PREFIX_CHANNEL_NAMESPACES_<NAME>_<OPTION>.
        let c = Config::load_with_env(
            None,
            env(&[
                ("HERALD_CHANNEL_NAMESPACES", "smallhistory live-feed"),
                ("HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_SIZE", "10"),
                ("HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_TTL", "300s"),
                (
                    "HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_FORCE_RECOVERY",
                    "true",
                ),
                (
                    "HERALD_CHANNEL_NAMESPACES_LIVE_FEED_ALLOW_SUBSCRIBE_FOR_CLIENT",
                    "true",
                ),
            ]),
        )
        .unwrap();
        let small = c.namespace("smallhistory").unwrap();
        assert_eq!(small.history_size, 10);
        assert_eq!(small.history_ttl, Duration::from_secs(300));
        assert!(small.force_recovery && !small.allow_subscribe_for_client);
        let feed = c.namespace("live-feed").unwrap();
        assert!(feed.allow_subscribe_for_client && !feed.history_enabled());
        assert!(c.load_warnings.is_empty(), "{:?}", c.load_warnings);

        // The per-namespace variables also reach namespaces of the file (and of the JSON form).
        let path = write_temp(
            "ns.json",
            r#"{"channel": {"namespaces": [{"name": "chat", "presence": false}]}}"#,
        );
        let c = Config::load_with_env(
            Some(&path),
            env(&[
                ("HERALD_CHANNEL_NAMESPACES_CHAT_PRESENCE", "true"),
                ("HERALD_CHANNEL_NAMESPACES_CHAT_BOGUS", "1"),
            ]),
        )
        .unwrap();
        assert!(c.namespace("chat").unwrap().presence);
        assert_eq!(c.load_warnings.len(), 1, "{:?}", c.load_warnings);
        assert!(c.load_warnings[0].contains("HERALD_CHANNEL_NAMESPACES_CHAT_BOGUS"));

        // A bad value names the variable and the option.
        let err = Config::load_with_env(
            None,
            env(&[
                ("HERALD_CHANNEL_NAMESPACES", "chat"),
                ("HERALD_CHANNEL_NAMESPACES_CHAT_HISTORY_TTL", "soon"),
            ]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("channel.namespaces[0].history_ttl")
                && msg.contains("HERALD_CHANNEL_NAMESPACES_CHAT_HISTORY_TTL"),
            "{msg}"
        );
    }

    #[test]
    fn workers_default_to_the_cores_and_are_bounded() {
        assert_eq!(Config::default().workers, 0, "0 = one per CPU core");
        let c = Config::load_with_env(None, env(&[("HERALD_WORKERS", "1")])).unwrap();
        assert_eq!(c.workers, 1);
        let path = write_temp("w.json", r#"{"workers": 5000}"#);
        let err = Config::load_with_env(Some(&path), no_env()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: workers must be at most 1024 (0 = one per CPU core), got 5000"
        );
    }

    #[test]
    fn env_names_are_unique() {
        let mut paths = Vec::new();
        env_paths(&default_tree(), "", &mut paths);
        let mut names = BTreeSet::new();
        for (path, _) in &paths {
            assert!(
                names.insert(env_var_name(path)),
                "two options map to {}",
                env_var_name(path)
            );
        }
        assert!(names.contains("HERALD_HTTP_API_KEY"));
        assert!(names.contains("HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY"));
        assert!(names.contains("HERALD_HTTP_SERVER_PORT"));
    }

    #[test]
    fn durations_parse_like_go() {
        let ok = [
            ("25s", Duration::from_secs(25)),
            ("720h", Duration::from_secs(720 * 3600)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("2us", Duration::from_micros(2)),
            ("3µs", Duration::from_micros(3)),
            ("7ns", Duration::from_nanos(7)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            (".5s", Duration::from_millis(500)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
            assert_eq!(parse_duration(&format_duration(want)), Ok(want), "{text}");
        }
        for bad in [
            "",
            "25",
            "s",
            "-1s",
            "1d",
            "1.s.",
            "5 s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
        assert_eq!(format_duration(Duration::from_secs(720 * 3600)), "720h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }

    #[test]
    fn tls_options_are_checked_and_the_unimplemented_ones_reported() {
        let refused = [
            (
                r#"{"http_server": {"tls": {"enabled": true}}}"#,
                "needs a certificate",
            ),
            (
                r#"{"http_server": {"tls": {"enabled": true, "cert_pem_file": "c"}}}"#,
                "needs a key",
            ),
            (
                r#"{"http_server": {"tls": {"enabled": true, "cert_pem_file": "c",
                   "cert_pem": "x", "key_pem_file": "k"}}}"#,
                "http_server.tls.cert_pem_file and http_server.tls.cert_pem",
            ),
            (
                r#"{"http_server": {"tls": {"enabled": true, "cert_pem_file": "c",
                   "key_pem_file": "k", "client_ca_pem": "x"}}}"#,
                "http_server.tls.client_ca_pem: client certificates",
            ),
            (
                r#"{"http_server": {"tls_autocert": {"enabled": true}}}"#,
                "http_server.tls_autocert",
            ),
        ];
        for (text, expected) in refused {
            let err = json(text).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let c = json(
            r#"{"http_server": {"tls": {"enabled": true, "cert_pem_file": "c",
               "key_pem_file": "k", "server_name": "x", "insecure_skip_verify": true}}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        let warned: Vec<String> = c
            .warnings()
            .into_iter()
            .map(|w| w.split(':').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            warned,
            [
                "http_server.tls.insecure_skip_verify",
                "http_server.tls.server_name"
            ]
        );
        assert_eq!(c.http_server.tls.cert_pem_file, "c");
        // Client certificates while TLS is off: harmless, warned.
        let c = json(r#"{"http_server": {"tls": {"client_ca_pem_file": "ca.pem"}}}"#).unwrap();
        c.validate().unwrap();
        assert!(
            c.warnings()[0].starts_with("http_server.tls.client_ca_pem_file"),
            "{:?}",
            c.warnings()
        );
    }

    #[test]
    fn validate_catches_inconsistent_options() {
        let cases = [
            (
                r#"{"channel": {"namespaces": [{"name": "a"}, {"name": "a"}]}}"#,
                "used twice",
            ),
            (
                r#"{"channel": {"namespaces": [{"name": "a b"}]}}"#,
                "may only contain",
            ),
            (
                r#"{"channel": {"namespaces": [{"presence": true}]}}"#,
                "name is missing",
            ),
            (
                r#"{"channel": {"namespaces": [{"name": "a", "history_size": 10}]}}"#,
                "history_ttl",
            ),
            (
                r#"{"channel": {"namespaces": [{"name": "a", "force_recovery": true}]}}"#,
                "force_recovery needs history",
            ),
            (
                r#"{"channel": {"without_namespace": {"history_size": 1, "history_ttl": "1000h"}}}"#,
                "history_meta_ttl",
            ),
            (
                r#"{"channel": {"without_namespace": {"channel_regex": "^a$"}}}"#,
                "channel_regex",
            ),
            (
                r#"{"http_server": {"body_read_timeout": "0s"}}"#,
                "http_server.body_read_timeout must be greater than zero",
            ),
            (
                r#"{"client": {"ping_interval": "0s"}}"#,
                "client.ping_interval must be greater than zero",
            ),
            (
                r#"{"client": {"pong_timeout": "30s"}}"#,
                "client.pong_timeout (30s) must be shorter",
            ),
            (
                r#"{"client": {"queue_max_size": 0}}"#,
                "client.queue_max_size",
            ),
            (
                r#"{"http_api": {"handler_prefix": "api"}}"#,
                "http_api.handler_prefix",
            ),
            (r#"{"admin": {"enabled": true}}"#, "admin.password"),
            (
                r#"{"client": {"token": {"jwks_public_endpoint": "ftp://x/jwks"}}}"#,
                "client.token: jwks_public_endpoint",
            ),
            (
                r#"{"client": {"token": {"audience": "a", "audience_regex": "^a$"}}}"#,
                "client.token: audience_regex",
            ),
            (
                r#"{"client": {"token": {"issuer_regex": "("}}}"#,
                "client.token: issuer_regex",
            ),
            (
                r#"{"client": {"token": {"rsa_public_key": "not a pem"}}}"#,
                "client.token",
            ),
            (
                r#"{"client": {"subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "p"}}}"#,
                "personal_channel_namespace",
            ),
            (
                r#"{"channel": {"namespace_boundary": ".", "namespaces": [{"name": "a.b"}]}}"#,
                "contains channel.namespace_boundary",
            ),
            (
                r#"{"demo": true, "channel": {"user_boundary": "@"}}"#,
                "demo: the demo chat names its channels",
            ),
            (
                r#"{"demo": true, "websocket": {"handler_prefix": "/ws"}}"#,
                "demo: the demo chat connects",
            ),
        ];
        for (text, want) in cases {
            let c = json(text).unwrap();
            let err = c.validate().expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let c = json(r#"{"channel": {"namespaces": [{"name": "a.b-c_1"}]}}"#).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn genconfig_makes_loadable_configs_with_fresh_secrets() {
        for format in [ConfigFormat::Json, ConfigFormat::Toml, ConfigFormat::Yaml] {
            let text = genconfig(format).unwrap();
            let c = Config::from_str_with_format(&text, format).unwrap();
            c.validate().unwrap();
            assert_eq!(c.client.token.hmac_secret_key.len(), 48);
            assert_eq!(c.http_api.key.len(), 48);
            assert!(!c.admin.password.is_empty() && !c.admin.secret.is_empty());
            assert_ne!(c.client.token.hmac_secret_key, c.http_api.key);
            let again = Config::from_str_with_format(&genconfig(format).unwrap(), format).unwrap();
            assert_ne!(again.http_api.key, c.http_api.key);
        }
    }

    #[test]
    fn render_round_trips() {
        let c = json(FULL_JSON).unwrap();
        for format in [ConfigFormat::Json, ConfigFormat::Toml, ConfigFormat::Yaml] {
            let text = c.render(format).unwrap();
            let back = Config::from_str_with_format(&text, format)
                .unwrap_or_else(|e| panic!("{format:?}: {e}\n{text}"));
            assert_eq!(back, c, "{format:?}");
        }
    }
}
