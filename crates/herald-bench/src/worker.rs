//! Worker processes: each holds a share of the client connections.
//!
//! The parent starts `herald-bench worker` (hidden subcommand) once per `--procs`, writes a
//! [`WorkerSpec`] as one JSON line on its stdin, and reads [`WorkerMsg`] JSON lines from its
//! stdout: `progress` every few hundred ms, `ready` once every connection is set up (or
//! failed), and `done` with the counters and serialized histograms after the parent writes
//! `stop` (or closes stdin). A worker also stops by itself after `max_lifetime_s`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{Semaphore, mpsc};

use crate::proto::{self, Line};
use crate::stats::{self, Tally};
use crate::stream::{Kind, StreamClient};
use crate::sys::now_ns;
use crate::token;
use crate::ws::{Message, Target, WsClient};
use crate::{ClientModel, Format, TransportKind};

/// A connection of the `fast` client model, whatever its transport and format: what the
/// set-up and the read loop drive.
pub struct FastConn {
    io: FastIo,
    format: Format,
}

enum FastIo {
    Ws(WsClient),
    Stream(Box<StreamClient>),
}

/// What the reply readers need of a connection: its format, its next message, a way to send
/// it a command.
pub(crate) trait Wire {
    /// The connection's wire format.
    fn format(&self) -> Format;
    /// The next complete message (a frame, or a batch of complete lines of a stream).
    async fn next_message(&mut self) -> std::io::Result<Message<'_>>;
    /// Sends one message of commands (already encoded in the connection's format).
    async fn send_command(&mut self, command: &[u8]) -> std::io::Result<()>;
    /// Answers a server ping.
    async fn pong(&mut self) -> std::io::Result<()> {
        match self.format() {
            Format::Json => self.send_command(b"{}").await,
            Format::Protobuf => self.send_command(crate::pb::PONG).await,
        }
    }
}

impl Wire for WsClient {
    fn format(&self) -> Format {
        Format::Json
    }
    async fn next_message(&mut self) -> std::io::Result<Message<'_>> {
        self.read_message().await
    }
    async fn send_command(&mut self, command: &[u8]) -> std::io::Result<()> {
        self.send_text(command).await
    }
}

impl Wire for FastConn {
    fn format(&self) -> Format {
        self.format
    }
    async fn next_message(&mut self) -> std::io::Result<Message<'_>> {
        match &mut self.io {
            FastIo::Ws(ws) => ws.read_message().await,
            FastIo::Stream(s) => s.read_message().await,
        }
    }
    async fn send_command(&mut self, command: &[u8]) -> std::io::Result<()> {
        match (&mut self.io, self.format) {
            (FastIo::Ws(ws), Format::Json) => ws.send_text(command).await,
            (FastIo::Ws(ws), Format::Protobuf) => ws.send_binary(command).await,
            (FastIo::Stream(s), _) => s.send_commands(command).await,
        }
    }
}

/// Calls `f` with each reply of one message, classified, in `format`.
pub fn each_line<'a>(format: Format, payload: &'a [u8], mut f: impl FnMut(Line<'a>)) {
    match format {
        Format::Json => proto::lines(payload).for_each(|line| f(proto::classify(line))),
        Format::Protobuf => crate::pb::messages(payload)
            .for_each(|m| f(m.map_or(Line::Unknown, crate::pb::classify))),
    }
}

/// How clients authenticate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// No token (the server must allow anonymous connections).
    None,
    /// The same token for every connection.
    Token(String),
    /// Sign an HS256 token per connection for user `<prefix><global index>`.
    Hmac {
        /// The shared secret.
        secret: String,
        /// User id prefix.
        user_prefix: String,
    },
}

impl Auth {
    /// The token for connection `g`, if any.
    pub fn token_for(&self, g: usize) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Token(t) => Some(t.clone()),
            Auth::Hmac {
                secret,
                user_prefix,
            } => Some(token::connection_token(
                &format!("{user_prefix}{g}"),
                token::unix_now() + 24 * 3600,
                secret.as_bytes(),
            )),
        }
    }
}

