//! [`RedisBroker`]: the Redis engine's [`Broker`] and [`History`].
//!
//! * **Publish** runs `publish.lua` on the channel's shard: idempotency key, version
//!   suppression, the next offset, `XADD` with `MAXLEN` and the `PUBLISH` to the channel's
//!   PUB/SUB channel happen in one script, so every node receives a channel's publications in
//!   offset order. Publishes that queue while a call is in flight share the next call
//!   ([`PublishBatcher`]). The publisher is answered once Redis ran the script; its own node's
//!   subscribers get the publication from PUB/SUB like every other node's.
//! * **Reads** (`history`, top, recovery) run `read.lua`: the stream's meta and the range in one
//!   snapshot, with publications older than `history_ttl` trimmed first.
//! * **Delivery** comes from the shard's [`PubSubLink`]. For each channel this node is subscribed
//!   to, the broker keeps the last position it delivered (or read as a subscriber's top); a
//!   publication that skips offsets (its link dropped messages) is completed from the stream
//!   before it is delivered, and a channel whose stream cannot be completed (trimmed, or a new
//!   epoch) has its subscribers here disconnected with 3010 "insufficient state", so that their
//!   SDKs reconnect and recover — never a silent gap. After a link reconnects, every such
//!   channel is checked the same way against its stream's top.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use redis::{Script, ToRedisArgs, Value};
use tokio::sync::{Semaphore, oneshot};

use super::codec::{self, Event};
use super::publish_batch::{ARGS_PER, Job, PublishBatcher};
use super::pubsub::{PubSubHandler, PubSubLink};
use super::shards::{Lane, RedisShards};
use crate::engine::{
    AppendRequest, AppendResult, BoxFuture, Broker, BrokerEventHandler, EngineError, History,
    HistoryFilter, HistoryOptions, HistoryResult, Recovery, StoredPublication, StreamPosition,
    new_epoch,
};
use crate::protocol::{ClientInfo, Publication};

/// How long an `idempotency_key` is remembered (Centrifugo's window).
const IDEMPOTENCY_WINDOW_MS: u64 = 300_000;

/// At most this many missed publications are replayed into a channel to close a gap; more
/// (or any that were trimmed) and its subscribers are told to recover instead.
const MAX_REPLAY: u64 = 1000;

/// Stream reads one node has in flight on one shard at most; more wait (within the deadline)
/// and gather identical reads meanwhile (see [`ReadRequest`]).
const READS_IN_FLIGHT: usize = 32;

/// One `read.lua` call: what to read from a channel's stream and how the stream is kept.
///
/// Two equal requests are the same read: a read joins an identical one that has not been sent
/// to Redis yet and gets its answer, so 15,000 clients recovering one channel from the same
/// offset cost one `read.lua`, not 15,000. Only a read not yet sent is joined, so the answer
/// is never older than the joiner's own call, as if it had sent its own read a moment later.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ReadRequest {
    channel: String,
    /// Read after this offset (`None`: from the start, or from the end when `reverse`).
    since: Option<u64>,
    /// At most this many publications; 0 reads only the position, -1 everything.
    limit: i64,
    reverse: bool,
    /// The channel's retention (size, ttl, meta ttl), applied to what is read.
    options: HistoryOptions,
    /// Whether a stream without meta gets one (a new epoch). The broker's own checks set it
    /// false: they must not create streams that nobody publishes to.
    create: bool,
}

impl ReadRequest {
    /// A read for the broker's own checks: no retention applied, nothing created.
    fn check(channel: &str, since: Option<u64>, limit: i64) -> ReadRequest {
        ReadRequest {
            channel: channel.to_owned(),
            since,
            limit,
            reverse: false,
            options: HistoryOptions::default(),
            create: false,
        }
    }
}

/// A stream read's answer: the stream's position and the publications read.
type ReadReply = Result<(StreamPosition, Vec<Arc<StoredPublication>>), EngineError>;

