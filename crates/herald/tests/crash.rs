//! Crash safety of durable history through the real server: publishers hammer `/api/publish`,
//! the server is killed with SIGKILL mid-stream and restarted on the same `data_dir`, and then
//! every acknowledged publication is in history with the data it was published with, the
//! stream's offsets are exactly 1..=top (no gap, no duplicate), the epoch never changes, and the
//! first publication after the restart gets top + 1. Repeated `HERALD_CRASH_ITERATIONS` times
//! (default 20) on one stream; `HERALD_CRASH_SEED` replays the random timings of a run.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHANNEL: &str = "crash:stream";
/// What one `/api/history` call may return (`client.history_max_publication_limit`).
const PAGE: u64 = 100_000;

fn config(data_dir: &std::path::Path) -> Value {
    json!({
        "data_dir": data_dir,
        "client": {"history_max_publication_limit": PAGE},
        "channel": {"namespaces": [
            {"name": "crash", "history_size": 10_000_000, "history_ttl": "1h"}
        ]}
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// A publication the server acknowledged: its offset and epoch, and what was sent.
#[derive(Debug, Clone)]
struct Ack {
    offset: u64,
    epoch: String,
    data: Value,
}

/// How a publish ended.
enum Outcome {
    /// HTTP 200 with `{"result": {"offset", "epoch"}}`.
    Acked(u64, String),
    /// A complete HTTP answer that is not an acknowledgement (a server bug while it runs).
    Refused(String),
    /// No complete answer: connection refused, reset or cut mid-response (the server died).
    Lost(String),
}

/// An HTTP/1.1 keep-alive client for `/api/publish` (one connection per publisher, so that
/// thousands of publishes do not leave thousands of sockets in TIME_WAIT).
struct Publisher {
    port: u16,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Publisher {
    fn new(port: u16) -> Self {
        Publisher {
            port,
            stream: None,
            buf: Vec::new(),
        }
    }

    async fn publish(&mut self, data: &Value) -> Outcome {
        let body = json!({"channel": CHANNEL, "data": data}).to_string();
        match tokio::time::timeout(STEP, self.exchange(body.as_bytes())).await {
            Err(_) => Outcome::Lost(format!("no answer within {STEP:?}")),
            Ok(Err(e)) => {
                self.stream = None;
                Outcome::Lost(e)
            }
            Ok(Ok((status, body))) => {
                let text = String::from_utf8_lossy(&body).into_owned();
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let result = &value["result"];
                match (status, result["offset"].as_u64(), result["epoch"].as_str()) {
                    (200, Some(offset), Some(epoch)) if offset > 0 && !epoch.is_empty() => {
                        Outcome::Acked(offset, epoch.to_owned())
                    }
                    _ => Outcome::Refused(format!("HTTP {status}: {text}")),
                }
            }
        }
    }

    async fn exchange(&mut self, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", self.port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).ok();
            self.stream = Some(stream);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().unwrap();
        let mut request = format!(
            "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-API-Key: {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        stream
            .write_all(&request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line in {head:?}"))?;
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_ascii_lowercase())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
        let close = header("connection").is_some_and(|v| v == "close");
        let end = head_end + 4 + length;
        while self.buf.len() < end {
            read_more(stream, &mut self.buf).await?;
        }
        let body = self.buf[head_end + 4..end].to_vec();
        self.buf.drain(..end);
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) => Err("connection closed mid-response".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

/// The whole stream, oldest first, read page by page; and its epoch and top offset.
async fn read_history(server: &Server) -> (Vec<(u64, Value)>, String, u64) {
    let first = server
        .api_ok("history", json!({"channel": CHANNEL, "limit": 0}))
        .await;
    let epoch = first["epoch"].as_str().unwrap_or_default().to_owned();
    let top = first["offset"].as_u64().unwrap_or(0);
    let mut publications = Vec::new();
    let mut since = 0;
    while since < top {
        let page = server
            .api_ok(
                "history",
                json!({"channel": CHANNEL, "limit": PAGE,
                       "since": {"offset": since, "epoch": epoch}}),
            )
            .await;
        assert_eq!(page["epoch"], epoch.as_str(), "epoch changed while reading");
        let list = page["publications"].as_array().cloned().unwrap_or_default();
        assert!(
            !list.is_empty(),
            "history after offset {since} is empty though the top is {top}: {page}"
        );
        for p in list {
            let offset = p["offset"].as_u64().expect("publication offset");
            publications.push((offset, p["data"].clone()));
            since = offset;
        }
    }
    (publications, epoch, top)
}

/// Checks the stream against everything acknowledged so far; returns the top offset.
fn check_history(
    iteration: usize,
    history: &(Vec<(u64, Value)>, String, u64),
    acked: &BTreeMap<u64, Ack>,
    epoch: &str,
) -> u64 {
    let (publications, history_epoch, top) = history;
    assert_eq!(
        history_epoch, epoch,
        "iteration {iteration}: the epoch changed across the restart"
    );
    let offsets: Vec<u64> = publications.iter().map(|(o, _)| *o).collect();
    if offsets != (1..=*top).collect::<Vec<u64>>() {
        let gaps: Vec<String> = offsets
            .windows(2)
            .filter(|w| w[1] != w[0] + 1)
            .map(|w| format!("{} -> {}", w[0], w[1]))
            .take(10)
            .collect();
        panic!(
            "iteration {iteration}: history is not exactly 1..={top}: {} publications, first \
             {:?}, last {:?}, breaks (gap or duplicate): {gaps:?}",
            offsets.len(),
            offsets.first(),
            offsets.last()
        );
    }
    let max_acked = acked.keys().next_back().copied().unwrap_or(0);
    assert!(
        max_acked <= *top,
        "iteration {iteration}: offset {max_acked} was acknowledged but the top after the \
         restart is {top}"
    );
    for (offset, ack) in acked {
        let (_, data) = &publications[(*offset - 1) as usize];
        assert_eq!(
            data, &ack.data,
            "iteration {iteration}: acknowledged offset {offset} holds other data"
        );
    }
    *top
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publications_survive_kill_9_with_no_gap_or_duplicate() {
    let iterations = env_u64("HERALD_CRASH_ITERATIONS").unwrap_or(20) as usize;
    let seed = env_u64("HERALD_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("crash test: {iterations} iterations, HERALD_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let data_dir = tempfile::tempdir().unwrap();
    let config = config(data_dir.path());
    let started = Instant::now();

    let mut acked: BTreeMap<u64, Ack> = BTreeMap::new();
    let mut epoch: Option<String> = None;
    let mut top = 0u64;
    let mut server = Server::start(config.clone()).await;
    for iteration in 0..iterations {
        // The first publication of this life of the server (after a restart: top + 1).
        let probe = json!({"probe": iteration});
        let mut publisher = Publisher::new(server.port);
        let (offset, probe_epoch) = match publisher.publish(&probe).await {
            Outcome::Acked(offset, epoch) => (offset, epoch),
            Outcome::Refused(why) | Outcome::Lost(why) => panic!(
                "iteration {iteration}: the first publish failed: {why}; stderr:\n{}",
                server.stderr()
            ),
        };
        let epoch = epoch.get_or_insert_with(|| probe_epoch.clone()).clone();
        assert_eq!(
            (offset, probe_epoch.as_str()),
            (top + 1, epoch.as_str()),
            "iteration {iteration}: the first publish after the restart"
        );
        acked.insert(
            offset,
            Ack {
                offset,
                epoch: probe_epoch,
                data: probe,
            },
        );

        // Publishers as fast as they can, then kill -9 mid-stream.
        let killed = Arc::new(AtomicBool::new(false));
        let publishers = rng.random_range(2..=4);
        let tasks: Vec<_> = (0..publishers)
            .map(|t| {
                let port = server.port;
                let killed = killed.clone();
                tokio::spawn(async move {
                    let mut publisher = Publisher::new(port);
                    let mut acks = Vec::new();
                    let mut n = 0u64;
                    loop {
                        n += 1;
                        let data = json!({"i": iteration, "t": t, "n": n});
                        match publisher.publish(&data).await {
                            Outcome::Acked(offset, epoch) => acks.push(Ack {
                                offset,
                                epoch,
                                data,
                            }),
                            Outcome::Refused(why) => {
                                return Err(format!("publisher {t}: refused: {why}"));
                            }
                            Outcome::Lost(why) => {
                                if killed.load(Ordering::SeqCst) {
                                    return Ok(acks);
                                }
                                return Err(format!("publisher {t}: lost before the kill: {why}"));
                            }
                        }
                    }
                })
            })
            .collect();
        let delay = Duration::from_millis(rng.random_range(50..=300));
        tokio::time::sleep(delay).await;
        killed.store(true, Ordering::SeqCst);
        // SAFETY: kill(2) on the pid of our own child process.
        let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9");
        server
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("herald did not die on SIGKILL");
        let mut this_life = 1;
        for task in tasks {
            let acks = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("a publisher did not stop after the kill")
                .expect("publisher task panicked")
                .unwrap_or_else(|e| {
                    panic!("iteration {iteration}: {e}; stderr:\n{}", server.stderr())
                });
            this_life += acks.len();
            for ack in acks {
                assert_eq!(
                    ack.epoch, epoch,
                    "iteration {iteration}: an ack with another epoch"
                );
                assert!(
                    ack.offset > top,
                    "iteration {iteration}: offset {} acknowledged again (top before: {top})",
                    ack.offset
                );
                if let Some(other) = acked.insert(ack.offset, ack.clone()) {
                    panic!(
                        "iteration {iteration}: offset {} acknowledged twice: {} and {}",
                        ack.offset, other.data, ack.data
                    );
                }
            }
        }

        // Restart on the same data_dir and check the stream.
        server = Server::start(config.clone()).await;
        let history = read_history(&server).await;
        let new_top = check_history(iteration, &history, &acked, &epoch);
        eprintln!(
            "iteration {iteration}: {publishers} publishers, killed after {delay:?}, \
             {this_life} acked, top {top} -> {new_top} ({} unacknowledged but stored)",
            new_top - top - this_life as u64
        );
        top = new_top;
    }

    // One last publish on the last restart continues the stream.
    let mut publisher = Publisher::new(server.port);
    match publisher.publish(&json!({"last": true})).await {
        Outcome::Acked(offset, last_epoch) => {
            assert_eq!(offset, top + 1, "the first publish after the last restart");
            assert_eq!(Some(last_epoch), epoch);
        }
        Outcome::Refused(why) | Outcome::Lost(why) => panic!("last publish: {why}"),
    }
    eprintln!(
        "crash test: {} acknowledged publications over {iterations} kills, top {}, {:?}",
        acked.len() + 1,
        top + 1,
        started.elapsed()
    );
}
