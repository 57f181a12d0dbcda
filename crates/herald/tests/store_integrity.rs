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

/// Overwrites `count` pages in the middle of the database file with garbage, leaving the
/// header page intact; returns the page size.
fn damage_pages_in_the_middle(db: &Path, count: usize) -> usize {
    let bytes = std::fs::read(db).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"), "not a database");
    let page = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        n => usize::from(n),
    };
    let pages = bytes.len() / page;
    assert!(pages > 4 * count, "only {pages} pages of {page} bytes");
    let first = pages / 2;
    let mut file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.seek(SeekFrom::Start((first * page) as u64)).unwrap();
    let garbage: Vec<u8> = (0..count * page).map(|i| (i * 7 + 13) as u8).collect();
    file.write_all(&garbage).unwrap();
    file.sync_all().unwrap();
    page
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
