//! Herald's configuration: one typed [`Config`], read from a file (JSON, TOML or YAML), then
//! from `HERALD_*` environment variables, then from command-line flags (applied by `main`).
//!
//! Option names and nesting follow Centrifugo v6 (`http_server.port`, `client.token.hmac_secret_key`,
//! `channel.namespaces[].history_size`, …) so that a Centrifugo config file works unchanged.
//! Centrifugo sections that Herald does not implement yet (`grpc_api`, `consumers`…)
//! are accepted as opaque values; [`audit`] decides for every accepted option that
//! Herald does not implement whether setting it is refused ([`Config::validate`]) or warned
//! about ([`Config::warnings`]).
//!
//! Anything else is an error that names the option with its full path: a typo such as
//! `client.pingg_interval` gives `unknown option "client.pingg_interval" (did you mean
//! "client.ping_interval"?)`, and a value of the wrong type gives e.g.
//! `client.ping_interval: expected a duration like "25s", got 25`.
//!
//! Durations are Go-style strings (`"25s"`, `"720h"`, `"1m30s"`, `"500ms"`), as in Centrifugo.
//!
//! One file per concern: the schema by section (`schema.rs` holds [`Config`]; `http.rs`,
//! `log.rs`, `engine.rs`, `redis.rs`, `client.rs`, `channel.rs`, `proxy.rs`), file formats
//! (`format.rs`), loading
//! (`load.rs`), the environment overlay (`env.rs`), Go durations (`duration.rs`), validation
//! (`validate.rs`) and its audit of unimplemented options ([`audit`]), demo mode (`demo.rs`)
//! and `herald genconfig` (`genconfig.rs`). Everything other code uses is re-exported here, so
//! that `crate::config::Config` and friends stay the paths to use.

pub mod audit;
mod channel;
mod client;
mod demo;
mod duration;
mod engine;
mod env;
mod error;
mod flat;
mod format;
mod genconfig;
mod http;
mod load;
mod log;
mod nats;
mod proxy;
mod redis;
mod schema;
mod streaming;
#[cfg(test)]
mod test_support;
mod validate;
mod webhooks;

pub use channel::{ChannelConfig, ChannelNamespace, NamespaceOptions, RecoveryMode};
pub use client::{
    ClientConfig, ConnectCodeToUnidirectionalDisconnect, DisconnectTransform,
    PersonalChannelConfig, SubscriptionTokenConfig, TokenConfig, UnidirectionalDisconnectTransform,
};
pub use demo::{DEMO_INBOX_NAMESPACE, DEMO_ROOMS_NAMESPACE};
pub use duration::{DurationError, format_duration, parse_duration};
pub use engine::{
    BrokerConfig, Durability, EngineConfig, EngineType, HistoryConfig, PresenceManagerConfig,
};
pub use env::{EnvValueError, env_var_name};
pub use error::ConfigError;
pub use format::ConfigFormat;
pub use genconfig::{genconfig, random_secret};
pub use http::{
    AdminConfig, HealthConfig, HttpApiConfig, HttpServerConfig, PrometheusConfig, TlsConfig,
    WebSocketConfig,
};
pub use load::ConfigReport;
pub use log::{LogConfig, LogFormat, LogLevel};
pub use nats::{NatsConfig, NatsJetStreamConfig};
pub use proxy::{
    ChannelProxies, ClientProxies, ProxyConfig, ProxyHttpConfig, RpcConfig, RpcNamespace,
    RpcOptions, StatusToCodeTransform, TransformDisconnect, TransformError,
};
pub use redis::{DEFAULT_PREFIX as DEFAULT_REDIS_PREFIX, RedisConfig};
pub use schema::{Config, Opaque};
pub use streaming::{
    ConnectCodeToHttpResponse, ConnectCodeTransform, EmulationConfig, HttpResponseTransform,
    HttpStreamConfig, SseConfig, UniHttpStreamConfig, UniSseConfig, UniWebSocketConfig,
};
pub(crate) use validate::is_active;
pub use webhooks::{EVENT_KINDS, WebhooksConfig};

/// Prefix of the environment variables that override config options:
/// `HERALD_CLIENT_TOKEN_HMAC_SECRET_KEY` sets `client.token.hmac_secret_key`.
pub const ENV_PREFIX: &str = "HERALD_";

/// The most worker threads `workers` may ask for: far more than any machine's cores, and few
/// enough that a typo (an extra zero or three) is an error rather than thousands of threads.
pub const MAX_WORKERS: usize = 1024;

/// The file name `herald genconfig` writes, and that the CLI reads when no `--config` is given
/// and the file exists in the working directory (as Centrifugo does).
pub const DEFAULT_CONFIG_FILE: &str = "config.json";
