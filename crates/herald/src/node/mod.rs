//! [`Node`]: the state one Herald process shares between its client connections, its server
//! API and its background tasks, and the operations both the client protocol and the server
//! API call, so that the two cannot drift: publish (here), subscribe with positioning and
//! recovery ([`subscribe`]), history ([`history`]) and presence ([`presence`]). Who may do
//! what is the node's [`Policy`]'s to say, asked by the client protocol before it calls these.
//!
//! The node talks to its engine ([`crate::engine`]) through the broker, presence and
//! controller traits only, and is their handler in return: every publication, join and leave
//! reaches the hub from the broker ([`BrokerEvents`]), and every control command reaches this
//! node's connections from the controller ([`crate::control`]).

mod history;
mod presence;
mod reply_room;
mod subscribe;

pub use history::{HistoryQuery, to_publications};
pub use reply_room::ReplyRoom;
pub use subscribe::Positioning;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::alarm::AlarmClock;
use crate::auth::TokenVerifier;
use crate::channel::{self, ParsedChannel};
use crate::config::{Config, NamespaceOptions};
use crate::engine::{
    AppendRequest, Broker, BrokerEventHandler, Controller, History, HistoryOptions, PresenceManager,
};
use crate::hub::{ClientHandle, Delivery, Hub, Selection, SubFlags, Subscribed};
use crate::keepalive::PingWheel;
use crate::metrics::Metrics;
use crate::policy::{ConfigPolicy, Policy};
use crate::prepared::{self, Prepared};
use crate::protocol::{self, ClientInfo, Encoding, Payload, Publication, Push};
use crate::ws::Message;

/// One Herald process.
pub struct Node {
    /// The validated configuration.
    config: Arc<Config>,
    /// Local clients and subscriptions.
    hub: Hub,
    /// The server pings of connected clients (turned by the task `Server::run` starts).
    pings: PingWheel,
    /// Wakes client tasks at their deadlines (rung by the task `Server::run` starts).
    alarms: AlarmClock,
    /// Connection and subscription token verification.
    tokens: TokenVerifier,
    /// Subscription token verification: `client.subscription_token` when enabled, else the same
    /// verifier as `tokens` (sharing its JWKS cache).
    subscription_tokens: TokenVerifier,
    /// Counters for `/metrics`.
    metrics: Metrics,
    /// This node's id (a UUID), as reported by `/api/info`.
    id: String,
    /// Human name of the node (host name and port).
    name: String,
    /// When the node started, for uptime.
    started: Instant,
    /// Cancelled when the node shuts down; client tasks watch it.
    shutdown: CancellationToken,
    /// Publications, join/leave and history: the engine's broker.
    broker: Arc<dyn Broker>,
    /// The broker's history side, when some namespace keeps history (`history_size` and
    /// `history_ttl` set); `None` means nothing is stored and no data directory is touched.
    history: Option<Arc<dyn History>>,
    /// Who is subscribed to channels whose namespace keeps presence.
    presence: Arc<dyn PresenceManager>,
    /// Commands to the connections of a user on any node, and the node list.
    controller: Arc<dyn Controller>,
    /// Serialises, per channel, a first subscriber's broker subscription against the last
    /// one's broker unsubscription (see [`Node::subscribe_pending`]).
    channel_locks: ChannelLocks,
    /// Open client connections, connected or not yet (shutdown waits for all of them to
    /// take their close frame; the hub only knows connected ones).
    live_connections: AtomicUsize,
    /// Requests whose body is being read before they are authorized (admin log-in, demo
    /// sign-in), capped by `http_server.unauthenticated_request_limit`.
    unauthenticated: crate::http_guard::RequestGate,
    /// The admin log-in's rate limits and the admin sessions logged out.
    admin_guard: crate::web::admin_guard::AdminGuard,
    /// Who may connect, subscribe, publish, refresh and call RPCs, when set with
    /// [`Node::set_policy`]; unset, the configuration decides ([`ConfigPolicy`]).
    policy: std::sync::OnceLock<Box<dyn Policy>>,
    /// Events for the backend (`webhooks`) and the demo's offline notices, when either is on.
    webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    /// This node's streaming connections by session, for the emulation endpoint — its own
    /// requests and those other nodes forward through the controller.
    emulation: Arc<crate::transport::Emulation>,
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
    /// A node for `config`, which must have been validated. Builds its engine
    /// ([`crate::engine::build`]: refuses an engine Herald does not implement, opens the
    /// history database in `data_dir` when some namespace keeps history) and installs itself as
    /// the engine's event and command handler.
    pub fn new(config: Config) -> Result<Arc<Node>, String> {
        let engine = crate::engine::build(&config).map_err(|e| e.to_string())?;
        Node::with_engine(config, engine)
    }

