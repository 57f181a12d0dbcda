//! The single writer thread, its syncers and its checkpointer.
//!
//! **Group commit.** The writer executes commands as they arrive inside one open SQLite
//! transaction. With `durability: fsync` it commits that transaction when a syncer is free to
//! flush it (or when it has grown to [`MAX_OPEN`] commands): everything that arrived while the
//! disk was busy flushing the previous commit becomes one commit and one flush, and the
//! inserts' CPU work overlaps the flush. Commits do not sync by themselves
//! (`synchronous=NORMAL`); the syncer `fdatasync`s the WAL file and then acknowledges every
//! batch committed before that flush started. With `durability: os` the writer commits after
//! every round of queued commands and acknowledges right away.
//!
//! **Visibility.** Offsets that are committed but not yet flushed are marked pending in the
//! shared cache before the commit, so that readers (which see every commit) hide them until
//! their publishers have been acknowledged.
//!
//! **Background work** (TTL trimming, stream meta expiry, idempotency key expiry) runs on the
//! writer thread between rounds, at most [`SWEEP_CHUNK`] rows per table at a time, so a large
//! expiry never stalls publishes. WAL checkpoints run on their own thread and connection; the
//! writer only finishes one now and then so that the WAL can start over (see
//! [`Writer::maybe_restart_wal`]).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::cache::{Effect, Shared};
use super::store::{self, StreamRow};
use crate::config::Durability;
use crate::engine::{
    AppendRequest, AppendResult, EngineError, HistoryOptions, StoredPublication, StreamPosition,
};
use crate::sync;

/// Most commands executed per round before the writer looks at committing.
pub(super) const MAX_BATCH: usize = 1024;
/// WAL size (in pages) beyond which the writer lets the WAL restart.
pub(super) const WAL_RESTART_FRAMES: u64 = 4096;
/// An open transaction with this many commands is committed even while a flush is running.
pub(super) const MAX_OPEN: usize = 8192;
/// Most rows one background sweep transaction deletes.
pub(super) const SWEEP_CHUNK: usize = 1000;

/// A request to the writer.
// Appends are nearly all of the traffic: boxing the request would cost every durable publish
// an allocation to make the rare other commands smaller in the queue.
#[allow(clippy::large_enum_variant)]
pub(super) enum Cmd {
    Append(
        AppendRequest,
        oneshot::Sender<Result<AppendResult, EngineError>>,
    ),
    /// Make sure the stream exists (creating it with a new epoch) and return its top.
    Ensure {
        channel: String,
        options: HistoryOptions,
        reply: oneshot::Sender<Result<StreamPosition, EngineError>>,
    },
    Remove {
        channel: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// Run the background sweeps now (tests).
    Sweep(oneshot::Sender<()>),
    /// A syncer finished a flush (so the open transaction may be committed).
    SyncIdle,
    Shutdown,
}

enum Reply {
    Append(
        oneshot::Sender<Result<AppendResult, EngineError>>,
        Result<AppendResult, EngineError>,
        /// The channel, for the delivery hook.
        String,
        /// The publish asked for delta compression, for the delivery hook.
        bool,
    ),
    Position(
        oneshot::Sender<Result<StreamPosition, EngineError>>,
        Result<StreamPosition, EngineError>,
    ),
    Unit(
        oneshot::Sender<Result<(), EngineError>>,
        Result<(), EngineError>,
    ),
    Done(oneshot::Sender<()>),
}

impl Cmd {
    /// The channel the command is about, if one.
    fn channel(&self) -> Option<&str> {
        match self {
            Cmd::Append(request, _) => Some(&request.channel),
            Cmd::Ensure { channel, .. } | Cmd::Remove { channel, .. } => Some(channel),
            Cmd::Sweep(_) | Cmd::SyncIdle | Cmd::Shutdown => None,
        }
    }
}

impl Reply {
    fn send(self) {
        // A caller that stopped waiting is no error.
        match self {
            Reply::Append(tx, r, _, _) => drop(tx.send(r)),
            Reply::Position(tx, r) => drop(tx.send(r)),
            Reply::Unit(tx, r) => drop(tx.send(r)),
            Reply::Done(tx) => drop(tx.send(())),
        }
    }

