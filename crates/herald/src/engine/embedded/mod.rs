//! The embedded engine's history: durable per-channel streams in one SQLite database (WAL mode)
//! under `data_dir`, written by one thread with group commit, read through a small connection
//! pool and, mostly, from an in-memory cache of recent publications.
//!
//! * **Durability.** An append resolves only once its transaction is committed and, with
//!   `history.durability: fsync` (default), the WAL is flushed to disk (`fdatasync`); with `os`
//!   once the commit has reached the OS (survives a process crash, not a power loss).
//! * **Offsets and epochs** live in the `streams` table, updated in the same transaction as
//!   the publications, so they continue across restarts and crashes. A stream's epoch is
//!   created with it and changes only when the stream is lost (meta expired).
//! * **Retention.** `history_size` is applied in the writer's transaction (in slices; readers
//!   filter by size anyway); `history_ttl` by a background sweep in small chunks; a stream's
//!   meta expires after `history_meta_ttl` without publications.
//! * **Reads** never see a publication whose append has not been acknowledged: offsets that
//!   are committed but not yet durable are hidden from readers.
//! * **One process per data directory**: an exclusive lock on `data_dir/history.lock` is held
//!   while the engine is open.
//!
//! The `writer` module has the group commit, `cache` the in-memory side, `store` the schema.

mod broker;
mod cache;
mod store;
mod writer;

pub use broker::EmbeddedBroker;

#[cfg(test)]
pub(crate) mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use self::cache::{CacheLimits, ChannelState, Shared};
use self::store::Row;
use self::writer::{Checkpointer, Cmd, SyncQueue, Writer, live_stream, now_ms};
use super::{
    AppendRequest, AppendResult, BoxFuture, EngineError, History, HistoryFilter, HistoryOptions,
    HistoryResult, Recovery, StoredPublication, StreamPosition,
};
use crate::config::{Config, Durability};
use crate::sync;

/// Name of the database file inside `data_dir`.
pub const DATABASE_FILE: &str = "history.db";
/// Name of the lock file inside `data_dir`.
pub const LOCK_FILE: &str = "history.lock";

/// Stream metas the writer keeps in memory (about 100 bytes each) before it forgets them all
/// and reloads the ones it needs.
const WRITER_MAX_METAS: usize = 100_000;

/// Settings of the embedded history.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Directory of the database (`data_dir`); created if missing.
    pub data_dir: PathBuf,
    /// `history.durability`.
    pub durability: Durability,
    /// How long an `idempotency_key` is remembered. Default 5 minutes (Centrifugo's).
    pub idempotency_window: Duration,
    /// Memory budget of cached publications, bytes (approximate). Default 64 MiB.
    pub cache_max_bytes: usize,
    /// Cached publications per channel (also bounded by its `history_size`). Default 1024.
    pub cache_per_channel: usize,
    /// Channels whose stream meta is kept in memory. Default 1,000,000.
    pub cache_max_channels: usize,
    /// How often expired publications, streams and idempotency keys are swept. Default 1 s.
    pub sweep_interval: Duration,
    /// Threads flushing the WAL; more than one lets flushes overlap (measured no better on a
    /// virtio disk). Default 1.
    pub syncers: usize,
    /// Idle read connections kept open; at most twice as many disk reads run at once.
    /// Default 4.
    pub readers: usize,
}

impl EmbeddedConfig {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            durability: Durability::Fsync,
            idempotency_window: Duration::from_secs(300),
            cache_max_bytes: 64 << 20,
            cache_per_channel: 1024,
            cache_max_channels: 1_000_000,
            sweep_interval: Duration::from_secs(1),
            syncers: 1,
            readers: 4,
        }
    }

    /// From Herald's configuration: `data_dir` and `history.durability`.
    pub fn from_config(config: &Config) -> Self {
        EmbeddedConfig {
            durability: config.history.durability,
            ..EmbeddedConfig::new(config.data_dir.clone())
        }
    }

    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }
}

/// Counters of the embedded history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Publications appended.
    pub appends: u64,
    /// Appends answered as idempotent duplicates.
    pub duplicates: u64,
    /// Write transactions committed (group commits, plus background sweeps that changed
    /// streams).
    pub transactions: u64,
    /// WAL flushes.
    pub syncs: u64,
    /// Largest group of commands in one transaction.
    pub max_batch: u64,
    /// Reads answered from memory.
    pub cache_hits: u64,
    /// Reads that went to disk.
    pub disk_reads: u64,
    /// Publications removed by the TTL sweep.
    pub swept_publications: u64,
    /// Streams whose meta expired.
    pub expired_streams: u64,
    /// Bytes of cached publications (approximate).
    pub cache_bytes: u64,
    /// Channels with cached meta.
    pub cache_channels: u64,
    /// Background WAL checkpoints.
    pub checkpoints: u64,
    /// Times the WAL started over from its beginning.
    pub wal_restarts: u64,
}

