//! [`Node`]: the state one Herald process shares between its client connections, its server
//! API and its background tasks, and the one publish path they all use.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::alarm::AlarmClock;
use crate::auth::TokenVerifier;
use crate::channel::{self, ParsedChannel};
use crate::config::{Config, NamespaceOptions};
use crate::engine::embedded::EmbeddedHistory;
use crate::engine::{AppendRequest, History, HistoryOptions, MemoryPresence, Presence, RecentKeys};

/// How long an `idempotency_key` is remembered (Centrifugo's window).
const IDEMPOTENCY_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);
use crate::hub::{ClientHandle, Delivery, Hub, SubFlags};
use crate::keepalive::PingWheel;
use crate::metrics::Metrics;
use crate::prepared::{self, Prepared};
use crate::protocol::{self, ClientInfo, Encoding, Payload, Publication, Push};
use crate::ws::Message;

/// One Herald process.
pub struct Node {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Local clients and subscriptions.
    pub hub: Hub,
    /// The server pings of connected clients (turned by the task `Server::run` starts).
    pub pings: PingWheel,
    /// Wakes client tasks at their deadlines (rung by the task `Server::run` starts).
    pub alarms: AlarmClock,
    /// Connection and subscription token verification.
    pub tokens: TokenVerifier,
    /// Subscription token verification: `client.subscription_token` when enabled, else the same
    /// verifier as `tokens` (sharing its JWKS cache).
    pub subscription_tokens: TokenVerifier,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// This node's id (a UUID), as reported by `/api/info`.
    pub id: String,
    /// Human name of the node (host name and port).
    pub name: String,
    /// When the node started, for uptime.
    pub started: Instant,
    /// Cancelled when the node shuts down; client tasks watch it.
    pub shutdown: CancellationToken,
    /// Channel history streams, when some namespace keeps history (`history_size` and
    /// `history_ttl` set); `None` means nothing is stored and no data directory is touched.
    pub history: Option<Arc<dyn History>>,
    /// Who is subscribed to channels whose namespace keeps presence.
    pub presence: Arc<dyn Presence>,
    /// Idempotency keys of publications to channels without history (those with history keep
    /// theirs in the stream).
    recent_keys: RecentKeys,
    /// Open client connections, connected or not yet (shutdown waits for all of them to
    /// take their close frame; the hub only knows connected ones).
    pub live_connections: AtomicUsize,
    /// Requests whose body is being read before they are authorized (admin log-in, demo
    /// sign-in), capped by `http_server.unauthenticated_request_limit`.
    pub unauthenticated: crate::http_guard::RequestGate,
    /// The admin log-in's rate limits and the admin sessions logged out.
    pub admin_guard: crate::web::admin_guard::AdminGuard,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

/// What a publication turned into.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Stream offset (0 when the channel keeps no history).
    pub offset: u64,
    /// Stream epoch (empty when the channel keeps no history).
    pub epoch: String,
    /// Local subscribers it was queued for.
    pub delivered: usize,
}

/// Options of one publication beyond channel and data.
#[derive(Debug, Default)]
pub struct PublishOptions {
    /// Publisher, for client-side publishes.
    pub info: Option<ClientInfo>,
    /// Publication tags.
    pub tags: std::collections::BTreeMap<String, String>,
    /// Do not keep this publication in history.
    pub skip_history: bool,
    /// A publication with the same key in the same channel within the idempotency window is
    /// not stored or delivered again; the first one's result is returned.
    pub idempotency_key: Option<String>,
    /// Send it as a Fossil delta against the channel's previous publication to subscribers
    /// that negotiated deltas (also on when the namespace has `delta_publish`).
    pub delta: bool,
    /// Version of the state the publication carries (0: none): in a channel with history, a
    /// publication not newer than the last one's version (in the same `version_epoch`) is
    /// suppressed — not stored, not delivered, no offset used (see
    /// [`AppendRequest::version`]). Without history it is ignored, as in Centrifugo.
    pub version: u64,
    /// The epoch of `version`.
    pub version_epoch: String,
}

