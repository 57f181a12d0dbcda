//! [`build`]: the one place the engine is chosen from the config (`engine.type`, `broker`,
//! `presence_manager`), and [`unimplemented`], the one place that says which choices Herald
//! cannot run yet — used by [`build`] at start-up and by the config audit (`checkconfig`), so
//! both give the same message.
//!
//! A new engine plugs in here: one more branch building its [`Broker`], [`PresenceManager`]
//! and [`Controller`], and its `engine.type` taken off the unimplemented list.

use std::sync::Arc;

use super::embedded::{EmbeddedBroker, EmbeddedHistory};
use super::redis::{RedisBroker, RedisController, RedisPresence, RedisShards};
use super::{Broker, Controller, LocalController, MemoryPresence, PresenceManager};
use crate::config::{Config, EngineType, NamespaceOptions};

/// The engine a node runs on: its three seams.
#[derive(Clone)]
pub struct Engine {
    /// Publications, join/leave and history.
    pub broker: Arc<dyn Broker>,
    /// Who is in which channel.
    pub presence: Arc<dyn PresenceManager>,
    /// Commands to other nodes' connections, and the node list.
    pub controller: Arc<dyn Controller>,
    /// Whether the broker keeps any history (some namespace has `history_size` and
    /// `history_ttl`); without, no data directory is touched.
    pub keeps_history: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("keeps_history", &self.keeps_history)
            .finish_non_exhaustive()
    }
}

/// An engine option set to something Herald does not implement yet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct Unimplemented {
    /// The option's path, e.g. `engine.type`.
    pub option: &'static str,
    /// What is missing and what to do instead.
    pub message: String,
}

const NOT_YET: &str = "not implemented in Herald yet";

/// Every engine option of `config` that asks for an engine Herald does not have, in config
/// order.
pub fn unimplemented(config: &Config) -> Vec<Unimplemented> {
    let mut found = Vec::new();
    let kind = match config.engine.kind {
        EngineType::Nats => Some("nats"),
        EngineType::Embedded | EngineType::Memory | EngineType::Redis => None,
    };
    if let Some(kind) = kind {
        found.push(Unimplemented {
            option: "engine.type",
            message: format!(
                "\"{kind}\" is {NOT_YET}: remove it (or set \"memory\") to run a single node with \
                 the embedded engine"
            ),
        });
    }
    if config.broker.enabled {
        found.push(Unimplemented {
            option: "broker.enabled",
            message: format!(
                "a separate broker {NOT_YET}: remove the broker section to use the embedded engine"
            ),
        });
    }
    if config.presence_manager.enabled {
        found.push(Unimplemented {
            option: "presence_manager.enabled",
            message: format!(
                "a separate presence manager {NOT_YET}: remove the presence_manager section to \
                 use the embedded engine"
            ),
        });
    }
    found
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The config asks for an engine Herald does not have.
    #[error(transparent)]
    Unimplemented(#[from] Unimplemented),
    /// The Redis engine's settings are unusable (an address or TLS file); the message names
    /// the option.
    #[error("{0}")]
    Redis(String),
    /// The embedded history could not be opened.
    #[error("cannot open the history database in {dir}: {source}")]
    History {
        /// `data_dir`.
        dir: String,
        /// What went wrong.
        source: super::EngineError,
    },
}

/// Builds the engine `config` asks for, or refuses one that is not implemented (naming the
/// option). Opens the history database in `data_dir` when some namespace keeps history.
pub fn build(config: &Config) -> Result<Engine, BuildError> {
    if let Some(missing) = unimplemented(config).into_iter().next() {
        return Err(missing.into());
    }
    if config.engine.kind == EngineType::Redis {
        return build_redis(config);
    }
    let keeps_history = std::iter::once(&config.channel.without_namespace)
        .chain(config.channel.namespaces.iter().map(|ns| &ns.options))
        .any(NamespaceOptions::history_enabled);
    let history = if keeps_history {
        let history =
            EmbeddedHistory::from_config(config).map_err(|source| BuildError::History {
                dir: config.data_dir.display().to_string(),
                source,
            })?;
        Some(history)
    } else {
        None
    };
    Ok(Engine {
        broker: Arc::new(EmbeddedBroker::new(history)),
        presence: Arc::new(MemoryPresence::new()),
        controller: Arc::new(LocalController::new()),
        keeps_history,
    })
}

/// The Redis engine over `engine.redis`: its broker, presence (entries expiring after
/// `engine.redis.presence_ttl` unless this node refreshes them) and controller (commands,
/// node list and channels across nodes). Connects lazily: a Redis that cannot be reached at
/// start-up does not stop the node (as in Centrifugo); `/health` answers 503 and publishes
/// fail with an error until it can, then delivery starts by itself.
fn build_redis(config: &Config) -> Result<Engine, BuildError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(BuildError::Redis(
            "the Redis engine must be built inside the server's runtime".into(),
        ));
    }
    let shards =
        RedisShards::connect(&config.engine.redis).map_err(|e| BuildError::Redis(e.to_string()))?;
    let keeps_history = std::iter::once(&config.channel.without_namespace)
        .chain(config.channel.namespaces.iter().map(|ns| &ns.options))
        .any(NamespaceOptions::history_enabled);
    Ok(Engine {
        presence: Arc::new(RedisPresence::new(
            shards.clone(),
            config.engine.redis.presence_ttl,
        )),
        controller: Arc::new(RedisController::new(&shards)),
        broker: Arc::new(RedisBroker::new(shards)),
        keeps_history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerConfig, EngineConfig, PresenceManagerConfig};

    #[test]
    fn an_unimplemented_engine_is_refused_naming_its_option() {
        let cases = [
            (
                Config {
                    engine: EngineConfig {
                        kind: EngineType::Nats,
                        ..EngineConfig::default()
                    },
                    ..Config::default()
                },
                "engine.type",
            ),
            (
                Config {
                    broker: BrokerConfig {
                        enabled: true,
                        ..BrokerConfig::default()
                    },
                    ..Config::default()
                },
                "broker.enabled",
            ),
            (
                Config {
                    presence_manager: PresenceManagerConfig {
                        enabled: true,
                        ..PresenceManagerConfig::default()
                    },
                    ..Config::default()
                },
                "presence_manager.enabled",
            ),
        ];
        for (config, option) in cases {
            let error = build(&config).unwrap_err().to_string();
            assert!(error.starts_with(&format!("{option}: ")), "{error}");
            assert!(error.contains(NOT_YET), "{error}");
        }
    }

    #[tokio::test]
    async fn the_default_engine_is_embedded_and_touches_no_disk_without_history() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let engine = build(&config).unwrap();
        assert!(!engine.keeps_history);
        assert!(!config.data_dir.exists());
        assert!(engine.presence.ttl().is_none());
    }
}