/// Idle reader connections.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    fn with<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> rusqlite::Result<R> {
        let conn = sync::lock(&self.idle).pop();
        let conn = match conn {
            Some(c) => c,
            None => store::open_reader(&self.path, true)?,
        };
        let result = f(&conn);
        // A connection left inside a transaction by an error is not reused.
        if conn.is_autocommit() {
            let mut idle = sync::lock(&self.idle);
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
        result
    }
}

/// The embedded, durable [`History`]. Cheap to share behind an `Arc`; dropping it finishes
/// and flushes queued writes and stops its threads.
pub struct EmbeddedHistory {
    tx: Sender<Cmd>,
    shared: Arc<Shared>,
    readers: Arc<ReadPool>,
    /// Bounds concurrent disk reads (blocking threads and connections).
    disk_permits: tokio::sync::Semaphore,
    sync_queue: Arc<SyncQueue>,
    checkpointer: Arc<Checkpointer>,
    threads: Mutex<Threads>,
    path: PathBuf,
    _lock: File,
}

#[derive(Default)]
struct Threads {
    writer: Option<JoinHandle<()>>,
    syncers: Vec<JoinHandle<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedHistory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn unavailable() -> EngineError {
    EngineError::Unavailable("history engine is shut down".into())
}

fn sql_error(e: rusqlite::Error) -> EngineError {
    EngineError::Unavailable(format!("history storage: {e}"))
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// Warns when the database file exists but is empty (0 bytes): SQLite takes that for a new
/// database, so the history starts over, empty, and every stream gets a new epoch. That is
/// expected only if someone emptied it on purpose; a file lost to a bad copy or a full disk
/// must not go unnoticed.
fn warn_if_empty(path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        tracing::warn!(
            "history database {} exists but is empty (0 bytes): starting a new, empty history \
             in it; every channel's stream starts over with a new epoch, so clients cannot \
             recover positions from before. If it held data, stop Herald and restore it from a \
             backup",
            path.display()
        );
    }
}

/// The refusal to open a damaged database.
fn damaged(path: &Path, findings: &str) -> EngineError {
    EngineError::Unavailable(format!(
        "the history database {} is damaged ({findings}); Herald does not start on a damaged \
         database: {}",
        path.display(),
        store::corruption_advice(path)
    ))
}

/// Why the database could not be opened: [`damaged`] when SQLite says it is, else the cause
/// with the file's name.
fn open_failed(path: &Path, e: &rusqlite::Error) -> EngineError {
    if store::is_corruption(e) {
        return damaged(path, &e.to_string());
    }
    EngineError::Unavailable(format!("cannot open {}: {e}", path.display()))
}

/// Takes the exclusive lock of a data directory.
fn lock_data_dir(dir: &Path) -> Result<File, EngineError> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error("cannot open", &path, e))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(EngineError::Unavailable(format!(
                "data directory {} is in use by another Herald process ({})",
                dir.display(),
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(file)
}

impl EmbeddedHistory {
    /// Opens (creating if needed) the history under `config.data_dir` and starts its threads.
    pub fn open(config: EmbeddedConfig) -> Result<EmbeddedHistory, EngineError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| io_error("cannot create", &config.data_dir, e))?;
        let lock = lock_data_dir(&config.data_dir)?;
        let path = config.database_path();
        warn_if_empty(&path);
        let conn = store::open_writer(&path).map_err(|e| open_failed(&path, &e))?;
        store::read_through(&path);
        // On a connection of its own: the pages it visits would otherwise fill the writer's
        // page cache with whatever the check happened to read last.
        let checked = store::open_reader(&path, true).and_then(|check| store::quick_check(&check));
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(damage)) => return Err(damaged(&path, &damage.0)),
            Err(e) => return Err(open_failed(&path, &e)),
        }
        let wal_path = writer::wal_path(&path);
        let wal = File::options()
            .read(true)
            .write(true)
            .open(&wal_path)
            .map_err(|e| io_error("cannot open", &wal_path, e))?;
        let wal = Arc::new(wal);
        let checkpoint_conn =
            store::open_reader(&path, false).map_err(|e| open_failed(&path, &e))?;

        let shared = Arc::new(Shared::new(CacheLimits {
            max_bytes: config.cache_max_bytes,
            per_channel: config.cache_per_channel.max(1),
            max_channels: config.cache_max_channels.max(1),
        }));
        let sync_queue = Arc::new(SyncQueue::new(config.syncers));
        let checkpointer = Arc::new(Checkpointer::new());
        let (tx, rx) = std::sync::mpsc::channel();

        let mut threads = Threads::default();
        let spawn_err = |e: std::io::Error| EngineError::Unavailable(format!("spawn: {e}"));
        if config.durability == Durability::Fsync {
            for i in 0..config.syncers.max(1) {
                let (q, s, w, t) = (sync_queue.clone(), shared.clone(), wal.clone(), tx.clone());
                threads.syncers.push(
                    std::thread::Builder::new()
                        .name(format!("herald-history-sync-{i}"))
                        .spawn(move || writer::run_syncer(q, s, w, t))
                        .map_err(spawn_err)?,
                );
            }
        }
        let w = Writer::new(
            conn,
            shared.clone(),
            config.durability,
            sync_queue.clone(),
            checkpointer.clone(),
            config.idempotency_window,
            config.sweep_interval,
            WRITER_MAX_METAS,
        );
        threads.writer = Some(
            std::thread::Builder::new()
                .name("herald-history-writer".into())
                .spawn(move || w.run(rx))
                .map_err(spawn_err)?,
        );
        let (c, s) = (checkpointer.clone(), shared.clone());
        threads.checkpointer = Some(
            std::thread::Builder::new()
                .name("herald-history-checkpoint".into())
                .spawn(move || c.run(checkpoint_conn, Duration::from_millis(100), &s))
                .map_err(spawn_err)?,
        );

        Ok(EmbeddedHistory {
            tx,
            shared,
            readers: Arc::new(ReadPool {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
                max_idle: config.readers.max(1),
            }),
            disk_permits: tokio::sync::Semaphore::new(config.readers.max(1) * 2),
            sync_queue,
            checkpointer,
            threads: Mutex::new(threads),
            path,
            _lock: lock,
        })
    }

    /// Opens the history configured in `config` (`data_dir`, `history.durability`).
    pub fn from_config(config: &Config) -> Result<EmbeddedHistory, EngineError> {
        EmbeddedHistory::open(EmbeddedConfig::from_config(config))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters.
    pub fn stats(&self) -> EmbeddedStats {
        let c = &self.shared.counters;
        let (bytes, channels) = self.shared.usage();
        EmbeddedStats {
            appends: c.appends.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            transactions: c.transactions.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            max_batch: c.max_batch.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            disk_reads: c.disk_reads.load(Ordering::Relaxed),
            swept_publications: c.swept_publications.load(Ordering::Relaxed),
            expired_streams: c.expired_streams.load(Ordering::Relaxed),
            cache_bytes: bytes as u64,
            cache_channels: channels as u64,
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            wal_restarts: c.wal_restarts.load(Ordering::Relaxed),
        }
    }

    /// Runs the background sweeps (TTL, meta expiry, idempotency keys) to completion now.
    pub async fn sweep(&self) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Sweep(tx)).map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())
    }

    async fn ensure(
        &self,
        channel: &str,
        options: HistoryOptions,
    ) -> Result<StreamPosition, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Ensure {
                channel: channel.to_string(),
                options,
                reply: tx,
            })
            .map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }

    /// Runs `f` on the cached state of `channel` if there is a live one; `None` (go to disk)
    /// when there is none or `f` cannot answer from memory.
    fn cached<R>(
        &self,
        channel: &str,
        now: i64,
        f: impl FnOnce(&ChannelState) -> Option<R>,
    ) -> Option<R> {
        let mut shard = self.shared.shard(channel);
        let state = shard.states.get_mut(channel)?;
        if state.expired(now) {
            return None;
        }
        self.shared.touch(state);
        let r = f(state);
        if r.is_some() {
            self.shared
                .counters
                .cache_hits
                .fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Reads the stream meta of `channel` from disk and, in the same snapshot, the
    /// publications `plan` asks for given that meta. Offsets that are not yet durable are
    /// hidden. The caller passes the result to [`EmbeddedHistory::remember`].
    async fn disk<P>(&self, channel: &str, now: i64, plan: P) -> Result<DiskView, EngineError>
    where
        P: FnOnce(&str, u64) -> Option<Range> + Send + 'static,
    {
        let _permit = self
            .disk_permits
            .acquire()
            .await
            .map_err(|_| unavailable())?;
        self.shared
            .counters
            .disk_reads
            .fetch_add(1, Ordering::Relaxed);
        let generation = self.shared.generation(channel);
        let pool = self.readers.clone();
        let shared = self.shared.clone();
        let ch = channel.to_string();
        let view = tokio::task::spawn_blocking(move || {
            pool.with(|conn| {
                let tx = conn.unchecked_transaction()?;
                let Some(row) = live_stream(&tx, &ch, now)? else {
                    return Ok(None);
                };
                // After the snapshot is taken (by the read above): offsets still pending
                // now may be in it and must stay hidden.
                let top = {
                    let shard = shared.shard(&ch);
                    Shared::visible_top(&shard, &ch, &row.epoch, row.top)
                };
                let range = plan(&row.epoch, top);
                let rows = match &range {
                    Some(r) => {
                        store::load_range(&tx, &ch, r.lo, r.hi.min(top), now, r.reverse, r.limit)?
                    }
                    None => Vec::new(),
                };
                tx.commit()?;
                Ok(Some(DiskView {
                    position: StreamPosition::new(top, row.epoch),
                    meta_expires_at: row.meta_expires_at,
                    rows,
                    range,
                    generation,
                }))
            })
        })
        .await
        .map_err(|e| EngineError::Unavailable(format!("history read task: {e}")))?
        .map_err(|e| self.read_failed(channel, e))?;
        Ok(view.unwrap_or_else(DiskView::missing))
    }

    /// Logs why a read of `channel` failed, with the file (and what to do when the file is
    /// damaged): the client gets only error 100.
    fn read_failed(&self, channel: &str, e: rusqlite::Error) -> EngineError {
        let advice = if store::is_corruption(&e) {
            format!(
                "; the database is damaged: stop Herald, then {}",
                store::corruption_advice(&self.path)
            )
        } else {
            String::new()
        };
        tracing::error!(
            file = %self.path.display(),
            channel,
            "history: cannot read the channel's stream: {e}{advice}"
        );
        sql_error(e)
    }

    /// Caches what a disk read found: the meta, and the publications when they are every
    /// retained one from some offset up to the top.
    fn remember(&self, channel: &str, view: &DiskView) {
        if !view.exists() {
            return;
        }
        let top = view.position.offset;
        let mut rows: Vec<_> = view
            .rows
            .iter()
            .map(|r| (r.publication.clone(), r.expires_at))
            .collect();
        // Every offset from the range's start to the top, none trimmed or expired.
        let whole = view
            .range
            .as_ref()
            .is_some_and(|r| r.hi >= top && top - r.lo.min(top) == rows.len() as u64);
        if !whole {
            rows.clear();
        } else if view.range.as_ref().is_some_and(|r| r.reverse) {
            rows.reverse();
        }
        self.shared.insert_loaded(
            channel,
            view.generation,
            &view.position.epoch,
            top,
            view.meta_expires_at,
            rows,
        );
    }
}

impl Drop for EmbeddedHistory {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        let mut threads = std::mem::take(&mut *sync::lock(&self.threads));
        if let Some(w) = threads.writer.take() {
            let _ = w.join();
        }
        self.sync_queue.shutdown();
        for s in threads.syncers.drain(..) {
            let _ = s.join();
        }
        self.checkpointer.shutdown();
        if let Some(c) = threads.checkpointer.take() {
            let _ = c.join();
        }
    }
}