/// What one worker does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Worker number.
    pub index: usize,
    /// WebSocket URL.
    pub url: String,
    /// Global number of this worker's first connection.
    pub first: usize,
    /// Connections to hold.
    pub count: usize,
    /// Authentication.
    pub auth: Auth,
    /// Channel to subscribe to.
    pub channel: String,
    /// Subscribe after connecting.
    pub subscribe: bool,
    /// Local source addresses, used round-robin by global connection number.
    pub sources: Vec<IpAddr>,
    /// Connections being set up at once.
    pub concurrency: usize,
    /// Deadline for the whole set-up of one connection.
    pub connect_timeout_ms: u64,
    /// Read buffer per connection.
    pub read_buf: usize,
    /// Runtime threads (1 = current-thread runtime).
    pub threads: usize,
    /// The worker exits after this long whatever happens.
    pub max_lifetime_s: u64,
    /// Progress report interval.
    pub report_ms: u64,
    /// Number of publishers: publication `seq` n comes from publisher `(n - 1) % publishers`,
    /// and each publisher's publications must arrive in order.
    pub publishers: usize,
    /// Run the `recover` scenario's client life cycle instead of connect-and-hold.
    #[serde(default)]
    pub recover: Option<crate::recover::RecoverSpec>,
    /// Which client implementation the connections use.
    #[serde(default)]
    pub client_model: crate::ClientModel,
    /// Subscribe with `delta: "fossil"` (tungstenite model).
    #[serde(default)]
    pub delta: bool,
    /// Subscribe with a tags filter that this fraction of the subscribers match (tungstenite
    /// model).
    #[serde(default)]
    pub tags_filter: Option<f64>,
    /// This fraction of the connections speak Protobuf (spread evenly), the rest JSON.
    #[serde(default)]
    pub protobuf_share: f64,
    /// The connections' transport.
    #[serde(default)]
    pub transport: crate::TransportKind,
}

impl WorkerSpec {
    /// The wire format of connection `g`.
    pub fn format_of(&self, g: usize) -> Format {
        if crate::typical::filter_matches(g, self.protobuf_share) {
            Format::Protobuf
        } else {
            Format::Json
        }
    }
}

/// A progress report.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Connections set up (connected, and subscribed when asked).
    pub connected: u64,
    /// Connections whose set-up failed.
    pub failed: u64,
    /// Set-up connections closed since.
    pub closed: u64,
    /// Bench publications received.
    pub received: u64,
    /// Set-up connections meant to receive the publications (see `--tags-filter`).
    #[serde(default)]
    pub receiving: u64,
}

/// What a worker reports at the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Final counters.
    pub progress: Progress,
    /// Publications whose `seq` was not above the previous one from the same publisher on the
    /// same connection.
    pub out_of_order: u64,
    /// Server pings answered.
    pub pings: u64,
    /// Monotonic ns of the first set-up start and the last set-up end.
    pub setup_start_ns: u64,
    /// See `setup_start_ns`.
    pub setup_end_ns: u64,
    /// Monotonic ns of the last publication received.
    pub last_recv_ns: u64,
    /// Delivery latency histogram (µs, encoded).
    pub delivery: String,
    /// Arrival latency histogram (publish → the kernel's receive timestamp; µs, encoded).
    pub arrival: String,
    /// Upgrade latency histogram.
    pub handshake: String,
    /// `connect` round-trip histogram.
    pub connect: String,
    /// `subscribe` round-trip histogram.
    pub subscribe: String,
    /// Whole set-up histogram.
    pub setup: String,
    /// Set-up failures by reason.
    pub errors: BTreeMap<String, u64>,
    /// Closes of set-up connections by code/reason.
    pub closes: BTreeMap<String, u64>,
    /// This worker's RSS at the end, KiB.
    pub rss_kib: u64,
    /// Publications received as Fossil deltas (`--delta`).
    #[serde(default)]
    pub deltas: u64,
}

/// One line from a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// Periodic counters.
    Progress(Progress),
    /// All connections are set up or failed.
    Ready(Progress),
    /// Final report.
    Done(Box<WorkerResult>),
    /// `recover` counters.
    Recover(crate::recover::RecoverProgress),
    /// `recover` final report.
    RecoverDone(Box<crate::recover::RecoverResult>),
    /// The worker cannot run.
    Fatal {
        /// Why.
        error: String,
    },
}

