//! [`Queue`]: the durable queue of events waiting for the backend, in `data_dir/webhooks.db`
//! (SQLite), so that a restart — even `kill -9` — loses none that were queued.
//!
//! ```sql
//! events(id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB)  -- in the order they happened
//! up(kind INTEGER, key TEXT, PK(kind, key))                -- users online, channels occupied
//! ```
//!
//! One thread (`herald-webhooks`) owns the database: it appends what producers send it,
//! a batch per transaction, and deletes what the backend acknowledged. Producers never wait
//! for it: they reserve room in the [`Budget`] (refused when `max_queue` events or
//! `max_queue_bytes` bytes wait already: the event is dropped, counted, logged) and hand the
//! event over. What is written is mirrored in memory, in order, for the delivery task, so the
//! database is only ever read at start-up; the budget bounds that memory too.
//!
//! The `up` table is what was announced: a user whose `user_online` was queued stays in it
//! until their `user_offline` is, so that after a crash the node still owes those events and
//! sends them once the grace period passes without the user coming back
//! ([`super::tracker::Tracker::restore`]).
//!
//! Commits do not wait for the disk (`synchronous=NORMAL` in WAL mode): a committed event
//! survives the process being killed; a power cut may lose the last ones.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rusqlite::{Connection, OpenFlags, params};

use crate::sync::lock;

/// The database's file name under `data_dir`.
pub const FILE_NAME: &str = "webhooks.db";
/// Held with an exclusive lock while the queue is open: two processes delivering one queue
/// would send every event twice.
pub const LOCK_FILE: &str = "webhooks.lock";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS up (
    kind INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"#;

/// What a `up` row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpKind {
    /// A user announced online.
    User = 1,
    /// A channel announced occupied.
    Channel = 2,
}

/// A change of the `up` table, written with the event that announces it.
#[derive(Debug)]
pub struct UpChange {
    /// User or channel.
    pub kind: UpKind,
    /// The user id or channel name.
    pub key: Box<str>,
    /// Announced up (inserted) or down (deleted).
    pub up: bool,
}

/// An `up` row: a user announced online or a channel announced occupied.
pub type Announced = (UpKind, String);

/// Room for events waiting for delivery, in count and bytes: reserved before an event is
/// handed to the writer, released when the backend acknowledged it (or it was lost).
#[derive(Debug)]
pub struct Budget {
    events: AtomicUsize,
    bytes: AtomicUsize,
    max_events: usize,
    max_bytes: usize,
}

impl Budget {
    /// Room for `max_events` events of `max_bytes` bytes in all.
    pub fn new(max_events: usize, max_bytes: usize) -> Budget {
        Budget {
            events: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_events,
            max_bytes,
        }
    }

    /// Reserves room for one event of `bytes`; false when there is none.
    pub fn reserve(&self, bytes: usize) -> bool {
        let events = self.events.fetch_add(1, Ordering::AcqRel);
        let total = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        if events >= self.max_events || total.saturating_add(bytes) > self.max_bytes {
            self.release(1, bytes);
            return false;
        }
        true
    }

