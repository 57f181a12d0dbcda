//! The top of the schema: [`Config`], one field per section, and the Centrifugo sections Herald
//! accepts verbatim ([`Opaque`]) but does not implement.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    AdminConfig, BrokerConfig, ChannelConfig, ClientConfig, EmulationConfig, EngineConfig,
    HealthConfig, HistoryConfig, HttpApiConfig, HttpServerConfig, HttpStreamConfig, LogConfig,
    NamespaceOptions, PresenceManagerConfig, PrometheusConfig, ProxyConfig, RpcConfig, SseConfig,
    UniHttpStreamConfig, UniSseConfig, UniWebSocketConfig, WebSocketConfig, WebhooksConfig,
};

/// A Centrifugo section that Herald accepts (so Centrifugo configs load) but does not implement
/// yet; kept verbatim. [`crate::config::audit`] refuses or warns about the ones that are set.
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
    /// Herald: events POSTed to a backend (user online/offline, channel occupied/vacated,
    /// publications for offline users).
    pub webhooks: WebhooksConfig,
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
    /// RPC methods answered by a backend proxy (`rpc.proxy`, `rpc.namespaces`).
    pub rpc: RpcConfig,
    /// Named proxies that namespaces reference by `*_proxy_name`.
    pub proxies: Vec<ProxyConfig>,
    /// Centrifugo `grpc_api`. Not implemented.
    pub grpc_api: Opaque,
    /// Centrifugo `consumers` (Kafka, PostgreSQL outbox). Not implemented.
    pub consumers: Opaque,
    /// The bidirectional SSE transport.
    pub sse: SseConfig,
    /// The bidirectional HTTP-streaming transport.
    pub http_stream: HttpStreamConfig,
    /// Centrifugo WebTransport. Not implemented.
    pub webtransport: Opaque,
    /// The unidirectional SSE transport.
    pub uni_sse: UniSseConfig,
    /// The unidirectional HTTP-streaming transport.
    pub uni_http_stream: UniHttpStreamConfig,
    /// The unidirectional WebSocket transport.
    pub uni_websocket: UniWebSocketConfig,
    /// Centrifugo unidirectional gRPC transport. Not implemented.
    pub uni_grpc: Opaque,
    /// The endpoint of the streaming transports' commands.
    pub emulation: EmulationConfig,
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
            webhooks: WebhooksConfig::default(),
            workers: 0,
            pid_file: String::new(),
            enable_unreleased_features: false,
            map_broker: None,
            controller: None,
            shared_poll: None,
            rpc: RpcConfig::default(),
            proxies: Vec::new(),
            grpc_api: None,
            consumers: None,
            sse: SseConfig::default(),
            http_stream: HttpStreamConfig::default(),
            webtransport: None,
            uni_sse: UniSseConfig::default(),
            uni_http_stream: UniHttpStreamConfig::default(),
            uni_websocket: UniWebSocketConfig::default(),
            uni_grpc: None,
            emulation: EmulationConfig::default(),
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

impl Config {
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
}