/// Writes one message line to the parent.
pub fn emit(msg: &WorkerMsg) {
    let line = serde_json::to_string(msg).expect("serializable");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[derive(Default)]
struct Shared {
    connected: AtomicU64,
    /// Set-up connections whose subscription should receive the publications (all, unless a
    /// tags filter leaves some out).
    receiving: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    setup_done: AtomicU64,
    setup_end_ns: AtomicU64,
    errors: Tally,
    closes: Tally,
}

/// Entry point of the hidden `worker` subcommand.
pub fn main() -> std::process::ExitCode {
    let _ = crate::sys::raise_nofile_limit();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim().is_empty() {
        emit(&WorkerMsg::Fatal {
            error: "no spec on stdin".into(),
        });
        return std::process::ExitCode::FAILURE;
    }
    let spec: WorkerSpec = match serde_json::from_str(&line) {
        Ok(s) => s,
        Err(e) => {
            emit(&WorkerMsg::Fatal {
                error: format!("bad spec: {e}"),
            });
            return std::process::ExitCode::FAILURE;
        }
    };
    let rt = if spec.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(spec.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            emit(&WorkerMsg::Fatal {
                error: format!("runtime: {e}"),
            });
            return std::process::ExitCode::FAILURE;
        }
    };
    match spec.recover.clone() {
        Some(r) => rt.block_on(crate::recover::worker(spec, r)),
        None => rt.block_on(run(spec)),
    }
    // Do not wait for thousands of connection tasks to be dropped one by one.
    std::process::exit(0);
}

async fn run(spec: WorkerSpec) {
    let target = match Target::parse(&spec.url) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            emit(&WorkerMsg::Fatal { error: e });
            return;
        }
    };
    let spec = Arc::new(spec);
    let shared = Arc::new(Shared::default());
    let sem = Arc::new(Semaphore::new(spec.concurrency.max(1)));

    // `stop` (or EOF) on stdin ends the run.
    let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) if l.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = stop_tx.blocking_send(());
    });

    let setup_start_ns = now_ns();
    for i in 0..spec.count {
        let g = spec.first + i;
        tokio::spawn(conn_task(
            g,
            spec.clone(),
            target.clone(),
            shared.clone(),
            sem.clone(),
        ));
    }

    let mut tick = tokio::time::interval(Duration::from_millis(spec.report_ms.max(50)));
    let deadline = tokio::time::sleep(Duration::from_secs(spec.max_lifetime_s));
    tokio::pin!(deadline);
    let mut ready_sent = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Read the done count first: the counters it covers were bumped before it.
                let done = shared.setup_done.load(Acquire);
                let p = progress(&shared);
                emit(&WorkerMsg::Progress(p));
                if !ready_sent && done >= spec.count as u64 {
                    ready_sent = true;
                    emit(&WorkerMsg::Ready(p));
                }
            }
            _ = stop_rx.recv() => break,
            _ = &mut deadline => break,
        }
    }
    let snap = stats::snapshot();
    let result = WorkerResult {
        progress: progress(&shared),
        out_of_order: snap.out_of_order,
        pings: snap.pings,
        setup_start_ns,
        setup_end_ns: shared.setup_end_ns.load(Relaxed),
        last_recv_ns: snap.last_recv_ns,
        delivery: stats::encode(&snap.delivery),
        arrival: stats::encode(&snap.arrival),
        handshake: stats::encode(&snap.handshake),
        connect: stats::encode(&snap.connect),
        subscribe: stats::encode(&snap.subscribe),
        setup: stats::encode(&snap.setup),
        errors: shared.errors.get(),
        closes: shared.closes.get(),
        rss_kib: crate::sys::rss_kib(std::process::id()).unwrap_or(0),
        deltas: crate::typical::DELTAS.load(Relaxed),
    };
    emit(&WorkerMsg::Done(Box::new(result)));
}

fn progress(shared: &Shared) -> Progress {
    Progress {
        connected: shared.connected.load(Relaxed),
        failed: shared.failed.load(Relaxed),
        closed: shared.closed.load(Relaxed),
        received: stats::counters().0,
        receiving: shared.receiving.load(Relaxed),
    }
}

