//! `engine.redis`: where the Redis engine connects (one Redis, several shards, a Redis Cluster or
//! a Sentinel-managed master) and how, with Centrifugo v6's option names and defaults, except
//! the key prefix (`herald`, so that Herald and Centrifugo can share one Redis without reading
//! each other's keys).
//!
//! What each option does is the engine's business (`crate::engine::redis`); options Herald
//! does not implement are refused or warned about by name in [`crate::config::audit`].

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::TlsConfig;
use super::duration::go_duration;

/// `engine.redis`: the Redis engine's connection settings, plus the presence options that the
/// engine's presence manager reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URLs (`redis://[user:pass@]host:port[/db]`, `rediss://…` for TLS,
    /// `unix:///path/redis.sock[?db=N]`) or `host:port`. One string or a list: several
    /// addresses are shards, channels spread over them by a consistent hash of their name.
    #[serde(deserialize_with = "one_or_many")]
    pub address: Vec<String>,
    /// Prefix of every key and PUB/SUB channel name. Herald's default is `herald`
    /// (Centrifugo's is `centrifugo`).
    pub prefix: String,
    /// Deadline to establish a connection.
    #[serde(with = "go_duration")]
    pub connect_timeout: Duration,
    /// Deadline of one command (and how long a silent PUB/SUB link is trusted).
    #[serde(with = "go_duration")]
    pub io_timeout: Duration,
    /// Database number (when the URL names none).
    pub db: i64,
    /// ACL user name (when the URL names none).
    pub user: String,
    /// Password (when the URL names none).
    pub password: String,
    /// Centrifugo: `CLIENT SETNAME` of the connections. Not implemented (warned).
    pub client_name: String,
    /// Speak RESP2 only. Herald always speaks RESP2, so this is always true in effect.
    pub force_resp2: bool,
    /// Seed nodes of a Redis Cluster (instead of `address`): one shard, keys spread over the
    /// cluster's slots by their `{channel}` hash tag.
    #[serde(deserialize_with = "one_or_many")]
    pub cluster_address: Vec<String>,
    /// Sentinels that know the master named `sentinel_master_name` (instead of `address`).
    #[serde(deserialize_with = "one_or_many")]
    pub sentinel_address: Vec<String>,
    /// ACL user name for the sentinels.
    pub sentinel_user: String,
    /// Password for the sentinels.
    pub sentinel_password: String,
    /// The master's name in the sentinels' configuration.
    pub sentinel_master_name: String,
    /// Centrifugo: `CLIENT SETNAME` of sentinel connections. Not implemented (warned).
    pub sentinel_client_name: String,
    /// TLS to Redis (Centrifugo's TLS object: `enabled`, `server_ca_pem*` to verify the server,
    /// `cert_pem*`/`key_pem*` for a client certificate, `insecure_skip_verify`).
    pub tls: TlsConfig,
    /// TLS to the sentinels. Not implemented (refused when enabled).
    pub sentinel_tls: TlsConfig,
    /// Centrifugo: keep history in Redis lists instead of streams. Herald uses streams only
    /// (refused when set).
    pub history_use_lists: bool,
    /// How long a presence entry lives unless its node refreshes it.
    #[serde(with = "go_duration")]
    pub presence_ttl: Duration,
    /// Centrifugo: per-field expiry of presence hashes (Redis 7.4+).
    pub presence_hash_field_ttl: bool,
    /// Centrifugo: a separate hash of users for presence stats.
    pub presence_user_mapping: bool,
}

/// Herald's default key prefix (see [`RedisConfig::prefix`]).
pub const DEFAULT_PREFIX: &str = "herald";

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            address: vec!["redis://127.0.0.1:6379".into()],
            prefix: DEFAULT_PREFIX.into(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(4),
            db: 0,
            user: String::new(),
            password: String::new(),
            client_name: String::new(),
            force_resp2: false,
            cluster_address: Vec::new(),
            sentinel_address: Vec::new(),
            sentinel_user: String::new(),
            sentinel_password: String::new(),
            sentinel_master_name: String::new(),
            sentinel_client_name: String::new(),
            tls: TlsConfig::default(),
            sentinel_tls: TlsConfig::default(),
            history_use_lists: false,
            presence_ttl: Duration::from_secs(60),
            presence_hash_field_ttl: false,
            presence_user_mapping: false,
        }
    }
}

impl RedisConfig {
    /// What is wrong with these settings as a whole, each message naming the options under
    /// `at` (`engine.redis` when `engine.type` is `redis`, `presence_manager.redis` for a Redis
    /// presence manager).
    pub(crate) fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.cluster_address.is_empty() && !self.sentinel_address.is_empty() {
            problems.push(format!(
                "{at}.cluster_address and {at}.sentinel_address are both set: a Redis Cluster \
                 has no sentinels; keep one"
            ));
        }
        if !self.sentinel_address.is_empty() && self.sentinel_master_name.is_empty() {
            problems.push(format!(
                "{at}.sentinel_address needs {at}.sentinel_master_name: the name of the master \
                 in the sentinels' configuration"
            ));
        }
        if self.cluster_address.is_empty()
            && self.sentinel_address.is_empty()
            && self.address.is_empty()
        {
            problems.push(format!(
                "{at}.address is empty: give a Redis URL such as \"redis://127.0.0.1:6379\""
            ));
        }
        if !self.cluster_address.is_empty() && self.db != 0 {
            problems.push(format!(
                "{at}.db: a Redis Cluster has database 0 only; remove it"
            ));
        }
        if self.connect_timeout.is_zero() || self.io_timeout.is_zero() {
            problems.push(format!(
                "{at}.connect_timeout and {at}.io_timeout must be above zero: every call to \
                 Redis needs a deadline"
            ));
        }
        if self.prefix.is_empty() {
            problems.push(format!("{at}.prefix is empty: set one, e.g. \"herald\""));
        }
        problems
    }
}

/// A list option that Centrifugo also accepts as one string (`"address": "redis://…"`); a
/// string with commas is split on them, as Centrifugo's environment form is.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        OneOrMany::Many(list) => list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_one_string_or_a_list() {
        let one: RedisConfig = serde_json::from_str(r#"{"address": "redis://a:1"}"#).unwrap();
        assert_eq!(one.address, ["redis://a:1"]);
        let many: RedisConfig =
            serde_json::from_str(r#"{"address": ["redis://a:1", "b:2"]}"#).unwrap();
        assert_eq!(many.address, ["redis://a:1", "b:2"]);
        let comma: RedisConfig =
            serde_json::from_str(r#"{"address": "redis://a:1, redis://b:2"}"#).unwrap();
        assert_eq!(comma.address, ["redis://a:1", "redis://b:2"]);
        let d = RedisConfig::default();
        assert_eq!(d.prefix, "herald");
        assert_eq!(d.io_timeout, Duration::from_secs(4));
        assert!(d.problems("engine.redis").is_empty());
    }

    #[test]
    fn contradictions_are_named() {
        let c = RedisConfig {
            cluster_address: vec!["a:1".into()],
            sentinel_address: vec!["b:2".into()],
            ..RedisConfig::default()
        };
        let problems = c.problems("engine.redis").join("\n");
        assert!(
            problems.contains("engine.redis.cluster_address"),
            "{problems}"
        );
        assert!(
            problems.contains("engine.redis.sentinel_master_name"),
            "{problems}"
        );
    }
}
