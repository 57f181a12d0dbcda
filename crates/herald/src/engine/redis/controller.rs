//! [`RedisController`]: the nodes of a Redis engine talk to each other over two Redis PUB/SUB
//! channels — `<prefix>.control`, which every node subscribes to, and `<prefix>.control.<uid>`,
//! this node's own, for answers meant for it only.
//!
//! * **Commands** (API `disconnect`, `subscribe`, `unsubscribe`, `refresh`): the node that
//!   received the API call applies the command to its own connections, then publishes it;
//!   every other node applies it when it arrives. A node skips its own messages, so each node
//!   applies a command exactly once. Arriving commands are applied in order by one task, their
//!   bytes bounded ([`MAX_QUEUED_BYTES`]): a node that falls that far behind drops commands
//!   and says so in its log rather than grow without bound.
//! * **Node discovery**: every node publishes its [`NodeInfo`] every [`NODE_INFO_INTERVAL`]
//!   (3 s, as Centrifugo) and at once when it (re)subscribes, and says goodbye when it shuts
//!   down; a node not heard of for three intervals (one that died) is considered gone. [`Controller::nodes`] lists this node first, then the
//!   others by name.
//! * **Channels**: a node's channel list is sent only when asked — a `channels` survey sent to
//!   every node, each answering on the asker's own channel with its matching channels, in
//!   messages of at most [`CHANNELS_CHUNK_BYTES`] — so a node with a million channels never
//!   publishes them every few seconds, and a filtered request moves only what matches.
//!
//! Messages are JSON ([`Envelope`]): they are rare (one per API command, one per node every
//! 3 s, one per `channels` call), small, and readable with `redis-cli subscribe
//! <prefix>.control`; payloads inside them are base64, as they may be binary.
//!
//! Control goes through the first shard of `engine.redis`, on a [`PubSubLink`] (kept alive,
//! resubscribed after a reconnect, probed for liveness); the node announces itself again each
//! time the link comes back. Commands published while a node was not subscribed are lost to it
//! (as in Centrifugo): the API answered already.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{PubSubHandler, PubSubLink, RedisShards, Shard, deadline};
use crate::engine::controller::merge_channels;
use crate::engine::emulation::{EmulationOutcome, Forwarded, Waiting};
use crate::engine::{BoxFuture, ControlCommand, ControlHandler, Controller, EngineError, NodeInfo};

/// How often a node announces itself (Centrifugo's interval).
pub const NODE_INFO_INTERVAL: Duration = Duration::from_secs(3);
/// Intervals without news after which a node is considered gone.
const GONE_AFTER_INTERVALS: u32 = 3;
/// Bytes of received commands waiting to be applied, at most.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;
/// Largest `channels` answer message (bytes of channel names, roughly).
pub const CHANNELS_CHUNK_BYTES: usize = 256 << 10;
/// Longest wait between two attempts to subscribe to the control channels.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One control message: who sent it and what it says.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The sending node's uid.
    from: String,
    body: Body,
}

/// What a control message says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Body {
    /// The sender is alive; its identity and load.
    Node(NodeInfo),
    /// The sender is shutting down: forget it now.
    Gone,
    /// Apply this to your connections.
    Command(ControlCommand),
    /// Send me (`from`) your channels matching `pattern`, tagged `id`.
    Channels { id: u64, pattern: String },
    /// Part of an answer to the survey `id`; `last` on the final part.
    ChannelsReply {
        id: u64,
        channels: Vec<(String, u32)>,
        last: bool,
    },
    /// Hand these commands to your streaming connection (see `controller/emulation.rs`).
    Emulate { id: u64, request: Forwarded },
    /// What became of the emulation request `id`.
    EmulateReply { id: u64, outcome: EmulationOutcome },
}

/// A `channels` survey this node is waiting on.
struct Survey {
    /// Nodes that have not answered in full yet.
    waiting: HashSet<String>,
    /// What came so far.
    channels: BTreeMap<String, u32>,
    /// Told when `waiting` empties.
    done: Option<oneshot::Sender<()>>,
}

/// Node-to-node control over Redis PUB/SUB (see the module documentation).
pub struct RedisController {
    inner: Arc<Inner>,
}

