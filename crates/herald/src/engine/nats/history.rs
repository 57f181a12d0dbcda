//! [`JetStreamHistory`]: channel history in JetStream, one stream per channel (see the module
//! doc of [`super`] for why), so that every node reads and appends the same streams.
//!
//! * **Offsets** are stream sequences: JetStream assigns them, consecutive per stream, under
//!   its own lock, however many nodes append at once; purge and expiry keep the sequence.
//! * **Epoch**: the stream's creation time (nanoseconds, hex). Deleting a stream (by hand,
//!   or losing JetStream's store) gives the next one a new epoch, so old positions are
//!   reported unrecoverable rather than silently wrong.
//! * **Retention**: `max_msgs` = `history_size`, `max_age` = `history_ttl`, oldest discarded;
//!   a namespace whose options changed updates its streams as they are next used.
//! * **Idempotency**: the `idempotency_key`'s SHA-256 is the message's `Nats-Msg-Id`; JetStream answers
//!   a repeat within the stream's duplicate window (5 minutes, or `history_ttl` if shorter)
//!   with the first message's sequence.
//! * **Versions**: an append with a `version` reads the stream's last publication and appends
//!   with `Nats-Expected-Last-Sequence` set to it, retrying when another append came first, so
//!   the comparison and the append are one step as in the embedded engine. A last
//!   publication that expired or was removed no longer holds back a lower version.
//!
//! Reads ask for each message by sequence, several at a time; every call has the write
//! deadline (`broker.nats.write_timeout`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures_util::{StreamExt, TryStreamExt};

use super::wire::{self, Kind, Meta};
use super::{NatsConnection, channel_token, hex_sha256, stream_token};
use crate::engine::embedded::{Range, RecoverPlan, complete, plan_read, plan_recover};
use crate::engine::{
    AppendRequest, AppendResult, BoxFuture, EngineError, History, HistoryFilter, HistoryOptions,
    HistoryResult, Recovery, StoredPublication, StreamPosition,
};

/// How long JetStream remembers an `idempotency_key` (Centrifugo's window).
const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);
/// Messages read from a stream at once.
const READ_CONCURRENCY: usize = 16;
/// Appends with a version retried when another append came between the read and the write.
const VERSION_RETRIES: usize = 20;
/// Streams whose configuration this node remembers as applied (about 200 bytes each); past
/// that it forgets them all and checks each again on its next use.
const MAX_KNOWN: usize = 100_000;

/// A stream as last seen: its epoch and the retention it was last checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    epoch: String,
    options: HistoryOptions,
}

/// A stream's state: epoch, first retained and last assigned sequence.
#[derive(Clone, Debug)]
struct Top {
    epoch: String,
    first: u64,
    last: u64,
}

impl Top {
    fn position(&self) -> StreamPosition {
        StreamPosition::new(self.last, self.epoch.clone())
    }
}

/// Channel history on JetStream. See the module doc.
pub struct JetStreamHistory {
    connection: NatsConnection,
    js: jetstream::Context,
    known: Mutex<HashMap<String, Known>>,
}

impl std::fmt::Debug for JetStreamHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamHistory")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

fn epoch_of(info: &stream::Info) -> String {
    format!("{:x}", info.created.unix_timestamp_nanos())
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("jetstream: {what}: {e}"))
}