async fn conn_task(
    g: usize,
    spec: Arc<WorkerSpec>,
    target: Arc<Target>,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
) {
    let permit = sem.acquire().await;
    let source = if spec.sources.is_empty() {
        None
    } else {
        Some(spec.sources[g % spec.sources.len()])
    };
    let t0 = now_ns();
    let set_up = async {
        match spec.client_model {
            ClientModel::Fast => setup(g, &spec, &target, source).await.map(Conn::Fast),
            ClientModel::Tungstenite => crate::typical::setup(g, &spec, &target, source)
                .await
                .map(|c| Conn::Typical(Box::new(c))),
        }
    };
    let res =
        match tokio::time::timeout(Duration::from_millis(spec.connect_timeout_ms), set_up).await {
            Ok(r) => r,
            Err(_) => Err("timeout (--connect-timeout)".to_string()),
        };
    drop(permit);
    let end = now_ns();
    shared.setup_end_ns.fetch_max(end, Relaxed);
    let ws = match res {
        Ok(ws) => {
            stats::with_local(|l| stats::record_ns(&mut l.setup, end - t0));
            shared.connected.fetch_add(1, Relaxed);
            if spec
                .tags_filter
                .is_none_or(|f| crate::typical::filter_matches(g, f))
            {
                shared.receiving.fetch_add(1, Relaxed);
            }
            shared.setup_done.fetch_add(1, Release);
            ws
        }
        Err(e) => {
            shared.failed.fetch_add(1, Relaxed);
            shared.setup_done.fetch_add(1, Release);
            shared.errors.add(e);
            return;
        }
    };
    let why = match ws {
        Conn::Fast(ws) => read_loop(ws, spec.publishers).await,
        Conn::Typical(ws) => crate::typical::read_loop(*ws, spec.delta, spec.publishers).await,
    };
    shared.closed.fetch_add(1, Relaxed);
    shared.closes.add(why);
}

/// A set-up connection of either client model.
enum Conn {
    Fast(FastConn),
    Typical(Box<crate::typical::Conn>),
}