    fn fail(self, e: &EngineError) -> Reply {
        match self {
            Reply::Append(tx, _, channel, delta) => {
                Reply::Append(tx, Err(e.clone()), channel, delta)
            }
            Reply::Position(tx, _) => Reply::Position(tx, Err(e.clone())),
            Reply::Unit(tx, _) => Reply::Unit(tx, Err(e.clone())),
            done => done,
        }
    }
}

/// A committed batch waiting to become durable.
pub(super) struct Committed {
    seq: u64,
    replies: Vec<Reply>,
    effects: Vec<Effect>,
    /// `(channel, last offset)` of pending marks to clear on ack.
    pending: Vec<(String, u64)>,
}

impl Committed {
    /// The batch is durable: update the cache, clear pending marks, answer the callers.
    fn ack(self, shared: &Shared) {
        // Subscribers get the publications before readers can see them: a subscriber that
        // reads the stream's top during its set-up then holds back exactly the publications
        // above that top (see `Hub::activate`), never one it already has.
        if let Some(deliver) = shared.delivery.get() {
            for r in &self.replies {
                if let Reply::Append(_, Ok(result), channel, delta) = r {
                    if let Some(publication) = &result.publication {
                        deliver(channel, publication, *delta);
                    }
                }
            }
        }
        shared.apply(self.effects);
        for (channel, last) in &self.pending {
            shared.clear_pending(channel, *last, self.seq);
        }
        for r in self.replies {
            r.send();
        }
    }

    /// The flush failed: the callers get the error, and the batch's offsets stay hidden from
    /// readers (its pending marks are kept).
    fn fail(self, e: &EngineError) {
        for r in self.replies {
            r.fail(e).send();
        }
    }
}

/// Committed batches handed from the writer to the syncers.
pub(super) struct SyncQueue {
    state: Mutex<SyncState>,
    cond: Condvar,
    syncers: usize,
}

#[derive(Default)]
struct SyncState {
    batches: VecDeque<Committed>,
    /// Highest batch committed.
    committed: u64,
    /// Highest batch covered by a flush that has started.
    sync_started: u64,
    /// Flushes running.
    in_flight: usize,
    shutdown: bool,
}

impl SyncQueue {
    pub fn new(syncers: usize) -> Self {
        SyncQueue {
            state: Mutex::new(SyncState::default()),
            cond: Condvar::new(),
            syncers: syncers.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        sync::lock(&self.state)
    }

    fn push(&self, batch: Committed) {
        let mut s = self.lock();
        s.committed = batch.seq;
        s.batches.push_back(batch);
        drop(s);
        self.cond.notify_one();
    }

    /// Whether a syncer could start flushing a commit right now.
    fn idle(&self) -> bool {
        let s = self.lock();
        s.committed == s.sync_started && s.in_flight < self.syncers
    }

    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.cond.notify_all();
    }
}

/// A syncer thread: flushes the WAL and acknowledges what the flush covered. Several may run at
/// once; each acknowledges, in commit order, every batch committed before its flush started.
/// After each flush it tells the writer (`writer`), which may be holding a transaction open
/// until a syncer is free.
pub(super) fn run_syncer(
    queue: Arc<SyncQueue>,
    shared: Arc<Shared>,
    wal: Arc<File>,
    writer: Sender<Cmd>,
) {
    let mut s = queue.lock();
    loop {
        if s.committed > s.sync_started {
            let covered = s.committed;
            s.sync_started = covered;
            s.in_flight += 1;
            drop(s);
            let result = if shared.failed.load(Ordering::Relaxed) {
                Err(std::io::Error::other("an earlier fsync failed"))
            } else {
                wal.sync_data()
            };
            shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
            s = queue.lock();
            s.in_flight -= 1;
            if let Err(e) = &result {
                if !shared.failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "history: fsync of the WAL failed; refusing writes");
                }
            }
            // Ack under the lock so that acks stay in commit order across syncers.
            while s.batches.front().is_some_and(|b| b.seq <= covered) {
                let Some(batch) = s.batches.pop_front() else {
                    break;
                };
                match &result {
                    Ok(()) => batch.ack(&shared),
                    Err(e) => batch.fail(&EngineError::Unavailable(format!(
                        "history fsync failed: {e}"
                    ))),
                }
            }
            if !s.shutdown {
                let _ = writer.send(Cmd::SyncIdle);
            }
            continue;
        }
        if s.shutdown && s.batches.is_empty() {
            return;
        }
        s = queue.cond.wait(s).unwrap_or_else(|e| e.into_inner());
    }
}

