//! [`build`]: the one place the engine is chosen from the config (`engine.type`, `broker`,
//! `presence_manager`: a Redis presence manager replaces any engine's presence, so a NATS
//! broker can share presence through Redis), and [`unimplemented`], the one place that says which choices Herald
//! cannot run yet — used by [`build`] at start-up and by the config audit (`checkconfig`), so
//! both give the same message.
//!
//! A new engine plugs in here: one more branch building its [`Broker`], [`PresenceManager`]
//! and [`Controller`], and its `engine.type` taken off the unimplemented list.

use std::sync::Arc;

use super::embedded::{EmbeddedBroker, EmbeddedHistory};
use super::redis::{RedisBroker, RedisController, RedisPresence, RedisShards};
use super::{Broker, Controller, LocalController, MemoryPresence, PresenceManager};
use crate::config::{Config, EngineType, NamespaceOptions, NatsConfig};

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
    if config.broker.enabled && config.broker.kind != EngineType::Nats {
        found.push(Unimplemented {
            option: "broker.type",
            message: format!(
                "only \"nats\" is implemented for a separate broker (a Redis broker is \
                 {NOT_YET}): set broker.type to \"nats\", or remove the broker section to use \
                 the embedded engine"
            ),
        });
    }
    if let Some((at, nats)) = nats_config(config) {
        found.extend(nats_unimplemented(config, at, nats));
    }
    if config.presence_manager.enabled && config.presence_manager.kind == EngineType::Nats {
        found.push(Unimplemented {
            option: "presence_manager.type",
            message: "NATS keeps no presence: set it to \"redis\" (presence shared by the nodes \
                      in presence_manager.redis), or remove the presence_manager section to use \
                      the engine's"
                .into(),
        });
    }
    found
}

/// The NATS settings in use and where they are (`broker.nats` or `engine.nats`), if the
/// config selects NATS: `broker.type: "nats"` with `broker.enabled`, else `engine.type:
/// "nats"`.
pub fn nats_config(config: &Config) -> Option<(&'static str, &NatsConfig)> {
    if config.broker.enabled {
        return (config.broker.kind == EngineType::Nats)
            .then_some(("broker.nats", &config.broker.nats));
    }
    (config.engine.kind == EngineType::Nats).then_some(("engine.nats", &config.engine.nats))
}

/// The `broker.nats` (or `engine.nats`) options Herald does not implement, and history
/// without JetStream.
fn nats_unimplemented(config: &Config, at: &'static str, nats: &NatsConfig) -> Vec<Unimplemented> {
    let mut found = Vec::new();
    // `option` is static; the two places NATS settings can live.
    let named = |broker: &'static str, engine: &'static str| {
        if at == "broker.nats" { broker } else { engine }
    };
    if nats.allow_wildcards {
        found.push(Unimplemented {
            option: named("broker.nats.allow_wildcards", "engine.nats.allow_wildcards"),
            message: format!("wildcard subscriptions are {NOT_YET}: remove it"),
        });
    }
    if nats.raw_mode.as_ref().is_some_and(crate::config::is_active) {
        found.push(Unimplemented {
            option: named("broker.nats.raw_mode", "engine.nats.raw_mode"),
            message: format!(
                "raw mode {NOT_YET}: remove it (Herald's subjects carry its own format)"
            ),
        });
    }
    let tls = &nats.tls;
    let unsupported_tls = [
        (
            !tls.client_ca_pem.is_empty()
                || !tls.client_ca_pem_b64.is_empty()
                || !tls.client_ca_pem_file.is_empty(),
            named(
                "broker.nats.tls.client_ca_pem",
                "engine.nats.tls.client_ca_pem",
            ),
            "a client CA means nothing on an outgoing connection: remove it",
        ),
        (
            tls.insecure_skip_verify,
            named(
                "broker.nats.tls.insecure_skip_verify",
                "engine.nats.tls.insecure_skip_verify",
            ),
            "Herald always verifies the NATS server: remove it and set server_ca_pem_file to \
             the CA that signed the server's certificate",
        ),
        (
            !tls.server_name.is_empty(),
            named("broker.nats.tls.server_name", "engine.nats.tls.server_name"),
            "the name verified is the URL's host: remove it and put that name in the URL",
        ),
    ];
    for (set, option, message) in unsupported_tls {
        if set {
            found.push(Unimplemented {
                option,
                message: format!("{NOT_YET} for NATS: {message}"),
            });
        }
    }
    if keeps_history(config) && !nats.jetstream.enabled {
        found.push(Unimplemented {
            option: named(
                "broker.nats.jetstream.enabled",
                "engine.nats.jetstream.enabled",
            ),
            message: "some namespace keeps history (history_size and history_ttl), which the \
                      nodes must share: set it to true (history on JetStream; the NATS server \
                      needs JetStream, nats-server -js), or remove history from the namespaces"
                .into(),
        });
    }
    found
}