struct Inner {
    /// The shard that carries control: the first of `engine.redis`.
    shard: Arc<Shard>,
    prefix: String,
    io_timeout: Duration,
    /// Deadline of one control call (twice `io_timeout`: a connect, then the command).
    timeout: Duration,
    interval: Duration,
    handler: OnceLock<Arc<dyn ControlHandler>>,
    /// This node's uid (the handler's).
    uid: OnceLock<String>,
    /// Other nodes, with when they were last heard of.
    nodes: Mutex<HashMap<String, (NodeInfo, Instant)>>,
    surveys: Mutex<HashMap<u64, Survey>>,
    next_survey: AtomicU64,
    /// Byte budget of received commands not applied yet.
    queued: Arc<Semaphore>,
    /// Received commands, to the task that applies them.
    commands: OnceLock<mpsc::UnboundedSender<Queued>>,
    /// What the PUB/SUB link hands its messages to (held here; the link holds it weakly).
    listener: OnceLock<Arc<Listener>>,
    /// The subscription to the control channels.
    link: OnceLock<PubSubLink>,
    stop: CancellationToken,
    /// Emulation requests forwarded to other nodes, waiting for their answers.
    emulations: Waiting,
}

/// The controller as its PUB/SUB link's handler.
struct Listener(Weak<Inner>);

impl PubSubHandler for Listener {
    fn on_message<'a>(&'a self, _channel: &'a str, payload: &'a [u8]) -> BoxFuture<'a, ()> {
        // A stopped controller's tasks may hold it a little longer: it answers nothing then,
        // as the node it stood for is gone.
        if let Some(inner) = self.0.upgrade().filter(|inner| !inner.stop.is_cancelled()) {
            inner.receive(payload);
        }
        Box::pin(std::future::ready(()))
    }

    fn on_resubscribed(&self) -> BoxFuture<'_, ()> {
        // Back after a gap (or for the first time): the others may have dropped this node.
        if let Some(inner) = self.0.upgrade().filter(|inner| !inner.stop.is_cancelled()) {
            tokio::spawn(async move {
                if let Err(e) = inner.announce().await {
                    tracing::warn!("could not announce this node: {e}");
                }
            });
        }
        Box::pin(std::future::ready(()))
    }
}

impl std::fmt::Debug for RedisController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisController")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisController {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}

/// Locks a mutex whose critical sections leave it consistent even if one panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RedisController {
    /// A controller over the first of `shards`, channels under their prefix
    /// (`engine.redis.prefix`). It starts working when the node installs its handler
    /// ([`Controller::set_handler`]).
    pub fn new(shards: &RedisShards) -> Self {
        RedisController::with_interval(shards, NODE_INFO_INTERVAL)
    }

    /// As [`RedisController::new`] with another announcement interval (tests).
    pub fn with_interval(shards: &RedisShards, interval: Duration) -> Self {
        RedisController {
            inner: Arc::new(Inner {
                shard: shards.all()[0].clone(),
                prefix: shards.prefix().to_owned(),
                io_timeout: shards.io_timeout(),
                timeout: shards.io_timeout() * 2,
                interval,
                handler: OnceLock::new(),
                uid: OnceLock::new(),
                nodes: Mutex::new(HashMap::new()),
                surveys: Mutex::new(HashMap::new()),
                next_survey: AtomicU64::new(1),
                queued: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
                commands: OnceLock::new(),
                listener: OnceLock::new(),
                link: OnceLock::new(),
                stop: CancellationToken::new(),
                emulations: Waiting::default(),
            }),
        }
    }
}

impl Inner {
    fn handler(&self) -> Result<&Arc<dyn ControlHandler>, EngineError> {
        self.handler
            .get()
            .ok_or_else(|| EngineError::Unavailable("the node is not started yet".into()))
    }

    fn uid(&self) -> &str {
        self.uid.get().map_or("", String::as_str)
    }

    fn control_channel(&self) -> String {
        format!("{}.control", self.prefix)
    }

    fn node_channel(&self, uid: &str) -> String {
        format!("{}.control.{uid}", self.prefix)
    }

    async fn publish(&self, channel: String, body: Body) -> Result<(), EngineError> {
        let envelope = Envelope {
            from: self.uid().to_owned(),
            body,
        };
        let bytes = serde_json::to_vec(&envelope).map_err(|e| {
            EngineError::Unavailable(format!("cannot encode a control message: {e}"))
        })?;
        let mut con = self.shard.conn().await?;
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(bytes);
        deadline(
            self.timeout,
            "control publish",
            publish.query_async::<i64>(&mut con),
        )
        .await?;
        Ok(())
    }

