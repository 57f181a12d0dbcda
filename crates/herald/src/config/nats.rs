//! `broker.nats` and `engine.nats`: how Herald reaches NATS, Centrifugo's option names plus
//! Herald's `jetstream` (channel history on JetStream, which Centrifugo's NATS broker lacks).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::go_duration;
use super::{Opaque, TlsConfig};

/// `broker.nats` (with `broker.type: "nats"`) or `engine.nats` (with `engine.type: "nats"`):
/// the NATS connection, the subject prefix, and whether history lives on JetStream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, `nats://[user:pass@]host:port` (several, comma-separated, for a cluster).
    pub url: String,
    /// First token of every subject (and of every JetStream stream name) Herald uses, so that
    /// several Herald clusters can share one NATS.
    pub prefix: String,
    /// How long connecting (TCP, TLS and the NATS handshake) may take.
    #[serde(with = "go_duration")]
    pub dial_timeout: Duration,
    /// How long a write to NATS (a publish, a JetStream request) may take before the publish
    /// fails with an error.
    #[serde(with = "go_duration")]
    pub write_timeout: Duration,
    /// TLS to the NATS server (`enabled`, `server_ca_pem*`, client `cert_pem*`/`key_pem*`).
    pub tls: TlsConfig,
    /// Centrifugo: wildcard subscriptions. Not implemented (refused when set).
    pub allow_wildcards: bool,
    /// Centrifugo: raw mode (publications as bare payloads). Not implemented (refused).
    pub raw_mode: Opaque,
    /// Herald: channel history on JetStream.
    pub jetstream: NatsJetStreamConfig,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://localhost:4222".into(),
            prefix: "herald".into(),
            dial_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            tls: TlsConfig::default(),
            allow_wildcards: false,
            raw_mode: None,
            jetstream: NatsJetStreamConfig::default(),
        }
    }
}

/// `broker.nats.jetstream` (Herald): keep channel history in JetStream streams, so that
/// recovery and positioning work across nodes on NATS alone.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsJetStreamConfig {
    /// Keep history in JetStream (needs a `nats-server -js`). Without it, namespaces that
    /// keep history are refused at start-up: history needs a store shared by the nodes.
    pub enabled: bool,
}