    /// Gives back room for `events` events of `bytes` bytes in all.
    pub fn release(&self, events: usize, bytes: usize) {
        self.events.fetch_sub(events, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Events reserved now.
    pub fn events(&self) -> usize {
        self.events.load(Ordering::Acquire)
    }

    /// Counts room taken without asking (events found in the file at start-up).
    fn take(&self, bytes: usize) {
        self.events.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }
}

/// One stored event waiting for delivery.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its row id (increasing in queue order).
    pub id: i64,
    /// Its JSON.
    pub body: Bytes,
}

/// What the writer thread is asked to do.
enum Command {
    /// Append an event (when there is one) and apply an `up` change (when there is one).
    Append(Option<Bytes>, Option<UpChange>),
    /// The backend acknowledged every event up to this id.
    Delivered(i64),
}

/// The metrics of the queue (registered by [`crate::metrics::Metrics`]).
#[derive(Debug, Clone, Default)]
pub struct QueueMetrics {
    /// Events waiting for delivery.
    pub queued: Gauge,
    /// Events dropped because the queue was full (or could not be written).
    pub dropped: Counter,
    /// Events the backend acknowledged.
    pub delivered: Counter,
    /// POSTs that failed (refused, timed out, not 2xx) and will be retried.
    pub failed_posts: Counter,
}

/// The durable queue. See the module documentation.
pub struct Queue {
    budget: Budget,
    writer: Mutex<mpsc::Sender<Command>>,
    /// Written and not acknowledged yet, in order.
    pending: Mutex<VecDeque<Stored>>,
    /// Rung when `pending` grows.
    ready: tokio::sync::Notify,
    metrics: QueueMetrics,
    /// When "queue full" was last logged (Unix seconds), to log it at most once a minute.
    full_logged_at: AtomicU64,
    /// Drops since then.
    dropped_since_log: AtomicU64,
    path: PathBuf,
    /// The lock on [`LOCK_FILE`], held as long as the queue.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.path)
            .field("events", &self.budget.events())
            .finish()
    }
}

impl Queue {
    /// Opens (creating) `dir/webhooks.db`, loads what it holds, and starts the writer thread.
    /// Returns the queue and the `up` rows (what was announced and not taken back).
    pub fn open(
        dir: &Path,
        budget: Budget,
        metrics: QueueMetrics,
    ) -> Result<(Arc<Queue>, Vec<Announced>), String> {
        let path = dir.join(FILE_NAME);
        let fail = |e: &dyn std::fmt::Display| {
            format!(
                "cannot open the webhook queue {}: {e} (check that data_dir is writable and \
                 that no other Herald uses it)",
                path.display()
            )
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        let lock = lock_dir(dir).map_err(|e| fail(&e))?;
        let conn = open(&path).map_err(|e| fail(&e))?;
        let mut pending = VecDeque::new();
        let mut up = Vec::new();
        {
            let mut read = conn
                .prepare("SELECT id, body FROM events ORDER BY id")
                .map_err(|e| fail(&e))?;
            let rows = read
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(|e| fail(&e))?;
            for row in rows {
                let (id, body) = row.map_err(|e| fail(&e))?;
                budget.take(body.len());
                pending.push_back(Stored {
                    id,
                    body: Bytes::from(body),
                });
            }
            let mut read = conn
                .prepare("SELECT kind, key FROM up")
                .map_err(|e| fail(&e))?;
            let rows = read
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| fail(&e))?;
            for row in rows {
                let (kind, key) = row.map_err(|e| fail(&e))?;
                let kind = match kind {
                    1 => UpKind::User,
                    2 => UpKind::Channel,
                    _ => continue,
                };
                up.push((kind, key));
            }
        }
        if !pending.is_empty() {
            tracing::info!(
                "webhooks: {} events from before the restart are queued for {}",
                pending.len(),
                path.display()
            );
        }
        metrics.queued.set(pending.len() as i64);
        let (tx, rx) = mpsc::channel();
        let queue = Arc::new(Queue {
            budget,
            writer: Mutex::new(tx),
            pending: Mutex::new(pending),
            ready: tokio::sync::Notify::new(),
            metrics,
            full_logged_at: AtomicU64::new(0),
            dropped_since_log: AtomicU64::new(0),
            path: path.clone(),
            _lock: lock,
        });
        let weak = Arc::downgrade(&queue);
        std::thread::Builder::new()
            .name("herald-webhooks".into())
            .spawn(move || write_loop(conn, rx, weak))
            .map_err(|e| fail(&e))?;
        Ok((queue, up))
    }