    /// A node for `config` on `engine` (built by [`crate::engine::build`], or another
    /// implementation of its traits), installed as the engine's event and command handler.
    pub fn with_engine(config: Config, engine: crate::engine::Engine) -> Result<Arc<Node>, String> {
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
        let history = engine
            .keeps_history
            .then(|| engine.broker.clone() as Arc<dyn History>);
        let pings = PingWheel::new(config.client.ping_interval, config.client.pong_timeout);
        // A config that turns a backend proxy on is decided by the proxies (and by the
        // configuration where Centrifugo does not ask them).
        let policy = std::sync::OnceLock::new();
        if let Some(proxies) = crate::policy::ProxyPolicy::from_config(&config)? {
            let _ = policy.set(Box::new(proxies) as Box<dyn Policy>);
        }
        let metrics = Metrics::new();
        let webhooks = crate::webhooks::Webhooks::new(&config, metrics.webhooks().clone())?;
        let node = Arc::new(Node {
            hub: Hub::new(),
            pings,
            alarms: AlarmClock::new(),
            tokens,
            subscription_tokens,
            metrics,
            webhooks,
            id: uuid::Uuid::new_v4().to_string(),
            name,
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            broker: engine.broker,
            history,
            presence: engine.presence,
            controller: engine.controller,
            channel_locks: ChannelLocks::new(),
            policy,
            live_connections: AtomicUsize::new(0),
            emulation: Arc::default(),
            unauthenticated: crate::http_guard::RequestGate::new(
                config.http_server.unauthenticated_request_limit,
            ),
            admin_guard: crate::web::admin_guard::AdminGuard::new(),
            config: Arc::new(config),
        });
        // Weak: the engine lives as long as the node, and must not keep it alive.
        node.broker
            .set_handler(Arc::new(BrokerEvents(Arc::downgrade(&node))));
        node.controller
            .set_handler(Arc::new(crate::control::NodeControl(Arc::downgrade(&node))));
        if let Some(webhooks) = node.webhooks.as_ref().filter(|w| w.observes_hub()) {
            // Set once, here, on a hub nobody else has seen yet.
            let _ = node.hub.set_observer(webhooks.clone());
        }
        Ok(node)
    }

    /// The validated configuration (an `Arc`, for what must outlive a borrow of the node).
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Local clients and subscriptions.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The server pings of connected clients (turned by the task `Server::run` starts).
    pub fn pings(&self) -> &PingWheel {
        &self.pings
    }

    /// Wakes client tasks at their deadlines (rung by the task `Server::run` starts).
    pub fn alarms(&self) -> &AlarmClock {
        &self.alarms
    }

    /// Connection token verification (`client.token`).
    pub fn tokens(&self) -> &TokenVerifier {
        &self.tokens
    }