impl JetStreamHistory {
    /// History over `connection`'s JetStream.
    pub fn new(connection: NatsConnection) -> Self {
        let mut js = jetstream::new(connection.client().clone());
        js.set_timeout(connection.timeout);
        JetStreamHistory {
            connection,
            js,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The stream of `channel`: `P_T`.
    pub fn stream_name(&self, channel: &str) -> String {
        format!("{}_{}", self.connection.prefix, stream_token(channel))
    }

    /// The subject of `channel`'s stream: `P.stream.T`.
    fn stream_subject(&self, channel: &str) -> String {
        format!(
            "{}.stream.{}",
            self.connection.prefix,
            channel_token(channel)
        )
    }

    fn stream_config(&self, channel: &str, options: HistoryOptions) -> stream::Config {
        stream::Config {
            name: self.stream_name(channel),
            subjects: vec![self.stream_subject(channel)],
            max_messages: i64::try_from(options.size).unwrap_or(i64::MAX),
            max_age: options.ttl,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            num_replicas: 1,
            duplicate_window: IDEMPOTENCY_WINDOW.min(options.ttl),
            ..stream::Config::default()
        }
    }

    fn known(&self, name: &str) -> Option<Known> {
        crate::sync::lock(&self.known).get(name).cloned()
    }

    fn remember(&self, name: &str, known: Known) {
        let mut map = crate::sync::lock(&self.known);
        if map.len() >= MAX_KNOWN {
            map.clear();
        }
        map.insert(name.to_owned(), known);
    }

    /// The stream of `channel` with `options` applied, created if missing (so that the epoch
    /// given out now is the one later publications keep).
    async fn stream(
        &self,
        channel: &str,
        options: HistoryOptions,
    ) -> Result<stream::Stream, EngineError> {
        let config = self.stream_config(channel, options);
        let name = config.name.clone();
        let mut stream = match self.find(&name).await? {
            Some(stream) => stream,
            None => self
                .connection
                .deadline(
                    "create stream",
                    self.js.get_or_create_stream(config.clone()),
                )
                .await
                .map_err(|e| self.creation_failed(&name, e))?,
        };
        let info = stream.cached_info().clone();
        if info.config.max_messages != config.max_messages
            || info.config.max_age != config.max_age
            || info.config.duplicate_window != config.duplicate_window
        {
            // The namespace's retention changed since the stream was made.
            let updated = self
                .connection
                .deadline("update stream", self.js.update_stream(config))
                .await?;
            tracing::info!(stream = %name, "jetstream: stream retention updated");
            drop(updated);
            stream = self
                .find(&name)
                .await?
                .ok_or_else(|| unavailable("update stream", "the stream vanished"))?;
        }
        self.remember(
            &name,
            Known {
                epoch: epoch_of(stream.cached_info()),
                options,
            },
        );
        Ok(stream)
    }

    /// The stream `name`, `None` when there is none.
    async fn find(&self, name: &str) -> Result<Option<stream::Stream>, EngineError> {
        let found = tokio::time::timeout(self.connection.timeout, self.js.get_stream(name))
            .await
            .map_err(|_| {
                unavailable("stream info", "no answer within broker.nats.write_timeout")
            })?;
        match found {
            Ok(stream) => Ok(Some(stream)),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(unavailable("stream info", e)),
            },
        }
    }

    fn creation_failed(&self, name: &str, e: EngineError) -> EngineError {
        tracing::error!(stream = name, "jetstream: cannot create the stream: {e}");
        e
    }

    /// The stream's current state.
    async fn top_of(
        &self,
        channel: &str,
        options: HistoryOptions,
    ) -> Result<(stream::Stream, Top), EngineError> {
        let stream = self.stream(channel, options).await?;
        let info = stream.cached_info();
        let top = Top {
            epoch: epoch_of(info),
            first: info.state.first_sequence,
            last: info.state.last_sequence,
        };
        Ok((stream, top))
    }

    /// One stored message as a publication; `None` when it is gone (expired, purged).
    async fn get(
        &self,
        stream: &stream::Stream,
        sequence: u64,
    ) -> Result<Option<Arc<StoredPublication>>, EngineError> {
        let got = tokio::time::timeout(self.connection.timeout, stream.get_raw_message(sequence))
            .await
            .map_err(|_| unavailable("read", "no answer within broker.nats.write_timeout"))?;
        let message = match got {
            Ok(message) => message,
            Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => {
                return Ok(None);
            }
            Err(e) => return Err(unavailable("read", e)),
        };
        let (meta, data) = wire::decode(&message.payload)
            .map_err(|e| unavailable("read", format!("message {sequence}: {e}")))?;
        let time_ms = i64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Ok(Some(Arc::new(StoredPublication {
            offset: sequence,
            data,
            info: meta.info,
            tags: meta.tags,
            time_ms,
        })))
    }

    /// The publications of `range` still in the stream, in the range's order, at most its
    /// limit.
    async fn load(
        &self,
        stream: &stream::Stream,
        range: &Range,
        first: u64,
    ) -> Result<Vec<Arc<StoredPublication>>, EngineError> {
        let lo = (range.lo + 1).max(first);
        if lo > range.hi {
            return Ok(Vec::new());
        }
        let limit = if range.limit < 0 {
            usize::MAX
        } else {
            range.limit as usize
        };
        let sequences: Box<dyn Iterator<Item = u64> + Send> = if range.reverse {
            Box::new((lo..=range.hi).rev())
        } else {
            Box::new(lo..=range.hi)
        };
        // Messages inside [first, last] are never deleted one by one, so `limit` sequences
        // give `limit` publications unless some expired meanwhile.
        let publications: Vec<Option<Arc<StoredPublication>>> =
            futures_util::stream::iter(sequences.take(limit))
                .map(|sequence| self.get(stream, sequence))
                .buffered(READ_CONCURRENCY)
                .try_collect()
                .await?;
        Ok(publications.into_iter().flatten().collect())
    }

    /// Where `channel`'s stream is now: `Some((epoch, last offset))`, `None` when it has no
    /// stream yet (its first publication will be offset 1).
    pub(super) async fn position_of(
        &self,
        channel: &str,
    ) -> Result<Option<(String, u64)>, EngineError> {
        let found = self.find(&self.stream_name(channel)).await?;
        Ok(found.map(|stream| {
            let info = stream.cached_info();
            (epoch_of(info), info.state.last_sequence)
        }))
    }

    /// The publications after `after` up to `upto`, oldest first, for a node that missed
    /// them; `None` when some are no longer in the stream (or the stream's epoch is not
    /// `epoch`).
    pub(super) async fn missed(
        &self,
        channel: &str,
        epoch: &str,
        after: u64,
        upto: Option<u64>,
    ) -> Result<Option<Vec<Arc<StoredPublication>>>, EngineError> {
        let Some(stream) = self.find(&self.stream_name(channel)).await? else {
            return Ok(None);
        };
        let info = stream.cached_info();
        if epoch_of(info) != epoch {
            return Ok(None);
        }
        let hi = upto.unwrap_or(info.state.last_sequence);
        if hi <= after {
            return Ok(Some(Vec::new()));
        }
        let range = Range {
            lo: after,
            hi,
            reverse: false,
            limit: -1,
        };
        let first = info.state.first_sequence;
        let publications = self.load(&stream, &range, first).await?;
        Ok(complete(&range, &publications).then_some(publications))
    }

    /// Appends a publication; resolves once JetStream acknowledged it (stored per the
    /// server's JetStream sync policy).
    pub async fn append(&self, request: &AppendRequest) -> Result<AppendResult, EngineError> {
        let name = self.stream_name(&request.channel);
        let epoch = match self.known(&name) {
            Some(known) if known.options == request.options => known.epoch,
            _ => epoch_of(
                self.stream(&request.channel, request.options)
                    .await?
                    .cached_info(),
            ),
        };
        let mut meta = Meta::new(Kind::Pub);
        meta.info = request.info.clone();
        meta.tags = request.tags.clone();
        meta.version = request.version;
        meta.version_epoch = request.version_epoch.clone();
        let body = wire::encode(&meta, request.data.as_bytes())?;
        let subject = self.stream_subject(&request.channel);
        let mut attempts = 0;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(key) = &request.idempotency_key {
                // Hashed: a key is the publisher's text, which a header line cannot always
                // hold (line breaks), and any length.
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    hex_sha256(key.as_bytes()).as_str(),
                );
            }
            if request.version > 0 {
                let (stream, top) = self.top_of(&request.channel, request.options).await?;
                if self.stale(&stream, &top, request).await? {
                    return Ok(AppendResult {
                        position: top.position(),
                        duplicate: false,
                        suppressed: true,
                        publication: None,
                    });
                }
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
                    top.last.to_string().as_str(),
                );
            }
            let sent = self
                .connection
                .deadline(
                    "publish",
                    self.js
                        .publish_with_headers(subject.clone(), headers, body.clone()),
                )
                .await?;
            let ack = tokio::time::timeout(self.connection.timeout, sent)
                .await
                .map_err(|_| {
                    unavailable(
                        "publish",
                        "no acknowledgement within broker.nats.write_timeout",
                    )
                })?;
            let ack = match ack {
                Ok(ack) => ack,
                Err(e)
                    if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
                        && attempts < VERSION_RETRIES =>
                {
                    // Another append came between our read and our write: compare again.
                    attempts += 1;
                    continue;
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                    // Deleted behind our back: make it again (a new epoch) and retry once.
                    crate::sync::lock(&self.known).remove(&name);
                    if attempts >= VERSION_RETRIES {
                        return Err(unavailable("publish", e));
                    }
                    attempts = VERSION_RETRIES;
                    self.stream(&request.channel, request.options).await?;
                    continue;
                }
                Err(e) => return Err(unavailable("publish", e)),
            };
            let epoch = self.known(&name).map_or(epoch.clone(), |k| k.epoch);
            let position = StreamPosition::new(ack.sequence, epoch);
            if ack.duplicate {
                return Ok(AppendResult {
                    position,
                    duplicate: true,
                    suppressed: false,
                    publication: None,
                });
            }
            return Ok(AppendResult {
                position,
                duplicate: false,
                suppressed: false,
                publication: Some(Arc::new(StoredPublication {
                    offset: ack.sequence,
                    data: request.data.clone(),
                    info: request.info.clone(),
                    tags: request.tags.clone(),
                    time_ms: now_ms(),
                })),
            });
        }
    }

    /// Whether `request`'s version is not above the last publication's (in its version
    /// epoch, or any when the request's is empty).
    async fn stale(
        &self,
        stream: &stream::Stream,
        top: &Top,
        request: &AppendRequest,
    ) -> Result<bool, EngineError> {
        if top.last == 0 || top.last < top.first {
            return Ok(false);
        }
        let got = tokio::time::timeout(self.connection.timeout, stream.get_raw_message(top.last))
            .await
            .map_err(|_| unavailable("read", "no answer within broker.nats.write_timeout"))?;
        let message = match got {
            Ok(message) => message,
            Err(e) if matches!(e.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => {
                return Ok(false);
            }
            Err(e) => return Err(unavailable("read", e)),
        };
        let Ok((last, _)) = wire::decode(&message.payload) else {
            return Ok(false);
        };
        let same_epoch =
            request.version_epoch.is_empty() || request.version_epoch == last.version_epoch;
        Ok(last.version > 0 && same_epoch && request.version <= last.version)
    }
}