/// Whether some namespace keeps history (`history_size` and `history_ttl`).
fn keeps_history(config: &Config) -> bool {
    std::iter::once(&config.channel.without_namespace)
        .chain(config.channel.namespaces.iter().map(|ns| &ns.options))
        .any(NamespaceOptions::history_enabled)
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The config asks for an engine Herald does not have.
    #[error(transparent)]
    Unimplemented(#[from] Unimplemented),
    /// The NATS client could not be set up (TLS files, URL).
    #[error("{at}: {source}")]
    Nats {
        /// `broker.nats` or `engine.nats`.
        at: String,
        /// What went wrong.
        source: super::EngineError,
    },
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
/// option). Opens the history database in `data_dir` when some namespace keeps history on the
/// embedded engine; starts connecting to NATS with the NATS engine (so it must be called within
/// a Tokio runtime then).
pub fn build(config: &Config) -> Result<Engine, BuildError> {
    if let Some(missing) = unimplemented(config).into_iter().next() {
        return Err(missing.into());
    }
    let keeps_history = keeps_history(config);
    if config.engine.kind == EngineType::Redis {
        return build_redis(config, keeps_history);
    }
    if let Some((at, nats)) = nats_config(config) {
        return build_nats(config, at, nats, keeps_history);
    }
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
    let presence = match presence_manager(config)? {
        Some(presence) => presence,
        None => Arc::new(MemoryPresence::new()),
    };
    Ok(Engine {
        broker: Arc::new(EmbeddedBroker::new(history)),
        presence,
        controller: Arc::new(LocalController::new()),
        keeps_history,
    })
}

/// The NATS engine: its broker and controller, with presence in the Redis of
/// `presence_manager.redis` when one is configured, else kept per node.
fn build_nats(
    config: &Config,
    at: &str,
    nats: &NatsConfig,
    keeps_history: bool,
) -> Result<Engine, BuildError> {
    let (broker, controller) =
        super::nats::start(nats, keeps_history).map_err(|source| BuildError::Nats {
            at: at.to_owned(),
            source,
        })?;
    let any_presence = std::iter::once(&config.channel.without_namespace)
        .chain(config.channel.namespaces.iter().map(|ns| &ns.options))
        .any(|ns| ns.presence);
    let presence = match presence_manager(config)? {
        Some(presence) => presence,
        None => {
            if any_presence {
                tracing::warn!(
                    "channel presence (the namespaces' `presence` option) is per node with \
                     {at}: presence and presence_stats list the subscribers of the node that \
                     answers, not of the cluster; set presence_manager (enabled, type \
                     \"redis\", redis.address) to share it through Redis"
                );
            }
            Arc::new(MemoryPresence::new())
        }
    };
    if keeps_history {
        tracing::info!(
            "history on JetStream ({at}.jetstream): one stream per channel, \
             {prefix}_<channel>; channel.history_meta_ttl does not apply: a stream stays until \
             it is deleted in NATS",
            prefix = nats.prefix
        );
    }
    Ok(Engine {
        broker,
        presence,
        controller,
        keeps_history,
    })
}

/// The presence manager `presence_manager` configures apart from the engine, if it is
/// enabled: Redis (entries expiring after `presence_manager.redis.presence_ttl` unless this node
/// refreshes them, so a crashed node's clients leave by themselves), or this node's memory
/// (`memory`/`embedded`). Connects lazily, as the Redis engine does.
fn presence_manager(config: &Config) -> Result<Option<Arc<dyn PresenceManager>>, BuildError> {
    let pm = &config.presence_manager;
    if !pm.enabled {
        return Ok(None);
    }
    if !pm.uses_redis() {
        return Ok(Some(Arc::new(MemoryPresence::new())));
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(BuildError::Redis(
            "a Redis presence manager must be built inside the server's runtime".into(),
        ));
    }
    // The shards' messages name `engine.redis`, their usual home: name this section instead.
    let shards = RedisShards::connect(&pm.redis).map_err(|e| {
        BuildError::Redis(
            e.to_string()
                .replace("engine.redis", "presence_manager.redis"),
        )
    })?;
    Ok(Some(Arc::new(RedisPresence::new(
        shards,
        pm.redis.presence_ttl,
    ))))
}

/// The Redis engine over `engine.redis`: its broker, presence (entries expiring after
/// `engine.redis.presence_ttl` unless this node refreshes them) and controller (commands,
/// node list and channels across nodes). Connects lazily: a Redis that cannot be reached at
/// start-up does not stop the node (as in Centrifugo); `/health` answers 503 and publishes
/// fail with an error until it can, then delivery starts by itself.
fn build_redis(config: &Config, keeps_history: bool) -> Result<Engine, BuildError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(BuildError::Redis(
            "the Redis engine must be built inside the server's runtime".into(),
        ));
    }
    let shards =
        RedisShards::connect(&config.engine.redis).map_err(|e| BuildError::Redis(e.to_string()))?;
    let presence = match presence_manager(config)? {
        Some(presence) => presence,
        None => Arc::new(RedisPresence::new(
            shards.clone(),
            config.engine.redis.presence_ttl,
        )),
    };
    Ok(Engine {
        presence,
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
        let with_history = |mut config: Config| {
            config.channel.without_namespace.history_size = 10;
            config.channel.without_namespace.history_ttl = std::time::Duration::from_secs(60);
            config
        };
        let nats_broker = || Config {
            broker: BrokerConfig {
                enabled: true,
                kind: EngineType::Nats,
                ..BrokerConfig::default()
            },
            ..Config::default()
        };
        let mut wildcards = Config {
            engine: EngineConfig {
                kind: EngineType::Nats,
                ..EngineConfig::default()
            },
            ..Config::default()
        };
        wildcards.engine.nats.allow_wildcards = true;
        let mut insecure = nats_broker();
        insecure.broker.nats.tls.insecure_skip_verify = true;
        let cases = [
            (
                Config {
                    broker: BrokerConfig {
                        enabled: true,
                        ..BrokerConfig::default()
                    },
                    ..Config::default()
                },
                "broker.type",
                NOT_YET,
            ),
            (
                Config {
                    presence_manager: PresenceManagerConfig {
                        enabled: true,
                        kind: EngineType::Nats,
                        ..PresenceManagerConfig::default()
                    },
                    ..Config::default()
                },
                "presence_manager.type",
                "NATS keeps no presence",
            ),
            (wildcards, "engine.nats.allow_wildcards", NOT_YET),
            (insecure, "broker.nats.tls.insecure_skip_verify", NOT_YET),
            (
                with_history(nats_broker()),
                "broker.nats.jetstream.enabled",
                "set it to true",
            ),
        ];
        for (config, option, says) in cases {
            let error = build(&config).unwrap_err().to_string();
            assert!(error.starts_with(&format!("{option}: ")), "{error}");
            assert!(error.contains(says), "{error}");
        }
        // History on JetStream is what NATS needs: nothing refused.
        let mut jetstream = with_history(nats_broker());
        jetstream.broker.nats.jetstream.enabled = true;
        assert_eq!(unimplemented(&jetstream), []);
    }

    /// `presence_manager` with `type: "redis"` gives any engine (here the NATS broker and the
    /// embedded one) Redis's expiring presence; `memory` keeps it in the node. Nothing
    /// connects yet, so no server is needed.
    #[tokio::test]
    async fn a_redis_presence_manager_replaces_the_engines_presence() {
        let redis_presence = || PresenceManagerConfig {
            enabled: true,
            kind: EngineType::Redis,
            redis: crate::config::RedisConfig {
                address: vec!["redis://127.0.0.1:1".into()],
                presence_ttl: std::time::Duration::from_secs(7),
                ..crate::config::RedisConfig::default()
            },
        };
        let nats = Config {
            broker: BrokerConfig {
                enabled: true,
                kind: EngineType::Nats,
                ..BrokerConfig::default()
            },
            presence_manager: redis_presence(),
            ..Config::default()
        };
        assert_eq!(unimplemented(&nats), []);
        let engine = build(&nats).unwrap();
        assert_eq!(
            engine.presence.ttl(),
            Some(std::time::Duration::from_secs(7))
        );
        let embedded = Config {
            presence_manager: redis_presence(),
            ..Config::default()
        };
        assert!(build(&embedded).unwrap().presence.ttl().is_some());
        let memory = Config {
            presence_manager: PresenceManagerConfig {
                enabled: true,
                kind: EngineType::Memory,
                ..PresenceManagerConfig::default()
            },
            ..nats
        };
        assert!(build(&memory).unwrap().presence.ttl().is_none());
        // A bad address is named where it is.
        let mut bad = redis_presence();
        bad.redis.address = vec!["http://x".into()];
        let error = build(&Config {
            presence_manager: bad,
            ..Config::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("presence_manager.redis"), "{error}");
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
