//! [`NatsBroker`]: the NATS engine's [`Broker`]. Publications, joins and leaves travel on the
//! channel's subject to every node subscribed to it, this one included (NATS echoes a
//! node's own publishes back to it), so every node delivers through the same path in the same
//! order. Publications to channels with history are appended to JetStream first
//! ([`JetStreamHistory`]).
//!
//! Per subscribed channel one task reads the subscription and keeps the channel's delivery in
//! offset order ([`Order`]): a publication whose offset skips some is held for
//! [`GAP_WAIT`] for the missing ones to arrive (two nodes' publishes can cross on the way), then
//! the missing are read from the stream; after a reconnection to NATS the task reads what the
//! stream got meanwhile. What cannot be read any more is reported to the node
//! ([`BrokerEventHandler::handle_insufficient_state`]), which tells the channel's subscribers to recover.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::wire::{self, Kind, Meta};
use super::{JetStreamHistory, NatsConnection};
use crate::engine::{
    AppendRequest, AppendResult, BoxFuture, Broker, BrokerEventHandler, EngineError, RecentKeys,
    StoredHistory, StreamPosition,
};
use crate::protocol::{ClientInfo, Payload, Publication};

/// How long a publication that arrived ahead of its predecessors waits for them before they
/// are read from the stream.
pub const GAP_WAIT: Duration = Duration::from_millis(50);
/// Publications held back at most per channel while waiting for missing ones, and their
/// payload bytes at most; past either the missing are read at once.
const MAX_HELD: usize = 1024;
const MAX_HELD_BYTES: usize = 16 << 20;
/// How long an `idempotency_key` of a publication without history is remembered.
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);
/// How long a channel task waits before retrying a failed read of missing publications.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where the node's handler is, once installed: shared with the channel tasks.
type HandlerSlot = Arc<OnceLock<Arc<dyn BrokerEventHandler>>>;

/// The NATS broker: one connection, the JetStream history when some namespace keeps history,
/// and a task per subscribed channel.
pub struct NatsBroker {
    connection: NatsConnection,
    history: Option<Arc<JetStreamHistory>>,
    handler: HandlerSlot,
    channels: Mutex<HashMap<String, JoinHandle<()>>>,
    recent_keys: RecentKeys,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        for (_, task) in crate::sync::lock(&self.channels).drain() {
            task.abort();
        }
    }
}

impl NatsBroker {
    /// A broker over `connection`, with `history` when some namespace keeps history.
    pub fn new(connection: NatsConnection, history: Option<Arc<JetStreamHistory>>) -> Self {
        NatsBroker {
            connection,
            history,
            handler: Arc::default(),
            channels: Mutex::new(HashMap::new()),
            recent_keys: RecentKeys::new(IDEMPOTENCY_WINDOW),
        }
    }

    fn storage(&self) -> Result<&JetStreamHistory, EngineError> {
        self.history.as_deref().ok_or_else(|| {
            EngineError::BadRequest(
                "no history is kept: set history_size and history_ttl in the namespace and \
                 broker.nats.jetstream.enabled"
                    .into(),
            )
        })
    }

    /// The history, for tests that append without publishing to the nodes.
    #[cfg(test)]
    pub(super) fn history_for_tests(&self) -> Result<&JetStreamHistory, EngineError> {
        self.storage()
    }

    /// Publishes `meta` + `payload` on `channel`'s subject, flushed to NATS within the write
    /// deadline.
    async fn send(&self, channel: &str, meta: &Meta, payload: &[u8]) -> Result<(), EngineError> {
        self.connection.ready().await?;
        let body = wire::encode(meta, payload)?;
        let client = self.connection.client();
        let subject = self.connection.channel_subject(channel);
        self.connection
            .deadline("publish", client.publish(subject, body))
            .await?;
        self.connection.deadline("flush", client.flush()).await
    }
}

impl StoredHistory for NatsBroker {
    type Store = JetStreamHistory;

    fn store(&self) -> Result<&JetStreamHistory, EngineError> {
        self.storage()
    }
}