/// Offsets `lo < offset <= hi`, ascending or descending, at most `limit` (negative: all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    lo: u64,
    hi: u64,
    reverse: bool,
    limit: i64,
}

/// What a disk read found.
struct DiskView {
    /// Empty epoch: no live stream.
    position: StreamPosition,
    meta_expires_at: i64,
    rows: Vec<Row>,
    /// What was asked for.
    range: Option<Range>,
    /// The cache generation before the read.
    generation: u64,
}

impl DiskView {
    fn missing() -> Self {
        DiskView {
            position: StreamPosition::default(),
            meta_expires_at: 0,
            rows: Vec::new(),
            range: None,
            generation: 0,
        }
    }

    fn exists(&self) -> bool {
        !self.position.epoch.is_empty()
    }
}

/// What a recovery needs, given the stream's meta.
enum RecoverPlan {
    /// Decided without publications: recovered (with none) or not.
    Decided(bool),
    /// Recovered if every offset `since < offset <= top` is retained.
    Need(Range),
}

fn plan_recover(
    since: &StreamPosition,
    limit: usize,
    size: usize,
    epoch: &str,
    top: u64,
) -> RecoverPlan {
    if !since.epoch.is_empty() && since.epoch != epoch {
        return RecoverPlan::Decided(false);
    }
    if since.offset == top {
        return RecoverPlan::Decided(true);
    }
    if since.offset > top {
        return RecoverPlan::Decided(false);
    }
    let missed = top - since.offset;
    if missed > limit as u64 || missed > size as u64 {
        return RecoverPlan::Decided(false);
    }
    RecoverPlan::Need(Range {
        lo: since.offset,
        hi: top,
        reverse: false,
        limit: missed as i64,
    })
}