    /// Queues `body` (an event's JSON), with the `up` change it announces. When the queue is
    /// full the event is dropped (counted in `herald_webhook_events_dropped_total`, logged)
    /// but the change is still recorded, so online/offline stay paired.
    pub fn push(&self, body: Option<Vec<u8>>, change: Option<UpChange>) {
        let body = body.filter(|body| {
            if self.budget.reserve(body.len()) {
                true
            } else {
                self.dropped(1);
                false
            }
        });
        if body.is_none() && change.is_none() {
            return;
        }
        let bytes = body.as_ref().map_or(0, Vec::len);
        let counted = body.is_some();
        if lock(&self.writer)
            .send(Command::Append(body.map(Bytes::from), change))
            .is_err()
            && counted
        {
            // The writer thread is gone (it logged why): the event cannot be kept.
            self.budget.release(1, bytes);
            self.dropped(1);
        }
    }

    /// Up to `max` events from the front of the queue, in order (empty when none wait).
    pub fn front(&self, max: usize) -> Vec<Stored> {
        lock(&self.pending).iter().take(max).cloned().collect()
    }

    /// Waits until an event may be waiting.
    pub async fn wait(&self) {
        if !lock(&self.pending).is_empty() {
            return;
        }
        // `notify_one` keeps a permit when nobody waits: a write between the check and
        // here is not missed.
        self.ready.notified().await;
    }

    /// The backend acknowledged the first `n` events: they leave the queue and the file.
    pub fn delivered(&self, n: usize) {
        let mut pending = lock(&self.pending);
        let n = n.min(pending.len());
        let mut bytes = 0;
        let mut last = None;
        for stored in pending.drain(..n) {
            bytes += stored.body.len();
            last = Some(stored.id);
        }
        drop(pending);
        if let Some(last) = last {
            self.budget.release(n, bytes);
            self.metrics.delivered.inc_by(n as u64);
            self.metrics.queued.dec_by(n as i64);
            // A lost delete is repeated by the next one (ids below it go too); at worst the
            // events are delivered again after a restart, which their ids let the backend see.
            let _ = lock(&self.writer).send(Command::Delivered(last));
        }
    }

    /// The queue's metrics.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }

    /// Events waiting (written or on their way).
    pub fn len(&self) -> usize {
        self.budget.events()
    }

    /// Counts `n` dropped events and logs it, at most once a minute.
    fn dropped(&self, n: u64) {
        self.metrics.dropped.inc_by(n);
        let since = self.dropped_since_log.fetch_add(n, Ordering::AcqRel) + n;
        let now = crate::time::unix_now();
        let last = self.full_logged_at.load(Ordering::Acquire);
        if now >= last + 60
            && self
                .full_logged_at
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.dropped_since_log.fetch_sub(since, Ordering::AcqRel);
            tracing::error!(
                dropped = since,
                waiting = self.budget.events(),
                "webhooks: the event queue is full (webhooks.max_queue / max_queue_bytes), \
                 events are being dropped: check that webhooks.endpoint is up and answers 2xx, \
                 or raise the limits"
            );
        }
    }

    /// Writer side: `events` were written with these ids.
    fn written(&self, stored: Vec<Stored>) {
        if stored.is_empty() {
            return;
        }
        self.metrics.queued.inc_by(stored.len() as i64);
        lock(&self.pending).extend(stored);
        self.ready.notify_one();
    }
}