    /// Subscription token verification (`client.subscription_token`, else `client.token`).
    pub fn subscription_tokens(&self) -> &TokenVerifier {
        &self.subscription_tokens
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// This node's id (a UUID), as reported by `/api/info`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Human name of the node (host name and port).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cancelled when the node shuts down; client tasks and servers watch it, `cancel` starts
    /// the shutdown.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Channel history streams, when some namespace keeps history.
    pub fn history(&self) -> Option<&Arc<dyn History>> {
        self.history.as_ref()
    }

    /// Who is subscribed to channels whose namespace keeps presence.
    pub fn presence(&self) -> &Arc<dyn PresenceManager> {
        &self.presence
    }

    /// Publications, join/leave and history: the engine's broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// This node's streaming connections by session (the emulation endpoint's registry).
    pub fn emulation(&self) -> &Arc<crate::transport::Emulation> {
        &self.emulation
    }

    /// Commands to the connections of a user on any node, and the node list.
    pub fn controller(&self) -> &Arc<dyn Controller> {
        &self.controller
    }

    /// Webhooks, when `webhooks.enabled` or demo mode is on.
    pub fn webhooks(&self) -> Option<&Arc<crate::webhooks::Webhooks>> {
        self.webhooks.as_ref()
    }

    /// Starts the webhooks' tasks (their grace periods, the offline check, the delivery), if
    /// any; they end when the node shuts down. Called by `Server::run`.
    pub fn run_webhooks(self: &Arc<Self>) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.run(self);
        }
    }

    /// Open client connections, connected or not yet.
    pub fn live_connections(&self) -> usize {
        self.live_connections.load(Ordering::Relaxed)
    }

    /// Requests whose body is being read before they are authorized (see
    /// `http_server.unauthenticated_request_limit`).
    pub fn unauthenticated(&self) -> &crate::http_guard::RequestGate {
        &self.unauthenticated
    }

    /// The admin log-in's rate limits and the admin sessions logged out.
    pub fn admin_guard(&self) -> &crate::web::admin_guard::AdminGuard {
        &self.admin_guard
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
    /// The broker appends it durably first in a namespace with history (offset and epoch
    /// assigned), then hands it to every subscribed node — this one through
    /// [`BrokerEvents`] — in offset order.
    pub async fn publish(
        &self,
        channel: &str,
        data: Payload,
        options: PublishOptions,
    ) -> Result<Published, protocol::Error> {
        let (_, namespace) = self.resolve_channel(channel)?;
        let keep = self.history.is_some() && namespace.history_enabled() && !options.skip_history;
        // In a cluster, the publishing node looks for offline users (webhooks/cluster.rs).
        let hook = self
            .webhooks
            .as_ref()
            .filter(|w| w.wants_published_here(self, channel))
            .map(|w| (w, data.clone(), options.info.clone(), options.tags.clone()));
        let request = AppendRequest {
            channel: channel.to_owned(),
            data,
            info: options.info,
            tags: options.tags,
            options: if keep {
                self.history_options(namespace)
            } else {
                HistoryOptions::default()
            },
            idempotency_key: options.idempotency_key.filter(|k| !k.is_empty()),
            delta: options.delta || namespace.delta_publish,
            version: options.version,
            version_epoch: options.version_epoch,
        };
        let published = self.broker.publish(request).await.map_err(|e| {
            tracing::error!(channel, "publish failed: {e}");
            e.to_protocol()
        })?;
        if let Some((webhooks, data, info, tags)) = hook
            && !published.duplicate
            && !published.suppressed
        {
            let publication = Publication {
                data: Some(data),
                info,
                offset: published.position.offset,
                tags,
                ..Publication::default()
            };
            webhooks.published_here(self, channel, &publication);
        }
        Ok(Published {
            offset: published.position.offset,
            epoch: published.position.epoch,
        })
    }

    /// Queues a publication for every local subscriber, its push encoded once per encoding in
    /// use; returns how many it was queued for. `delta`: subscribers that negotiated deltas
    /// get it as a delta against the channel's previous publication (see
    /// [`Hub::broadcast_publication`]). Called by the broker's event handler only: publishing
    /// is [`Node::publish`].
    pub fn deliver(&self, channel: &str, publication: &Publication, delta: bool) -> usize {
        let delivery = self.hub.broadcast_publication(channel, publication, delta);
        self.count(delivery);
        delivery.delivered
    }

    /// Subscribes a client whose subscribe reply is not sent yet ([`Hub::subscribe_pending`],
    /// with `selection`), and makes sure the broker delivers the channel to this node before
    /// returning: the caller reads the stream's top after this, and a publication made in
    /// between is held back by the hub and deduplicated by offset on activation, never lost.
    ///
    /// Errors (the client is not subscribed then): 105 when it already is (that subscription
    /// stands), or the broker could not subscribe the node.
    pub async fn subscribe_pending(
        &self,
        channel: &str,
        client: &Arc<ClientHandle>,
        flags: SubFlags,
        selection: Selection,
    ) -> Result<(), protocol::Error> {
        // Held while the broker subscribes, so that a second subscriber of a channel whose
        // first one is still subscribing the node waits for it too, and so that the last
        // one's unsubscription does not overtake it.
        let _channel = self.channel_locks.lock(channel).await;
        let added = self.hub.add_pending(channel, client, flags, selection);
        if added == Subscribed::Already {
            // Subscribed meanwhile (by the server API, or by the client while the API asked):
            // that subscription stands, and this one is not made.
            return Err(protocol::Error::ALREADY_SUBSCRIBED);
        }
        if added == Subscribed::First
            && let Err(e) = self.broker.subscribe(channel).await
        {
            tracing::error!(channel, "the broker could not subscribe this node: {e}");
            self.hub.unsubscribe(channel, client);
            return Err(e.to_protocol());
        }
        Ok(())
    }

    /// Undoes a [`Node::subscribe_pending`] whose subscription failed before it became active
    /// (nothing was announced, so there is no presence entry or leave to undo).
    pub async fn cancel_subscribe(&self, channel: &str, client: &ClientHandle) {
        if self.hub.unsubscribe(channel, client).is_some() {
            self.release(channel).await;
        }
    }

    /// Unsubscribes this node from `channel` at the broker if it has no local subscriber
    /// left. Called after every end of a subscription ([`Node::left`],
    /// [`Node::cancel_subscribe`]).
    async fn release(&self, channel: &str) {
        if self.hub.num_subscribers(channel) > 0 {
            return;
        }
        let _channel = self.channel_locks.lock(channel).await;
        // Again under the lock: a first subscriber may have come back in between.
        if self.hub.num_subscribers(channel) == 0
            && let Err(e) = self.broker.unsubscribe(channel).await
        {
            tracing::warn!(channel, "the broker could not unsubscribe this node: {e}");
        }
    }

    /// Announces a subscription that has just become active (its subscribe reply or push is
    /// queued): records its presence entry and publishes the join, as `flags` say.
    pub async fn joined(&self, channel: &str, info: ClientInfo, flags: SubFlags) {
        if flags.presence
            && let Err(e) = self.presence.add(channel, info.clone()).await
        {
            tracing::warn!(channel, client = %info.client, "could not add presence: {e}");
        }
        if flags.join_leave
            && let Err(e) = self.broker.publish_join(channel, &info).await
        {
            tracing::warn!(channel, client = %info.client, "could not publish a join: {e}");
        }
    }

    /// Undoes [`Node::joined`] for a subscription that has ended (unsubscribed by the client or
    /// the server, or its connection closed): removes the presence entry, publishes the leave,
    /// and unsubscribes the node from the channel at the broker if it was the last local
    /// subscriber.
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
            if let Err(e) = self.broker.publish_leave(channel, &info).await {
                tracing::warn!(channel, client = %client.id, "could not publish a leave: {e}");
            }
        }
        self.release(channel).await;
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

    /// Refreshes this node's presence entries every `client.presence_update_interval` until
    /// the node shuts down, when its presence manager expires entries ([`PresenceManager::ttl`]):
    /// so a shared store drops the clients of a node that crashed, and only those. Returns at
    /// once for a manager whose entries do not expire (the embedded one).
    pub async fn refresh_presence(&self) {
        if self.presence.ttl().is_none() {
            return;
        }
        let mut every = tokio::time::interval(self.config.client.presence_update_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.presence.refresh().await {
                tracing::warn!("could not refresh this node's presence entries: {e}");
            }
        }
    }

    /// History options of a namespace.
    pub fn history_options(&self, namespace: &NamespaceOptions) -> HistoryOptions {
        HistoryOptions::for_namespace(namespace, self.config.channel.history_meta_ttl)
    }

    /// The policy clients are checked against (see [`crate::policy`]).
    pub fn policy(&self) -> &dyn Policy {
        static CONFIGURED: ConfigPolicy = ConfigPolicy;
        self.policy
            .get()
            .map_or(&CONFIGURED, |policy| policy.as_ref())
    }

    /// Replaces the configuration's policy with `policy` (a test's, an embedding
    /// application's). Once, before the node serves: clients connected under one policy must
    /// not see another. Gives `policy` back when one was set already (also when the
    /// configuration turned a proxy on: the node then uses [`crate::policy::ProxyPolicy`]).
    pub fn set_policy(&self, policy: Box<dyn Policy>) -> Result<(), Box<dyn Policy>> {
        self.policy.set(policy)
    }

    /// The room a connection with `queued` bytes waiting in its queue has for stored
    /// publications in what it is sent next (see [`ReplyRoom`]).
    pub fn reply_room(&self, queued: usize) -> ReplyRoom {
        // The connection's byte budget, as `server.rs` sets it from `client.queue_max_size`.
        ReplyRoom::new(self.config.client.queue_max_size.max(1024), queued)
    }

    /// When the node started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Seconds since the node started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// The node as its broker's event handler: every publication, join and leave of a channel