impl Broker for NatsBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerEventHandler>) {
        if self.handler.set(handler).is_err() {
            tracing::warn!("broker: the event handler was already set; keeping the first");
        }
    }

    fn publish(&self, request: AppendRequest) -> BoxFuture<'_, Result<AppendResult, EngineError>> {
        Box::pin(async move {
            let mut meta = Meta::new(Kind::Pub);
            meta.delta = request.delta;
            if request.options.enabled() {
                self.connection.ready().await?;
                let result = self.storage()?.append(&request).await?;
                let Some(stored) = &result.publication else {
                    return Ok(result);
                };
                meta.offset = stored.offset;
                meta.epoch = result.position.epoch.clone();
                meta.info = request.info;
                meta.tags = request.tags;
                // Stored: a subscriber node that does not get this message reads it from the
                // stream when the next one arrives or when it reconnects.
                if let Err(e) = self
                    .send(&request.channel, &meta, request.data.as_bytes())
                    .await
                {
                    tracing::warn!(
                        channel = %request.channel,
                        offset = stored.offset,
                        "publication stored in JetStream but not published to the nodes: {e}"
                    );
                }
                return Ok(result);
            }
            let duplicate = request
                .idempotency_key
                .as_deref()
                .is_some_and(|key| !self.recent_keys.insert(&request.channel, key));
            if !duplicate {
                meta.info = request.info;
                meta.tags = request.tags;
                self.send(&request.channel, &meta, request.data.as_bytes())
                    .await?;
            }
            Ok(AppendResult {
                position: StreamPosition::default(),
                duplicate,
                suppressed: false,
                publication: None,
            })
        })
    }

    fn publish_join<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        let mut meta = Meta::new(Kind::Join);
        meta.info = Some(info.clone());
        Box::pin(async move { self.send(channel, &meta, &[]).await })
    }

    fn publish_leave<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        let mut meta = Meta::new(Kind::Leave);
        meta.info = Some(info.clone());
        Box::pin(async move { self.send(channel, &meta, &[]).await })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            if crate::sync::lock(&self.channels).contains_key(channel) {
                return Ok(());
            }
            self.connection.ready().await?;
            let client = self.connection.client();
            let subject = self.connection.channel_subject(channel);
            let subscriber = self
                .connection
                .deadline("subscribe", client.subscribe(subject))
                .await?;
            // On the server before this resolves: the stream top the node reads next is
            // asked on the same connection, so it is answered after the subscription is in.
            self.connection.deadline("flush", client.flush()).await?;
            // Where delivery starts: the stream's top now (read after the subscription is
            // in, so every later publication arrives), or offset 0 of a stream to come.
            let mut order = Order::default();
            if let Some(history) = &self.history {
                match history.position_of(channel).await {
                    Ok(Some(top)) => order.last = Some(top),
                    Ok(None) => order.from_zero = true,
                    Err(e) => tracing::warn!(
                        channel,
                        "cannot read the stream's position: delivery starts at the next publication: {e}"
                    ),
                }
            }
            let reader = ChannelReader {
                channel: channel.to_owned(),
                handler: self.handler.clone(),
                history: self.history.clone(),
                order,
            };
            let connects = self.connection.connects.clone();
            let task = tokio::spawn(reader.run(subscriber, connects));
            if let Some(old) = crate::sync::lock(&self.channels).insert(channel.to_owned(), task) {
                old.abort();
            }
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        // Dropping the subscription (with the task) unsubscribes at the server.
        if let Some(task) = crate::sync::lock(&self.channels).remove(channel) {
            task.abort();
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn health(&self) -> Result<(), String> {
        self.connection.health()
    }
}

/// A channel's delivery order: the last offset delivered in the stream's epoch, and
/// publications that arrived ahead of a missing one.
#[derive(Default)]
struct Order {
    last: Option<(String, u64)>,
    held: BTreeMap<u64, (Publication, bool)>,
    /// Payload bytes in `held`.
    held_bytes: usize,
    /// When the held publications stop waiting for the missing ones.
    fill_at: Option<Instant>,
    /// The channel had no stream when this node subscribed: its first publication is
    /// offset 1, whatever arrives first.
    from_zero: bool,
}

impl Order {
    /// Whether no more publications may be held back.
    fn full(&self) -> bool {
        self.held.len() >= MAX_HELD || self.held_bytes >= MAX_HELD_BYTES
    }
}

/// What the task of one subscribed channel needs.
struct ChannelReader {
    channel: String,
    handler: HandlerSlot,
    history: Option<Arc<JetStreamHistory>>,
    order: Order,
}

