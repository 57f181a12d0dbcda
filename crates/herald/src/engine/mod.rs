//! The engine seam: how a publication reaches every node with subscribers and where channel
//! history lives ([`Broker`], with its read side [`History`]), who is in a channel
//! ([`PresenceManager`]), and how one node acts on connections of another ([`Controller`]).
//!
//! The node, client and API code talk to these traits only; [`build`] picks their
//! implementations from the config, once, at start-up. An engine spanning nodes is added by
//! implementing the three traits and a branch in [`build`]; nothing above them changes. The
//! [`nats`] engine is one (several nodes over NATS, history on JetStream). The embedded engine,
//! the default, is one node: [`embedded::EmbeddedBroker`] over
//! durable per-channel streams in SQLite under `data_dir` ([`embedded::EmbeddedHistory`]),
//! [`MemoryPresence`] and [`LocalController`]. The Redis engine ([`redis`], `engine.type:
//! redis`) spans nodes: [`redis::RedisBroker`] keeps the streams in Redis and carries
//! publications, joins and leaves between nodes over Redis PUB/SUB.
//!
//! # Streams, offsets and epochs
//!
//! A channel's history is a bounded, ordered stream: every appended publication gets the next
//! offset (1, 2, 3…), offsets continue across restarts, and the stream's `epoch` names one life
//! of it. The epoch changes only when the stream is really lost (its meta expired after
//! `history_meta_ttl` of inactivity, or the database was lost); `history_remove` drops the
//! publications but keeps epoch and offset, as Centrifugo does. A position is therefore either
//! provably complete (same epoch, nothing after it trimmed) or reported as unrecoverable, never
//! silently wrong.
//!
//! # Calling it (node / client)
//!
//! * publish: [`Broker::publish`] — appended first when the namespace keeps history (and the
//!   publish does not `skip_history`), then handed to every subscribed node's
//!   [`BrokerEventHandler`] in offset order; a duplicate (`idempotency_key`) or stale
//!   (`version`) publication is answered and not delivered;
//! * join / leave: [`Broker::publish_join`], [`Broker::publish_leave`];
//! * a channel's first local subscriber / last one gone: [`Broker::subscribe`] /
//!   [`Broker::unsubscribe`];
//! * subscribe on a positioned / recoverable channel: [`History::top`] for the reply's
//!   `epoch`+`offset`, or [`History::recover`] when the client asks to recover;
//! * `history` command / API: [`History::read`]; `history_remove`: [`History::remove`];
//! * presence: [`PresenceManager`]; API `disconnect`/`unsubscribe`/`refresh`/`info`:
//!   [`Controller`].

pub mod embedded;
pub mod nats;
pub mod redis;

mod broker;
mod build;
mod controller;
pub mod emulation;
mod idempotency;
mod presence;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use broker::{Broker, BrokerEventHandler};
pub use build::{BuildError, Engine, Unimplemented, build, nats_config, unimplemented};
pub use controller::{
    ControlCommand, ControlHandler, Controller, LocalController, NodeInfo, ProcessInfo,
    ServerSubscribe, Target,
};
pub use embedded::{EmbeddedBroker, EmbeddedConfig, EmbeddedHistory, EmbeddedStats};
pub use idempotency::RecentKeys;
pub use presence::{MemoryPresence, PresenceManager, PresenceStats};

use crate::config::NamespaceOptions;
use crate::protocol::{self, ClientInfo, Payload, Publication};

/// A boxed, sendable future: what the engine traits return, so that they stay dyn-compatible
/// (`Arc<dyn Broker>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A new random epoch (8 letters and digits), for a stream that starts a new life.
pub(crate) fn new_epoch() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A position in a channel's stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamPosition {
    /// Offset of the last publication (0 before the first).
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
}

impl StreamPosition {
    /// A position.
    pub fn new(offset: u64, epoch: impl Into<String>) -> Self {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }
}

/// Retention of one channel's history: from the namespace's `history_size`, `history_ttl` and
/// `history_meta_ttl` (see [`HistoryOptions::for_namespace`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HistoryOptions {
    /// How many publications the stream keeps (the newest).
    pub size: usize,
    /// How long each publication is kept.
    pub ttl: Duration,
    /// How long the stream's meta (epoch, offset) outlives its last publication; zero means
    /// forever.
    pub meta_ttl: Duration,
}

impl HistoryOptions {
    /// The options of a channel in namespace `ns`; `default_meta_ttl` is
    /// `channel.history_meta_ttl`, used when the namespace sets none.
    pub fn for_namespace(ns: &NamespaceOptions, default_meta_ttl: Duration) -> Self {
        HistoryOptions {
            size: ns.history_size,
            ttl: ns.history_ttl,
            meta_ttl: if ns.history_meta_ttl.is_zero() {
                default_meta_ttl
            } else {
                ns.history_meta_ttl
            },
        }
    }

    /// Whether these options keep a history at all (size and TTL both set).
    pub fn enabled(&self) -> bool {
        self.size > 0 && !self.ttl.is_zero()
    }
}