impl Node {
    /// A node for `config`, which must have been validated. Opens the history database in
    /// `data_dir` when some namespace keeps history.
    pub fn new(config: Config) -> Result<Arc<Node>, String> {
        let tokens =
            TokenVerifier::new(&config.client.token).map_err(|e| format!("client.token: {e}"))?;
        let subscription_tokens = if config.client.subscription_token.enabled {
            let verifier = TokenVerifier::new(&config.client.subscription_token.token)
                .map_err(|e| format!("client.subscription_token: {e}"))?;
            verifier.start_background_refresh();
            verifier
        } else {
            tokens.clone()
        };
        // JWKS keys are fetched in the background (a failing endpoint is logged, not fatal).
        tokens.start_background_refresh();
        let name = format!(
            "{}_{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "herald".into()),
            config.http_server.port
        );
        let keeps_history = std::iter::once(&config.channel.without_namespace)
            .chain(config.channel.namespaces.iter().map(|ns| &ns.options))
            .any(NamespaceOptions::history_enabled);
        let history: Option<Arc<dyn History>> = if keeps_history {
            let engine = EmbeddedHistory::from_config(&config).map_err(|e| {
                format!(
                    "cannot open the history database in {}: {e}",
                    config.data_dir.display()
                )
            })?;
            Some(Arc::new(engine))
        } else {
            None
        };
        let pings = PingWheel::new(config.client.ping_interval, config.client.pong_timeout);
        Ok(Arc::new_cyclic(|node: &std::sync::Weak<Node>| {
            if let Some(history) = &history {
                let node = node.clone();
                history.set_delivery(Arc::new(move |channel, publication, delta| {
                    if let Some(node) = node.upgrade() {
                        node.deliver(channel, &publication.to_publication(), delta);
                    }
                }));
            }
            Node {
                hub: Hub::new(),
                pings,
                alarms: AlarmClock::new(),
                tokens,
                subscription_tokens,
                metrics: Metrics::new(),
                id: uuid::Uuid::new_v4().to_string(),
                name,
                started: Instant::now(),
                shutdown: CancellationToken::new(),
                history,
                presence: Arc::new(MemoryPresence::new()),
                recent_keys: RecentKeys::new(IDEMPOTENCY_WINDOW),
                live_connections: AtomicUsize::new(0),
                unauthenticated: crate::http_guard::RequestGate::new(
                    config.http_server.unauthenticated_request_limit,
                ),
                admin_guard: crate::web::admin_guard::AdminGuard::new(),
                config: Arc::new(config),
            }
        }))
    }

