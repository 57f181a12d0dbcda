//! The `recover` scenario: K clients subscribe to a channel that keeps history (remembering the
//! epoch and offset of the subscribe reply), all disconnect, M publications are made through
//! the HTTP API while they are away, then all reconnect at the same moment and subscribe with
//! `recover: true` from their position. Measured: per client, the time from the reconnect
//! signal to the recovered subscribe reply, and the time until every client has recovered;
//! checked: each reply says `recovered: true` and carries exactly the M missed publications,
//! with consecutive offsets right after the client's position and the same epoch.
//!
//! The clients live in worker processes (like `fanout`). Each worker keeps its clients'
//! positions itself; the parent drives the phases with command lines on the workers' stdin:
//! `disconnect`, then `reconnect <go_ns> <expected>` (`go_ns` is the parent's
//! `CLOCK_MONOTONIC` time when it gave the signal, shared by all processes of the machine),
//! then `stop`.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::IpAddr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::RecoverArgs;
use crate::proto::{self, Line};
use crate::publisher::{Api, HttpPublisher};
use crate::report::{self, r3};
use crate::scenario::{self, Started};
use crate::stats::{self, Tally};
use crate::sys::{self, now_ns};
use crate::worker::{self, Auth, Progress, WorkerMsg, WorkerSpec, wait_reply, wait_reply_raw};
use crate::ws::{Message, Target, WsClient};

/// What a worker needs to know besides its [`WorkerSpec`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecoverSpec {
    /// Clients of this worker reconnecting at once; 0 = all at the same moment.
    pub reconnect_concurrency: usize,
    /// Deadline of one client's reconnect + recovering subscribe.
    pub recover_timeout_ms: u64,
}

/// A worker's `recover` counters.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecoverProgress {
    /// Clients connected and subscribed (position known).
    pub subscribed: u64,
    /// Clients whose first connect + subscribe failed.
    pub setup_failed: u64,
    /// Subscribed clients whose socket is closed (by the bench, or earlier by the server).
    pub disconnected: u64,
    /// Subscribed clients whose connection ended before the bench closed it.
    pub lost: u64,
    /// Clients that reconnected and recovered exactly the missed publications.
    pub recovered: u64,
    /// Clients whose reconnect or recovery failed (or recovered the wrong publications).
    pub recover_failed: u64,
}

impl RecoverProgress {
    /// Adds another worker's counters.
    pub fn add(&mut self, o: &RecoverProgress) {
        self.subscribed += o.subscribed;
        self.setup_failed += o.setup_failed;
        self.disconnected += o.disconnected;
        self.lost += o.lost;
        self.recovered += o.recovered;
        self.recover_failed += o.recover_failed;
    }
}

/// A worker's final `recover` report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecoverResult {
    /// Final counters.
    pub progress: RecoverProgress,
    /// Monotonic ns when the first client started reconnecting (`u64::MAX` if none did).
    pub first_start_ns: u64,
    /// Monotonic ns of the last recovered reply (0 if none).
    pub last_done_ns: u64,
    /// First connect + subscribe, µs histogram (encoded).
    pub setup: String,
    /// Reconnect signal → recovered reply.
    pub recover: String,
    /// The client's own reconnect start → recovered reply.
    pub own: String,
    /// Recovering `subscribe` command round trip.
    pub subscribe: String,
    /// Publications received in recovered replies.
    pub publications: u64,
    /// First set-up failures by reason.
    pub errors: BTreeMap<String, u64>,
    /// Reconnect / recovery failures by reason.
    pub recover_errors: BTreeMap<String, u64>,
    /// Why connections ended before the bench closed them.
    pub closes: BTreeMap<String, u64>,
    /// Worker RSS at the end, KiB.
    pub rss_kib: u64,
}

/// A stream position from a subscribe reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Stream epoch.
    pub epoch: String,
    /// Offset of the last publication in the stream (0 = none yet).
    pub offset: u64,
}

#[derive(Deserialize)]
struct ReplyLine {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    subscribe: Option<SubscribeResult>,
}

#[derive(Deserialize, Default)]
struct SubscribeResult {
    #[serde(default)]
    recoverable: bool,
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    publications: Vec<PublicationOffset>,
    #[serde(default)]
    recovered: bool,
    #[serde(default)]
    was_recovering: bool,
}

/// A publication of a recovered reply; everything but the offset is skipped.
#[derive(Deserialize)]
struct PublicationOffset {
    #[serde(default)]
    offset: u64,
}

fn subscribe_result(raw: &[u8]) -> Result<SubscribeResult, String> {
    let reply: ReplyLine =
        serde_json::from_slice(raw).map_err(|e| format!("unreadable subscribe reply: {e}"))?;
    if let Some(e) = reply.error {
        return Err(format!("subscribe error {e}"));
    }
    reply
        .subscribe
        .ok_or_else(|| "reply without a subscribe result".to_string())
}

/// The position in the first subscribe reply; an error when the channel is not recoverable.
pub fn parse_position(raw: &[u8]) -> Result<Position, String> {
    let r = subscribe_result(raw)?;
    if !r.recoverable || r.epoch.is_empty() {
        return Err(
            "the subscribe reply has no recoverable position (epoch): use a channel in \
                    a namespace with history_size, history_ttl and force_recovery"
                .into(),
        );
    }
    Ok(Position {
        epoch: r.epoch,
        offset: r.offset,
    })
}