/// with local subscribers comes through here, from this node's publishers or another's.
/// Weak, so that the engine does not keep a stopped node alive.
struct BrokerEvents(std::sync::Weak<Node>);

impl BrokerEventHandler for BrokerEvents {
    fn handle_publication(&self, channel: &str, publication: &Publication, delta: bool) {
        if let Some(node) = self.0.upgrade() {
            node.deliver(channel, publication, delta);
            if let Some(webhooks) = &node.webhooks {
                webhooks.published(&node, channel, publication);
            }
        }
    }

    fn handle_join(&self, channel: &str, info: &ClientInfo) {
        if let Some(node) = self.0.upgrade() {
            node.announce(&Push::join(channel, info.clone()));
        }
    }

    fn handle_leave(&self, channel: &str, info: &ClientInfo) {
        if let Some(node) = self.0.upgrade() {
            node.announce(&Push::leave(channel, info.clone()));
        }
    }

    fn handle_insufficient_state(&self, channel: &str) {
        if let Some(node) = self.0.upgrade() {
            node.hub
                .disconnect_channel(channel, &protocol::Disconnect::INSUFFICIENT_STATE);
        }
    }
}

/// Per-channel async locks, sharded: a channel's broker subscription and unsubscription take
/// its shard's lock, so they happen in the order the hub saw its first and last subscriber.
/// Taken only on subscribe and on a channel's last unsubscribe, never on fan-out.
struct ChannelLocks {
    shards: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl ChannelLocks {
    const SHARDS: usize = 64;

    fn new() -> Self {
        ChannelLocks {
            shards: (0..Self::SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    async fn lock(&self, channel: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let shard = (self.hasher.hash_one(channel) as usize) % Self::SHARDS;
        self.shards[shard].lock().await
    }
}

/// Encodes a push (other than a publication) in `encoding`, as a WebSocket frame for a client
/// speaking it (the server API's pushes to connections it names).
pub fn push_message(encoding: Encoding, push: &Push) -> Result<Arc<Message>, protocol::Error> {
    prepared::push_message(encoding, push).map_err(|e| {
        tracing::error!(error = %e, "encoding a push failed");
        protocol::Error::INTERNAL
    })
}

/// Unix time in seconds; lives in [`crate::time`], re-exported for the callers that import it
/// from here.
pub use crate::time::unix_now;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cmd::test_support::{client, drain, node_with, raw};
    use crate::config::Durability;
    use crate::engine::EngineError;

    /// The offsets of the publication pushes queued for `client`.
    fn offsets(client: &ClientHandle) -> Vec<u64> {
        drain(client)
            .0
            .iter()
            .map(|text| {
                let push: serde_json::Value = serde_json::from_str(text).unwrap();
                push["push"]["pub"]["offset"].as_u64().unwrap()
            })
            .collect()
    }

    /// What a client subscribe does (see `Client::join`): subscribe pending, read the top,
    /// activate after it. Publications racing it reach the client exactly once each: those
    /// up to the top are in the stream (the client reads them by recovery), the ones after
    /// it are queued, in offset order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscribe_racing_publishes_neither_loses_nor_duplicates_one() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with(|c| {
            c.data_dir = dir.path().into();
            c.history.durability = Durability::Os;
            let chat = &mut c.channel.namespaces[0].options;
            chat.history_size = 1000;
            chat.history_ttl = std::time::Duration::from_secs(60);
        });
        const PUBLISHES: u64 = 40;
        for round in 0..20 {
            let channel = format!("chat:{round}");
            let publisher = {
                let (node, channel) = (node.clone(), channel.clone());
                tokio::spawn(async move {
                    for i in 0..PUBLISHES {
                        let data = raw(&i.to_string());
                        node.publish(&channel, data, PublishOptions::default())
                            .await
                            .unwrap();
                    }
                })
            };
            // Let the publisher get ahead by a varying amount.
            for _ in 0..round {
                tokio::task::yield_now().await;
            }
            let c = client(&node, &format!("c{round}"), "u");
            node.subscribe_pending(&channel, &c, SubFlags::default(), Selection::default())
                .await
                .unwrap();
            let (_, namespace) = node.resolve_channel(&channel).unwrap();
            let options = node.history_options(namespace);
            let history = node.history.clone().unwrap();
            let top = history.top(&channel, options).await.unwrap().offset;
            node.hub.activate(&channel, &c, top);
            publisher.await.unwrap();
            // Each publish resolved after its delivery: everything is queued by now.
            assert_eq!(
                offsets(&c),
                (top + 1..=PUBLISHES).collect::<Vec<_>>(),
                "round {round}: top {top}"
            );
        }
    }