/// Takes the exclusive lock of the queue in `dir`.
fn lock_dir(dir: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(std::io::Error::other(format!(
                "{LOCK_FILE} is locked by another Herald process using this data_dir ({})",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(file)
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// The writer thread: appends and deletes, a batch of commands per transaction, until the
/// queue is dropped.
fn write_loop(mut conn: Connection, rx: mpsc::Receiver<Command>, queue: std::sync::Weak<Queue>) {
    const BATCH: usize = 1024;
    while let Ok(first) = rx.recv() {
        let mut commands = vec![first];
        while commands.len() < BATCH {
            match rx.try_recv() {
                Ok(command) => commands.push(command),
                Err(_) => break,
            }
        }
        let result = write_batch(&mut conn, &commands);
        let Some(queue) = queue.upgrade() else {
            return;
        };
        match result {
            Ok(stored) => queue.written(stored),
            Err(e) => {
                let lost: Vec<usize> = commands
                    .iter()
                    .filter_map(|c| match c {
                        Command::Append(Some(body), _) => Some(body.len()),
                        _ => None,
                    })
                    .collect();
                tracing::error!(
                    "webhooks: cannot write to {}: {e}; {} events lost (check the disk \
                     under data_dir)",
                    queue.path.display(),
                    lost.len()
                );
                queue
                    .budget
                    .release(lost.len(), lost.iter().copied().sum::<usize>());
                queue.dropped(lost.len() as u64);
            }
        }
    }
}

fn write_batch(conn: &mut Connection, commands: &[Command]) -> rusqlite::Result<Vec<Stored>> {
    let tx = conn.transaction()?;
    let mut stored = Vec::new();
    {
        let mut insert = tx.prepare_cached("INSERT INTO events (body) VALUES (?1)")?;
        let mut up = tx.prepare_cached("INSERT OR IGNORE INTO up (kind, key) VALUES (?1, ?2)")?;
        let mut down = tx.prepare_cached("DELETE FROM up WHERE kind = ?1 AND key = ?2")?;
        let mut delete = tx.prepare_cached("DELETE FROM events WHERE id <= ?1")?;
        for command in commands {
            match command {
                Command::Append(body, change) => {
                    if let Some(body) = body {
                        insert.execute(params![&body[..]])?;
                        stored.push(Stored {
                            id: tx.last_insert_rowid(),
                            body: body.clone(),
                        });
                    }
                    if let Some(change) = change {
                        let statement = if change.up { &mut up } else { &mut down };
                        statement.execute(params![change.kind as i64, &*change.key])?;
                    }
                }
                Command::Delivered(id) => {
                    delete.execute(params![id])?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(queue: &Queue, n: usize) -> Vec<Stored> {
        for _ in 0..500 {
            let front = queue.front(100);
            if front.len() >= n {
                return front;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{n} events were not written");
    }

    #[test]
    fn events_survive_a_reopen_until_delivered_and_the_budget_bounds_them() {
        let dir = tempfile::tempdir().unwrap();
        let change = |key: &str, up| UpChange {
            kind: UpKind::User,
            key: key.into(),
            up,
        };
        {
            let (queue, up) =
                Queue::open(dir.path(), Budget::new(3, 1 << 20), QueueMetrics::default()).unwrap();
            assert!(up.is_empty());
            for i in 0..5 {
                queue.push(Some(format!("{{\"n\":{i}}}").into_bytes()), None);
            }
            queue.push(None, Some(change("alice", true)));
            queue.push(None, Some(change("bob", true)));
            queue.push(None, Some(change("bob", false)));
            // Three fit; two were dropped and counted.
            let front = wait_for(&queue, 3);
            assert_eq!(front.len(), 3);
            assert_eq!(queue.metrics().dropped.get(), 2);
            queue.delivered(1);
            assert_eq!(queue.len(), 2);
            let second = Queue::open(dir.path(), Budget::new(3, 1 << 20), QueueMetrics::default());
            let error = second.err().unwrap();
            assert!(error.contains("another Herald process"), "{error}");
        }
        std::thread::sleep(Duration::from_millis(100));
        let (queue, up) =
            Queue::open(dir.path(), Budget::new(3, 1 << 20), QueueMetrics::default()).unwrap();
        let bodies: Vec<_> = queue.front(10).into_iter().map(|s| s.body).collect();
        assert_eq!(bodies, [&b"{\"n\":1}"[..], &b"{\"n\":2}"[..]]);
        assert_eq!(up, [(UpKind::User, "alice".to_owned())]);
    }
}