/// One publication as stored in a stream.
#[derive(Debug)]
pub struct StoredPublication {
    /// Its offset in the stream.
    pub offset: u64,
    /// Payload bytes, stored and returned verbatim.
    pub data: Payload,
    /// Publisher (client-side publishes).
    pub info: Option<ClientInfo>,
    /// Publication tags.
    pub tags: BTreeMap<String, String>,
    /// When it was appended, Unix milliseconds.
    pub time_ms: i64,
}

impl StoredPublication {
    /// The protocol publication (data, info, offset, tags; `time` left for the caller to set
    /// if it emits publish times).
    pub fn to_publication(&self) -> Publication {
        Publication {
            data: Some(self.data.clone()),
            info: self.info.clone(),
            offset: self.offset,
            tags: self.tags.clone(),
            ..Publication::default()
        }
    }

    /// Rough heap footprint, for the cache's memory budget.
    pub(crate) fn approx_size(&self) -> usize {
        let info = self.info.as_ref().map_or(0, |i| {
            48 + i.user.len()
                + i.client.len()
                + i.conn_info.as_ref().map_or(0, Payload::len)
                + i.chan_info.as_ref().map_or(0, Payload::len)
        });
        let tags: usize = self.tags.iter().map(|(k, v)| 48 + k.len() + v.len()).sum();
        96 + self.data.len() + info + tags
    }
}

/// A publication to publish ([`Broker::publish`]), and to append to its channel's stream when
/// `options` keeps a history.
#[derive(Debug)]
pub struct AppendRequest {
    /// The channel.
    pub channel: String,
    /// Payload bytes, as accepted where they entered (see [`Payload`]).
    pub data: Payload,
    /// Publisher (client-side publishes).
    pub info: Option<ClientInfo>,
    /// Publication tags.
    pub tags: BTreeMap<String, String>,
    /// The channel's retention; [`HistoryOptions::default`] (not enabled) when the publication
    /// is not kept.
    pub options: HistoryOptions,
    /// Publish `idempotency_key`: a second append with the same key in the same channel within
    /// the idempotency window returns the first result, marked `duplicate`.
    pub idempotency_key: Option<String>,
    /// The publish asked for delta compression (`delta`, or the namespace's `delta_publish`):
    /// handed to the delivery hook with the publication, not stored.
    pub delta: bool,
    /// The publication's version (0: none). Publications carry the version of the state they
    /// describe: one whose version is not above the stream's last one (in the same
    /// `version_epoch`, or any when that is empty) is stale and suppressed, as in Centrifugo.
    pub version: u64,
    /// The epoch `version` counts in; a new epoch restarts the versions.
    pub version_epoch: String,
}

impl AppendRequest {
    /// A request with no publisher info, tags or idempotency key.
    pub fn new(channel: impl Into<String>, data: Payload, options: HistoryOptions) -> Self {
        AppendRequest {
            channel: channel.into(),
            data,
            info: None,
            tags: BTreeMap::new(),
            options,
            idempotency_key: None,
            delta: false,
            version: 0,
            version_epoch: String::new(),
        }
    }
}

/// What a publish turned into. Returned only once the publication is durable (per
/// `history.durability`) and handed to the broker's event handler.
#[derive(Clone, Debug)]
pub struct AppendResult {
    /// The publication's position (for a duplicate: the first publication's).
    pub position: StreamPosition,
    /// The idempotency key was seen before: nothing was appended, and nothing must be
    /// delivered.
    pub duplicate: bool,
    /// The publication's `version` was not newer than the stream's: nothing was appended
    /// (no offset used), nothing must be delivered, and `position` is the stream's top.
    pub suppressed: bool,
    /// The stored publication (already handed to the event handler); `None` when `duplicate`
    /// or `suppressed`, or when the publication was not kept.
    pub publication: Option<Arc<StoredPublication>>,
}

/// Which publications a history read returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Start after (forward) or before (reverse) this position; its epoch, when not empty,
    /// must be the stream's.
    pub since: Option<StreamPosition>,
    /// At most this many publications; 0 = only the position; negative = no limit (callers
    /// cap it, e.g. `client.history_max_publication_limit`).
    pub limit: i64,
    /// Newest first.
    pub reverse: bool,
}

impl Default for HistoryFilter {
    fn default() -> Self {
        HistoryFilter {
            since: None,
            limit: -1,
            reverse: false,
        }
    }
}

/// A history read.
#[derive(Clone, Debug, Default)]
pub struct HistoryResult {
    /// The publications, in the requested order.
    pub publications: Vec<Arc<StoredPublication>>,
    /// The stream's current top.
    pub position: StreamPosition,
}