/// Checks a recovering subscribe reply against the position the client had and the number of
/// publications made since; returns the number of publications it carried.
pub fn check_recovery(raw: &[u8], from: &Position, expected: u64) -> Result<u64, String> {
    let r = subscribe_result(raw)?;
    if !r.recovered {
        return Err(format!(
            "not recovered (recovered: false, was_recovering: {})",
            r.was_recovering
        ));
    }
    if r.epoch != from.epoch {
        return Err("recovered into another epoch".into());
    }
    let n = r.publications.len() as u64;
    if n != expected {
        return Err(format!("recovered {n} publications, expected {expected}"));
    }
    if let Some(i) = r
        .publications
        .iter()
        .enumerate()
        .position(|(i, p)| p.offset != from.offset + 1 + i as u64)
    {
        return Err(format!(
            "publication {i} has offset {}, expected {} (offsets must follow the position)",
            r.publications[i].offset,
            from.offset + 1 + i as u64
        ));
    }
    if r.offset != from.offset + n {
        return Err(format!(
            "stream top {} after recovery, expected {}",
            r.offset,
            from.offset + n
        ));
    }
    Ok(n)
}

/// A command line from the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Close every subscribed client's socket.
    Disconnect,
    /// Reconnect everyone now.
    Reconnect {
        /// The parent's monotonic ns when it gave the signal.
        go_ns: u64,
        /// Publications each client must recover.
        expected: u64,
    },
    /// Report and exit.
    Stop,
}

/// Parses a command line (`disconnect`, `reconnect <go_ns> <expected>`, `stop`).
pub fn parse_command(line: &str) -> Option<Command> {
    let mut it = line.split_whitespace();
    let cmd = match it.next()? {
        "disconnect" => Command::Disconnect,
        "reconnect" => Command::Reconnect {
            go_ns: it.next()?.parse().ok()?,
            expected: it.next()?.parse().ok()?,
        },
        "stop" => Command::Stop,
        _ => return None,
    };
    it.next().is_none().then_some(cmd)
}

/// The line for [`Command::Reconnect`].
pub fn reconnect_line(go_ns: u64, expected: u64) -> String {
    format!("reconnect {go_ns} {expected}")
}

/// Where the clients are in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Hold,
    Disconnect,
    Reconnect { go_ns: u64, expected: u64 },
}

struct Hists {
    setup: Histogram<u64>,
    recover: Histogram<u64>,
    own: Histogram<u64>,
    subscribe: Histogram<u64>,
}

struct Shared {
    subscribed: AtomicU64,
    setup_failed: AtomicU64,
    setup_done: AtomicU64,
    disconnected: AtomicU64,
    lost: AtomicU64,
    recovered: AtomicU64,
    recover_failed: AtomicU64,
    publications: AtomicU64,
    first_start_ns: AtomicU64,
    last_done_ns: AtomicU64,
    hists: Mutex<Hists>,
    errors: Tally,
    recover_errors: Tally,
    closes: Tally,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            subscribed: AtomicU64::new(0),
            setup_failed: AtomicU64::new(0),
            setup_done: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
            recover_failed: AtomicU64::new(0),
            publications: AtomicU64::new(0),
            first_start_ns: AtomicU64::new(u64::MAX),
            last_done_ns: AtomicU64::new(0),
            hists: Mutex::new(Hists {
                setup: stats::new_hist(),
                recover: stats::new_hist(),
                own: stats::new_hist(),
                subscribe: stats::new_hist(),
            }),
            errors: Tally::default(),
            recover_errors: Tally::default(),
            closes: Tally::default(),
        }
    }

    fn hists<R>(&self, f: impl FnOnce(&mut Hists) -> R) -> R {
        f(&mut self.hists.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn progress(&self) -> RecoverProgress {
        let l = |a: &AtomicU64| a.load(Relaxed);
        RecoverProgress {
            subscribed: l(&self.subscribed),
            setup_failed: l(&self.setup_failed),
            disconnected: l(&self.disconnected),
            lost: l(&self.lost),
            recovered: l(&self.recovered),
            recover_failed: l(&self.recover_failed),
        }
    }
}

/// Entry point of a `recover` worker (called by the hidden `worker` subcommand).
pub async fn worker(spec: WorkerSpec, rs: RecoverSpec) {
    let target = match Target::parse(&spec.url) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            worker::emit(&WorkerMsg::Fatal { error: e });
            return;
        }
    };
    let spec = Arc::new(spec);
    let rs = Arc::new(rs);
    let shared = Arc::new(Shared::new());
    let sem = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let reconnect_sem =
        (rs.reconnect_concurrency > 0).then(|| Arc::new(Semaphore::new(rs.reconnect_concurrency)));
    let (phase_tx, phase_rx) = watch::channel(Phase::Hold);

    // Commands on stdin (the spec line was read before).
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Command>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref().map(parse_command) {
                Ok(Some(Command::Stop)) | Err(_) => break,
                Ok(Some(c)) => {
                    let _ = cmd_tx.send(c);
                }
                Ok(None) => {}
            }
        }
        let _ = cmd_tx.send(Command::Stop);
    });

    for i in 0..spec.count {
        tokio::spawn(client(
            spec.first + i,
            spec.clone(),
            rs.clone(),
            target.clone(),
            shared.clone(),
            sem.clone(),
            reconnect_sem.clone(),
            phase_rx.clone(),
        ));
    }
    drop(phase_rx);

    let mut tick = tokio::time::interval(Duration::from_millis(spec.report_ms.max(50)));
    let deadline = tokio::time::sleep(Duration::from_secs(spec.max_lifetime_s));
    tokio::pin!(deadline);
    let mut ready_sent = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let done = shared.setup_done.load(Acquire);
                let r = shared.progress();
                // The generic progress drives the parent's set-up phase.
                let p = Progress { connected: r.subscribed, failed: r.setup_failed, closed: 0, received: 0, receiving: 0 };
                worker::emit(&WorkerMsg::Progress(p));
                worker::emit(&WorkerMsg::Recover(r));
                if !ready_sent && done >= spec.count as u64 {
                    ready_sent = true;
                    worker::emit(&WorkerMsg::Ready(p));
                }
            }
            cmd = cmd_rx.recv() => match cmd {
                Some(Command::Disconnect) => {
                    phase_tx.send_replace(Phase::Disconnect);
                }
                Some(Command::Reconnect { go_ns, expected }) => {
                    phase_tx.send_replace(Phase::Reconnect { go_ns, expected });
                }
                Some(Command::Stop) | None => break,
            },
            _ = &mut deadline => break,
        }
    }
    let (setup, recover, own, subscribe) = shared.hists(|h| {
        (
            stats::encode(&h.setup),
            stats::encode(&h.recover),
            stats::encode(&h.own),
            stats::encode(&h.subscribe),
        )
    });
    let result = RecoverResult {
        progress: shared.progress(),
        first_start_ns: shared.first_start_ns.load(Relaxed),
        last_done_ns: shared.last_done_ns.load(Relaxed),
        setup,
        recover,
        own,
        subscribe,
        publications: shared.publications.load(Relaxed),
        errors: shared.errors.get(),
        recover_errors: shared.recover_errors.get(),
        closes: shared.closes.get(),
        rss_kib: sys::rss_kib(std::process::id()).unwrap_or(0),
    };
    worker::emit(&WorkerMsg::RecoverDone(Box::new(result)));
}