impl History for JetStreamHistory {
    fn read<'a>(
        &'a self,
        channel: &'a str,
        filter: HistoryFilter,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<HistoryResult, EngineError>> {
        Box::pin(async move {
            if filter.reverse && filter.since.as_ref().is_some_and(|s| s.offset == 0) {
                return Err(EngineError::BadRequest(
                    "reverse history from offset 0".into(),
                ));
            }
            let (stream, top) = self.top_of(channel, options).await?;
            let publications = match plan_read(&filter, options.size, &top.epoch, top.last)? {
                Some(range) => self.load(&stream, &range, top.first).await?,
                None => Vec::new(),
            };
            Ok(HistoryResult {
                publications,
                position: top.position(),
            })
        })
    }

    fn top<'a>(
        &'a self,
        channel: &'a str,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<StreamPosition, EngineError>> {
        Box::pin(async move { Ok(self.top_of(channel, options).await?.1.position()) })
    }

    fn recover<'a>(
        &'a self,
        channel: &'a str,
        since: StreamPosition,
        limit: usize,
        options: HistoryOptions,
    ) -> BoxFuture<'a, Result<Recovery, EngineError>> {
        Box::pin(async move {
            let (stream, top) = self.top_of(channel, options).await?;
            let position = top.position();
            match plan_recover(&since, limit, options.size, &top.epoch, top.last) {
                RecoverPlan::Decided(recovered) => Ok(Recovery {
                    publications: Vec::new(),
                    position,
                    recovered,
                }),
                RecoverPlan::Need(range) => {
                    let publications = self.load(&stream, &range, top.first).await?;
                    let recovered = complete(&range, &publications);
                    Ok(Recovery {
                        publications: if recovered { publications } else { Vec::new() },
                        position,
                        recovered,
                    })
                }
            }
        })
    }

    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let Some(stream) = self.find(&self.stream_name(channel)).await? else {
                // Nothing kept: nothing to remove.
                return Ok(());
            };
            // A purge keeps the last sequence: offsets continue, as `remove` promises.
            self.connection
                .deadline("purge", async { stream.purge().await })
                .await?;
            Ok(())
        })
    }
}