async fn setup(
    g: usize,
    spec: &WorkerSpec,
    target: &Target,
    source: Option<IpAddr>,
) -> Result<FastConn, String> {
    let t0 = now_ns();
    let seed = (g as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t0;
    let format = spec.format_of(g);
    let token = spec.auth.token_for(g);
    let connect_json = match &token {
        Some(t) => serde_json::json!({"id": 1, "connect": {"token": t, "name": "herald-bench"}}),
        None => serde_json::json!({"id": 1, "connect": {"name": "herald-bench"}}),
    }
    .to_string();
    let stream_kind = match spec.transport {
        TransportKind::Websocket => None,
        TransportKind::HttpStream => Some(Kind::HttpStream),
        TransportKind::Sse => Some(Kind::Sse),
    };
    let mut conn = match stream_kind {
        None => {
            let subprotocol = (format == Format::Protobuf).then_some(crate::pb::SUBPROTOCOL);
            let ws = WsClient::connect_with(target, source, spec.read_buf, seed, subprotocol)
                .await
                .map_err(|e| format!("websocket: {e}"))?;
            FastConn {
                io: FastIo::Ws(ws),
                format,
            }
        }
        // The stream's request carries the connect command.
        Some(kind) => FastConn {
            io: FastIo::Stream(Box::new(
                StreamClient::connect(kind, target, source, spec.read_buf, connect_json.as_bytes())
                    .await
                    .map_err(|e| format!("{kind:?}: {e}"))?,
            )),
            format,
        },
    };
    let t1 = now_ns();
    if stream_kind.is_none() {
        let connect = match format {
            Format::Json => connect_json.into_bytes(),
            Format::Protobuf => crate::pb::connect_command(1, token),
        };
        conn.send_command(&connect)
            .await
            .map_err(|e| format!("send connect: {e}"))?;
    }
    let (reply, _) = wait_reply_raw(&mut conn, 1)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if let FastIo::Stream(s) = &mut conn.io {
        s.set_session(&reply)?;
    }
    let t2 = now_ns();
    let mut t3 = t2;
    if spec.subscribe {
        let sub = match format {
            Format::Json => serde_json::json!({"id": 2, "subscribe": {"channel": spec.channel}})
                .to_string()
                .into_bytes(),
            Format::Protobuf => crate::pb::subscribe_command(2, &spec.channel),
        };
        conn.send_command(&sub)
            .await
            .map_err(|e| format!("send subscribe: {e}"))?;
        wait_reply(&mut conn, 2)
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        t3 = now_ns();
    }
    stats::with_local(|l| {
        stats::record_ns(&mut l.handshake, t1 - t0);
        stats::record_ns(&mut l.connect, t2 - t1);
        if spec.subscribe {
            stats::record_ns(&mut l.subscribe, t3 - t2);
        }
    });
    Ok(conn)
}

/// Reads until the reply to command `id`; answers pings on the way.
pub async fn wait_reply(ws: &mut impl Wire, id: u32) -> Result<(), String> {
    wait_reply_raw(ws, id).await.map(|_| ())
}

/// Reads until the reply to command `id`; answers pings on the way. Returns the reply line and
/// the monotonic ns of the socket read that completed it; an error reply is an `Err` with the
/// line.
pub async fn wait_reply_raw(ws: &mut impl Wire, id: u32) -> Result<(Vec<u8>, u64), String> {
    let format = ws.format();
    loop {
        let mut pings = 0;
        let mut result = None;
        match ws.next_message().await.map_err(|e| e.to_string())? {
            Message::Text(p, stamp) => {
                let at = stamp.read_ns;
                each_line(format, p, |line| match line {
                    Line::Reply {
                        id: rid,
                        error,
                        raw,
                    } if rid == id => {
                        result = Some(match (error, format) {
                            (true, Format::Json) => Err(String::from_utf8_lossy(raw).into_owned()),
                            (true, Format::Protobuf) => Err(crate::pb::describe_error(raw)),
                            (false, _) => Ok((raw.to_vec(), at)),
                        });
                    }
                    Line::Ping => pings += 1,
                    _ => {}
                });
            }
            Message::Close(code, reason) => return Err(format!("closed {code} {reason}")),
        }
        for _ in 0..pings {
            ws.pong().await.map_err(|e| e.to_string())?;
        }
        if let Some(r) = result {
            return r;
        }
    }
}

/// Receives until the connection ends; returns why it ended.
async fn read_loop(mut ws: FastConn, publishers: usize) -> String {
    let format = ws.format();
    // Last seq seen from each publisher (each publisher sends one publication at a time, so
    // its publications must arrive in order).
    let mut last_seq = vec![0u64; publishers.clamp(1, 64)].into_boxed_slice();
    let n = last_seq.len() as u64;
    loop {
        let mut pings = 0u64;
        match ws.next_message().await {
            Ok(Message::Text(p, at)) => {
                stats::with_local(|l| {
                    each_line(format, p, |line| match line {
                        Line::Pub { ts, seq } => {
                            stats::record_ns(&mut l.delivery, at.read_ns.saturating_sub(ts));
                            stats::record_ns(&mut l.arrival, at.arrival_ns.saturating_sub(ts));
                            l.received += 1;
                            l.last_recv_ns = l.last_recv_ns.max(at.read_ns);
                            let last = &mut last_seq[(seq.saturating_sub(1) % n) as usize];
                            if seq <= *last {
                                l.out_of_order += 1;
                            } else {
                                *last = seq;
                            }
                        }
                        Line::Ping => pings += 1,
                        _ => {}
                    });
                    l.pings += pings;
                });
            }
            Ok(Message::Close(code, reason)) => return format!("closed {code} {reason}"),
            Err(e) => return format!("error: {e}"),
        }
        for _ in 0..pings {
            if let Err(e) = ws.pong().await {
                return format!("error answering ping: {e}");
            }
        }
    }
}

/// The parent's handle on its worker processes.
pub struct Pool {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: mpsc::UnboundedReceiver<(usize, Option<WorkerMsg>)>,
    /// Latest progress of each worker.
    pub progress: Vec<Progress>,
    /// Whether each worker reported ready.
    pub ready: Vec<bool>,
    /// Final results.
    pub done: Vec<Option<WorkerResult>>,
    /// Whether each worker's output ended.
    pub exited: Vec<bool>,
    /// Fatal errors reported.
    pub fatal: Vec<String>,
    /// Latest `recover` counters of each worker.
    pub recover: Vec<crate::recover::RecoverProgress>,
    /// `recover` final results.
    pub recover_done: Vec<Option<crate::recover::RecoverResult>>,
}

impl Pool {
    /// Starts one worker process per spec.
    pub async fn spawn(specs: Vec<WorkerSpec>) -> Result<Pool, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let n = specs.len();
        let mut children = Vec::with_capacity(n);
        let mut stdins = Vec::with_capacity(n);
        for spec in specs {
            let mut child = tokio::process::Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start worker: {e}"))?;
            let mut stdin = child.stdin.take().expect("piped");
            let line = serde_json::to_string(&spec).expect("serializable") + "\n";
            stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|e| format!("cannot send spec to worker: {e}"))?;
            let stdout = child.stdout.take().expect("piped");
            let tx = tx.clone();
            let idx = spec.index;
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<WorkerMsg>(&line) {
                        Ok(m) => {
                            let _ = tx.send((idx, Some(m)));
                        }
                        Err(_) => eprintln!("worker {idx}: {line}"),
                    }
                }
                let _ = tx.send((idx, None));
            });
            children.push(child);
            stdins.push(Some(stdin));
        }
        Ok(Pool {
            children,
            stdins,
            rx,
            progress: vec![Progress::default(); n],
            ready: vec![false; n],
            done: vec![None; n],
            exited: vec![false; n],
            fatal: Vec::new(),
            recover: vec![Default::default(); n],
            recover_done: vec![None; n],
        })
    }

    fn apply(&mut self, idx: usize, msg: Option<WorkerMsg>) {
        match msg {
            Some(WorkerMsg::Progress(p)) => self.progress[idx] = p,
            Some(WorkerMsg::Ready(p)) => {
                self.progress[idx] = p;
                self.ready[idx] = true;
            }
            Some(WorkerMsg::Done(r)) => {
                self.progress[idx] = r.progress;
                self.done[idx] = Some(*r);
            }
            Some(WorkerMsg::Recover(p)) => self.recover[idx] = p,
            Some(WorkerMsg::RecoverDone(r)) => {
                self.recover[idx] = r.progress;
                self.recover_done[idx] = Some(*r);
            }
            Some(WorkerMsg::Fatal { error }) => {
                self.fatal.push(format!("worker {idx}: {error}"));
                self.exited[idx] = true;
            }
            None => self.exited[idx] = true,
        }
    }

    /// Applies whatever messages arrive within `d`.
    pub async fn pump(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(Some((i, m))) = tokio::time::timeout_at(until, self.rx.recv()).await {
            self.apply(i, m);
        }
    }

    /// Summed progress of all workers.
    pub fn totals(&self) -> Progress {
        self.progress
            .iter()
            .fold(Progress::default(), |a, p| Progress {
                connected: a.connected + p.connected,
                failed: a.failed + p.failed,
                closed: a.closed + p.closed,
                received: a.received + p.received,
                receiving: a.receiving + p.receiving,
            })
    }

    /// Every worker is ready (or gone).
    pub fn all_ready(&self) -> bool {
        self.ready.iter().zip(&self.exited).all(|(r, e)| *r || *e)
    }

    /// A worker ended before being told to.
    pub fn lost_worker(&self) -> bool {
        (0..self.exited.len())
            .any(|i| self.exited[i] && self.done[i].is_none() && self.recover_done[i].is_none())
    }

    /// Summed `recover` counters of all workers.
    pub fn recover_totals(&self) -> crate::recover::RecoverProgress {
        let mut t = crate::recover::RecoverProgress::default();
        for p in &self.recover {
            t.add(p);
        }
        t
    }

    /// Writes one command line to every worker still listening.
    pub async fn send_all(&mut self, line: &str) {
        let line = format!("{}\n", line.trim_end());
        for s in self.stdins.iter_mut().flatten() {
            let _ = s.write_all(line.as_bytes()).await;
            let _ = s.flush().await;
        }
    }

    /// Total CPU seconds used by the worker processes so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.children
            .iter()
            .filter_map(|c| c.id())
            .filter_map(crate::sys::cpu_seconds)
            .sum()
    }

    /// Tells every worker to stop and collects the results (waits at most `timeout`).
    pub async fn stop(&mut self, timeout: Duration) -> Vec<WorkerResult> {
        self.finish(timeout).await;
        self.done.iter().flatten().cloned().collect()
    }

    /// [`Pool::stop`] for `recover` workers.
    pub async fn stop_recover(&mut self, timeout: Duration) -> Vec<crate::recover::RecoverResult> {
        self.finish(timeout).await;
        self.recover_done.iter().flatten().cloned().collect()
    }

    async fn finish(&mut self, timeout: Duration) {
        for s in &mut self.stdins {
            if let Some(mut stdin) = s.take() {
                let _ = stdin.write_all(b"stop\n").await;
                let _ = stdin.flush().await;
            }
        }
        let until = tokio::time::Instant::now() + timeout;
        while (0..self.done.len())
            .any(|i| self.done[i].is_none() && self.recover_done[i].is_none() && !self.exited[i])
        {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some((i, m))) => self.apply(i, m),
                Ok(None) | Err(_) => break,
            }
        }
        for c in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(2), c.wait())
                .await
                .is_err()
            {
                let _ = c.start_kill();
            }
        }
    }
}
