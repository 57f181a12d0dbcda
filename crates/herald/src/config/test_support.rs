//! Fixtures and helpers shared by the config tests: a Centrifugo config touching every area
//! Herald reads, in JSON and TOML, and an environment given explicitly.

use std::path::PathBuf;

use super::{Config, ConfigError, ConfigFormat, random_secret};

/// A Centrifugo v6 style config touching every area Herald reads.
pub(super) const FULL_JSON: &str = r#"{
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

pub(super) const FULL_TOML: &str = r#"
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

pub(super) fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn json(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_with_format(text, ConfigFormat::Json)
}

pub(super) fn write_temp(name: &str, text: &str) -> PathBuf {
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