    /// The other nodes heard of recently; forgets the others.
    fn live_nodes(&self) -> Vec<NodeInfo> {
        let gone_after = self.interval * GONE_AFTER_INTERVALS;
        let mut nodes = lock(&self.nodes);
        nodes.retain(|_, (_, seen)| seen.elapsed() < gone_after);
        let mut live: Vec<NodeInfo> = nodes.values().map(|(info, _)| info.clone()).collect();
        live.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uid.cmp(&b.uid)));
        live
    }

    /// Handles one message from either subscribed channel.
    fn receive(self: &Arc<Self>, bytes: &[u8]) {
        let envelope: Envelope = match serde_json::from_slice(bytes) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(
                    "a message on the control channel is not Herald's ({e}); ignored (another \
                     program publishing under engine.redis.prefix, or another Herald version?)"
                );
                return;
            }
        };
        if envelope.from == self.uid() {
            return; // our own: applied before it was published
        }
        match envelope.body {
            Body::Node(info) => {
                lock(&self.nodes).insert(envelope.from, (info, Instant::now()));
            }
            Body::Gone => {
                lock(&self.nodes).remove(&envelope.from);
            }
            Body::Command(command) => {
                let Ok(permit) = self
                    .queued
                    .clone()
                    .try_acquire_many_owned(permit_size(bytes))
                else {
                    tracing::error!(
                        from = %envelope.from,
                        "a control command was dropped: {MAX_QUEUED_BYTES} bytes of commands \
                         are waiting to be applied on this node already"
                    );
                    return;
                };
                if let Some(commands) = self.commands.get() {
                    let _ = commands.send(Queued(command, permit));
                }
            }
            Body::Channels { id, pattern } => {
                let inner = self.clone();
                tokio::spawn(
                    async move { inner.answer_channels(envelope.from, id, pattern).await },
                );
            }
            Body::ChannelsReply { id, channels, last } => {
                let mut surveys = lock(&self.surveys);
                let Some(survey) = surveys.get_mut(&id) else {
                    return; // timed out already
                };
                merge_channels(&mut survey.channels, channels);
                if last {
                    survey.waiting.remove(&envelope.from);
                    if survey.waiting.is_empty()
                        && let Some(done) = survey.done.take()
                    {
                        let _ = done.send(());
                    }
                }
            }
            Body::Emulate { id, request } => self.emulate_here(envelope.from, id, request),
            Body::EmulateReply { id, outcome } => self.emulations.answer(id, outcome),
        }
    }

    /// Sends this node's channels matching `pattern` to the node `to`, in bounded parts.
    async fn answer_channels(&self, to: String, id: u64, pattern: String) {
        let Ok(handler) = self.handler() else { return };
        let channels = handler.channels(&pattern);
        let reply_to = self.node_channel(&to);
        let mut part = Vec::new();
        let mut bytes = 0;
        let mut all = channels.into_iter().peekable();
        loop {
            let next = all.next();
            let last = all.peek().is_none();
            if let Some((name, n)) = next {
                bytes += name.len() + 16;
                part.push((name, n));
            }
            if last || bytes >= CHANNELS_CHUNK_BYTES {
                let body = Body::ChannelsReply {
                    id,
                    channels: std::mem::take(&mut part),
                    last,
                };
                bytes = 0;
                if let Err(e) = self.publish(reply_to.clone(), body).await {
                    tracing::warn!("could not answer a channels request: {e}");
                    return;
                }
            }
            if last {
                return;
            }
        }
    }

    /// Announces this node to the others.
    async fn announce(&self) -> Result<(), EngineError> {
        let info = self.handler()?.node_info();
        self.publish(self.control_channel(), Body::Node(info)).await
    }

    /// Subscribes the link to the control channels, retrying while Redis is unreachable (the
    /// link keeps them subscribed from then on, across reconnects).
    async fn subscribe_control(self: Arc<Self>) {
        let channels = [self.control_channel(), self.node_channel(self.uid())];
        let mut backoff = Duration::from_millis(50);
        for channel in channels {
            loop {
                let Some(link) = self.link.get() else { return };
                let subscribed = tokio::select! {
                    _ = self.stop.cancelled() => return,
                    subscribed = link.subscribe(channel.clone()) => subscribed,
                };
                match subscribed {
                    Ok(()) => break,
                    Err(e) => tracing::warn!(
                        "control channel {channel}: {e}; commands from other nodes do not \
                         reach this node until it subscribes (retrying in {backoff:?})"
                    ),
                }
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tracing::info!(channel = %self.control_channel(), "subscribed to the control channel");
        if let Err(e) = self.announce().await {
            tracing::warn!("could not announce this node: {e}");
        }
    }

    /// Announces this node every interval.
    async fn announce_forever(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = every.tick() => {}
            }
            match self.announce().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("announcing this node to the others again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("cannot announce this node to the others: {e}");
                }
                Err(_) => {}
            }
        }
    }

    /// Tells the others when the node shuts down, so that they drop it from their lists at
    /// once (a node that dies without saying so is dropped after three silent intervals).
    async fn say_goodbye(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = shutdown.cancelled() => {
                self.stop.cancel(); // no announcement after the goodbye
                if let Err(e) = self.publish(self.control_channel(), Body::Gone).await {
                    tracing::warn!("could not tell the other nodes that this one stops: {e}");
                }
            }
        }
    }

    /// Applies received commands, in order, one at a time.
    async fn apply_forever(self: Arc<Self>, mut commands: mpsc::UnboundedReceiver<Queued>) {
        loop {
            let queued = tokio::select! {
                _ = self.stop.cancelled() => return,
                queued = commands.recv() => queued,
            };
            let Some(Queued(command, permit)) = queued else {
                return;
            };
            if let Ok(handler) = self.handler() {
                handler.handle_command(command).await;
            }
            drop(permit);
        }
    }
}