impl HistoryResult {
    /// Whether this page continues exactly from `filter.since`: reading forward from a
    /// position whose next publications were trimmed (by size or TTL) cannot be answered
    /// honestly, so it is [`EngineError::UnrecoverablePosition`] (112) rather than a page with
    /// a silent gap.
    pub fn continuing(self, filter: &HistoryFilter) -> Result<HistoryResult, EngineError> {
        let Some(since) = filter.since.as_ref().filter(|_| !filter.reverse) else {
            return Ok(self);
        };
        let gap = match self.publications.first() {
            Some(first) => first.offset > since.offset + 1,
            None => filter.limit != 0 && self.position.offset > since.offset,
        };
        if gap {
            return Err(EngineError::UnrecoverablePosition);
        }
        Ok(self)
    }
}

/// The outcome of a recovery (protocol §6).
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// Every publication after the client's offset, oldest first, when `recovered`; empty
    /// otherwise (never a partial set).
    pub publications: Vec<Arc<StoredPublication>>,
    /// The stream's current top (for the subscribe reply's `epoch` and `offset`).
    pub position: StreamPosition,
    /// The client missed nothing that is not in `publications`.
    pub recovered: bool,
}

/// Engine failures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The `since` position is not in this stream (wrong epoch). Protocol code 112.
    #[error("unrecoverable position")]
    UnrecoverablePosition,
    /// The request makes no sense (e.g. reverse from offset 0, history not enabled). Code 107.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The engine cannot serve the request now (storage error, shutting down). Code 100.
    #[error("engine unavailable: {0}")]
    Unavailable(String),
}

impl EngineError {
    /// The protocol error to send for it.
    pub fn to_protocol(&self) -> protocol::Error {
        match self {
            EngineError::UnrecoverablePosition => protocol::Error::UNRECOVERABLE_POSITION,
            EngineError::BadRequest(_) => protocol::Error::BAD_REQUEST,
            EngineError::Unavailable(_) => protocol::Error::INTERNAL,
        }
    }
}

/// The read side of per-channel history streams: what the client protocol and the API ask of
/// a [`Broker`] (appending is [`Broker::publish`]'s, atomically with the publication).
pub trait History: Send + Sync + 'static {
    /// Reads publications per `filter`, plus the current top. A `since` with another epoch is
    /// [`EngineError::UnrecoverablePosition`]; reverse from offset 0 is a bad request.
    fn read<'a>(
        &'a self,
        channel: &'a str,
        filter: HistoryFilter,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<HistoryResult, EngineError>>;

    /// The current top of the stream; a stream that does not exist yet is created (with a new
    /// epoch, offset 0) so that later publications keep the epoch given out here.
    fn top<'a>(
        &'a self,
        channel: &'a str,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<StreamPosition, EngineError>>;

    /// Recovery (protocol §6): `recovered` when `since.epoch` is the stream's (or empty),
    /// every publication after `since.offset` is still retained, and there are at most `limit`
    /// of them; those publications are returned oldest first. Otherwise `recovered: false`
    /// with no publications. The position is the current top either way.
    fn recover<'a>(
        &'a self,
        channel: &'a str,
        since: StreamPosition,
        limit: usize,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<Recovery, EngineError>>;

    /// Removes the channel's publications (`history_remove`); epoch and offset stay, so
    /// positions before the removal become unrecoverable and later ones keep working.
    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>>;
}

/// A broker whose [`History`] half is a store of its own (the embedded SQLite history,
/// JetStream), which may be absent (no namespace keeps any, or it failed to open): every
/// [`History`] call goes to the store, or answers the error [`StoredHistory::store`] gives.
pub(crate) trait StoredHistory: Send + Sync + 'static {
    /// The store's type.
    type Store: History;

    /// The store, or why there is none.
    fn store(&self) -> Result<&Self::Store, EngineError>;
}

impl<B: StoredHistory> History for B {
    fn read<'a>(
        &'a self,
        channel: &'a str,
        filter: HistoryFilter,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<HistoryResult, EngineError>> {
        on_store(self.store(), |h| h.read(channel, filter, options))
    }

    fn top<'a>(
        &'a self,
        channel: &'a str,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<StreamPosition, EngineError>> {
        on_store(self.store(), |h| h.top(channel, options))
    }

    fn recover<'a>(
        &'a self,
        channel: &'a str,
        since: StreamPosition,
        limit: usize,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<Recovery, EngineError>> {
        on_store(self.store(), |h| h.recover(channel, since, limit, options))
    }

    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        on_store(self.store(), |h| History::remove(h, channel))
    }
}

/// Runs a [`History`] call on `store`, or answers its error.
fn on_store<'a, H: History, T: Send + 'a>(
    store: Result<&'a H, EngineError>,
    call: impl FnOnce(&'a H) -> BoxFuture<'a, Result<T, EngineError>>,
) -> BoxFuture<'a, Result<T, EngineError>> {
    match store {
        Ok(history) => call(history),
        Err(e) => Box::pin(std::future::ready(Err(e))),
    }
}

/// The delivery hook of [`EmbeddedHistory::set_delivery`]: channel, publication, and whether its
/// publish asked for delta compression ([`AppendRequest::delta`]). It runs on the engine's
/// own thread, so it must be quick and must not block (queue, don't write).
pub type Delivery = Arc<dyn Fn(&str, &StoredPublication, bool) + Send + Sync>;