/// The Redis broker; cheap to share (`Arc` inside).
pub struct RedisBroker {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("shards", &self.inner.shards)
            .finish_non_exhaustive()
    }
}

/// Where delivery stands in a channel this node is subscribed to.
#[derive(Clone, Debug)]
struct Tracked {
    /// The last position delivered here, or read as a local subscriber's top.
    position: StreamPosition,
    /// `position` came from a delivery (not only a read): an offset at or below it is a
    /// repeat and is dropped.
    delivered: bool,
}

pub(super) struct Inner {
    pub(super) shards: Arc<RedisShards>,
    /// One PUB/SUB link per shard, in shard order.
    links: Vec<PubSubLink>,
    /// The links' handlers (held here; the links hold them weakly).
    _events: Vec<Arc<ShardEvents>>,
    handler: OnceLock<Arc<dyn BrokerEventHandler>>,
    /// Channels this node is subscribed to, with their delivery position once known.
    positions: Mutex<HashMap<String, Option<Tracked>>>,
    /// Sends publishes (`publish.lua`), batched per shard.
    batches: PublishBatcher,
    read: Script,
    /// Itself, for the tasks that send coalesced reads.
    me: Weak<Inner>,
    /// Reads waiting to be sent, with everyone waiting for each (see [`ReadRequest`]).
    pending_reads: Mutex<HashMap<ReadRequest, Vec<oneshot::Sender<ReadReply>>>>,
    /// Per shard, the reads allowed in flight ([`READS_IN_FLIGHT`]).
    read_permits: Vec<Arc<Semaphore>>,
}