/// The checkpointer: copies the WAL back into the database file from its own connection, so
/// that the writer does not stall on it, and reports the WAL's size to the writer.
pub(super) struct Checkpointer {
    /// Commits since the last checkpoint, and whether to stop.
    state: Mutex<(u64, bool)>,
    cond: Condvar,
}

impl Checkpointer {
    pub fn new() -> Self {
        Checkpointer {
            state: Mutex::new((0, false)),
            cond: Condvar::new(),
        }
    }

    fn committed(&self) {
        let mut s = sync::lock(&self.state);
        s.0 += 1;
    }

    pub fn shutdown(&self) {
        sync::lock(&self.state).1 = true;
        self.cond.notify_all();
    }

    pub fn run(&self, conn: Connection, interval: Duration, shared: &Shared) {
        let mut s = sync::lock(&self.state);
        loop {
            if s.1 {
                return;
            }
            let (guard, _) = self
                .cond
                .wait_timeout(s, interval)
                .unwrap_or_else(|e| e.into_inner());
            s = guard;
            if s.0 == 0 || s.1 {
                continue;
            }
            s.0 = 0;
            drop(s);
            match checkpoint(&conn) {
                Ok((_, log, _)) => {
                    shared
                        .wal_frames
                        .store(log.max(0) as u64, Ordering::Relaxed);
                    shared.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "history: WAL checkpoint failed"),
            }
            s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A passive checkpoint: `(busy, frames in the WAL, frames checkpointed)`.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// The writer's view of one stream (authoritative: it is the only writer).
struct Meta {
    epoch: String,
    top: u64,
    /// Every offset up to this is known deleted by size trimming.
    trimmed_to: u64,
    /// `meta_expires_at` as on disk.
    stored_expires: i64,
    /// The row exists on disk.
    on_disk: bool,
    /// Touched in the open transaction.
    dirty: bool,
    /// First offset appended in the open transaction (0 = none).
    batch_first: u64,
    batch_size: usize,
    want_expires: i64,
    batch_publications: Vec<(Arc<StoredPublication>, i64)>,
    /// Version of the last publication (0: it had none), and its epoch: see
    /// [`AppendRequest::version`].
    version: u64,
    version_epoch: String,
}

impl Meta {
    fn new(epoch: String, top: u64, stored_expires: i64, on_disk: bool) -> Self {
        Meta {
            epoch,
            top,
            trimmed_to: 0,
            stored_expires,
            on_disk,
            dirty: false,
            batch_first: 0,
            batch_size: 0,
            want_expires: stored_expires,
            batch_publications: Vec::new(),
            version: 0,
            version_epoch: String::new(),
        }
    }
}

/// The open write transaction: what it did, to acknowledge once committed and durable.
#[derive(Default)]
struct Open {
    replies: Vec<Reply>,
    effects: Vec<Effect>,
    /// Channels whose meta is dirty.
    dirty: Vec<String>,
    commands: usize,
}

/// The writer thread's state.
pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    durability: Durability,
    sync_queue: Arc<SyncQueue>,
    checkpointer: Arc<Checkpointer>,
    idempotency_window: Duration,
    sweep_interval: Duration,
    /// Stream metas kept in memory before they are all dropped (and reloaded as needed).
    max_metas: usize,
    metas: HashMap<String, Meta>,
    seq: u64,
    open: Option<Open>,
}

/// Unix milliseconds now.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn sql_error(e: rusqlite::Error) -> EngineError {
    EngineError::Unavailable(format!("history storage: {e}"))
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conn: Connection,
        shared: Arc<Shared>,
        durability: Durability,
        sync_queue: Arc<SyncQueue>,
        checkpointer: Arc<Checkpointer>,
        idempotency_window: Duration,
        sweep_interval: Duration,
        max_metas: usize,
    ) -> Self {
        Writer {
            conn,
            shared,
            durability,
            sync_queue,
            checkpointer,
            idempotency_window,
            sweep_interval,
            max_metas,
            metas: HashMap::new(),
            seq: 0,
            open: None,
        }
    }