impl ChannelReader {
    async fn run(
        mut self,
        mut subscriber: async_nats::Subscriber,
        mut connects: tokio::sync::watch::Receiver<u64>,
    ) {
        connects.borrow_and_update();
        loop {
            let fill_at = self.order.fill_at;
            tokio::select! {
                message = subscriber.next() => match message {
                    Some(message) => self.receive(&message.payload).await,
                    None => return,
                },
                changed = connects.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Reconnected: what was published meanwhile is in the stream only.
                    self.fill(None).await;
                }
                () = sleep_until(fill_at), if fill_at.is_some() => {
                    let upto = self.order.held.keys().next().map(|first| first - 1);
                    self.fill(upto).await;
                }
            }
        }
    }

    fn handler(&self) -> Option<&Arc<dyn BrokerEventHandler>> {
        self.handler.get()
    }

    async fn receive(&mut self, bytes: &bytes::Bytes) {
        let (meta, data) = match wire::decode(bytes) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(channel = %self.channel, "nats: skipping a message that is not Herald's: {e}");
                return;
            }
        };
        match meta.kind {
            Kind::Join | Kind::Leave => {
                let (Some(handler), Some(info)) = (self.handler(), meta.info.as_ref()) else {
                    return;
                };
                if meta.kind == Kind::Join {
                    handler.handle_join(&self.channel, info);
                } else {
                    handler.handle_leave(&self.channel, info);
                }
            }
            Kind::Pub => self.publication(&meta, data).await,
        }
    }

    fn deliver(&self, publication: &Publication, delta: bool) {
        if let Some(handler) = self.handler() {
            handler.handle_publication(&self.channel, publication, delta);
        }
    }

    async fn publication(&mut self, meta: &Meta, data: Payload) {
        let publication = meta.publication(data);
        if meta.offset == 0 {
            // No history: nothing to order by.
            self.deliver(&publication, meta.delta);
            return;
        }
        if self.order.last.is_none() && std::mem::take(&mut self.order.from_zero) {
            self.order.last = Some((meta.epoch.clone(), 0));
        }
        match &self.order.last {
            Some((epoch, last)) if *epoch == meta.epoch => {
                let last = *last;
                if meta.offset <= last {
                    // Read from the stream already.
                    return;
                }
                if meta.offset > last + 1 {
                    let size = publication.data.as_ref().map_or(0, Payload::len);
                    if let Some((old, _)) = self
                        .order
                        .held
                        .insert(meta.offset, (publication, meta.delta))
                    {
                        self.order.held_bytes -= old.data.as_ref().map_or(0, Payload::len);
                    }
                    self.order.held_bytes += size;
                    if self.order.full() {
                        let upto = self.order.held.keys().next().map(|first| first - 1);
                        self.fill(upto).await;
                    } else if self.order.fill_at.is_none() {
                        self.order.fill_at = Some(Instant::now() + GAP_WAIT);
                    }
                    return;
                }
            }
            Some((epoch, _)) => {
                tracing::warn!(
                    channel = %self.channel,
                    old = %epoch,
                    new = %meta.epoch,
                    "the channel's stream has a new epoch (it was recreated)"
                );
                self.order.held.clear();
                self.order.held_bytes = 0;
                self.order.fill_at = None;
            }
            // The stream's position could not be read at subscribe: the first publication
            // sets where delivery starts.
            None => {}
        }
        self.deliver(&publication, meta.delta);
        self.order.last = Some((meta.epoch.clone(), meta.offset));
        self.release_held();
    }

    /// Delivers the held publications that now follow the last one.
    fn release_held(&mut self) {
        while let Some((epoch, last)) = self.order.last.clone() {
            let Some(entry) = self.order.held.first_entry() else {
                break;
            };
            let offset = *entry.key();
            if offset <= last {
                let (publication, _) = entry.remove();
                self.order.held_bytes -= publication.data.as_ref().map_or(0, Payload::len);
                continue;
            }
            if offset != last + 1 {
                break;
            }
            let (publication, delta) = entry.remove();
            self.order.held_bytes -= publication.data.as_ref().map_or(0, Payload::len);
            self.deliver(&publication, delta);
            self.order.last = Some((epoch, offset));
        }
        if self.order.held.is_empty() {
            self.order.fill_at = None;
        }
    }

    /// Reads the publications missing after the last delivered one (up to `upto`, or the
    /// stream's top) from the stream, delivers them and whatever was held behind them. What
    /// the stream no longer has is a gap the node must report.
    async fn fill(&mut self, upto: Option<u64>) {
        let (Some(history), Some((epoch, last))) = (&self.history, self.order.last.clone()) else {
            return;
        };
        match history.missed(&self.channel, &epoch, last, upto).await {
            Ok(Some(publications)) => {
                for stored in &publications {
                    self.deliver(&stored.to_publication(), false);
                }
                if let Some(newest) = publications.last() {
                    self.order.last = Some((epoch, newest.offset));
                }
            }
            Ok(None) => {
                tracing::warn!(
                    channel = %self.channel,
                    after = last,
                    "publications this node missed are no longer in the stream: its \
                     subscribers are told to recover"
                );
                if let Some(handler) = self.handler() {
                    handler.handle_insufficient_state(&self.channel);
                }
                // Start again from what is held, or from the next publication.
                self.order.last = self
                    .order
                    .held
                    .keys()
                    .next()
                    .map(|first| (epoch, first - 1));
            }
            Err(e) => {
                tracing::warn!(channel = %self.channel, "cannot read missed publications: {e}");
                if !self.order.full() {
                    self.order.fill_at = Some(Instant::now() + RETRY_AFTER);
                    return;
                }
                // Cannot wait for ever with a full buffer.
                if let Some(handler) = self.handler() {
                    handler.handle_insufficient_state(&self.channel);
                }
                self.order.last = self
                    .order
                    .held
                    .keys()
                    .next()
                    .map(|first| (epoch, first - 1));
            }
        }
        self.release_held();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