impl RedisBroker {
    /// A broker over `shards`. Starts one PUB/SUB link per shard (on the current tokio
    /// runtime); they connect in the background and keep retrying, so this succeeds while
    /// Redis is down (see [`RedisBroker::health`]).
    pub fn new(shards: Arc<RedisShards>) -> RedisBroker {
        let node = uuid::Uuid::new_v4().simple().to_string();
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let events: Vec<Arc<ShardEvents>> = (0..shards.all().len())
                .map(|shard| {
                    Arc::new(ShardEvents {
                        inner: weak.clone(),
                        shard,
                    })
                })
                .collect();
            let links = shards
                .all()
                .iter()
                .zip(&events)
                .map(|(shard, handler)| {
                    let handler: Weak<dyn PubSubHandler> =
                        Arc::downgrade(&(handler.clone() as Arc<dyn PubSubHandler>));
                    PubSubLink::start(
                        shard.clone(),
                        format!("{}.probe.{node}.{}", shards.prefix(), shard.index()),
                        shards.io_timeout(),
                        handler,
                    )
                })
                .collect();
            Inner {
                shards: shards.clone(),
                links,
                _events: events,
                handler: OnceLock::new(),
                positions: Mutex::new(HashMap::new()),
                batches: PublishBatcher::new(
                    shards.clone(),
                    Script::new(include_str!("publish.lua")),
                ),
                read: Script::new(include_str!("read.lua")),
                me: weak.clone(),
                pending_reads: Mutex::new(HashMap::new()),
                read_permits: (0..shards.all().len())
                    .map(|_| Arc::new(Semaphore::new(READS_IN_FLIGHT)))
                    .collect(),
            }
        });
        RedisBroker { inner }
    }

    /// The shards it runs on (for a presence manager or controller to share its connections).
    pub fn shards(&self) -> &Arc<RedisShards> {
        &self.inner.shards
    }

    /// `Ok` while every shard's PUB/SUB link is up; otherwise what is down, for `/health`.
    pub fn health(&self) -> Result<(), String> {
        let problems: Vec<String> = self
            .inner
            .links
            .iter()
            .filter_map(|l| l.health().err())
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Inner {
    pub(super) fn stream_key(&self, channel: &str) -> String {
        format!("{}.stream.{{{channel}}}", self.shards.prefix())
    }

    pub(super) fn meta_key(&self, channel: &str) -> String {
        format!("{}.meta.{{{channel}}}", self.shards.prefix())
    }

    pub(super) fn idempotency_key(&self, channel: &str, key: &str) -> String {
        format!("{}.idem.{{{channel}}}.{key}", self.shards.prefix())
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        format!("{}.ch.{channel}", self.shards.prefix())
    }

    /// The channel of a PUB/SUB channel name, if it is one of ours.
    fn channel_of<'a>(&self, pubsub: &'a str) -> Option<&'a str> {
        pubsub
            .strip_prefix(self.shards.prefix())
            .and_then(|rest| rest.strip_prefix(".ch."))
    }

    fn link(&self, channel: &str) -> &PubSubLink {
        &self.links[self.shards.for_key(channel).index()]
    }

    fn failed(&self, channel: &str, e: redis::RedisError) -> EngineError {
        EngineError::Unavailable(format!(
            "Redis ({}): {e}",
            self.shards.for_key(channel).describe()
        ))
    }

    async fn publish(&self, request: AppendRequest) -> Result<AppendResult, EngineError> {
        let channel = request.channel.as_str();
        let history = request.options.enabled();
        let info = codec::encode_info(request.info.as_ref());
        let tags = codec::encode_tags(&request.tags);
        let key = request.idempotency_key.as_deref().unwrap_or("");
        let bytes = request.data.len() + info.len() + tags.len();
        // `publish.lua`'s arguments of one publication, in its order.
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(ARGS_PER);
        self.pubsub_channel(channel).write_redis_args(&mut args);
        request.data.as_bytes().write_redis_args(&mut args);
        info.write_redis_args(&mut args);
        tags.write_redis_args(&mut args);
        (if history { request.options.size } else { 0 }).write_redis_args(&mut args);
        millis(request.options.ttl)
            .max(1)
            .write_redis_args(&mut args);
        millis(request.options.meta_ttl).write_redis_args(&mut args);
        (if request.idempotency_key.is_some() {
            "1"
        } else {
            "0"
        })
        .write_redis_args(&mut args);
        IDEMPOTENCY_WINDOW_MS.write_redis_args(&mut args);
        new_epoch().write_redis_args(&mut args);
        (if history { request.version } else { 0 }).write_redis_args(&mut args);
        request.version_epoch.write_redis_args(&mut args);
        (if request.delta { "1" } else { "0" }).write_redis_args(&mut args);
        debug_assert_eq!(args.len(), ARGS_PER, "one argument each");
        let job = Job {
            channel: channel.to_string(),
            keys: [
                self.stream_key(channel),
                self.meta_key(channel),
                self.idempotency_key(channel, key),
            ],
            args,
            bytes,
        };
        let [status, offset, epoch, time_ms] = self.batches.publish(job).await?;
        let position = StreamPosition::new(offset.parse().unwrap_or(0), epoch);
        let publication = (status == "ok" && history).then(|| {
            Arc::new(StoredPublication {
                offset: position.offset,
                data: request.data.clone(),
                info: request.info.clone(),
                tags: request.tags.clone(),
                time_ms: time_ms.parse().unwrap_or(0),
            })
        });
        Ok(AppendResult {
            position,
            duplicate: status == "duplicate",
            suppressed: status == "suppressed",
            publication,
        })
    }

    /// Runs `read.lua`: the stream's position and, unless `limit` is 0, a range of it; a
    /// stream without meta gets one (a new epoch).
    async fn read_range(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: i64,
        reverse: bool,
        options: HistoryOptions,
    ) -> ReadReply {
        self.read_stream(ReadRequest {
            channel: channel.to_owned(),
            since,
            limit: limit.max(-1),
            reverse,
            options,
            create: true,
        })
        .await
    }

    /// Sends `request` (or joins an identical one not sent yet, see [`ReadRequest`]), at most
    /// [`READS_IN_FLIGHT`] per shard at once.
    async fn read_stream(&self, request: ReadRequest) -> ReadReply {
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut pending = self.pending_reads.lock().unwrap_or_else(|e| e.into_inner());
            match pending.entry(request.clone()) {
                std::collections::hash_map::Entry::Occupied(mut waiting) => {
                    waiting.get_mut().push(tx);
                    false
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(vec![tx]);
                    true
                }
            }
        };
        let deadline = self.shards.io_timeout();
        let shard = self.shards.for_key(&request.channel);
        if first && let Some(inner) = self.me.upgrade() {
            // Its own task: a caller that goes away (its client disconnected) must not take
            // the others' read with it.
            let permits = self.read_permits[shard.index()].clone();
            tokio::spawn(async move {
                let permit = tokio::time::timeout(deadline, permits.acquire_owned()).await;
                let waiting = inner
                    .pending_reads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&request)
                    .unwrap_or_default();
                let reply = match permit {
                    Ok(Ok(_permit)) => inner.read_now(&request).await,
                    _ => Err(EngineError::Unavailable(format!(
                        "Redis ({}): {READS_IN_FLIGHT} history reads in flight for \
                         {deadline:?}; try again",
                        inner.shards.for_key(&request.channel).describe()
                    ))),
                };
                for waiter in waiting {
                    let _ = waiter.send(reply.clone());
                }
            });
        }
        // Waiting for a permit, then the read (whose EVALSHA-then-EVAL may take the
        // connection's deadline twice).
        match tokio::time::timeout(deadline * 3, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(EngineError::Unavailable(
                "Redis: the history read was abandoned".into(),
            )),
            Err(_) => Err(EngineError::Unavailable(format!(
                "Redis ({}): no answer to a history read within {:?}",
                shard.describe(),
                deadline * 3
            ))),
        }
    }

    /// Sends one `read.lua` (see [`Inner::read_stream`], which coalesces them), on the shard's
    /// read lane.
    async fn read_now(&self, request: &ReadRequest) -> ReadReply {
        let ReadRequest {
            channel,
            since,
            limit,
            reverse,
            options,
            create,
        } = request;
        let mut conn = self.shards.for_key(channel).lane(Lane::Reads).await?;
        let reply: Value = self
            .read
            .key(self.stream_key(channel))
            .key(self.meta_key(channel))
            .arg(new_epoch())
            .arg(millis(options.meta_ttl))
            .arg(millis(options.ttl))
            .arg(since.map(|s| s.to_string()).unwrap_or_default())
            .arg(*limit)
            .arg(if *reverse { "1" } else { "0" })
            .arg(if *create { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(channel, e))?;
        let unexpected = || EngineError::Unavailable("Redis: unexpected answer to a read".into());
        let Value::Array(parts) = reply else {
            return Err(unexpected());
        };
        let [epoch, top, entries] = parts.as_slice() else {
            return Err(unexpected());
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        };
        let epoch = text(epoch).ok_or_else(unexpected)?;
        let top: u64 = text(top)
            .and_then(|t| t.parse().ok())
            .ok_or_else(unexpected)?;
        let publications = match entries {
            Value::Array(entries) => entries
                .iter()
                .map(codec::decode_entry)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EngineError::Unavailable(format!("Redis: {e}")))?,
            _ => Vec::new(),
        };
        // `history_size` bounds what is readable even before the next publish trims.
        let floor = top.saturating_sub(options.size as u64);
        let publications = publications
            .into_iter()
            .filter(|p| options.size == 0 || p.offset > floor)
            .collect();
        Ok((StreamPosition::new(top, epoch), publications))
    }

    /// Records `position` as a subscribed channel's delivery position when none is known
    /// yet (a local subscriber's top: offsets after it must arrive without a gap).
    fn track_read(&self, channel: &str, position: &StreamPosition) {
        let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot @ None) = positions.get_mut(channel) {
            *slot = Some(Tracked {
                position: position.clone(),
                delivered: false,
            });
        }
    }

    fn handler(&self) -> Option<&Arc<dyn BrokerEventHandler>> {
        self.handler.get()
    }

    fn deliver_one(&self, channel: &str, publication: &StoredPublication, delta: bool) {
        if let Some(handler) = self.handler() {
            let mut p: Publication = publication.to_publication();
            p.offset = publication.offset;
            handler.handle_publication(channel, &p, delta);
        }
    }

    /// A publication from PUB/SUB: delivered in order, a gap completed from the stream first,
    /// a repeat dropped.
    async fn on_publication(
        &self,
        channel: &str,
        publication: Arc<StoredPublication>,
        epoch: String,
        delta: bool,
    ) {
        if publication.offset == 0 {
            self.deliver_one(channel, &publication, delta);
            return;
        }
        enum Next {
            Deliver,
            Drop,
            Fill(u64),
            Reset,
        }
        let next = {
            let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
            match positions.get_mut(channel) {
                // Not (or no longer) subscribed here: nothing to keep in order.
                None => Next::Deliver,
                Some(slot) => {
                    let next = match slot.as_ref() {
                        None => Next::Deliver,
                        Some(t) if t.position.epoch != epoch => Next::Reset,
                        Some(t) if publication.offset <= t.position.offset => {
                            if t.delivered {
                                Next::Drop
                            } else {
                                // At or below a subscriber's top: the hub sorts it out.
                                Next::Deliver
                            }
                        }
                        Some(t) if publication.offset == t.position.offset + 1 => Next::Deliver,
                        Some(t) => Next::Fill(t.position.offset),
                    };
                    if matches!(next, Next::Deliver | Next::Reset) {
                        let keep = slot.as_ref().is_some_and(|t| {
                            !t.delivered
                                && t.position.epoch == epoch
                                && t.position.offset >= publication.offset
                        });
                        if !keep {
                            *slot = Some(Tracked {
                                position: StreamPosition::new(publication.offset, epoch.clone()),
                                delivered: true,
                            });
                        }
                    }
                    next
                }
            }
        };
        match next {
            Next::Deliver => self.deliver_one(channel, &publication, delta),
            Next::Drop => {}
            Next::Reset => self.insufficient(channel, "the stream has a new epoch"),
            Next::Fill(last) => {
                if self
                    .fill(channel, last, publication.offset - 1, &epoch)
                    .await
                {
                    self.deliver_one(channel, &publication, delta);
                    self.set_delivered(channel, publication.offset, &epoch);
                }
            }
        }
    }

    fn set_delivered(&self, channel: &str, offset: u64, epoch: &str) {
        let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = positions.get_mut(channel) {
            *slot = Some(Tracked {
                position: StreamPosition::new(offset, epoch),
                delivered: true,
            });
        }
    }

    /// Delivers the publications after `last` up to `upto` from the stream, if it still has
    /// every one of them in `epoch`; otherwise tells the channel's subscribers here to recover.
    /// Whether the channel is complete up to `upto`.
    async fn fill(&self, channel: &str, last: u64, upto: u64, epoch: &str) -> bool {
        let missed = upto.saturating_sub(last);
        if missed > MAX_REPLAY {
            self.insufficient(channel, &format!("{missed} publications were missed"));
            return false;
        }
        match self
            .read_stream(ReadRequest::check(channel, Some(last), missed as i64))
            .await
        {
            Ok((position, publications))
                if position.epoch == epoch
                    && publications.len() as u64 == missed
                    && publications
                        .iter()
                        .enumerate()
                        .all(|(i, p)| p.offset == last + 1 + i as u64) =>
            {
                tracing::info!(
                    "Redis: {missed} publications of {channel:?} missed by this node's PUB/SUB \
                     link were delivered from its stream"
                );
                for p in &publications {
                    self.deliver_one(channel, p, false);
                }
                self.set_delivered(channel, upto, epoch);
                true
            }
            Ok(_) => {
                self.insufficient(channel, "missed publications are no longer in its stream");
                false
            }
            Err(e) => {
                self.insufficient(channel, &format!("its stream cannot be read ({e})"));
                false
            }
        }
    }

    fn insufficient(&self, channel: &str, why: &str) {
        tracing::warn!(
            "Redis: channel {channel:?} lost continuity on this node ({why}): its subscribers \
             here are disconnected with 3010 to reconnect and recover"
        );
        {
            let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = positions.get_mut(channel) {
                *slot = None;
            }
        }
        if let Some(handler) = self.handler() {
            handler.handle_insufficient_state(channel);
        }
    }

    /// After a link (re)connected: every tracked channel of that shard is compared with its
    /// stream's top and completed (or its subscribers told to recover).
    async fn catch_up(&self, shard: usize) {
        let tracked: Vec<(String, Tracked)> = {
            let positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
            positions
                .iter()
                .filter(|(channel, _)| self.shards.for_key(channel).index() == shard)
                .filter_map(|(channel, t)| t.clone().map(|t| (channel.clone(), t)))
                .collect()
        };
        for (channel, t) in tracked {
            match self
                .read_stream(ReadRequest::check(&channel, None, 0))
                .await
            {
                Ok((top, _)) if top.epoch != t.position.epoch => {
                    self.insufficient(&channel, "the stream has a new epoch");
                }
                Ok((top, _)) if top.offset > t.position.offset => {
                    self.fill(&channel, t.position.offset, top.offset, &top.epoch)
                        .await;
                }
                // Behind what was delivered here in the same epoch: the writes after the top
                // were lost (a failover to a replica that had not received them), and their
                // offsets will be given again.
                Ok((top, _)) if top.offset < t.position.offset && t.delivered => {
                    self.insufficient(&channel, "its stream lost publications delivered here");
                }
                Ok(_) => {}
                Err(e) => self.insufficient(&channel, &format!("its stream cannot be read ({e})")),
            }
        }
    }
}

