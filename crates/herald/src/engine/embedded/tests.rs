use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::{CacheLimits, Shared};
use super::*;
use crate::engine::{AppendRequest, History, HistoryFilter, HistoryOptions, StreamPosition};
use crate::protocol::{ClientInfo, Payload, raw};

pub(crate) fn opts(size: usize) -> HistoryOptions {
    HistoryOptions {
        size,
        ttl: Duration::from_secs(3600),
        meta_ttl: Duration::from_secs(7200),
    }
}

fn config(dir: &Path) -> EmbeddedConfig {
    EmbeddedConfig {
        sweep_interval: Duration::from_millis(100),
        ..EmbeddedConfig::new(dir)
    }
}

fn open(dir: &Path) -> EmbeddedHistory {
    EmbeddedHistory::open(config(dir)).unwrap()
}

fn payload(i: u64) -> Payload {
    raw(format!(r#"{{"n":{i}}}"#)).unwrap()
}

async fn append(h: &EmbeddedHistory, channel: &str, i: u64, o: HistoryOptions) -> AppendResult {
    h.append(AppendRequest::new(channel, payload(i), o))
        .await
        .unwrap()
}

pub(crate) fn offsets(pubs: &[Arc<StoredPublication>]) -> Vec<u64> {
    pubs.iter().map(|p| p.offset).collect()
}

pub(crate) fn all() -> HistoryFilter {
    HistoryFilter::default()
}

pub(crate) fn filter(since: Option<StreamPosition>, limit: i64, reverse: bool) -> HistoryFilter {
    HistoryFilter {
        since,
        limit,
        reverse,
    }
}

/// Rows of `channel` actually on disk.
fn disk_rows(dir: &Path, channel: &str) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap();
    conn.query_row(
        "SELECT count(*) FROM publications WHERE channel = ?1",
        [channel],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn offsets_start_at_one_and_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let epoch;
    {
        let h = open(dir.path());
        for i in 1..=5 {
            let r = append(&h, "a", i, opts(100)).await;
            assert_eq!(r.position.offset, i);
            assert!(!r.duplicate);
            assert_eq!(r.publication.as_ref().unwrap().offset, i);
        }
        epoch = h.top("a", opts(100)).await.unwrap().epoch;
        assert_eq!(epoch.len(), 8);
        // Another channel has its own offsets and epoch.
        let b = append(&h, "b", 1, opts(100)).await;
        assert_eq!(b.position.offset, 1);
        assert_ne!(b.position.epoch, epoch);
    }
    let h = open(dir.path());
    assert_eq!(
        h.top("a", opts(100)).await.unwrap(),
        StreamPosition::new(5, epoch.clone())
    );
    let r = append(&h, "a", 6, opts(100)).await;
    assert_eq!(r.position, StreamPosition::new(6, epoch.clone()));
    let read = h.read("a", all(), opts(100)).await.unwrap();
    assert_eq!(offsets(&read.publications), vec![1, 2, 3, 4, 5, 6]);
    for p in &read.publications {
        assert_eq!(p.data.get(), format!(r#"{{"n":{}}}"#, p.offset));
    }
    assert_eq!(read.position, StreamPosition::new(6, epoch));
}

/// Appends publication `i` with a version; returns (offset, suppressed).
async fn append_versioned(h: &EmbeddedHistory, i: u64, version: u64, epoch: &str) -> (u64, bool) {
    let mut request = AppendRequest::new("v", payload(i), opts(100));
    request.version = version;
    request.version_epoch = epoch.into();
    let r = h.append(request).await.unwrap();
    assert_eq!(r.publication.is_none(), r.suppressed);
    (r.position.offset, r.suppressed)
}

#[tokio::test]
async fn a_stale_version_is_suppressed_without_using_an_offset_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = open(dir.path());
        assert_eq!(append_versioned(&h, 1, 2, "").await, (1, false));
        // Not newer: suppressed, answered with the top.
        assert_eq!(append_versioned(&h, 2, 1, "").await, (1, true));
        assert_eq!(append_versioned(&h, 3, 2, "").await, (1, true));
        assert_eq!(append_versioned(&h, 4, 3, "e1").await, (2, false));
        // The same epoch compares; another epoch starts over.
        assert_eq!(append_versioned(&h, 5, 3, "e1").await, (2, true));
        assert_eq!(append_versioned(&h, 6, 1, "e2").await, (3, false));
    }
    let h = open(dir.path());
    assert_eq!(
        append_versioned(&h, 7, 1, "e2").await,
        (3, true),
        "kept on disk"
    );
    assert_eq!(
        append_versioned(&h, 8, 1, "").await,
        (3, true),
        "empty epoch: any"
    );
    // A publication without version resets it, as in Centrifugo.
    assert_eq!(append_versioned(&h, 9, 0, "").await, (4, false));
    assert_eq!(append_versioned(&h, 10, 1, "e2").await, (5, false));
    let read = h.read("v", all(), opts(100)).await.unwrap();
    let data: Vec<&str> = read.publications.iter().map(|p| p.data.get()).collect();
    assert_eq!(
        data,
        [
            r#"{"n":1}"#,
            r#"{"n":4}"#,
            r#"{"n":6}"#,
            r#"{"n":9}"#,
            r#"{"n":10}"#
        ]
    );
}

#[tokio::test]
async fn top_creates_the_stream_once_and_the_epoch_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first;
    {
        let h = open(dir.path());
        first = h.top("fresh", opts(10)).await.unwrap();
        assert_eq!(first.offset, 0);
        assert!(!first.epoch.is_empty());
        assert_eq!(h.top("fresh", opts(10)).await.unwrap(), first);
        let r = append(&h, "fresh", 1, opts(10)).await;
        assert_eq!(r.position, StreamPosition::new(1, first.epoch.clone()));
    }
    let h = open(dir.path());
    assert_eq!(
        h.top("fresh", opts(10)).await.unwrap(),
        StreamPosition::new(1, first.epoch.clone())
    );
    // A read of a channel that never existed creates it too.
    let r = h.read("never", all(), opts(10)).await.unwrap();
    assert!(r.publications.is_empty());
    assert_eq!(r.position.offset, 0);
    assert_eq!(h.top("never", opts(10)).await.unwrap(), r.position);
}

#[tokio::test]
async fn publication_fields_round_trip_through_disk() {
    let dir = tempfile::tempdir().unwrap();
    let info = ClientInfo {
        user: "u1".into(),
        client: "c1".into(),
        conn_info: Some(raw(r#"{"name":"Ann"}"#).unwrap()),
        chan_info: None,
    };
    let tags: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
    {
        let h = open(dir.path());
        let mut req = AppendRequest::new("f", raw(r#"{"text":"hi"}"#).unwrap(), opts(10));
        req.info = Some(info.clone());
        req.tags = tags.clone();
        let r = h.append(req).await.unwrap();
        let p = r.publication.unwrap();
        assert_eq!(p.tags, tags);
        assert!(p.time_ms > 0);
    }
    let h = open(dir.path());
    let read = h.read("f", all(), opts(10)).await.unwrap();
    let p = &read.publications[0];
    assert_eq!(p.data.get(), r#"{"text":"hi"}"#);
    let i = p.info.as_ref().unwrap();
    assert_eq!((i.user.as_str(), i.client.as_str()), ("u1", "c1"));
    assert_eq!(i.conn_info.as_ref().unwrap().get(), r#"{"name":"Ann"}"#);
    assert_eq!(p.tags, tags);
    let proto = p.to_publication();
    assert_eq!(proto.offset, 1);
    assert_eq!(proto.data.unwrap().get(), r#"{"text":"hi"}"#);
}

/// Data as an earlier Herald wrote it — the JSON text's bytes, in a BLOB — including JSON a
/// parser would rewrite (escapes, big numbers, spaces): read back byte for byte, not parsed.
#[tokio::test]
async fn data_written_by_an_earlier_version_reads_back_byte_for_byte() {
    const ODD: &str = r#"{ "s":"caf\u00e9 \ud83d\ude00 \/", "n":123456789012345678901234567890, "f":[-0.0,1E+300] }"#;
    let dir = tempfile::tempdir().unwrap();
    {
        let h = open(dir.path());
        append(&h, "old", 1, opts(10)).await;
    }
    let conn = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let changed = conn
        .execute(
            "UPDATE publications SET data = ?1 WHERE channel = 'old'",
            [ODD.as_bytes()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let h = open(dir.path());
    let read = h.read("old", all(), opts(10)).await.unwrap();
    assert_eq!(read.publications[0].data.as_bytes(), ODD.as_bytes());
}

#[tokio::test]
async fn size_trims_old_publications() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    for i in 1..=50 {
        append(&h, "s", i, opts(10)).await;
    }
    let read = h.read("s", all(), opts(10)).await.unwrap();
    assert_eq!(offsets(&read.publications), (41..=50).collect::<Vec<_>>());
    // On disk: the newest 10 plus at most the trimming slack.
    let rows = disk_rows(dir.path(), "s");
    assert!(
        (10..=10 + 10 / 4 + 1).contains(&rows),
        "{rows} rows on disk"
    );
    drop(h);
    // From disk too.
    let h = open(dir.path());
    let read = h.read("s", all(), opts(10)).await.unwrap();
    assert_eq!(offsets(&read.publications), (41..=50).collect::<Vec<_>>());
    let epoch = read.position.epoch;
    let r = h
        .recover("s", StreamPosition::new(39, epoch.clone()), 300, opts(10))
        .await
        .unwrap();
    assert!(!r.recovered && r.publications.is_empty());
    let r = h
        .recover("s", StreamPosition::new(40, epoch), 300, opts(10))
        .await
        .unwrap();
    assert!(r.recovered);
    assert_eq!(offsets(&r.publications), (41..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn ttl_expires_publications_and_the_sweep_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let short = HistoryOptions {
        size: 100,
        ttl: Duration::from_millis(300),
        meta_ttl: Duration::from_secs(60),
    };
    for i in 1..=5 {
        append(&h, "t", i, short).await;
    }
    let epoch = h.top("t", short).await.unwrap().epoch;
    tokio::time::sleep(Duration::from_millis(400)).await;
    append(&h, "t", 6, short).await;
    // Expired ones are not returned, even before the sweep.
    let read = h.read("t", all(), short).await.unwrap();
    assert_eq!(offsets(&read.publications), vec![6]);
    // A recovery across expired publications fails, one after them succeeds.
    let r = h
        .recover("t", StreamPosition::new(3, epoch.clone()), 300, short)
        .await
        .unwrap();
    assert!(!r.recovered && r.publications.is_empty());
    let r = h
        .recover("t", StreamPosition::new(5, epoch.clone()), 300, short)
        .await
        .unwrap();
    assert!(r.recovered);
    assert_eq!(offsets(&r.publications), vec![6]);
    h.sweep().await.unwrap();
    assert_eq!(disk_rows(dir.path(), "t"), 1);
    assert!(h.stats().swept_publications >= 5);
    // The stream itself lives on: same epoch, offsets continue.
    let r = append(&h, "t", 7, short).await;
    assert_eq!(r.position, StreamPosition::new(7, epoch));
}

#[tokio::test]
async fn the_background_sweep_runs_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path()); // sweeps every 100 ms
    let short = HistoryOptions {
        size: 100,
        ttl: Duration::from_millis(100),
        meta_ttl: Duration::from_secs(60),
    };
    for i in 1..=20 {
        append(&h, "bg", i, short).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while disk_rows(dir.path(), "bg") > 0 {
        assert!(Instant::now() < deadline, "expired rows were never swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stream_whose_meta_expired_gets_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let short = HistoryOptions {
        size: 100,
        ttl: Duration::from_millis(200),
        meta_ttl: Duration::from_millis(300),
    };
    for i in 1..=3 {
        append(&h, "m", i, short).await;
    }
    let old = h.top("m", short).await.unwrap();
    assert_eq!(old.offset, 3);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Lost: a new life, before and after the sweep removes the old row.
    let new = h.top("m", short).await.unwrap();
    assert_eq!(new.offset, 0);
    assert_ne!(new.epoch, old.epoch);
    let r = h.recover("m", old.clone(), 300, short).await.unwrap();
    assert!(!r.recovered);
    let r = append(&h, "m", 1, short).await;
    assert_eq!(r.position, StreamPosition::new(1, new.epoch.clone()));

    // Expiry through the sweep, with nothing touching the channel.
    for i in 1..=3 {
        append(&h, "m2", i, short).await;
    }
    let old = h.top("m2", short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.sweep().await.unwrap();
    assert!(h.stats().expired_streams >= 1);
    assert_eq!(disk_rows(dir.path(), "m2"), 0);
    let new = h.top("m2", short).await.unwrap();
    assert_eq!(new.offset, 0);
    assert_ne!(new.epoch, old.epoch);
}

#[tokio::test]
async fn a_stream_in_use_does_not_expire() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let short = HistoryOptions {
        size: 100,
        ttl: Duration::from_millis(200),
        meta_ttl: Duration::from_millis(300),
    };
    let epoch = append(&h, "live", 0, short).await.position.epoch;
    // Appends every 50 ms for a second: the meta keeps being extended.
    for i in 1..=20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = append(&h, "live", i, short).await;
        assert_eq!(r.position, StreamPosition::new(i + 1, epoch.clone()));
        assert_eq!(h.top("live", short).await.unwrap().epoch, epoch);
    }
}

/// §6 on one stream (publications 1..=10 in channel `r`), answered from memory (`cached`) or
/// from disk after a reopen — or by another engine (the Redis engine's tests run it too).
pub(crate) async fn check_recovery(h: &dyn History, epoch: &str) {
    let o = opts(100);
    let pos = |offset| StreamPosition::new(offset, epoch);
    // Exactly what was missed, oldest first.
    let r = h.recover("r", pos(3), 300, o).await.unwrap();
    assert!(r.recovered);
    assert_eq!(offsets(&r.publications), (4..=10).collect::<Vec<_>>());
    assert_eq!(r.position, pos(10));
    // Nothing missed.
    let r = h.recover("r", pos(10), 300, o).await.unwrap();
    assert!(r.recovered && r.publications.is_empty());
    // From the very beginning.
    let r = h.recover("r", pos(0), 300, o).await.unwrap();
    assert!(r.recovered);
    assert_eq!(r.publications.len(), 10);
    // Wrong epoch: no partial set.
    let r = h
        .recover("r", StreamPosition::new(3, "other"), 300, o)
        .await
        .unwrap();
    assert!(!r.recovered && r.publications.is_empty());
    assert_eq!(r.position, pos(10));
    // An empty epoch is not checked (Centrifugo).
    let r = h
        .recover("r", StreamPosition::new(8, ""), 300, o)
        .await
        .unwrap();
    assert!(r.recovered);
    assert_eq!(offsets(&r.publications), vec![9, 10]);
    // More missed than the limit.
    let r = h.recover("r", pos(3), 6, o).await.unwrap();
    assert!(!r.recovered && r.publications.is_empty());
    let r = h.recover("r", pos(3), 7, o).await.unwrap();
    assert!(r.recovered);
    // A position ahead of the stream.
    let r = h.recover("r", pos(11), 300, o).await.unwrap();
    assert!(!r.recovered && r.publications.is_empty());
    // Trimmed by a smaller size.
    let r = h.recover("r", pos(3), 300, opts(5)).await.unwrap();
    assert!(!r.recovered);
    let r = h.recover("r", pos(5), 300, opts(5)).await.unwrap();
    assert!(r.recovered);
    assert_eq!(r.publications.len(), 5);
}

#[tokio::test]
async fn recovery_follows_protocol_section_6() {
    let dir = tempfile::tempdir().unwrap();
    let epoch;
    {
        let h = open(dir.path());
        for i in 1..=10 {
            append(&h, "r", i, opts(100)).await;
        }
        epoch = h.top("r", opts(100)).await.unwrap().epoch;
        let before = h.stats();
        check_recovery(&h, &epoch).await;
        let after = h.stats();
        assert_eq!(after.disk_reads, before.disk_reads, "served from memory");
    }
    let h = open(dir.path());
    check_recovery(&h, &epoch).await;
    assert!(h.stats().disk_reads > 0);
    drop(h);
    // After a restart, one recovery from disk warms the cache for the next ones (a reconnect
    // storm reads the disk once).
    let h = open(dir.path());
    let r = h
        .recover("r", StreamPosition::new(2, epoch.clone()), 300, opts(100))
        .await
        .unwrap();
    assert!(r.recovered);
    let reads = h.stats().disk_reads;
    for since in 2..=10 {
        let r = h
            .recover(
                "r",
                StreamPosition::new(since, epoch.clone()),
                300,
                opts(100),
            )
            .await
            .unwrap();
        assert!(r.recovered);
        assert_eq!(r.publications.len() as u64, 10 - since);
    }
    assert_eq!(h.stats().disk_reads, reads);
    // And a full history read caches everything.
    drop(h);
    let h = open(dir.path());
    h.read("r", all(), opts(100)).await.unwrap();
    let reads = h.stats().disk_reads;
    let r = h
        .recover("r", StreamPosition::new(0, epoch.clone()), 300, opts(100))
        .await
        .unwrap();
    assert!(r.recovered);
    assert_eq!(r.publications.len(), 10);
    assert_eq!(h.stats().disk_reads, reads);
}

#[tokio::test]
async fn recovery_across_a_removed_history_fails_but_later_positions_recover() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    for i in 1..=5 {
        append(&h, "x", i, opts(100)).await;
    }
    let epoch = h.top("x", opts(100)).await.unwrap().epoch;
    h.remove("x").await.unwrap();
    assert_eq!(disk_rows(dir.path(), "x"), 0);
    let read = h.read("x", all(), opts(100)).await.unwrap();
    assert!(read.publications.is_empty());
    // Epoch and offset stay (Centrifugo keeps the stream meta on history_remove).
    assert_eq!(read.position, StreamPosition::new(5, epoch.clone()));
    let r = h
        .recover("x", StreamPosition::new(3, epoch.clone()), 300, opts(100))
        .await
        .unwrap();
    assert!(!r.recovered);
    let r = h
        .recover("x", StreamPosition::new(5, epoch.clone()), 300, opts(100))
        .await
        .unwrap();
    assert!(r.recovered);
    let r = append(&h, "x", 6, opts(100)).await;
    assert_eq!(r.position, StreamPosition::new(6, epoch.clone()));
    drop(h);
    let h = open(dir.path());
    let read = h.read("x", all(), opts(100)).await.unwrap();
    assert_eq!(offsets(&read.publications), vec![6]);
    let r = h
        .recover("x", StreamPosition::new(4, epoch.clone()), 300, opts(100))
        .await
        .unwrap();
    assert!(!r.recovered);
    let r = h
        .recover("x", StreamPosition::new(5, epoch), 300, opts(100))
        .await
        .unwrap();
    assert!(r.recovered);
    assert_eq!(offsets(&r.publications), vec![6]);
}

#[tokio::test]
async fn appends_and_a_removal_in_one_commit_leave_the_cache_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    append(&h, "y", 1, opts(100)).await;
    let epoch = h.top("y", opts(100)).await.unwrap().epoch;
    // Sent together: they usually share a transaction.
    let a2 = h.append(AppendRequest::new("y", payload(2), opts(100)));
    let a3 = h.append(AppendRequest::new("y", payload(3), opts(100)));
    let rm = h.remove("y");
    let a4 = h.append(AppendRequest::new("y", payload(4), opts(100)));
    let (r2, r3, rm, r4) = tokio::join!(a2, a3, rm, a4);
    assert_eq!(r2.unwrap().position.offset, 2);
    assert_eq!(r3.unwrap().position.offset, 3);
    rm.unwrap();
    assert_eq!(r4.unwrap().position.offset, 4);
    for _ in 0..2 {
        assert_eq!(
            h.top("y", opts(100)).await.unwrap(),
            StreamPosition::new(4, epoch.clone())
        );
        let read = h.read("y", all(), opts(100)).await.unwrap();
        assert_eq!(offsets(&read.publications), vec![4]);
        let r = h
            .recover("y", StreamPosition::new(1, epoch.clone()), 300, opts(100))
            .await
            .unwrap();
        assert!(!r.recovered);
        let r = h
            .recover("y", StreamPosition::new(3, epoch.clone()), 300, opts(100))
            .await
            .unwrap();
        assert!(r.recovered);
        assert_eq!(offsets(&r.publications), vec![4]);
    }
}

/// Paging over publications 1..=20 of channel `p` (the Redis engine's tests run it too).
pub(crate) async fn check_paging(h: &dyn History) {
    let o = opts(100);
    let epoch = h.top("p", o).await.unwrap().epoch;
    let pos = |offset| Some(StreamPosition::new(offset, epoch.clone()));
    let page = |f| async move { offsets(&h.read("p", f, o).await.unwrap().publications) };
    assert_eq!(page(filter(None, 5, false)).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(page(filter(pos(5), 5, false)).await, vec![6, 7, 8, 9, 10]);
    assert_eq!(page(filter(pos(18), 5, false)).await, vec![19, 20]);
    assert_eq!(page(filter(pos(20), 5, false)).await, Vec::<u64>::new());
    assert_eq!(page(filter(None, 5, true)).await, vec![20, 19, 18, 17, 16]);
    assert_eq!(
        page(filter(pos(16), 5, true)).await,
        vec![15, 14, 13, 12, 11]
    );
    assert_eq!(page(filter(pos(3), 5, true)).await, vec![2, 1]);
    assert_eq!(page(filter(None, -1, false)).await.len(), 20);
    assert_eq!(page(filter(None, -1, true)).await[0], 20);
    // limit 0: the position only.
    let r = h.read("p", filter(None, 0, false), o).await.unwrap();
    assert!(r.publications.is_empty());
    assert_eq!(r.position, StreamPosition::new(20, epoch.clone()));
    // Smaller size: only the newest are visible.
    let r = h.read("p", all(), opts(4)).await.unwrap();
    assert_eq!(offsets(&r.publications), vec![17, 18, 19, 20]);
    // Empty epoch in since is not checked.
    let r = h
        .read("p", filter(Some(StreamPosition::new(18, "")), 10, false), o)
        .await
        .unwrap();
    assert_eq!(offsets(&r.publications), vec![19, 20]);
    // Errors.
    let e = h
        .read(
            "p",
            filter(Some(StreamPosition::new(5, "nope")), 5, false),
            o,
        )
        .await
        .unwrap_err();
    assert_eq!(e, EngineError::UnrecoverablePosition);
    assert_eq!(e.to_protocol().code, 112);
    let e = h.read("p", filter(pos(0), 5, true), o).await.unwrap_err();
    assert_eq!(e.to_protocol().code, 107);
}

#[tokio::test]
async fn history_pages_forward_and_backward() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = open(dir.path());
        for i in 1..=20 {
            append(&h, "p", i, opts(100)).await;
        }
        let before = h.stats().disk_reads;
        check_paging(&h).await;
        assert_eq!(h.stats().disk_reads, before, "served from memory");
    }
    // From disk.
    let h = open(dir.path());
    check_paging(&h).await;
    // With a cache that holds only the newest 3: a mix.
    drop(h);
    let h = EmbeddedHistory::open(EmbeddedConfig {
        cache_per_channel: 3,
        ..config(dir.path())
    })
    .unwrap();
    for i in 21..=25 {
        append(&h, "p2", i, opts(100)).await;
    }
    let before = h.stats().disk_reads;
    let r = h
        .read("p2", filter(None, 3, true), opts(100))
        .await
        .unwrap();
    assert_eq!(offsets(&r.publications), vec![5, 4, 3]);
    assert_eq!(h.stats().disk_reads, before, "newest 3 from memory");
    let r = h
        .read("p2", filter(None, 4, true), opts(100))
        .await
        .unwrap();
    assert_eq!(offsets(&r.publications), vec![5, 4, 3, 2]);
    let r = h.read("p2", all(), opts(100)).await.unwrap();
    assert_eq!(offsets(&r.publications), vec![1, 2, 3, 4, 5]);
    assert_eq!(h.stats().disk_reads, before + 2);
    drop(h);
    let h = open(dir.path());
    check_paging(&h).await;
}

#[tokio::test]
async fn idempotency_key_returns_the_first_result() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = |ch: &str, key: &str, i| {
        let mut r = AppendRequest::new(ch, payload(i), opts(100));
        r.idempotency_key = Some(key.to_string());
        r
    };
    let first;
    {
        let h = open(dir.path());
        first = h.append(keyed("i", "k1", 1)).await.unwrap();
        assert!(!first.duplicate);
        let again = h.append(keyed("i", "k1", 2)).await.unwrap();
        assert!(again.duplicate);
        assert!(again.publication.is_none());
        assert_eq!(again.position, first.position);
        // Another key, another channel: new publications.
        assert_eq!(
            h.append(keyed("i", "k2", 3)).await.unwrap().position.offset,
            2
        );
        assert!(!h.append(keyed("j", "k1", 4)).await.unwrap().duplicate);
        // The same key many times at once (one group commit): appended once.
        let results =
            futures_util::future::join_all((0..20).map(|i| h.append(keyed("i", "k3", i)))).await;
        let fresh: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().unwrap())
            .filter(|r| !r.duplicate)
            .collect();
        assert_eq!(fresh.len(), 1);
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().unwrap().position == fresh[0].position)
        );
        let read = h.read("i", all(), opts(100)).await.unwrap();
        assert_eq!(offsets(&read.publications), vec![1, 2, 3]);
        assert_eq!(h.stats().duplicates, 20);
    }
    // Remembered across a restart.
    let h = open(dir.path());
    let again = h.append(keyed("i", "k1", 9)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.position, first.position);
}

#[tokio::test]
async fn idempotency_keys_expire_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let h = EmbeddedHistory::open(EmbeddedConfig {
        idempotency_window: Duration::from_millis(200),
        ..config(dir.path())
    })
    .unwrap();
    let keyed = || {
        let mut r = AppendRequest::new("w", payload(1), opts(100));
        r.idempotency_key = Some("k".into());
        r
    };
    assert!(!h.append(keyed()).await.unwrap().duplicate);
    assert!(h.append(keyed()).await.unwrap().duplicate);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = h.append(keyed()).await.unwrap();
    assert!(!r.duplicate);
    assert_eq!(r.position.offset, 2);
}

#[tokio::test]
async fn history_must_be_enabled_to_append() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let e = h
        .append(AppendRequest::new(
            "n",
            payload(1),
            HistoryOptions::default(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::BadRequest(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let h = Arc::new(open(dir.path()));
    let before = h.stats().transactions;
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { append(&h, &format!("g{}", i % 10), i, opts(1000)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = h.stats();
    let transactions = stats.transactions - before;
    assert_eq!(stats.appends, 1000);
    assert!(
        transactions < 200,
        "1000 concurrent appends took {transactions} transactions"
    );
    assert!(stats.max_batch > 5);
    assert!(stats.syncs <= transactions + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_gapless_ordered_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let h = Arc::new(open(dir.path()));
    // Tasks 0..5 have a channel each; tasks 5..10 share one.
    let tasks: Vec<_> = (0..10u64)
        .map(|t| {
            let h = h.clone();
            tokio::spawn(async move {
                let channel = if t < 5 {
                    format!("own{t}")
                } else {
                    "shared".to_string()
                };
                let mut got = Vec::with_capacity(1000);
                for i in 0..1000 {
                    let r = append(&h, &channel, t * 10_000 + i, opts(100_000)).await;
                    got.push(r.position.offset);
                }
                (channel, got)
            })
        })
        .collect();
    let mut per_channel: HashMap<String, Vec<u64>> = HashMap::new();
    for t in tasks {
        let (channel, got) = t.await.unwrap();
        // One task's appends are ordered.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        per_channel.entry(channel).or_default().extend(got);
    }
    for (channel, mut got) in per_channel {
        got.sort_unstable();
        let n = got.len() as u64;
        assert_eq!(got, (1..=n).collect::<Vec<_>>(), "channel {channel}");
        let read = h.read(&channel, all(), opts(100_000)).await.unwrap();
        assert_eq!(offsets(&read.publications), (1..=n).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn os_durability_works_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let epoch;
    {
        let h = EmbeddedHistory::open(EmbeddedConfig {
            durability: Durability::Os,
            ..config(dir.path())
        })
        .unwrap();
        for i in 1..=3 {
            assert_eq!(append(&h, "o", i, opts(10)).await.position.offset, i);
        }
        epoch = h.top("o", opts(10)).await.unwrap().epoch;
        assert_eq!(h.stats().syncs, 0);
    }
    let h = open(dir.path());
    assert_eq!(
        h.top("o", opts(10)).await.unwrap(),
        StreamPosition::new(3, epoch)
    );
}

#[tokio::test]
async fn a_data_dir_is_used_by_one_engine_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let h = open(dir.path());
    let e = EmbeddedHistory::open(config(dir.path())).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    drop(h);
    open(dir.path());
}

#[tokio::test]
async fn from_config_uses_data_dir_and_durability() {
    let dir = tempfile::tempdir().unwrap();
    let c = crate::config::Config {
        data_dir: dir.path().join("nested"),
        history: crate::config::HistoryConfig {
            durability: Durability::Os,
        },
        ..Default::default()
    };
    let ec = EmbeddedConfig::from_config(&c);
    assert_eq!(ec.durability, Durability::Os);
    let h = Arc::new(EmbeddedHistory::from_config(&c).unwrap());
    append(&h, "c", 1, opts(5)).await;
    assert!(dir.path().join("nested").join(DATABASE_FILE).exists());
    let ns = crate::config::NamespaceOptions {
        history_size: 10,
        history_ttl: Duration::from_secs(30),
        ..Default::default()
    };
    let o = HistoryOptions::for_namespace(&ns, Duration::from_secs(99));
    assert_eq!(o.meta_ttl, Duration::from_secs(99));
    assert!(o.enabled());
}

#[tokio::test]
async fn the_cache_stays_within_its_budget_and_reads_fall_back_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let h = EmbeddedHistory::open(EmbeddedConfig {
        cache_max_bytes: 64 * 1024,
        cache_max_channels: 50,
        ..config(dir.path())
    })
    .unwrap();
    let big = raw(format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000))).unwrap();
    for c in 0..200 {
        for _ in 0..3 {
            h.append(AppendRequest::new(format!("c{c}"), big.clone(), opts(100)))
                .await
                .unwrap();
        }
    }
    let s = h.stats();
    assert!(s.cache_bytes <= 64 * 1024, "{s:?}");
    assert!(s.cache_channels <= 50, "{s:?}");
    for c in [0, 77, 199] {
        let ch = format!("c{c}");
        let top = h.top(&ch, opts(100)).await.unwrap();
        assert_eq!(top.offset, 3);
        let r = h
            .recover(&ch, StreamPosition::new(0, top.epoch), 300, opts(100))
            .await
            .unwrap();
        assert!(r.recovered);
        assert_eq!(offsets(&r.publications), vec![1, 2, 3]);
    }
}

#[test]
fn pending_offsets_are_hidden_from_readers() {
    let shared = Shared::new(CacheLimits {
        max_bytes: 1 << 20,
        per_channel: 10,
        max_channels: 10,
    });
    shared.add_pending("a", "E", 5, 1);
    shared.add_pending("a", "E", 7, 2); // a second batch before the first is durable
    {
        let shard = shared.shard("a");
        assert_eq!(Shared::visible_top(&shard, "a", "E", 8), 4);
        assert_eq!(Shared::visible_top(&shard, "a", "F", 8), 8);
        assert_eq!(Shared::visible_top(&shard, "b", "E", 8), 8);
    }
    shared.clear_pending("a", 6, 1);
    assert_eq!(Shared::visible_top(&shared.shard("a"), "a", "E", 8), 6);
    shared.clear_pending("a", 8, 2);
    assert_eq!(Shared::visible_top(&shared.shard("a"), "a", "E", 8), 8);
}

// ---- crash safety --------------------------------------------------------------------------

const CRASH_CHILD_ENV: &str = "HERALD_HISTORY_CRASH_CHILD";
const CRASH_ROUND_ENV: &str = "HERALD_HISTORY_CRASH_ROUND";
const CRASH_CHANNELS: u64 = 3;

fn crash_opts() -> HistoryOptions {
    HistoryOptions {
        size: 1_000_000,
        ttl: Duration::from_secs(86_400),
        meta_ttl: Duration::ZERO,
    }
}

/// The child of [`acknowledged_publications_survive_sigkill`]: appends forever, printing
/// every acknowledged publication. A no-op unless started by that test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var(CRASH_ROUND_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let h = Arc::new(EmbeddedHistory::open(EmbeddedConfig::new(dir)).unwrap());
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let h = h.clone();
                tokio::spawn(async move {
                    let channel = format!("crash{}", t % CRASH_CHANNELS);
                    for i in 0.. {
                        let id = format!("{round}-{t}-{i}");
                        let data = raw(format!(r#"{{"id":"{id}"}}"#)).unwrap();
                        let r = h
                            .append(AppendRequest::new(channel.clone(), data, crash_opts()))
                            .await
                            .unwrap();
                        println!(
                            "ACK {channel} {} {} {id}",
                            r.position.offset, r.position.epoch
                        );
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_publications_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // channel -> offset -> id, and channel -> epoch, over all rounds.
    let mut acked: HashMap<String, BTreeMap<u64, String>> = HashMap::new();
    let mut epochs: HashMap<String, String> = HashMap::new();
    let started = Instant::now();
    let rounds = 20;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "engine::embedded::tests::crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CRASH_CHILD_ENV, dir.path())
            .env(CRASH_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Kill after a varying number of acks, mid-stream.
        let kill_after = 40 + (round * 37) % 200;
        let mut seen = 0;
        let mut killed = false;
        let mut last_offsets: HashMap<String, u64> = HashMap::new();
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() != 5 || parts[0] != "ACK" {
                continue; // test harness output, or a line cut by the kill
            }
            let (channel, offset, epoch, id) = (
                parts[1],
                parts[2].parse::<u64>().unwrap(),
                parts[3],
                parts[4],
            );
            if let Some(known) = epochs.get(channel) {
                assert_eq!(known, epoch, "round {round}: epoch of {channel} changed");
            } else {
                epochs.insert(channel.to_string(), epoch.to_string());
            }
            let prev = acked
                .entry(channel.to_string())
                .or_default()
                .insert(offset, id.to_string());
            assert!(
                prev.is_none(),
                "round {round}: offset {offset} of {channel} acked twice"
            );
            *last_offsets.entry(channel.to_string()).or_default() = offset;
            seen += 1;
            if seen >= kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
                // Keep reading: everything printed before the kill was acknowledged.
            }
        }
        child.wait().unwrap();
        assert!(killed, "round {round}: child exited by itself");

        // Every acknowledged publication is there, offsets 1..=top with no gap, same epoch.
        rt.block_on(async {
            let h = EmbeddedHistory::open(EmbeddedConfig::new(dir.path())).unwrap();
            for (channel, offsets_acked) in &acked {
                let r = h.read(channel, all(), crash_opts()).await.unwrap();
                assert_eq!(&r.position.epoch, &epochs[channel], "round {round}");
                let got = offsets(&r.publications);
                let top = r.position.offset;
                assert_eq!(
                    got,
                    (1..=top).collect::<Vec<_>>(),
                    "round {round}: {channel}"
                );
                let ids: HashSet<_> = r.publications.iter().map(|p| p.data.get()).collect();
                assert_eq!(ids.len(), r.publications.len(), "duplicate publication");
                for (offset, id) in offsets_acked {
                    let p = &r.publications[*offset as usize - 1];
                    assert_eq!(p.data.get(), format!(r#"{{"id":"{id}"}}"#), "round {round}");
                }
            }
        });
    }
    let total: usize = acked.values().map(|m| m.len()).sum();
    eprintln!(
        "crash test: {rounds} SIGKILLs, {total} acknowledged publications verified in {:?}",
        started.elapsed()
    );
    assert!(total >= rounds as usize * 40);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "crash test took {:?}",
        started.elapsed()
    );
}

// ---- measurement ----------------------------------------------------------------------------

/// Appends `total` publications from `tasks` concurrent tasks (each awaiting its previous
/// append) over `channels` channels; prints appends/s.
async fn bench_throughput(durability: Durability, tasks: u64, channels: u64, total: u64) {
    let dir = tempfile::tempdir().unwrap();
    let h = Arc::new(
        EmbeddedHistory::open(EmbeddedConfig {
            durability,
            ..EmbeddedConfig::new(dir.path())
        })
        .unwrap(),
    );
    let per_task = total / tasks;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let h = h.clone();
            tokio::spawn(async move {
                let channel = format!("bench:{}", t % channels);
                for i in 0..per_task {
                    let data = raw(format!(
                        r#"{{"text":"a message of about a hundred bytes, task {t}, number {i}","n":{i}}}"#
                    ))
                    .unwrap();
                    h.append(AppendRequest::new(channel.clone(), data, opts(1000)))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let elapsed = started.elapsed();
    let s = h.stats();
    let wal = std::fs::metadata(writer::wal_path(h.path())).map_or(0, |m| m.len());
    let db = std::fs::metadata(h.path()).map_or(0, |m| m.len());
    println!(
        "  wal {} KiB, db {} KiB, {} checkpoints, {} WAL restarts",
        wal / 1024,
        db / 1024,
        s.checkpoints,
        s.wal_restarts
    );
    println!(
        "{durability:?}: {} appends from {tasks} tasks on {channels} channels: {:.0}/s \
         ({} transactions, {} syncs, max batch {})",
        per_task * tasks,
        (per_task * tasks) as f64 / elapsed.as_secs_f64(),
        s.transactions,
        s.syncs,
        s.max_batch
    );
}

/// Ack latency at a steady `rate`/s for `secs` (open loop: rate/1000 appends every ms, over
/// 10 channels); prints percentiles.
async fn bench_latency(durability: Durability, rate: u64, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let h = Arc::new(
        EmbeddedHistory::open(EmbeddedConfig {
            durability,
            ..EmbeddedConfig::new(dir.path())
        })
        .unwrap(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_ms = rate / 1000;
    for ms in 0..secs * 1000 {
        tick.tick().await;
        for k in 0..per_ms {
            let h = h.clone();
            let tx = tx.clone();
            let sent = Instant::now();
            let req = AppendRequest::new(
                format!("lat:{}", k % 10),
                payload(ms * per_ms + k),
                opts(1000),
            );
            tokio::spawn(async move {
                h.append(req).await.unwrap();
                let _ = tx.send(sent.elapsed());
            });
        }
    }
    drop(tx);
    let mut lat = Vec::new();
    while let Some(d) = rx.recv().await {
        lat.push(d);
    }
    lat.sort();
    let q = |f: f64| lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)];
    let s = h.stats();
    println!(
        "{durability:?}: ack latency at {rate}/s over {} appends: p50 {:?} p90 {:?} p99 {:?} \
         p99.9 {:?} max {:?} ({} transactions, {} syncs)",
        lat.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        lat[lat.len() - 1],
        s.transactions,
        s.syncs
    );
}

/// `cargo test -p herald --release --lib engine::embedded::tests::bench -- --ignored --nocapture`
///
/// Two worker threads, like the 2-core target. `HERALD_BENCH=fsync` or `=os` runs one
/// durability only; `HERALD_BENCH_LATENCY_ONLY=1` skips the throughput runs. Prints, per
/// durability: appends/s for 100k appends from 64 tasks on 64 channels, 64 tasks on one
/// channel, 1024 tasks on 64 channels; then ack latency percentiles at 10,000 appends/s.
#[test]
#[ignore]
fn bench() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("HERALD_BENCH").unwrap_or_default();
    rt.block_on(async {
        for durability in [Durability::Fsync, Durability::Os] {
            if !only.is_empty() && !format!("{durability:?}").eq_ignore_ascii_case(&only) {
                continue;
            }
            let lat_only = std::env::var_os("HERALD_BENCH_LATENCY_ONLY").is_some();
            for (tasks, channels) in [(64u64, 64u64), (64, 1), (1024, 64)] {
                if lat_only {
                    break;
                }
                bench_throughput(durability, tasks, channels, 100_000).await;
            }
            bench_latency(durability, 10_000, 3).await;
        }
    });
}

/// Log lines emitted on this thread while `f` runs (a `tracing` subscriber of its own, so
/// that tests running in parallel do not see each other's).
async fn logs_during<F: std::future::Future>(f: F) -> (String, F::Output) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            crate::sync::lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let output = {
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await
    };
    let text = String::from_utf8_lossy(&crate::sync::lock(&buffer.0)).into_owned();
    (text, output)
}

/// Overwrites every page of the database but the first (the header and the schema) with
/// garbage.
fn corrupt_all_but_the_first_page(db: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let bytes = std::fs::read(db).unwrap();
    let page = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        n => usize::from(n),
    };
    assert!(bytes.len() > 3 * page, "only {} bytes", bytes.len());
    let mut file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.seek(SeekFrom::Start(page as u64)).unwrap();
    file.write_all(&vec![0xA5; bytes.len() - page]).unwrap();
    file.sync_all().unwrap();
}

/// A read that fails on a damaged page logs SQLite's cause with the file and the channel
/// (the client only gets error 100), and says what to do.
#[tokio::test]
async fn a_failed_read_logs_the_cause_the_file_and_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = open(dir.path());
        for i in 0..40 {
            let data = raw(format!(r#"{{"n":{i},"pad":"{}"}}"#, "p".repeat(1000))).unwrap();
            h.append(AppendRequest::new("room:1", data, opts(100)))
                .await
                .unwrap();
        }
    }
    // Opened on a sound file (the integrity check passes), damaged under it afterwards.
    let h = open(dir.path());
    let db = dir.path().join(DATABASE_FILE);
    corrupt_all_but_the_first_page(&db);
    let (logs, read) = logs_during(h.read("room:1", all(), opts(100))).await;
    let error = read.expect_err("a read of damaged pages succeeded");
    assert!(matches!(error, EngineError::Unavailable(_)), "{error:?}");
    let line = logs
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("cannot read"))
        .unwrap_or_else(|| panic!("no error logged: {logs:?}"));
    assert!(line.contains("room:1"), "no channel in {line}");
    assert!(
        line.contains(&db.display().to_string()),
        "no file in {line}"
    );
    assert!(line.contains("malformed"), "no SQLite cause in {line}");
    assert!(line.contains("restore"), "no advice in {line}");
}

/// A database damaged while closed is refused at open, with its name and what to do.
#[test]
fn a_damaged_database_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let h = open(dir.path());
        for i in 0..40 {
            let data = raw(format!(r#"{{"n":{i},"pad":"{}"}}"#, "p".repeat(1000))).unwrap();
            h.append(AppendRequest::new("room:1", data, opts(100)))
                .await
                .unwrap();
        }
    });
    let db = dir.path().join(DATABASE_FILE);
    corrupt_all_but_the_first_page(&db);
    let error = EmbeddedHistory::open(config(dir.path())).expect_err("opened a damaged database");
    let message = error.to_string();
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(message.contains("damaged"), "{message}");
    assert!(
        message.contains("restore") && message.contains("move it away"),
        "{message}"
    );
}