/// Whether `publications` are exactly the offsets of `range` (ascending), i.e. nothing in it
/// was trimmed.
fn complete(range: &Range, publications: &[Arc<StoredPublication>]) -> bool {
    publications.len() as u64 == range.hi - range.lo
        && publications
            .iter()
            .enumerate()
            .all(|(i, p)| p.offset == range.lo + 1 + i as u64)
}

/// What a history read needs, given the stream's meta.
fn plan_read(
    filter: &HistoryFilter,
    size: usize,
    epoch: &str,
    top: u64,
) -> Result<Option<Range>, EngineError> {
    if let Some(since) = &filter.since {
        if !since.epoch.is_empty() && since.epoch != epoch {
            return Err(EngineError::UnrecoverablePosition);
        }
    }
    if filter.limit == 0 {
        return Ok(None);
    }
    let floor = top.saturating_sub(size as u64);
    let range = if filter.reverse {
        let hi = filter
            .since
            .as_ref()
            .map_or(top, |s| s.offset.saturating_sub(1).min(top));
        Range {
            lo: floor,
            hi,
            reverse: true,
            limit: filter.limit,
        }
    } else {
        let lo = filter.since.as_ref().map_or(0, |s| s.offset).max(floor);
        Range {
            lo,
            hi: top,
            reverse: false,
            limit: filter.limit,
        }
    };
    Ok((range.hi > range.lo).then_some(range))
}