/// What one shard's link hands to the broker.
struct ShardEvents {
    inner: Weak<Inner>,
    shard: usize,
}

impl PubSubHandler for ShardEvents {
    fn on_message<'a>(&'a self, channel: &'a str, payload: &'a [u8]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            let Some(channel) = inner.channel_of(channel) else {
                return;
            };
            match codec::decode(payload) {
                Ok(Event::Publication {
                    publication,
                    epoch,
                    delta,
                }) => {
                    inner
                        .on_publication(channel, publication, epoch, delta)
                        .await
                }
                Ok(Event::Join(info)) => {
                    if let Some(handler) = inner.handler() {
                        handler.handle_join(channel, &info);
                    }
                }
                Ok(Event::Leave(info)) => {
                    if let Some(handler) = inner.handler() {
                        handler.handle_leave(channel, &info);
                    }
                }
                Err(e) => tracing::warn!("{e} on {channel:?}: ignored"),
            }
        })
    }

    fn on_resubscribed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(inner) = self.inner.upgrade() {
                inner.catch_up(self.shard).await;
            }
        })
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

fn no_history() -> EngineError {
    EngineError::BadRequest(
        "no history is kept: set history_size and history_ttl in the namespace".into(),
    )
}

impl History for RedisBroker {
    fn read<'a>(
        &'a self,
        channel: &'a str,
        filter: HistoryFilter,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<HistoryResult, EngineError>> {
        Box::pin(async move {
            if !options.enabled() {
                return Err(no_history());
            }
            if filter.reverse && filter.since.as_ref().is_some_and(|s| s.offset == 0) {
                return Err(EngineError::BadRequest(
                    "reverse history from offset 0".into(),
                ));
            }
            let since = filter.since.as_ref().map(|s| s.offset);
            let (position, publications) = self
                .inner
                .read_range(channel, since, filter.limit, filter.reverse, options)
                .await?;
            if let Some(since) = &filter.since
                && !since.epoch.is_empty()
                && since.epoch != position.epoch
            {
                return Err(EngineError::UnrecoverablePosition);
            }
            Ok(HistoryResult {
                publications,
                position,
            })
        })
    }

