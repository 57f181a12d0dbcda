//! The on-disk format: schema, connections, row encoding, and the reads both the writer and the
//! readers make.
//!
//! ```sql
//! streams(channel PK, epoch, top_offset, meta_expires_at)          -- one row per live stream
//! publications(channel, "offset", data, info, tags, time_ms, expires_at, PK(channel, "offset"))
//! idempotency(channel, key, epoch, "offset", expires_at, PK(channel, key))
//! stream_versions(channel PK, version, version_epoch)  -- a stream's last publish version
//! ```
//!
//! Times are Unix milliseconds; `meta_expires_at` 0 means the meta never expires. `data` is the
//! payload's bytes as accepted (JSON text for JSON payloads, as before payloads were bytes), `info` the publisher's `ClientInfo` as JSON, `tags` a JSON object (NULL
//! when empty), so that the database stays readable with the `sqlite3` shell.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::engine::StoredPublication;
use crate::protocol::{ClientInfo, Payload};

/// Bumped when the schema changes incompatibly.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS streams (
    channel TEXT NOT NULL PRIMARY KEY,
    epoch TEXT NOT NULL,
    top_offset INTEGER NOT NULL,
    meta_expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS streams_meta_expiry ON streams(meta_expires_at)
    WHERE meta_expires_at > 0;
CREATE TABLE IF NOT EXISTS publications (
    channel TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    data BLOB NOT NULL,
    info BLOB,
    tags BLOB,
    time_ms INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (channel, "offset")
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS publications_expiry ON publications(expires_at);
CREATE TABLE IF NOT EXISTS idempotency (
    channel TEXT NOT NULL,
    key TEXT NOT NULL,
    epoch TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (channel, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency(expires_at);
CREATE TABLE IF NOT EXISTS stream_versions (
    channel TEXT NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL,
    version_epoch TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Opens (creating if needed) the database at `path` for writing: WAL mode, schema in place.
///
/// Commits never sync by themselves (`synchronous=NORMAL`): in `fsync` durability the writer's
/// syncer makes the WAL durable before acknowledging, which lets the next group commit proceed
/// while the previous one is being flushed. Automatic checkpoints are off; a checkpointer
/// thread runs them without stalling the writer.
pub(super) fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(format!(
            "cannot switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "cache_size", -32 * 1024)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(open_error(format!(
            "{} has schema version {version}, newer than this Herald ({SCHEMA_VERSION})",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))?;
    Ok(conn)
}

/// Checks the structure of the database (`PRAGMA quick_check`: every page and record is
/// well formed; it reads the whole file once, but does not cross-check indexes against their
/// tables). `Ok(Err(damage))` when it is damaged, with SQLite's first findings.
pub(super) fn quick_check(conn: &Connection) -> rusqlite::Result<Result<(), Damage>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let findings: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(match findings.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        // One line: SQLite's findings have line breaks of their own.
        _ => Err(Damage(findings.join("; ").replace('\n', " "))),
    })
}

/// What `PRAGMA quick_check` found wrong in a database: SQLite's first findings, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct Damage(pub(super) String);

/// Reads the file at `path` through once, front to back, so that [`quick_check`] finds its
/// pages in the OS cache: the check visits pages in tree order, which on a cold cache is
/// random reads (measured on a 939 MB database: 35 s cold, 1.2 s warm, and 6 s to read the
/// file sequentially). Errors are ignored: the check that follows reports what matters.
pub(super) fn read_through(path: &Path) {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return;
    };
    let mut buf = vec![0u8; 1 << 20];
    while matches!(file.read(&mut buf), Ok(n) if n > 0) {}
}

/// Whether `e` says that the database file is damaged or not a database at all.
pub(super) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// What to do about a damaged database file (Herald stopped): what the refusal to start and
/// the log lines of failed reads and writes tell the operator.
pub(super) fn corruption_advice(path: &Path) -> String {
    let path = path.display();
    format!(
        "restore {path} from a backup, or move it away (with {path}-wal and \
         {path}-shm if they exist) to start with an empty history: every channel's stream then \
         starts over with a new epoch and clients cannot recover older positions \
         (`sqlite3 {path} .recover` may salvage what is still readable)"
    )
}

fn open_error(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(message),
    )
}

/// Opens a connection for reads (or checkpoints) on an existing database.
pub(super) fn open_reader(path: &Path, query_only: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -8 * 1024)?;
    if query_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// A stream's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StreamRow {
    pub epoch: String,
    pub top: u64,
    pub meta_expires_at: i64,
}