    /// Parses and validates a channel name and finds its namespace options.
    pub fn resolve_channel<'a>(
        &'a self,
        name: &'a str,
    ) -> Result<(ParsedChannel<'a>, &'a NamespaceOptions), protocol::Error> {
        let channels = &self.config.channel;
        let parsed = channel::parse_with(name, channels.max_length, channels.naming())
            .map_err(|e| e.to_error())?;
        let options = self
            .config
            .namespace(parsed.namespace)
            .ok_or(protocol::Error::UNKNOWN_CHANNEL)?;
        Ok((parsed, options))
    }

    /// Publishes `data` to `channel`. Callers have checked permissions.
    ///
    /// In a namespace with history the publication is appended durably first (offset and
    /// epoch assigned) and reaches subscribers from the engine, in offset order; otherwise its
    /// push is encoded once and queued for every local subscriber at once.
    pub async fn publish(
        &self,
        channel: &str,
        data: Payload,
        options: PublishOptions,
    ) -> Result<Published, protocol::Error> {
        let (_, namespace) = self.resolve_channel(channel)?;
        let delta = options.delta || namespace.delta_publish;
        if let Some(history) = &self.history {
            if namespace.history_enabled() && !options.skip_history {
                let request = AppendRequest {
                    channel: channel.to_owned(),
                    data,
                    info: options.info,
                    tags: options.tags,
                    options: HistoryOptions::for_namespace(
                        namespace,
                        self.config.channel.history_meta_ttl,
                    ),
                    idempotency_key: options.idempotency_key.filter(|k| !k.is_empty()),
                    delta,
                    version: options.version,
                    version_epoch: options.version_epoch,
                };
                let appended = history.append(request).await.map_err(|e| {
                    tracing::error!(channel, "history append failed: {e}");
                    e.to_protocol()
                })?;
                return Ok(Published {
                    offset: appended.position.offset,
                    epoch: appended.position.epoch,
                    delivered: 0,
                });
            }
        }
        if let Some(key) = options.idempotency_key.as_deref().filter(|k| !k.is_empty()) {
            if !self.recent_keys.insert(channel, key) {
                // A retry of a publication already delivered: same (empty) result, no delivery.
                return Ok(Published::default());
            }
        }
        let publication = Publication {
            data: Some(data),
            info: options.info,
            tags: options.tags,
            ..Publication::default()
        };
        let delivered = self.deliver(channel, &publication, delta);
        Ok(Published {
            delivered,
            ..Published::default()
        })
    }

    /// Queues a publication for every local subscriber, its push encoded once per encoding in
    /// use; returns how many it was queued for. `delta`: subscribers that negotiated deltas
    /// get it as a delta against the channel's previous publication (see
    /// [`Hub::broadcast_publication`]).
    pub fn deliver(&self, channel: &str, publication: &Publication, delta: bool) -> usize {
        let delivery = self.hub.broadcast_publication(channel, publication, delta);
        self.count(delivery);
        delivery.delivered
    }

    /// Announces a subscription that has just become active (its subscribe reply or push is
    /// queued): records its presence entry and sends the join push, as `flags` say.
    pub async fn joined(&self, channel: &str, info: ClientInfo, flags: SubFlags) {
        if flags.presence
            && let Err(e) = self.presence.add(channel, info.clone()).await
        {
            tracing::warn!(channel, client = %info.client, "could not add presence: {e}");
        }
        if flags.join_leave {
            self.announce(&Push::join(channel, info));
        }
    }

    /// Undoes [`Node::joined`] for a subscription that has ended (unsubscribed by the client or
    /// the server, or its connection closed): removes the presence entry and sends the leave
    /// push.
    pub async fn left(&self, channel: &str, client: &ClientHandle, flags: SubFlags) {
        let mut info = None;
        if flags.presence {
            // The id as a string without allocating: a UUID is formatted into `id`.
            let mut id = [0; crate::client_id::UUID_LEN];
            match self
                .presence
                .remove(channel, client.id.as_str(&mut id))
                .await
            {
                Ok(entry) => info = entry,
                Err(e) => {
                    tracing::warn!(channel, client = %client.id, "could not remove presence: {e}");
                }
            }
        }
        if flags.join_leave {
            let info = info.unwrap_or_else(|| client.info());
            self.announce(&Push::leave(channel, info));
        }
    }

    /// Queues a join or leave push for the channel's subscribers that want them.
    fn announce(&self, push: &Push) {
        let prepared = Prepared::push(push);
        self.count(self.hub.broadcast_join_leave(&push.channel, &prepared));
    }

    /// Counts a fan-out in the metrics: messages queued, and subscribers cut off as slow.
    fn count(&self, delivery: Delivery) {
        self.metrics.messages_out(delivery.delivered as u64);
        if delivery.overflowed > 0 {
            self.metrics.slow_consumers(delivery.overflowed as u64);
        }
    }

    /// History options of a namespace.
    pub fn history_options(&self, namespace: &NamespaceOptions) -> HistoryOptions {
        HistoryOptions::for_namespace(namespace, self.config.channel.history_meta_ttl)
    }

    /// Seconds since the node started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Encodes a push (other than a publication) once in JSON, as a WebSocket text frame ready
/// for any number of JSON clients (the server API's pushes to connections it names).
pub fn push_message(push: &Push) -> Result<Arc<Message>, protocol::Error> {
    prepared::push_message(Encoding::Json, push).map_err(|e| {
        tracing::error!(error = %e, "encoding a push failed");
        protocol::Error::INTERNAL
    })
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Counts a connection in [`Node::live_connections`] for as long as it exists.
pub struct LiveConnection(Arc<Node>);

impl LiveConnection {
    /// Starts counting a connection.
    pub fn new(node: Arc<Node>) -> LiveConnection {
        node.live_connections.fetch_add(1, Ordering::Relaxed);
        LiveConnection(node)
    }
}

/// The node the connection belongs to: a client keeps its node through this guard, one
/// pointer for the two.
impl std::ops::Deref for LiveConnection {
    type Target = Arc<Node>;

    fn deref(&self) -> &Arc<Node> {
        &self.0
    }
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.0.live_connections.fetch_sub(1, Ordering::Relaxed);
    }
}