/// `{"id":1,"connect":{…}}` for client `g`.
fn connect_command(auth: &Auth, g: usize) -> Vec<u8> {
    let cmd = match auth.token_for(g) {
        Some(t) => serde_json::json!({"id": 1, "connect": {"token": t, "name": "herald-bench"}}),
        None => serde_json::json!({"id": 1, "connect": {"name": "herald-bench"}}),
    };
    cmd.to_string().into_bytes()
}

/// `{"id":2,"subscribe":{"channel":…,"recover":true,"offset":…,"epoch":…}}`.
pub fn recover_command(channel: &str, pos: &Position) -> Vec<u8> {
    serde_json::json!({"id": 2, "subscribe": {
        "channel": channel, "recover": true, "offset": pos.offset, "epoch": pos.epoch,
    }})
    .to_string()
    .into_bytes()
}

fn seed(g: usize) -> u64 {
    (g as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now_ns()
}

/// One client's whole life: subscribe, hold, disconnect, reconnect and recover, hold.
#[allow(clippy::too_many_arguments)]
async fn client(
    g: usize,
    spec: Arc<WorkerSpec>,
    rs: Arc<RecoverSpec>,
    target: Arc<Target>,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    reconnect_sem: Option<Arc<Semaphore>>,
    mut phase: watch::Receiver<Phase>,
) {
    let source = (!spec.sources.is_empty()).then(|| spec.sources[g % spec.sources.len()]);
    let connect_cmd = connect_command(&spec.auth, g);

    // 1. Connect and subscribe; remember the position.
    let permit = sem.acquire().await;
    let t0 = now_ns();
    let res = match tokio::time::timeout(
        Duration::from_millis(spec.connect_timeout_ms),
        first_subscribe(g, &spec, &target, source, &connect_cmd),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err("timeout (--connect-timeout)".to_string()),
    };
    drop(permit);
    let (mut ws, pos) = match res {
        Ok(v) => {
            let t = now_ns() - t0;
            shared.hists(|h| stats::record_ns(&mut h.setup, t));
            shared.subscribed.fetch_add(1, Relaxed);
            shared.setup_done.fetch_add(1, Release);
            v
        }
        Err(e) => {
            shared.setup_failed.fetch_add(1, Relaxed);
            shared.setup_done.fetch_add(1, Release);
            shared.errors.add(e);
            return;
        }
    };

    // 2. Hold the connection until told to disconnect, then close the socket.
    if let Err(why) = hold(&mut ws, &mut phase).await {
        shared.lost.fetch_add(1, Relaxed);
        shared.closes.add(why);
    }
    drop(ws);
    shared.disconnected.fetch_add(1, Relaxed);

    // 3. Wait for the signal, reconnect and recover.
    let sub_cmd = recover_command(&spec.channel, &pos);
    let (go_ns, expected) = {
        let Ok(p) = phase
            .wait_for(|p| matches!(p, Phase::Reconnect { .. }))
            .await
        else {
            return;
        };
        match *p {
            Phase::Reconnect { go_ns, expected } => (go_ns, expected),
            _ => return,
        }
    };
    let permit = match &reconnect_sem {
        Some(s) => s.acquire().await.ok(),
        None => None,
    };
    let start = now_ns();
    shared.first_start_ns.fetch_min(start, Ordering::Relaxed);
    let res = match tokio::time::timeout(
        Duration::from_millis(rs.recover_timeout_ms),
        reconnect(
            &target,
            source,
            spec.read_buf,
            seed(g),
            &connect_cmd,
            &sub_cmd,
        ),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err("timeout (--recover-timeout)".to_string()),
    };
    drop(permit);
    let ws = match res.and_then(|(ws, raw, sent, at)| {
        check_recovery(&raw, &pos, expected).map(|n| (ws, n, sent, at))
    }) {
        Ok((ws, n, sent, at)) => {
            shared.hists(|h| {
                stats::record_ns(&mut h.recover, at.saturating_sub(go_ns));
                stats::record_ns(&mut h.own, at.saturating_sub(start));
                stats::record_ns(&mut h.subscribe, at.saturating_sub(sent));
            });
            shared.last_done_ns.fetch_max(at, Relaxed);
            shared.publications.fetch_add(n, Relaxed);
            shared.recovered.fetch_add(1, Relaxed);
            ws
        }
        Err(e) => {
            shared.recover_failed.fetch_add(1, Relaxed);
            shared.recover_errors.add(e);
            return;
        }
    };

    // 4. Stay connected (answering pings) until the worker exits.
    let mut ws = ws;
    while read_pings(&mut ws).await.is_ok() {}
}

async fn first_subscribe(
    g: usize,
    spec: &WorkerSpec,
    target: &Target,
    source: Option<IpAddr>,
    connect_cmd: &[u8],
) -> Result<(WsClient, Position), String> {
    let mut ws = WsClient::connect(target, source, spec.read_buf, seed(g))
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    ws.send_text(connect_cmd)
        .await
        .map_err(|e| format!("send connect: {e}"))?;
    wait_reply(&mut ws, 1)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let sub = serde_json::json!({"id": 2, "subscribe": {"channel": spec.channel}}).to_string();
    ws.send_text(sub.as_bytes())
        .await
        .map_err(|e| format!("send subscribe: {e}"))?;
    let (raw, _) = wait_reply_raw(&mut ws, 2)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let pos = parse_position(&raw)?;
    Ok((ws, pos))
}

/// Connects, authenticates and sends the recovering subscribe: (connection, reply line,
/// subscribe send time, reply receive time).
async fn reconnect(
    target: &Target,
    source: Option<IpAddr>,
    read_buf: usize,
    seed: u64,
    connect_cmd: &[u8],
    sub_cmd: &[u8],
) -> Result<(WsClient, Vec<u8>, u64, u64), String> {
    let mut ws = WsClient::connect(target, source, read_buf, seed)
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    ws.send_text(connect_cmd)
        .await
        .map_err(|e| format!("send connect: {e}"))?;
    wait_reply(&mut ws, 1)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let sent = now_ns();
    ws.send_text(sub_cmd)
        .await
        .map_err(|e| format!("send subscribe: {e}"))?;
    let (raw, at) = wait_reply_raw(&mut ws, 2)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    Ok((ws, raw, sent, at))
}

/// Reads one message and answers the pings in it; `Err` with the reason when the connection
/// ended.
async fn read_pings(ws: &mut WsClient) -> Result<(), String> {
    let pings = match ws.read_message().await.map_err(|e| format!("error: {e}"))? {
        Message::Text(p, _) => proto::lines(p)
            .filter(|l| proto::classify(l) == Line::Ping)
            .count(),
        Message::Close(code, reason) => return Err(format!("closed {code} {reason}")),
    };
    for _ in 0..pings {
        ws.send_text(b"{}")
            .await
            .map_err(|e| format!("error answering ping: {e}"))?;
    }
    Ok(())
}

/// Keeps the connection (answering pings) until the phase leaves `Hold`; `Err` with the reason
/// when the connection ended first.
async fn hold(ws: &mut WsClient, phase: &mut watch::Receiver<Phase>) -> Result<(), String> {
    loop {
        let r = tokio::select! {
            _ = phase.wait_for(|p| *p != Phase::Hold) => return Ok(()),
            r = read_pings(ws) => r,
        };
        if let Err(why) = r {
            let _ = phase.wait_for(|p| *p != Phase::Hold).await;
            return Err(why);
        }
    }
}

/// The workers' results merged.
pub struct Merged {
    /// Summed counters.
    pub progress: RecoverProgress,
    /// First connect + subscribe latency.
    pub setup: Histogram<u64>,
    /// Reconnect signal → recovered reply.
    pub recover: Histogram<u64>,
    /// Own reconnect start → recovered reply.
    pub own: Histogram<u64>,
    /// Recovering subscribe round trip.
    pub subscribe: Histogram<u64>,
    /// Earliest reconnect start (`u64::MAX` if none).
    pub first_start_ns: u64,
    /// Latest recovered reply (0 if none).
    pub last_done_ns: u64,
    /// Publications received in recovered replies.
    pub publications: u64,
    /// Set-up failures.
    pub errors: BTreeMap<String, u64>,
    /// Recovery failures.
    pub recover_errors: BTreeMap<String, u64>,
    /// Early connection ends.
    pub closes: BTreeMap<String, u64>,
    /// Summed worker RSS.
    pub rss_kib: u64,
}

/// Merges the workers' results.
pub fn merge(results: &[RecoverResult]) -> Result<Merged, String> {
    let mut m = Merged {
        progress: RecoverProgress::default(),
        setup: stats::new_hist(),
        recover: stats::new_hist(),
        own: stats::new_hist(),
        subscribe: stats::new_hist(),
        first_start_ns: u64::MAX,
        last_done_ns: 0,
        publications: 0,
        errors: BTreeMap::new(),
        recover_errors: BTreeMap::new(),
        closes: BTreeMap::new(),
        rss_kib: 0,
    };
    for r in results {
        m.progress.add(&r.progress);
        stats::merge(&mut m.setup, &stats::decode(&r.setup)?);
        stats::merge(&mut m.recover, &stats::decode(&r.recover)?);
        stats::merge(&mut m.own, &stats::decode(&r.own)?);
        stats::merge(&mut m.subscribe, &stats::decode(&r.subscribe)?);
        m.first_start_ns = m.first_start_ns.min(r.first_start_ns);
        m.last_done_ns = m.last_done_ns.max(r.last_done_ns);
        m.publications += r.publications;
        stats::add_tallies(&mut m.errors, &r.errors);
        stats::add_tallies(&mut m.recover_errors, &r.recover_errors);
        stats::add_tallies(&mut m.closes, &r.closes);
        m.rss_kib += r.rss_kib;
    }
    Ok(m)
}

/// Seconds from the reconnect signal to the last recovered reply, if any client recovered.
pub fn total_secs(go_ns: u64, last_done_ns: u64) -> Option<f64> {
    (last_done_ns > 0).then(|| last_done_ns.saturating_sub(go_ns) as f64 / 1e9)
}

/// The `recover` scenario (parent side).
pub async fn recover(a: RecoverArgs) -> Result<(), String> {
    let c = &a.common;
    if c.client_model != crate::ClientModel::Fast {
        return Err(
            "recover runs its own client life cycle: --client-model tungstenite is for \
                    fanout, idle and connect"
                .into(),
        );
    }
    if !(1..=1_000_000).contains(&a.messages) {
        return Err("--messages must be 1..1000000".into());
    }
    if a.payload_size > 1 << 20 {
        return Err("--payload-size must be at most 1 MiB".into());
    }
    if !(0.0..=300.0).contains(&a.settle) {
        return Err("--settle must be 0..300 seconds".into());
    }
    if !(a.recover_timeout > 0.0 && a.recover_timeout <= 600.0) {
        return Err("--recover-timeout must be in (0, 600] seconds".into());
    }
    let key = a
        .api_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or("--api-key (or HERALD_BENCH_API_KEY) is needed to publish through the API")?;
    let api = Api::parse(&a.api, key)?;
    let run_secs = 60.0 + a.messages as f64 * 0.05 + a.settle + a.recover_timeout + 60.0;
    let mut p = scenario::prepare(c, true, 0, run_secs)?;
    // Every client connects twice; the closed first connections linger in TIME_WAIT.
    if c.source_ips.trim() == "auto" {
        p.sources = scenario::parse_sources("auto", &Target::parse(c.first_url())?, c.subs * 2)?;
    }
    let reconnect_concurrency = a.reconnect_concurrency.div_ceil(p.procs);
    for s in &mut p.specs {
        s.sources = p.sources.clone();
        s.recover = Some(RecoverSpec {
            reconnect_concurrency,
            recover_timeout_ms: (a.recover_timeout * 1000.0) as u64,
        });
    }
    let Started {
        mut pool,
        ready,
        secs: setup_secs,
        listen_drops: setup_drops,
        load: load_start,
    } = scenario::start_and_connect(&p, c.subs).await?;
    let subscribed = ready.connected;

    // Disconnect everyone.
    pool.send_all("disconnect").await;
    let pb = scenario::bar(subscribed, "disconnect");
    let started = Instant::now();
    loop {
        pool.pump(Duration::from_millis(100)).await;
        let r = pool.recover_totals();
        pb.set_position(r.disconnected);
        if r.disconnected >= subscribed || pool.lost_worker() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            pb.finish_and_clear();
            pool.stop_recover(Duration::from_secs(5)).await;
            return Err("the clients did not disconnect within 60 s".into());
        }
    }
    pb.finish_and_clear();
    let lost_early = pool.recover_totals().lost;
    eprintln!(
        "{subscribed} clients disconnected ({lost_early} had lost their connection before); publishing {} message(s)",
        a.messages
    );

    // Publish while they are away.
    let mut publisher = HttpPublisher::new(api);
    publisher.connect().await?;
    let channel_json = serde_json::to_string(&c.channel).expect("string");
    let publish_errors = Tally::default();
    let mut rtt = stats::new_hist();
    let (mut published, mut without_offset) = (0u64, 0u64);
    let mut data = Vec::with_capacity(a.payload_size + 64);
    let publish_start = Instant::now();
    for seq in 1..=a.messages {
        let ts = now_ns();
        proto::bench_data(&mut data, ts, seq, a.payload_size);
        match publisher.publish(&channel_json, &data).await {
            Ok(offset) => {
                stats::record_ns(&mut rtt, now_ns() - ts);
                published += 1;
                without_offset += u64::from(offset.is_none());
            }
            Err(e) => publish_errors.add(e),
        }
    }
    let publish_secs = publish_start.elapsed().as_secs_f64();
    let publish_failed = a.messages - published;
    let rtt_s = stats::summarize(&rtt);
    eprintln!(
        "published {published}/{} in {publish_secs:.3} s (ack p50 {:.3} ms, max {:.3} ms){}",
        a.messages,
        rtt_s.p50_ms,
        rtt_s.max_ms,
        if without_offset > 0 {
            format!("; {without_offset} acks had no offset: the channel keeps no history")
        } else {
            String::new()
        }
    );
    if published == 0 {
        pool.stop_recover(Duration::from_secs(5)).await;
        return Err(format!(
            "no publication succeeded: {}",
            report::tally_line(&publish_errors.get())
        ));
    }
    pool.pump(Duration::from_secs_f64(a.settle)).await;

    // Everyone comes back at once.
    let load = sys::loadavg();
    let drops_before = sys::listen_drops();
    let server_rss_before = p.server_pid.and_then(sys::rss_kib);
    let server_cpu_before = p.server_pid.and_then(sys::cpu_seconds);
    let own_cpu = || sys::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let bench_cpu_before = pool.cpu_seconds() + own_cpu();
    let cpu_clock = Instant::now();
    let go_ns = now_ns();
    pool.send_all(&reconnect_line(go_ns, published)).await;
    let pb = scenario::bar(subscribed, "recover");
    let deadline = Instant::now() + Duration::from_secs_f64(a.recover_timeout + 15.0);
    loop {
        pool.pump(Duration::from_millis(50)).await;
        let r = pool.recover_totals();
        pb.set_position(r.recovered + r.recover_failed);
        if r.recover_failed > 0 {
            pb.set_message(format!("{} failed", r.recover_failed));
        }
        if r.recovered + r.recover_failed >= subscribed
            || pool.lost_worker()
            || Instant::now() > deadline
        {
            break;
        }
    }
    pb.finish_and_clear();
    let cpu_wall = cpu_clock.elapsed().as_secs_f64();
    let server_cpu_after = p.server_pid.and_then(sys::cpu_seconds);
    let bench_cpu_pct =
        100.0 * (pool.cpu_seconds() + own_cpu() - bench_cpu_before) / cpu_wall.max(1e-9);
    let pressure = sys::cpu_pressure();
    let listen_drops = match (drops_before, sys::listen_drops()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let server_rss_after = p.server_pid.and_then(sys::rss_kib);
    let results = pool.stop_recover(Duration::from_secs(15)).await;
    if results.len() != p.procs {
        return Err(format!(
            "only {} of {} workers reported",
            results.len(),
            p.procs
        ));
    }
    let m = merge(&results)?;
    let total = total_secs(go_ns, m.last_done_ns);
    let recovered = m.progress.recovered;
    let failed = subscribed.saturating_sub(recovered);
    let all = failed == 0 && subscribed > 0;
    let s = stats::summarize(&m.recover);
    let own = stats::summarize(&m.own);
    let sub = stats::summarize(&m.subscribe);
    let setup = stats::summarize(&m.setup);
    let server_cpu_pct = match (server_cpu_before, server_cpu_after) {
        (Some(b), Some(e)) => Some(100.0 * (e - b) / cpu_wall.max(1e-9)),
        _ => None,
    };
    let expected_pubs = recovered * published;

    let mut out = report::Human::new();
    out.line(format!(
        "recover: {} clients ({} subscribed, {} failed) on {}, {} worker(s) × {} thread(s); set-up {:.1} s (p50 {:.3} ms)",
        c.subs, subscribed, m.progress.setup_failed, c.channel, p.procs, p.threads, setup_secs, setup.p50_ms
    ));
    out.line(format!(
        "while they were away: {published}/{} publications acknowledged in {publish_secs:.3} s (ack p50 {:.3} ms, p99 {:.3} ms){}",
        a.messages,
        rtt_s.p50_ms,
        rtt_s.p99_ms,
        if without_offset > 0 {
            format!(", {without_offset} without an offset")
        } else {
            String::new()
        }
    ));
    out.line(format!(
        "recovered {recovered}/{subscribed} ({failed} failed) with {} publications in all ({} expected); {} reconnecting at once; {}",
        m.publications,
        expected_pubs,
        if a.reconnect_concurrency == 0 {
            "all".to_string()
        } else {
            a.reconnect_concurrency.to_string()
        },
        match total {
            Some(t) if all => format!("every client recovered {t:.3} s after the reconnect signal"),
            Some(t) => format!("NOT every client recovered; the last recovery came {t:.3} s after the signal"),
            None => "no client recovered".into(),
        }
    ));
    out.latency("signal → recovered reply", &s);
    out.latency("own reconnect start → recovered reply", &own);
    out.latency("recovering subscribe round trip", &sub);
    if let Some(pid) = p.server_pid {
        out.line(format!(
            "server pid {pid}: CPU during the reconnect {}, RSS {} → {}",
            server_cpu_pct.map_or("?".into(), |v| format!("{v:.0}% of one core")),
            report::kib(server_rss_before),
            report::kib(server_rss_after)
        ));
    }
    out.line(format!(
        "bench: CPU during the reconnect {bench_cpu_pct:.0}% of one core, worker RSS {}; listen drops during the reconnect {}; load average {} (before set-up {}), CPU pressure {}",
        report::kib(Some(m.rss_kib)),
        listen_drops.map_or("?".into(), |d| d.to_string()),
        load.map_or("?".into(), |l| format!("{l:.2}")),
        load_start.map_or("?".into(), |l| format!("{l:.2}")),
        pressure.map_or("?".into(), |p| format!("{p:.0}%"))
    ));
    out.tallies("set-up errors", &m.errors);
    out.tallies("publish errors", &publish_errors.get());
    out.tallies("recovery failures", &m.recover_errors);
    out.tallies("connections lost before the disconnect", &m.closes);
    out.print();
    if let Some(path) = &c.plot {
        report::plot(
            path,
            &format!("recovery: {subscribed} clients × {published} missed publications"),
            &[
                ("signal → recovered", &m.recover),
                ("own start → recovered", &m.own),
            ],
        )?;
        eprintln!("plot written to {}", path.display());
    }
    report::json_line(&crate::fields! {
        "scenario": "recover",
        "label": c.label,
        "subs": c.subs,
        "subscribed": subscribed,
        "connect_failed": m.progress.setup_failed,
        "procs": p.procs,
        "threads": p.threads,
        "channel": c.channel,
        "messages": a.messages,
        "published": published,
        "publish_errors": publish_failed,
        "without_offset": without_offset,
        "publish_s": r3(publish_secs),
        "publish_p50_ms": r3(rtt_s.p50_ms),
        "settle_s": a.settle,
        "reconnect_concurrency": a.reconnect_concurrency,
        "recovered": recovered,
        "recover_failed": failed,
        "lost_before_disconnect": m.progress.lost,
        "all_recovered": all,
        "publications_received": m.publications,
        "publications_expected": expected_pubs,
        "total_s": total.map(r3),
        "p50_ms": r3(s.p50_ms),
        "p90_ms": r3(s.p90_ms),
        "p99_ms": r3(s.p99_ms),
        "p999_ms": r3(s.p999_ms),
        "max_ms": r3(s.max_ms),
        "mean_ms": r3(s.mean_ms),
        "own_p50_ms": r3(own.p50_ms),
        "own_p99_ms": r3(own.p99_ms),
        "subscribe_p50_ms": r3(sub.p50_ms),
        "subscribe_p99_ms": r3(sub.p99_ms),
        "setup_s": r3(setup_secs),
        "setup_listen_drops": setup_drops,
        "listen_drops": listen_drops,
        "server_pid": p.server_pid,
        "server_cpu_pct": server_cpu_pct.map(r3),
        "server_rss_before_kib": server_rss_before,
        "server_rss_after_kib": server_rss_after,
        "bench_cpu_pct": r3(bench_cpu_pct),
        "bench_rss_kib": m.rss_kib,
        "loadavg": load,
        "loadavg_start": load_start,
        "cpu_pressure_pct": pressure,
        "errors": m.errors,
        "publish_error_kinds": publish_errors.get(),
        "recover_errors": m.recover_errors,
        "closes": m.closes,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(epoch: &str, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    /// A recovered reply as Herald sends it, with publications at `offsets`.
    fn recovered_reply(epoch: &str, top: u64, offsets: &[u64]) -> Vec<u8> {
        let pubs: Vec<serde_json::Value> = offsets
            .iter()
            .map(|o| serde_json::json!({"data": {"ts": 1, "seq": o, "pad": "xx"}, "offset": o}))
            .collect();
        serde_json::json!({"id": 2, "subscribe": {
            "recoverable": true, "positioned": true, "epoch": epoch, "offset": top,
            "publications": pubs, "recovered": true, "was_recovering": true,
        }})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn reads_the_first_position() {
        let raw = br#"{"id":2,"subscribe":{"recoverable":true,"positioned":true,"epoch":"xyz","offset":17}}"#;
        assert_eq!(parse_position(raw), Ok(position("xyz", 17)));
        // A new stream: offset 0 is left out.
        let raw = br#"{"id":2,"subscribe":{"recoverable":true,"epoch":"e1"}}"#;
        assert_eq!(parse_position(raw), Ok(position("e1", 0)));
        // A channel without history.
        let e = parse_position(br#"{"id":2,"subscribe":{}}"#).unwrap_err();
        assert!(e.contains("history_size"), "{e}");
        let e = parse_position(br#"{"id":2,"error":{"code":103,"message":"permission denied"}}"#)
            .unwrap_err();
        assert!(e.contains("permission denied"), "{e}");
        assert!(parse_position(b"{").is_err());
        assert!(parse_position(br#"{"id":2}"#).is_err());
    }

    #[test]
    fn checks_recovered_replies() {
        let from = position("ep", 10);
        let good = recovered_reply("ep", 13, &[11, 12, 13]);
        assert_eq!(check_recovery(&good, &from, 3), Ok(3));
        // Too few or too many.
        let e = check_recovery(&good, &from, 4).unwrap_err();
        assert!(e.contains("recovered 3 publications, expected 4"), "{e}");
        // A gap.
        let gap = recovered_reply("ep", 14, &[11, 12, 14]);
        let e = check_recovery(&gap, &from, 3).unwrap_err();
        assert!(
            e.contains("publication 2 has offset 14, expected 13"),
            "{e}"
        );
        // Publications after the reply's own top.
        let top = recovered_reply("ep", 20, &[11, 12, 13]);
        assert!(check_recovery(&top, &from, 3).is_err());
        // Another epoch.
        let other = recovered_reply("new", 3, &[11, 12, 13]);
        assert!(
            check_recovery(&other, &from, 3)
                .unwrap_err()
                .contains("epoch")
        );
        // Not recovered.
        let raw = br#"{"id":2,"subscribe":{"recoverable":true,"epoch":"ep","offset":13,"was_recovering":true}}"#;
        let e = check_recovery(raw, &from, 3).unwrap_err();
        assert!(e.contains("recovered: false, was_recovering: true"), "{e}");
        let raw = br#"{"id":2,"error":{"code":112,"message":"unrecoverable position"}}"#;
        assert!(
            check_recovery(raw, &from, 3)
                .unwrap_err()
                .contains("unrecoverable position")
        );
        // Nothing missed: an empty recovery is right when nothing was published.
        let none = recovered_reply("ep", 10, &[]);
        assert_eq!(check_recovery(&none, &from, 0), Ok(0));
    }

    #[test]
    fn builds_the_recovering_subscribe() {
        let cmd = recover_command("bench:r", &position("e", 5));
        let v: serde_json::Value = serde_json::from_slice(&cmd).unwrap();
        assert_eq!(v["id"], 2);
        assert_eq!(v["subscribe"]["channel"], "bench:r");
        assert_eq!(v["subscribe"]["recover"], true);
        assert_eq!(v["subscribe"]["offset"], 5);
        assert_eq!(v["subscribe"]["epoch"], "e");
        let c: serde_json::Value =
            serde_json::from_slice(&connect_command(&Auth::None, 3)).unwrap();
        assert_eq!(
            c,
            serde_json::json!({"id": 1, "connect": {"name": "herald-bench"}})
        );
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse_command("disconnect"), Some(Command::Disconnect));
        assert_eq!(parse_command(" stop \n"), Some(Command::Stop));
        let line = reconnect_line(123_456_789, 100);
        assert_eq!(
            parse_command(&line),
            Some(Command::Reconnect {
                go_ns: 123_456_789,
                expected: 100
            })
        );
        assert_eq!(parse_command("reconnect 1"), None);
        assert_eq!(parse_command("reconnect x 1"), None);
        assert_eq!(parse_command("reconnect 1 2 3"), None);
        assert_eq!(parse_command("{\"index\":0}"), None);
        assert_eq!(parse_command(""), None);
    }

    fn result(
        progress: RecoverProgress,
        first: u64,
        last: u64,
        samples_ms: &[u64],
    ) -> RecoverResult {
        let mut h = stats::new_hist();
        for ms in samples_ms {
            stats::record_ns(&mut h, ms * 1_000_000);
        }
        let empty = stats::encode(&stats::new_hist());
        RecoverResult {
            progress,
            first_start_ns: first,
            last_done_ns: last,
            setup: empty.clone(),
            recover: stats::encode(&h),
            own: stats::encode(&h),
            subscribe: empty,
            publications: progress.recovered * 100,
            errors: BTreeMap::from([("timeout".to_string(), progress.setup_failed)]),
            recover_errors: BTreeMap::new(),
            closes: BTreeMap::new(),
            rss_kib: 1000,
        }
    }

    #[test]
    fn worker_messages_round_trip() {
        let p = RecoverProgress {
            subscribed: 7,
            recovered: 5,
            recover_failed: 2,
            ..Default::default()
        };
        let line = serde_json::to_string(&WorkerMsg::Recover(p)).unwrap();
        match serde_json::from_str::<WorkerMsg>(&line).unwrap() {
            WorkerMsg::Recover(q) => assert_eq!(q, p),
            other => panic!("{other:?}"),
        }
        let r = result(p, 1, 2, &[10]);
        let line = serde_json::to_string(&WorkerMsg::RecoverDone(Box::new(r))).unwrap();
        match serde_json::from_str::<WorkerMsg>(&line).unwrap() {
            WorkerMsg::RecoverDone(back) => {
                assert_eq!(back.progress, p);
                assert_eq!((back.first_start_ns, back.last_done_ns), (1, 2));
                assert_eq!(stats::decode(&back.recover).unwrap().len(), 1);
            }
            other => panic!("{other:?}"),
        }
        // A spec from an older parent (no `recover` field) still reads.
        let spec = serde_json::json!({"index": 0, "url": "ws://127.0.0.1:1/", "first": 0,
            "count": 1, "auth": "none", "channel": "c", "subscribe": true, "sources": [],
            "concurrency": 1, "connect_timeout_ms": 1, "read_buf": 512, "threads": 1,
            "max_lifetime_s": 1, "report_ms": 50, "publishers": 1});
        let spec: WorkerSpec = serde_json::from_value(spec).unwrap();
        assert_eq!(spec.recover, None);
    }

    #[test]
    fn merges_worker_results() {
        let a = RecoverProgress {
            subscribed: 3,
            setup_failed: 1,
            disconnected: 3,
            lost: 0,
            recovered: 3,
            recover_failed: 0,
        };
        let b = RecoverProgress {
            subscribed: 2,
            setup_failed: 0,
            disconnected: 2,
            lost: 1,
            recovered: 1,
            recover_failed: 1,
        };
        let go = 1_000_000_000;
        let results = [
            result(a, go + 5_000, go + 900_000_000, &[100, 200, 900]),
            result(b, go + 1_000, go + 2_500_000_000, &[2500]),
        ];
        let m = merge(&results).unwrap();
        assert_eq!(m.progress.subscribed, 5);
        assert_eq!(m.progress.recovered, 4);
        assert_eq!(m.progress.recover_failed, 1);
        assert_eq!(m.progress.lost, 1);
        assert_eq!(m.first_start_ns, go + 1_000);
        assert_eq!(m.last_done_ns, go + 2_500_000_000);
        assert_eq!(m.publications, 400);
        assert_eq!(m.errors["timeout"], 1);
        assert_eq!(m.rss_kib, 2000);
        assert_eq!(m.recover.len(), 4);
        let s = stats::summarize(&m.recover);
        assert!((s.max_ms - 2500.0).abs() < 3.0, "{s:?}");
        assert!((s.p50_ms - 200.0).abs() < 0.5, "{s:?}");
        assert_eq!(total_secs(go, m.last_done_ns), Some(2.5));
        assert_eq!(total_secs(go, 0), None);
        assert!(
            merge(&[RecoverResult::default()]).is_err(),
            "empty histogram text"
        );
    }
}