impl StreamRow {
    /// Whether the meta has expired at `now_ms` (and the stream must be treated as lost).
    pub fn expired(&self, now_ms: i64) -> bool {
        self.meta_expires_at > 0 && self.meta_expires_at <= now_ms
    }
}

/// The stream row of `channel`, if any (expired or not).
pub(super) fn load_stream(conn: &Connection, channel: &str) -> rusqlite::Result<Option<StreamRow>> {
    conn.prepare_cached(
        "SELECT epoch, top_offset, meta_expires_at FROM streams WHERE channel = ?1",
    )?
    .query_row([channel], |r| {
        Ok(StreamRow {
            epoch: r.get(0)?,
            top: r.get::<_, i64>(1)? as u64,
            meta_expires_at: r.get(2)?,
        })
    })
    .optional()
}

/// The `version` and `version_epoch` of the last publication of `channel` that had a version
/// (`(0, "")` when none): what a versioned publish must be newer than.
pub(super) fn load_version(conn: &Connection, channel: &str) -> rusqlite::Result<(u64, String)> {
    Ok(conn
        .prepare_cached("SELECT version, version_epoch FROM stream_versions WHERE channel = ?1")?
        .query_row([channel], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?
        .unwrap_or_default())
}

/// A publication as read from disk, with its expiry (Unix ms).
pub(super) struct Row {
    pub publication: Arc<StoredPublication>,
    pub expires_at: i64,
}

/// Reads publications of `channel` with `lo < offset <= hi` still unexpired at `now_ms`, in
/// offset order (descending when `reverse`), at most `limit` (negative: all).
pub(super) fn load_range(
    conn: &Connection,
    channel: &str,
    lo: u64,
    hi: u64,
    now_ms: i64,
    reverse: bool,
    limit: i64,
) -> rusqlite::Result<Vec<Row>> {
    if hi <= lo || limit == 0 {
        return Ok(Vec::new());
    }
    let sql = if reverse {
        const Q: &str = r#"SELECT "offset", data, info, tags, time_ms, expires_at FROM publications
            WHERE channel = ?1 AND "offset" > ?2 AND "offset" <= ?3 AND expires_at > ?4
            ORDER BY "offset" DESC LIMIT ?5"#;
        Q
    } else {
        const Q: &str = r#"SELECT "offset", data, info, tags, time_ms, expires_at FROM publications
            WHERE channel = ?1 AND "offset" > ?2 AND "offset" <= ?3 AND expires_at > ?4
            ORDER BY "offset" ASC LIMIT ?5"#;
        Q
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(
        params![channel, lo as i64, hi as i64, now_ms, limit],
        decode_publication,
    )?;
    rows.collect()
}

/// Decodes a row of `"offset", data, info, tags, time_ms, expires_at`.
pub(super) fn decode_publication(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let offset = r.get::<_, i64>(0)? as u64;
    let data: Vec<u8> = r.get(1)?;
    // Stored as they were accepted: read back as they are, without parsing them again.
    let data = Payload::from_stored(data);
    let info: Option<Vec<u8>> = r.get(2)?;
    let info = match info {
        Some(bytes) => {
            Some(serde_json::from_slice::<ClientInfo>(&bytes).map_err(|e| conversion_error(2, e))?)
        }
        None => None,
    };
    let tags: Option<Vec<u8>> = r.get(3)?;
    let tags = match tags {
        Some(bytes) => serde_json::from_slice::<BTreeMap<String, String>>(&bytes)
            .map_err(|e| conversion_error(3, e))?,
        None => BTreeMap::new(),
    };
    Ok(Row {
        publication: Arc::new(StoredPublication {
            offset,
            data,
            info,
            tags,
            time_ms: r.get(4)?,
        }),
        expires_at: r.get(5)?,
    })
}

fn conversion_error(
    column: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, Box::new(e))
}

/// Encodes a publisher for the `info` column.
pub(super) fn encode_info(info: &Option<ClientInfo>) -> Option<Vec<u8>> {
    info.as_ref()
        .map(|i| serde_json::to_vec(i).unwrap_or_else(|_| b"{}".to_vec()))
}

/// Encodes tags for the `tags` column.
pub(super) fn encode_tags(tags: &BTreeMap<String, String>) -> Option<Vec<u8>> {
    if tags.is_empty() {
        None
    } else {
        Some(serde_json::to_vec(tags).unwrap_or_else(|_| b"{}".to_vec()))
    }
}
