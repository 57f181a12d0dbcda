//! `engine`, `broker`, `presence_manager` and `history`: where PUB/SUB, history and presence
//! live, and how durably the embedded engine stores history.

use serde::{Deserialize, Serialize};

use super::{NatsConfig, Opaque, RedisConfig};

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
    /// NATS: cross-node PUB/SUB and node control, history on JetStream.
    Nats,
}

/// `engine`: the combined broker + presence manager.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// `embedded` (default), `memory`, `redis` or `nats`.
    #[serde(rename = "type")]
    pub kind: EngineType,
    /// Redis connection settings (Centrifugo names), used when `type` is `redis`.
    pub redis: RedisConfig,
    /// Herald: NATS settings, as `broker.nats` (used with `type: "nats"`).
    pub nats: NatsConfig,
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
    /// NATS settings (used with `type: "nats"`).
    pub nats: NatsConfig,
    /// Centrifugo PostgreSQL stream broker (verbatim; not implemented).
    pub postgres: Opaque,
    /// Centrifugo Redis+NATS broker (verbatim; not implemented).
    pub redisnats: Opaque,
}

/// `presence_manager`: Centrifugo's separate presence backend, so that presence can live in
/// Redis while another broker (NATS) carries publications: with `type: "redis"` every node
/// keeps its clients' presence in the Redis of `presence_manager.redis`, with expiring
/// entries, as the Redis engine does.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceManagerConfig {
    /// Use this presence manager instead of the engine's.
    pub enabled: bool,
    /// Presence manager type: `redis` (shared by the nodes), or `memory`/`embedded` (each
    /// node its own). `nats` is refused: NATS keeps no presence.
    #[serde(rename = "type")]
    pub kind: EngineType,
    /// Where the Redis presence manager connects, with `engine.redis`'s options (only the
    /// connection options, `prefix` and `presence_ttl` matter here).
    pub redis: RedisConfig,
}

impl PresenceManagerConfig {
    /// Whether presence lives in Redis through this section (`enabled` with `type: "redis"`).
    pub fn uses_redis(&self) -> bool {
        self.enabled && self.kind == EngineType::Redis
    }
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