/// Serves `range` from a channel's cached publications, or `None` when they do not cover it.
fn from_cache(
    state: &ChannelState,
    range: &Range,
    now: i64,
) -> Option<Vec<Arc<StoredPublication>>> {
    let limit = if range.limit < 0 {
        usize::MAX
    } else {
        range.limit as usize
    };
    // Cached entries are offsets covers_from+1 ..= top.
    let start = range.lo.max(state.covers_from);
    let skip = (start - state.covers_from) as usize;
    let end = (range.hi.min(state.top).saturating_sub(state.covers_from)) as usize;
    let slice = state
        .publications
        .range(skip.min(end)..end.min(state.publications.len()));
    let fresh = |(_, expires_at): &&(Arc<StoredPublication>, i64)| *expires_at > now;
    if range.lo >= state.covers_from {
        let out: Vec<_> = if range.reverse {
            slice
                .rev()
                .filter(fresh)
                .take(limit)
                .map(|(p, _)| p.clone())
                .collect()
        } else {
            slice
                .filter(fresh)
                .take(limit)
                .map(|(p, _)| p.clone())
                .collect()
        };
        return Some(out);
    }
    if range.reverse && range.limit > 0 {
        // The newest `limit` are all cached if enough of the cached ones qualify.
        let out: Vec<_> = slice
            .rev()
            .filter(fresh)
            .take(limit)
            .map(|(p, _)| p.clone())
            .collect();
        if out.len() == limit {
            return Some(out);
        }
    }
    None
}

impl EmbeddedHistory {
    /// Sets what is done with each appended publication once it is durable: called once per
    /// non-duplicate publication, in offset order per channel, before its publisher's append
    /// resolves. This is how publications reach subscribers in exactly the order of their
    /// offsets, however many publishers race (a subscriber that saw offset 7 before 6 would
    /// recover 7 again after a reconnect). [`super::EmbeddedBroker`] sets it.
    pub fn set_delivery(&self, delivery: super::Delivery) {
        if self.shared.delivery.set(delivery).is_err() {
            tracing::warn!("history: the delivery hook was already set; keeping the first");
        }
    }