    /// The writer loop, until [`Cmd::Shutdown`].
    ///
    /// Commands are executed as they arrive, inside one open transaction. With `os`
    /// durability it is committed after every round of queued commands; with `fsync` it is
    /// committed when a syncer is free to flush it (or it grew large), so everything that
    /// arrives while the disk is flushing becomes one commit and one flush, and the inserts'
    /// CPU work overlaps the flush.
    pub fn run(mut self, rx: Receiver<Cmd>) {
        let mut next_sweep = Instant::now() + self.sweep_interval;
        let mut running = true;
        while running {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            let mut sweep_waiters = Vec::new();
            let mut next = match rx.recv_timeout(wait) {
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    running = false;
                    None
                }
            };
            let mut round = 0;
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Shutdown => running = false,
                    Cmd::SyncIdle => {}
                    Cmd::Sweep(tx) => sweep_waiters.push(tx),
                    cmd => {
                        round += 1;
                        self.execute(cmd);
                    }
                }
                if round < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !sweep_waiters.is_empty() || Instant::now() >= next_sweep {
                let was_open = self.open.is_some();
                let (mut more, mut changed) = self.sweep();
                // Tests want everything swept now.
                while more && !sweep_waiters.is_empty() {
                    (more, changed) = self.sweep();
                }
                if !was_open && !changed && sweep_waiters.is_empty() && self.open.is_some() {
                    // Nothing expired: no commit (and no flush) for nothing.
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.open = None;
                }
                next_sweep = Instant::now()
                    + if more {
                        Duration::from_millis(5) // a backlog: keep trimming soon
                    } else {
                        self.sweep_interval
                    };
                if !sweep_waiters.is_empty() {
                    let open = self.begin();
                    if let Some(open) = open {
                        open.replies
                            .extend(sweep_waiters.into_iter().map(Reply::Done));
                    }
                }
            }
            let Some(open) = &self.open else { continue };
            if self.durability == Durability::Os
                || !running
                || open.commands >= MAX_OPEN
                || self.sync_queue.idle()
            {
                self.commit();
            }
        }
        self.sync_queue.shutdown();
    }

    /// The open transaction, beginning one if needed (`None` if that failed: the error has
    /// been logged and the caller's reply must fail).
    fn begin(&mut self) -> Option<&mut Open> {
        if self.open.is_none() {
            if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
                tracing::error!(
                    file = %self.conn.path().unwrap_or_default(),
                    "history: cannot begin a write transaction: {e}{}",
                    self.advice(&e)
                );
                return None;
            }
            self.open = Some(Open::default());
        }
        self.open.as_mut()
    }

    /// Executes one command in the open transaction.
    fn execute(&mut self, cmd: Cmd) {
        let refuse = if self.shared.failed.load(Ordering::Relaxed) {
            Some("history storage failed to sync earlier")
        } else if self.begin().is_none() {
            Some("history storage cannot begin a transaction")
        } else {
            None
        };
        if let Some(why) = refuse {
            let e = EngineError::Unavailable(why.into());
            match cmd {
                Cmd::Append(_, tx) => drop(tx.send(Err(e))),
                Cmd::Ensure { reply, .. } => drop(reply.send(Err(e))),
                Cmd::Remove { reply, .. } => drop(reply.send(Err(e))),
                Cmd::Sweep(tx) => drop(tx.send(())),
                Cmd::SyncIdle | Cmd::Shutdown => {}
            }
            return;
        }
        let mut open = self.open.take().expect("begun above");
        open.commands += 1;
        let channel = cmd.channel().map(str::to_owned);
        let result = self.execute_in(cmd, &mut open);
        self.open = Some(open);
        if let Err(e) = result {
            self.abort(e, channel.as_deref());
        }
    }

    /// What to do, for a log line, when `e` says the database file is damaged.
    fn advice(&self, e: &rusqlite::Error) -> String {
        match self.conn.path() {
            Some(path) if store::is_corruption(e) => format!(
                "; the database is damaged: stop Herald, then {}",
                store::corruption_advice(std::path::Path::new(path))
            ),
            _ => String::new(),
        }
    }

    fn execute_in(&mut self, cmd: Cmd, open: &mut Open) -> rusqlite::Result<()> {
        let now = now_ms();
        match cmd {
            Cmd::Append(req, tx) => {
                // The reply goes in first so that an error below fails it with the rest.
                open.replies.push(Reply::Append(
                    tx,
                    Err(EngineError::Unavailable(String::new())),
                    req.channel.clone(),
                    req.delta,
                ));
                let r = self.append(req, now, open)?;
                if let Some(Reply::Append(_, slot, _, _)) = open.replies.last_mut() {
                    *slot = r;
                }
            }
            Cmd::Ensure {
                channel,
                options,
                reply,
            } => {
                open.replies.push(Reply::Position(
                    reply,
                    Err(EngineError::Unavailable(String::new())),
                ));
                let meta = self.meta(&channel, now, &mut open.effects)?;
                let pos = StreamPosition::new(meta.top, meta.epoch.clone());
                if !meta.on_disk && !meta.dirty {
                    meta.dirty = true;
                    meta.want_expires = expiry(now, options.meta_ttl);
                    open.dirty.push(channel);
                } else if !meta.dirty {
                    open.effects.push(Effect::Stream {
                        channel,
                        epoch: meta.epoch.clone(),
                        top: meta.top,
                        meta_expires_at: meta.stored_expires,
                    });
                }
                if let Some(Reply::Position(_, slot)) = open.replies.last_mut() {
                    *slot = Ok(pos);
                }
            }
            Cmd::Remove { channel, reply } => {
                open.replies.push(Reply::Unit(
                    reply,
                    Err(EngineError::Unavailable(String::new())),
                ));
                self.conn
                    .prepare_cached("DELETE FROM publications WHERE channel = ?1")?
                    .execute([&channel])?;
                if let Some(meta) = self.metas.get_mut(&channel) {
                    meta.trimmed_to = meta.top;
                    // Publications appended earlier in this transaction are gone too.
                    meta.batch_publications.clear();
                }
                open.effects.push(Effect::Clear { channel });
                if let Some(Reply::Unit(_, slot)) = open.replies.last_mut() {
                    *slot = Ok(());
                }
            }
            Cmd::Sweep(tx) => open.replies.push(Reply::Done(tx)),
            Cmd::SyncIdle | Cmd::Shutdown => {}
        }
        Ok(())
    }

    /// Rolls the open transaction back and fails everything in it. `channel` is the one whose
    /// command failed, if a command did (else the log names the channels the transaction
    /// wrote).
    fn abort(&mut self, e: rusqlite::Error, channel: Option<&str>) {
        let channels = match channel {
            Some(channel) => channel.to_owned(),
            None => {
                let dirty = self.open.as_ref().map_or(&[][..], |open| &open.dirty[..]);
                let mut names = dirty.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
                if dirty.len() > 5 {
                    names.push_str(&format!(" and {} more", dirty.len() - 5));
                }
                if names.is_empty() {
                    names.push_str("(none: the background expiry sweep)");
                }
                names
            }
        };
        tracing::error!(
            file = %self.conn.path().unwrap_or_default(),
            channel = %channels,
            "history: write failed, its transaction is rolled back and the publishes in it \
             answered error 100: {e}{}",
            self.advice(&e)
        );
        let _ = self.conn.execute_batch("ROLLBACK");
        // What the writer believed about touched streams may be wrong now: reload.
        self.metas.clear();
        let err = sql_error(e);
        if let Some(open) = self.open.take() {
            for r in open.replies {
                r.fail(&err).send();
            }
        }
    }

    /// Commits the open transaction and hands it on: acknowledged now (`os`) or after the
    /// next flush (`fsync`).
    fn commit(&mut self) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        self.shared
            .counters
            .max_batch
            .fetch_max(open.commands as u64, Ordering::Relaxed);
        let now = now_ms();
        if let Err(e) = self.flush_dirty(&open.dirty, now) {
            self.open = Some(open);
            self.abort(e, None);
            return;
        }
        let seq = self.seq + 1;
        // Pending marks go up before the commit makes the rows visible to readers.
        let mut pending = Vec::new();
        if self.durability == Durability::Fsync {
            for channel in &open.dirty {
                let meta = &self.metas[channel];
                if meta.batch_first > 0 {
                    self.shared
                        .add_pending(channel, &meta.epoch, meta.batch_first, seq);
                    pending.push((channel.clone(), meta.top));
                }
            }
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            // The pending marks stay: they hide nothing that exists, and the next
            // acknowledged commit of each channel clears them.
            self.open = Some(open);
            self.abort(e, None);
            return;
        }
        self.seq = seq;
        self.shared
            .counters
            .transactions
            .fetch_add(1, Ordering::Relaxed);
        self.checkpointer.committed();
        for channel in std::mem::take(&mut open.dirty) {
            let Some(meta) = self.metas.get_mut(&channel) else {
                continue;
            };
            meta.dirty = false;
            meta.on_disk = true;
            meta.stored_expires = meta.want_expires;
            if meta.batch_first > 0 {
                meta.batch_first = 0;
                open.effects.push(Effect::Append {
                    channel,
                    epoch: meta.epoch.clone(),
                    top: meta.top,
                    meta_expires_at: meta.stored_expires,
                    size: meta.batch_size,
                    publications: std::mem::take(&mut meta.batch_publications),
                });
            } else {
                open.effects.push(Effect::Stream {
                    channel,
                    epoch: meta.epoch.clone(),
                    top: meta.top,
                    meta_expires_at: meta.stored_expires,
                });
            }
        }
        if self.metas.len() > self.max_metas {
            self.metas.clear();
        }
        let batch = Committed {
            seq,
            replies: open.replies,
            effects: open.effects,
            pending,
        };
        match self.durability {
            Durability::Os => batch.ack(&self.shared),
            Durability::Fsync => self.sync_queue.push(batch),
        }
        self.maybe_restart_wal();
    }

    /// Lets the WAL start over from its beginning once it has grown past [`WAL_RESTART_FRAMES`].
    ///
    /// The checkpointer copies the WAL into the database concurrently, but while the writer
    /// keeps appending it never catches up completely, and SQLite reuses the WAL only when a
    /// write transaction begins on a fully checkpointed WAL. So, between two transactions, the
    /// writer checkpoints the (small) remainder itself; the next commit then writes from the
    /// start of the file again, overwriting in place instead of growing it.
    fn maybe_restart_wal(&mut self) {
        if self.shared.wal_frames.load(Ordering::Relaxed) < WAL_RESTART_FRAMES {
            return;
        }
        match checkpoint(&self.conn) {
            Ok((0, log, done)) if log == done => {
                self.shared.wal_frames.store(0, Ordering::Relaxed);
                self.shared
                    .counters
                    .wal_restarts
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {} // the checkpointer is busy, or a reader holds an old snapshot: later
            Err(e) => tracing::warn!(error = %e, "history: WAL checkpoint failed"),
        }
    }

    /// The writer's meta of `channel`, loaded from disk or created (not yet written).
    fn meta(
        &mut self,
        channel: &str,
        now: i64,
        effects: &mut Vec<Effect>,
    ) -> rusqlite::Result<&mut Meta> {
        let expired = self.metas.get(channel).is_some_and(|m| {
            !m.dirty && m.on_disk && m.stored_expires > 0 && m.stored_expires <= now
        });
        if expired {
            // Reload: the row is expired too, so the stream starts a new life below.
            self.metas.remove(channel);
        }
        if !self.metas.contains_key(channel) {
            let meta = match store::load_stream(&self.conn, channel)? {
                Some(row) if !row.expired(now) => {
                    let mut meta = Meta::new(row.epoch, row.top, row.meta_expires_at, true);
                    (meta.version, meta.version_epoch) = store::load_version(&self.conn, channel)?;
                    meta
                }
                row => {
                    if row.is_some() {
                        // The stream is lost: a new life with a new epoch.
                        self.drop_stream(channel)?;
                        effects.push(Effect::Drop {
                            channel: channel.to_string(),
                        });
                    }
                    Meta::new(crate::engine::new_epoch(), 0, 0, false)
                }
            };
            self.metas.insert(channel.to_string(), meta);
        }
        Ok(self.metas.get_mut(channel).expect("inserted above"))
    }

    fn drop_stream(&self, channel: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM publications WHERE channel = ?1")?
            .execute([channel])?;
        self.conn
            .prepare_cached("DELETE FROM streams WHERE channel = ?1")?
            .execute([channel])?;
        self.conn
            .prepare_cached("DELETE FROM stream_versions WHERE channel = ?1")?
            .execute([channel])?;
        Ok(())
    }

    fn append(
        &mut self,
        req: AppendRequest,
        now: i64,
        open: &mut Open,
    ) -> rusqlite::Result<Result<AppendResult, EngineError>> {
        if !req.options.enabled() {
            return Ok(Err(EngineError::BadRequest(
                "history is not enabled for the channel".into(),
            )));
        }
        if let Some(key) = &req.idempotency_key {
            let first = self
                .conn
                .prepare_cached(
                    r#"SELECT epoch, "offset" FROM idempotency
                       WHERE channel = ?1 AND key = ?2 AND expires_at > ?3"#,
                )?
                .query_row(params![req.channel, key, now], |r| {
                    Ok(StreamPosition::new(
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, String>(0)?,
                    ))
                })
                .optional()?;
            if let Some(position) = first {
                self.shared
                    .counters
                    .duplicates
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(Ok(AppendResult {
                    position,
                    duplicate: true,
                    suppressed: false,
                    publication: None,
                }));
            }
        }
        let meta = self.meta(&req.channel, now, &mut open.effects)?;
        if req.version > 0
            && (req.version_epoch.is_empty() || req.version_epoch == meta.version_epoch)
            && req.version <= meta.version
        {
            // A stale publication (Centrifugo's version suppression): no offset used.
            return Ok(Ok(AppendResult {
                position: StreamPosition::new(meta.top, meta.epoch.clone()),
                duplicate: false,
                suppressed: true,
                publication: None,
            }));
        }
        let version_changed = (req.version, req.version_epoch.as_str())
            != (meta.version, meta.version_epoch.as_str());
        let offset = meta.top + 1;
        let epoch = meta.epoch.clone();
        let expires_at = now.saturating_add(ms(req.options.ttl));
        self.conn
            .prepare_cached(
                r#"INSERT OR REPLACE INTO publications
                   (channel, "offset", data, info, tags, time_ms, expires_at)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"#,
            )?
            .execute(params![
                req.channel,
                offset as i64,
                req.data.as_bytes(),
                store::encode_info(&req.info),
                store::encode_tags(&req.tags),
                now,
                expires_at,
            ])?;
        if let Some(key) = &req.idempotency_key {
            self.conn
                .prepare_cached(
                    r#"INSERT OR REPLACE INTO idempotency
                       (channel, key, epoch, "offset", expires_at) VALUES (?1, ?2, ?3, ?4, ?5)"#,
                )?
                .execute(params![
                    req.channel,
                    key,
                    epoch,
                    offset as i64,
                    now.saturating_add(ms(self.idempotency_window)),
                ])?;
        }
        if version_changed {
            if req.version == 0 {
                self.conn
                    .prepare_cached("DELETE FROM stream_versions WHERE channel = ?1")?
                    .execute([&req.channel])?;
            } else {
                self.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO stream_versions (channel, version, version_epoch)
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![req.channel, req.version as i64, req.version_epoch])?;
            }
        }
        let meta = self.metas.get_mut(&req.channel).expect("loaded above");
        meta.top = offset;
        if version_changed {
            meta.version = req.version;
            meta.version_epoch = req.version_epoch;
        }
        if meta.batch_first == 0 {
            meta.batch_first = offset;
        }
        meta.batch_size = req.options.size;
        meta.want_expires = expiry(now, req.options.meta_ttl);
        if !meta.dirty {
            meta.dirty = true;
            open.dirty.push(req.channel.clone());
        }
        let publication = Arc::new(StoredPublication {
            offset,
            data: req.data,
            info: req.info,
            tags: req.tags,
            time_ms: now,
        });
        meta.batch_publications
            .push((publication.clone(), expires_at));
        self.shared.counters.appends.fetch_add(1, Ordering::Relaxed);
        Ok(Ok(AppendResult {
            position: StreamPosition::new(offset, epoch),
            duplicate: false,
            suppressed: false,
            publication: Some(publication),
        }))
    }

    /// Writes the stream rows of the channels touched in the open transaction and trims them
    /// by size.
    fn flush_dirty(&mut self, dirty: &[String], now: i64) -> rusqlite::Result<()> {
        for channel in dirty {
            let meta = self.metas.get_mut(channel).expect("dirty metas are loaded");
            // Move the expiry only when it moved noticeably (1 % of the meta TTL, at most a
            // minute): the row is rewritten for the top offset anyway, but the expiry index
            // need not churn. A stream thus lives at least `meta_ttl` minus that slack.
            let slack = ((meta.want_expires - now) / 100).min(60_000);
            if meta.on_disk
                && meta.stored_expires > 0
                && meta.want_expires > 0
                && meta.want_expires - meta.stored_expires < slack
            {
                meta.want_expires = meta.stored_expires;
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO streams (channel, epoch, top_offset, meta_expires_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (channel) DO UPDATE SET
                       epoch = excluded.epoch,
                       top_offset = excluded.top_offset,
                       meta_expires_at = excluded.meta_expires_at",
                )?
                .execute(params![
                    channel,
                    meta.epoch,
                    meta.top as i64,
                    meta.want_expires
                ])?;
            if meta.batch_first > 0 && meta.batch_size > 0 {
                // Trim by size lazily: readers filter by size anyway, so rows beyond the limit
                // are deleted in slices rather than one per publication.
                let floor = meta.top.saturating_sub(meta.batch_size as u64);
                let slack = (meta.batch_size as u64 / 4).min(1024);
                if floor > meta.trimmed_to + slack {
                    self.conn
                        .prepare_cached(
                            r#"DELETE FROM publications
                               WHERE channel = ?1 AND "offset" > ?2 AND "offset" <= ?3"#,
                        )?
                        .execute(params![channel, meta.trimmed_to as i64, floor as i64])?;
                    meta.trimmed_to = floor;
                }
            }
        }
        Ok(())
    }

    /// One round of background trimming, in the open transaction. Returns whether there is
    /// more to do, and whether anything changed.
    fn sweep(&mut self) -> (bool, bool) {
        if self.shared.failed.load(Ordering::Relaxed) || self.begin().is_none() {
            return (false, false);
        }
        let mut open = self.open.take().expect("begun above");
        let result = self.sweep_in(&mut open);
        self.open = Some(open);
        match result {
            Ok(r) => r,
            Err(e) => {
                self.abort(e, None);
                (false, false)
            }
        }
    }

    /// Returns whether there is more to sweep, and whether anything changed.
    fn sweep_in(&mut self, open: &mut Open) -> rusqlite::Result<(bool, bool)> {
        let now = now_ms();
        let deleted = self
            .conn
            .prepare_cached(
                r#"DELETE FROM publications WHERE (channel, "offset") IN
                   (SELECT channel, "offset" FROM publications
                    WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)"#,
            )?
            .execute(params![now, SWEEP_CHUNK as i64])?;
        self.shared
            .counters
            .swept_publications
            .fetch_add(deleted as u64, Ordering::Relaxed);
        let keys = self
            .conn
            .prepare_cached(
                "DELETE FROM idempotency WHERE (channel, key) IN
                 (SELECT channel, key FROM idempotency
                  WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
            )?
            .execute(params![now, SWEEP_CHUNK as i64])?;
        let expired: Vec<String> = self
            .conn
            .prepare_cached(
                "SELECT channel FROM streams
                 WHERE meta_expires_at > 0 AND meta_expires_at <= ?1
                 ORDER BY meta_expires_at LIMIT 100",
            )?
            .query_map([now], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for channel in &expired {
            if self.metas.get(channel).is_some_and(|m| m.dirty) {
                continue; // touched in this transaction: alive again
            }
            self.drop_stream(channel)?;
            self.metas.remove(channel);
            open.effects.push(Effect::Drop {
                channel: channel.clone(),
            });
            self.shared
                .counters
                .expired_streams
                .fetch_add(1, Ordering::Relaxed);
        }
        let more = deleted == SWEEP_CHUNK || keys == SWEEP_CHUNK || expired.len() == 100;
        Ok((more, deleted > 0 || keys > 0 || !expired.is_empty()))
    }
}

fn expiry(now: i64, ttl: Duration) -> i64 {
    if ttl.is_zero() {
        0
    } else {
        now.saturating_add(ms(ttl))
    }
}

/// Loads the stream row of `channel` on a reader connection, treating an expired meta as
/// absent.
pub(super) fn live_stream(
    conn: &Connection,
    channel: &str,
    now: i64,
) -> rusqlite::Result<Option<StreamRow>> {
    Ok(store::load_stream(conn, channel)?.filter(|r| !r.expired(now)))
}

/// Where the WAL of the database at `db` lives.
pub(super) fn wal_path(db: &std::path::Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}