    fn top<'a>(
        &'a self,
        channel: &'a str,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<StreamPosition, EngineError>> {
        Box::pin(async move {
            if !options.enabled() {
                return Err(no_history());
            }
            let (position, _) = self
                .inner
                .read_range(channel, None, 0, false, options)
                .await?;
            self.inner.track_read(channel, &position);
            Ok(position)
        })
    }

    fn recover<'a>(
        &'a self,
        channel: &'a str,
        since: StreamPosition,
        limit: usize,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<Recovery, EngineError>> {
        Box::pin(async move {
            if !options.enabled() {
                return Err(no_history());
            }
            let want = (limit.min(options.size) as i64).saturating_add(1);
            let (position, publications) = self
                .inner
                .read_range(channel, Some(since.offset), want, false, options)
                .await?;
            self.inner.track_read(channel, &position);
            let not_recovered = |position| Recovery {
                publications: Vec::new(),
                position,
                recovered: false,
            };
            if !since.epoch.is_empty() && since.epoch != position.epoch {
                return Ok(not_recovered(position));
            }
            if since.offset == position.offset {
                return Ok(Recovery {
                    publications: Vec::new(),
                    position,
                    recovered: true,
                });
            }
            let Some(missed) = position.offset.checked_sub(since.offset) else {
                return Ok(not_recovered(position));
            };
            let complete = missed <= limit as u64
                && missed <= options.size as u64
                && publications.len() as u64 == missed
                && publications
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.offset == since.offset + 1 + i as u64);
            if !complete {
                return Ok(not_recovered(position));
            }
            Ok(Recovery {
                publications,
                position,
                recovered: true,
            })
        })
    }

    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let mut conn = self.inner.shards.for_key(channel).conn().await?;
            redis::cmd("DEL")
                .arg(self.inner.stream_key(channel))
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.inner.failed(channel, e))
        })
    }
}