/// A received command waiting to be applied, holding its share of [`MAX_QUEUED_BYTES`].
struct Queued(ControlCommand, tokio::sync::OwnedSemaphorePermit);

/// The permits a message of `bytes` takes (at least one, at most the whole budget).
fn permit_size(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len().clamp(1, MAX_QUEUED_BYTES)).unwrap_or(u32::MAX)
}

impl Controller for RedisController {
    fn set_handler(&self, handler: Arc<dyn ControlHandler>) {
        let uid = handler.node_info().uid;
        let shutdown = handler.shutdown_signal();
        if self.inner.handler.set(handler).is_err() {
            tracing::warn!("controller: the handler was already set; keeping the first");
            return;
        }
        let inner = &self.inner;
        let _ = inner.uid.set(uid);
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::error!(
                "the Redis controller was started outside the async runtime: this node will \
                 not hear from the others"
            );
            return;
        }
        let (commands, received) = mpsc::unbounded_channel();
        let _ = inner.commands.set(commands);
        let listener = Arc::new(Listener(Arc::downgrade(inner)));
        let link = PubSubLink::start(
            inner.shard.clone(),
            format!("{}.probe.{}.control", inner.prefix, inner.uid()),
            inner.io_timeout,
            Arc::downgrade(&listener) as Weak<dyn PubSubHandler>,
        );
        let _ = inner.listener.set(listener);
        let _ = inner.link.set(link);
        tokio::spawn(inner.clone().subscribe_control());
        tokio::spawn(inner.clone().announce_forever());
        tokio::spawn(inner.clone().apply_forever(received));
        if let Some(shutdown) = shutdown {
            tokio::spawn(inner.clone().say_goodbye(shutdown));
        }
    }

    fn send(&self, command: ControlCommand) -> BoxFuture<'_, Result<(), EngineError>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.handler()?.handle_command(command.clone()).await;
            inner
                .publish(inner.control_channel(), Body::Command(command))
                .await
                .map_err(|e| {
                    EngineError::Unavailable(format!(
                        "applied on this node but not sent to the others: {e}"
                    ))
                })
        })
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, EngineError>> {
        Box::pin(async move {
            let mut nodes = vec![self.inner.handler()?.node_info()];
            nodes.extend(self.inner.live_nodes());
            Ok(nodes)
        })
    }

    fn channels<'a>(
        &'a self,
        pattern: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, u32>, EngineError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut all = BTreeMap::new();
            merge_channels(&mut all, inner.handler()?.channels(pattern));
            let waiting: HashSet<String> = inner.live_nodes().into_iter().map(|n| n.uid).collect();
            if waiting.is_empty() {
                return Ok(all);
            }
            let id = inner.next_survey.fetch_add(1, Ordering::Relaxed);
            let (done, answered) = oneshot::channel();
            lock(&inner.surveys).insert(
                id,
                Survey {
                    waiting,
                    channels: BTreeMap::new(),
                    done: Some(done),
                },
            );
            let asked = inner
                .publish(
                    inner.control_channel(),
                    Body::Channels {
                        id,
                        pattern: pattern.to_owned(),
                    },
                )
                .await;
            let outcome = match asked {
                Ok(()) => tokio::time::timeout(inner.timeout, answered).await.is_ok(),
                Err(_) => false,
            };
            let survey = lock(&inner.surveys).remove(&id);
            asked?;
            let Some(survey) = survey else {
                return Err(EngineError::Unavailable(
                    "the channels survey was lost".into(),
                ));
            };
            if !outcome {
                let missing: Vec<&str> = survey.waiting.iter().map(String::as_str).collect();
                return Err(EngineError::Unavailable(format!(
                    "nodes {} did not send their channels within {:?}; try again (a node that \
                     died leaves the node list within {:?})",
                    missing.join(", "),
                    inner.timeout,
                    inner.interval * GONE_AFTER_INTERVALS,
                )));
            }
            for (channel, n) in survey.channels {
                let count = all.entry(channel).or_default();
                *count = count.saturating_add(n);
            }
            Ok(all)
        })
    }

    fn emulate<'a>(
        &'a self,
        node: &'a str,
        session: &'a str,
        commands: bytes::Bytes,
    ) -> BoxFuture<'a, Result<EmulationOutcome, EngineError>> {
        Box::pin(self.inner.forward_emulation(node, session, commands))
    }
}

mod emulation;
#[cfg(test)]
mod tests;