    /// Appends a publication: assigns the next offset and stores it durably before the
    /// future resolves. Appends to one channel are ordered as they were called.
    pub fn append(
        &self,
        request: AppendRequest,
    ) -> BoxFuture<'_, Result<AppendResult, EngineError>> {
        let (tx, rx) = oneshot::channel();
        // Sent now, not when first polled: appends are ordered as called.
        let sent = self.tx.send(Cmd::Append(request, tx));
        Box::pin(async move {
            sent.map_err(|_| unavailable())?;
            rx.await.map_err(|_| unavailable())?
        })
    }
}

impl History for EmbeddedHistory {
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
            let now = now_ms();
            let size = options.size;
            let hit = self.cached(channel, now, |state| {
                let position = StreamPosition::new(state.top, state.epoch.clone());
                match plan_read(&filter, size, &state.epoch, state.top) {
                    Err(e) => Some(Err(e)),
                    Ok(None) => Some(Ok(HistoryResult {
                        publications: Vec::new(),
                        position,
                    })),
                    Ok(Some(range)) => from_cache(state, &range, now).map(|publications| {
                        Ok(HistoryResult {
                            publications,
                            position,
                        })
                    }),
                }
            });
            if let Some(result) = hit {
                return result;
            }
            let f = filter.clone();
            let view = self
                .disk(channel, now, move |epoch, top| {
                    plan_read(&f, size, epoch, top).ok().flatten()
                })
                .await?;
            self.remember(channel, &view);
            let position = if view.exists() {
                view.position
            } else {
                self.ensure(channel, options).await?
            };
            plan_read(&filter, size, &position.epoch, position.offset)?;
            Ok(HistoryResult {
                publications: view.rows.into_iter().map(|r| r.publication).collect(),
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
            let now = now_ms();
            if let Some(position) = self.cached(channel, now, |state| {
                Some(StreamPosition::new(state.top, state.epoch.clone()))
            }) {
                return Ok(position);
            }
            let view = self.disk(channel, now, |_, _| None).await?;
            self.remember(channel, &view);
            if view.exists() {
                Ok(view.position)
            } else {
                self.ensure(channel, options).await
            }
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
            let now = now_ms();
            let size = options.size;
            let not_recovered = |position| Recovery {
                publications: Vec::new(),
                position,
                recovered: false,
            };
            let hit = self.cached(channel, now, |state| {
                let position = StreamPosition::new(state.top, state.epoch.clone());
                match plan_recover(&since, limit, size, &state.epoch, state.top) {
                    RecoverPlan::Decided(recovered) => Some(Recovery {
                        publications: Vec::new(),
                        position,
                        recovered,
                    }),
                    RecoverPlan::Need(range) if range.lo >= state.covers_from => {
                        let publications = from_cache(state, &range, now)?;
                        Some(if complete(&range, &publications) {
                            Recovery {
                                publications,
                                position,
                                recovered: true,
                            }
                        } else {
                            not_recovered(position)
                        })
                    }
                    RecoverPlan::Need(_) => None,
                }
            });
            if let Some(recovery) = hit {
                return Ok(recovery);
            }
            let s = since.clone();
            let view = self
                .disk(channel, now, move |epoch, top| {
                    match plan_recover(&s, limit, size, epoch, top) {
                        RecoverPlan::Need(range) => Some(range),
                        RecoverPlan::Decided(_) => None,
                    }
                })
                .await?;
            self.remember(channel, &view);
            let position = if view.exists() {
                view.position
            } else {
                self.ensure(channel, options).await?
            };
            match plan_recover(&since, limit, size, &position.epoch, position.offset) {
                RecoverPlan::Decided(recovered) => Ok(Recovery {
                    publications: Vec::new(),
                    position,
                    recovered,
                }),
                RecoverPlan::Need(range) => {
                    let publications: Vec<_> =
                        view.rows.into_iter().map(|r| r.publication).collect();
                    Ok(if complete(&range, &publications) {
                        Recovery {
                            publications,
                            position,
                            recovered: true,
                        }
                    } else {
                        not_recovered(position)
                    })
                }
            }
        })
    }

    fn remove<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(Cmd::Remove {
            channel: channel.to_string(),
            reply: tx,
        });
        Box::pin(async move {
            sent.map_err(|_| unavailable())?;
            rx.await.map_err(|_| unavailable())?
        })
    }
}