    /// Records the broker subscriptions of a node over the embedded broker.
    struct Recording {
        inner: crate::engine::EmbeddedBroker,
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl History for Recording {
        fn read<'a>(
            &'a self,
            channel: &'a str,
            filter: crate::engine::HistoryFilter,
            options: HistoryOptions,
        ) -> crate::engine::BoxFuture<'a, Result<crate::engine::HistoryResult, EngineError>>
        {
            self.inner.read(channel, filter, options)
        }
        fn top<'a>(
            &'a self,
            channel: &'a str,
            options: HistoryOptions,
        ) -> crate::engine::BoxFuture<'a, Result<crate::engine::StreamPosition, EngineError>>
        {
            self.inner.top(channel, options)
        }
        fn recover<'a>(
            &'a self,
            channel: &'a str,
            since: crate::engine::StreamPosition,
            limit: usize,
            options: HistoryOptions,
        ) -> crate::engine::BoxFuture<'a, Result<crate::engine::Recovery, EngineError>> {
            self.inner.recover(channel, since, limit, options)
        }
        fn remove<'a>(
            &'a self,
            channel: &'a str,
        ) -> crate::engine::BoxFuture<'a, Result<(), EngineError>> {
            History::remove(&self.inner, channel)
        }
    }

    impl Broker for Recording {
        fn set_handler(&self, handler: Arc<dyn BrokerEventHandler>) {
            self.inner.set_handler(handler);
        }
        fn publish(
            &self,
            request: AppendRequest,
        ) -> crate::engine::BoxFuture<'_, Result<crate::engine::AppendResult, EngineError>>
        {
            self.inner.publish(request)
        }
        fn publish_join<'a>(
            &'a self,
            channel: &'a str,
            info: &'a ClientInfo,
        ) -> crate::engine::BoxFuture<'a, Result<(), EngineError>> {
            self.inner.publish_join(channel, info)
        }
        fn publish_leave<'a>(
            &'a self,
            channel: &'a str,
            info: &'a ClientInfo,
        ) -> crate::engine::BoxFuture<'a, Result<(), EngineError>> {
            self.inner.publish_leave(channel, info)
        }
        fn subscribe<'a>(
            &'a self,
            channel: &'a str,
        ) -> crate::engine::BoxFuture<'a, Result<(), EngineError>> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("subscribe {channel}"));
            self.inner.subscribe(channel)
        }
        fn unsubscribe<'a>(
            &'a self,
            channel: &'a str,
        ) -> crate::engine::BoxFuture<'a, Result<(), EngineError>> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("unsubscribe {channel}"));
            self.inner.unsubscribe(channel)
        }
    }

    /// The node subscribes itself to a channel at the broker for its first local subscriber
    /// only, and unsubscribes after the last one left, however the subscriptions end.
    #[tokio::test]
    async fn the_broker_is_subscribed_on_the_first_subscriber_and_unsubscribed_after_the_last() {
        let config = Config::default();
        let broker = Arc::new(Recording {
            inner: crate::engine::EmbeddedBroker::new(None),
            calls: Default::default(),
        });
        let engine = crate::engine::Engine {
            broker: broker.clone(),
            ..crate::engine::build(&config).unwrap()
        };
        let node = Node::with_engine(config, engine).unwrap();
        let (a, b) = (client(&node, "a", "alice"), client(&node, "b", "bob"));
        let subscribe =
            |c| node.subscribe_pending("news", c, SubFlags::default(), Selection::default());
        subscribe(&a).await.unwrap();
        subscribe(&b).await.unwrap();
        node.hub.activate("news", &a, 0);
        node.hub.activate("news", &b, 0);
        let flags = node.hub.unsubscribe("news", &a).unwrap();
        node.left("news", &a, flags).await;
        assert_eq!(*broker.calls.lock().unwrap(), ["subscribe news"]);
        // The last one goes with its connection.
        for (channel, flags) in node.hub.remove_client(&b) {
            node.left(&channel, &b, flags).await;
        }
        assert_eq!(
            *broker.calls.lock().unwrap(),
            ["subscribe news", "unsubscribe news"]
        );
        // A subscribe that fails before activation gives the channel back too.
        subscribe(&a).await.unwrap();
        node.cancel_subscribe("news", &a).await;
        assert_eq!(broker.calls.lock().unwrap().len(), 4);
        // A publication reaches subscribers through the broker's handler.
        subscribe(&a).await.unwrap();
        node.hub.activate("news", &a, 0);
        node.publish("news", raw("1"), PublishOptions::default())
            .await
            .unwrap();
        assert_eq!(
            drain(&a).0,
            [r#"{"push":{"channel":"news","pub":{"data":1}}}"#]
        );
    }

    /// Publishes from many tasks into one channel reach a subscriber in strictly increasing
    /// offsets, none missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_publishers_reach_a_subscriber_in_offset_order() {
        let dir = tempfile::tempdir().unwrap();
        let node = node_with(|c| {
            c.data_dir = dir.path().into();
            c.history.durability = Durability::Os;
            let chat = &mut c.channel.namespaces[0].options;
            chat.history_size = 1000;
            chat.history_ttl = std::time::Duration::from_secs(60);
        });
        let c = client(&node, "c", "u");
        assert!(node.hub.subscribe("chat:race", &c));
        const TASKS: u64 = 8;
        const EACH: u64 = 30;
        let publishers: Vec<_> = (0..TASKS)
            .map(|_| {
                let node = node.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        node.publish("chat:race", raw(&i.to_string()), Default::default())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for publisher in publishers {
            publisher.await.unwrap();
        }
        assert_eq!(offsets(&c), (1..=TASKS * EACH).collect::<Vec<_>>());
    }
}