impl Broker for RedisBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerEventHandler>) {
        if self.inner.handler.set(handler).is_err() {
            tracing::warn!("broker: the event handler was already set; keeping the first");
        }
    }

    fn publish(&self, request: AppendRequest) -> BoxFuture<'_, Result<AppendResult, EngineError>> {
        Box::pin(self.inner.publish(request))
    }

    fn publish_join<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(self.join_leave(channel, info, false))
    }

    fn publish_leave<'a>(
        &'a self,
        channel: &'a str,
        info: &'a ClientInfo,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(self.join_leave(channel, info, true))
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            self.inner
                .positions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(channel.to_string())
                .or_insert(None);
            let result = self
                .inner
                .link(channel)
                .subscribe(self.inner.pubsub_channel(channel))
                .await;
            if result.is_err() {
                self.inner
                    .positions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(channel);
            }
            result
        })
    }

    fn unsubscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            self.inner
                .positions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(channel);
            self.inner
                .link(channel)
                .unsubscribe(self.inner.pubsub_channel(channel));
            Ok(())
        })
    }

    fn health(&self) -> Result<(), String> {
        RedisBroker::health(self)
    }
}

impl RedisBroker {
    async fn join_leave(
        &self,
        channel: &str,
        info: &ClientInfo,
        leave: bool,
    ) -> Result<(), EngineError> {
        let mut conn = self.inner.shards.for_key(channel).conn().await?;
        redis::cmd("PUBLISH")
            .arg(self.inner.pubsub_channel(channel))
            .arg(codec::encode_join_leave(info, leave))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.inner.failed(channel, e))
    }
}
