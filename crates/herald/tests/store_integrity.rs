//! A damaged history database, through the real server (issue 18, Low-8): an existing but
//! empty (0-byte) database file starts a new history with a loud warning naming the file,
//! and a file with damaged pages is refused at start-up with a message naming it and saying
//! what to do, instead of answering error 100 (or short histories) to clients later.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A config keeping history for namespace `inbox` in `data_dir`.
fn config(data_dir: &Path) -> Value {
    json!({
        "data_dir": data_dir,
        "channel": {"namespaces": [
            {"name": "inbox", "history_size": 10_000, "history_ttl": "1h"}
        ]}
    })
}

/// The log lines at WARN level in `stderr`.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("WARN")).collect()
}

#[tokio::test]
async fn an_empty_database_file_starts_a_new_history_with_a_warning_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("history.db");
    std::fs::write(&db, b"").unwrap();
    let server = Server::start(config(data.path())).await;
    let result = server
        .api_ok("publish", json!({"channel": "inbox:1", "data": {"n": 1}}))
        .await;
    assert_eq!(result["offset"], 1, "{result}");
    let stderr = server.stderr();
    let warning = warnings(&stderr)
        .into_iter()
        .find(|l| l.contains(&db.display().to_string()))
        .unwrap_or_else(|| panic!("no warning naming {}:\n{stderr}", db.display()));
    assert!(warning.contains("empty"), "{warning}");
    assert!(warning.contains("new epoch"), "{warning}");

    // A database that is not empty (the one just written) starts without the warning.
    drop(server);
    let server = Server::start(config(data.path())).await;
    let stderr = server.stderr();
    assert!(
        !stderr.contains("is empty"),
        "warned about a database with data:\n{stderr}"
    );
}

/// Stops `server` with SIGTERM (a clean shutdown, which checkpoints the WAL into the
/// database file) and waits for it to exit.
async fn stop(mut server: Server) {
    // SAFETY: kill(2) on the pid of our own child process.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM");
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.is_some(), "herald did not stop on SIGTERM");
}

/// The page size of the SQLite database `db`, from its header.
fn page_size(db: &Path) -> usize {
    let bytes = std::fs::read(db).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"), "not a database");
    match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        n => usize::from(n),
    }
}

/// Overwrites `count` pages in the middle of the database file with garbage, leaving the
/// header page intact.
fn damage_pages_in_the_middle(db: &Path, count: usize) {
    let page = page_size(db);
    let pages = std::fs::metadata(db).unwrap().len() as usize / page;
    assert!(pages > 4 * count, "only {pages} pages of {page} bytes");
    let first = pages / 2;
    let mut file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.seek(SeekFrom::Start((first * page) as u64)).unwrap();
    let garbage: Vec<u8> = (0..count * page).map(|i| (i * 7 + 13) as u8).collect();
    file.write_all(&garbage).unwrap();
    file.sync_all().unwrap();
}

#[tokio::test]
async fn a_database_with_damaged_pages_refuses_to_start_and_says_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("history.db");
    let server = Server::start(config(data.path())).await;
    let pad = "p".repeat(1000);
    for i in 0..300 {
        server
            .api_ok(
                "publish",
                json!({"channel": format!("inbox:{}", i % 3), "data": {"n": i, "pad": pad}}),
            )
            .await;
    }
    stop(server).await;
    let wal = data.path().join("history.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the WAL was not checkpointed into the database on shutdown"
    );
    damage_pages_in_the_middle(&db, 3);

    let config_path = data.path().join("config.json");
    std::fs::write(&config_path, config(data.path()).to_string()).unwrap();
    let mut child = Command::new(bin())
        .arg("-c")
        .arg(&config_path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "herald kept running on a damaged database; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "exit {status}; stderr:\n{stderr}");
    assert!(!stderr.contains("listening on"), "it listened:\n{stderr}");
    let db = db.display().to_string();
    let line = stderr
        .lines()
        .find(|l| l.contains("damaged"))
        .unwrap_or_else(|| panic!("no message about the damage:\n{stderr}"));
    assert!(line.contains(&db), "the file is not named: {line}");
    assert!(
        line.contains("restore") && line.contains("from a backup"),
        "{line}"
    );
    assert!(line.contains("move it away"), "{line}");
}

/// Damage that appears while the server runs: the publish and the history read that meet
/// it fail with error 100, and each failure is logged at ERROR with SQLite's cause, the
/// file and the channel (before, only the error code reached the client).
#[tokio::test]
async fn reads_and_writes_that_meet_damage_log_the_cause_the_file_and_the_channel() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("history.db");
    let server = Server::start(config(data.path())).await;
    let pad = "p".repeat(1000);
    for i in 0..300 {
        server
            .api_ok(
                "publish",
                json!({"channel": format!("inbox:{}", i % 3), "data": {"n": i, "pad": pad}}),
            )
            .await;
    }
    stop(server).await;
    // Started again, so that nothing of the file is in SQLite's caches; then damaged.
    let server = Server::start(config(data.path())).await;
    {
        // Every page but the first (the header and the schema).
        let bytes = std::fs::metadata(&db).unwrap().len() as usize;
        let page = page_size(&db);
        let mut file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        file.seek(SeekFrom::Start(page as u64)).unwrap();
        file.write_all(&vec![0xA5; bytes - page]).unwrap();
        file.sync_all().unwrap();
    }

    let publish = server
        .api(
            "publish",
            json!({"channel": "inbox:1", "data": {"late": true}}),
        )
        .await
        .json();
    assert_eq!(publish["error"]["code"], 100, "{publish}");
    let history = server
        .api("history", json!({"channel": "inbox:2", "limit": 10}))
        .await
        .json();
    assert_eq!(history["error"]["code"], 100, "{history}");

    // Both log lines may follow the replies they explain.
    server
        .wait_for_stderr(|l| {
            l.contains("ERROR") && l.contains("write failed") && l.contains("inbox:1")
        })
        .await;
    let stderr = server
        .wait_for_stderr(|l| {
            l.contains("ERROR") && l.contains("cannot read") && l.contains("inbox:2")
        })
        .await;
    let file = db.display().to_string();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    let logged = |what: &str, channel: &str| {
        errors
            .iter()
            .find(|l| l.contains(what) && l.contains(channel))
            .unwrap_or_else(|| panic!("no ERROR line with {what:?} and {channel}:\n{stderr}"))
            .to_string()
    };
    for line in [
        logged("write failed", "inbox:1"),
        logged("cannot read", "inbox:2"),
    ] {
        assert!(line.contains(&file), "the file is not named: {line}");
        assert!(line.contains("malformed"), "no SQLite cause: {line}");
        assert!(line.contains("restore"), "no advice: {line}");
    }
}
