//! `engine`, `broker`, `presence_manager` and `history`: where PUB/SUB, history and presence
//! live, and how durably the embedded engine stores history.

use serde::{Deserialize, Serialize};

use super::{Opaque, RedisConfig};

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
    /// Redis connection settings (Centrifugo names), used when `type` is `redis`.
    pub redis: RedisConfig,
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
