//! Helpers shared by the integration tests: start the real `herald` binary with a temporary
//! config, talk to it over WebSocket (tokio-tungstenite, or a hand-rolled raw client for the
//! cases a well-behaved client library cannot produce) and over plain HTTP.
//!
//! Every wait is bounded: a server or client that hangs fails the test instead of hanging CI.

#![allow(dead_code)]

pub mod nats;
pub mod redis;
pub mod streaming;
pub mod tls;

use std::collections::VecDeque;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// HMAC secret of the test configs.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// Server API key of the test configs.
pub const API_KEY: &str = "integration-test-api-key";
/// Upper bound for one step (a reply, a push, a close) that should come promptly.
pub const STEP: Duration = Duration::from_secs(5);
/// Upper bound for the server to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Path of the server binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_herald")
}

/// Deep-merges `patch` into `base` (objects merge key by key; anything else replaces).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

/// The config every test starts from: localhost on a free port, the test secret and API key,
/// channels without a namespace open to subscribers, `/health` and `/metrics` on (both are
/// off by default, as in Centrifugo).
pub fn base_config() -> Value {
    json!({
        "http_server": {"address": "127.0.0.1", "port": 0},
        "client": {"token": {"hmac_secret_key": SECRET}},
        "http_api": {"key": API_KEY},
        "health": {"enabled": true},
        "prometheus": {"enabled": true},
        "channel": {"without_namespace": {"allow_subscribe_for_client": true}}
    })
}

/// A connection token for `user` that never expires.
pub fn token(user: &str) -> String {
    herald::auth::generate_token(user, None, SECRET, None).expect("sign token")
}

/// A connection token for `user` expiring at unix second `exp`.
pub fn token_exp(user: &str, exp: i64) -> String {
    herald::auth::sign_hs256(&json!({"sub": user, "exp": exp}), SECRET).expect("sign token")
}

/// Current unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Environment for a child `herald`: no inherited `HERALD_*` overrides.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HERALD_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("NO_COLOR", "1");
}

/// A running `herald` server process, killed when dropped.
pub struct Server {
    child: Child,
    /// The HTTP port it listens on.
    pub port: u16,
    /// Holds the config file; removed on drop.
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

impl Server {
    /// Starts a server with [`base_config`] merged with `patch`.
    pub async fn start(patch: Value) -> Server {
        let mut config = base_config();
        merge(&mut config, patch);
        Server::start_exact(config).await
    }

    /// Starts a server with exactly this config and waits until it listens.
    pub async fn start_exact(config: Value) -> Server {
        Server::start_exact_with(config, |_| {}).await
    }

    /// Starts a server with [`base_config`] merged with `patch`, whose open file descriptors
    /// are limited to `nofile` (`RLIMIT_NOFILE`, set in the child before it runs herald).
    pub async fn start_with_fd_limit(patch: Value, nofile: u64) -> Server {
        use std::os::unix::process::CommandExt as _;
        let mut config = base_config();
        merge(&mut config, patch);
        Server::start_exact_with(config, move |cmd| {
            // SAFETY: only setrlimit(2), which is async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: nofile as libc::rlim_t,
                        rlim_max: nofile as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        })
        .await
    }

    /// Starts a server with exactly this config, `configure` given the command before it is
    /// spawned, and waits until it listens.
    pub async fn start_exact_with(config: Value, configure: impl FnOnce(&mut Command)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let path = path.to_string_lossy().into_owned();
        Server::start_args_with(&["-c", &path], dir, configure).await
    }

    /// Starts `herald ARGS` in `dir` (its working directory, kept as long as the server) and
    /// waits until it listens.
    pub async fn start_args(args: &[&str], dir: tempfile::TempDir) -> Server {
        Server::start_args_with(args, dir, |_| {}).await
    }

    /// [`Server::start_args`], with `configure` given the command before it is spawned.
    pub async fn start_args_with(
        args: &[&str],
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        clean_env(&mut cmd);
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn herald");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        // Drain stderr for the whole life of the process so that logging never blocks it.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        let mut server = Server {
            child,
            port: 0,
            dir,
            stderr,
            exited: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(port) = parse_listening_port(&server.stderr()) {
                server.port = port;
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "herald exited ({status}) before listening; stderr:\n{}",
                    server.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "herald did not log `listening on` within {START_TIMEOUT:?}; stderr:\n{}",
                server.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to [`STEP`]) until stderr has a line for which `wanted` holds: a log line is
    /// written by the server's logging thread, possibly after the reply that it explains.
    /// Returns all of stderr either way (the caller's assertion says what was missing).
    pub async fn wait_for_stderr(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let stderr = self.stderr();
            if stderr.lines().any(&wanted) || Instant::now() >= deadline {
                return stderr;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// URL of the WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/connection/websocket", self.port)
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens a WebSocket client.
    pub async fn ws(&self) -> Ws {
        Ws::open(&self.ws_url()).await
    }

    /// Opens a WebSocket client and connects it as `user` (token without expiry).
    pub async fn client(&self, user: &str) -> Ws {
        let mut ws = self.ws().await;
        let reply = ws.connect(&token(user)).await;
        assert!(reply.get("connect").is_some(), "connect failed: {reply}");
        ws
    }

    /// `GET path` on the server.
    pub async fn get(&self, path: &str) -> HttpResponse {
        http(self.port, "GET", path, &[], None).await
    }

    /// `POST /api/<method>` with the API key in `X-API-Key`.
    pub async fn api(&self, method: &str, body: Value) -> HttpResponse {
        let body = body.to_string();
        http(
            self.port,
            "POST",
            &format!("/api/{method}"),
            &[("X-API-Key", API_KEY), ("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .await
    }

    /// `POST /api/<method>`, asserting HTTP 200 and a `result`; returns the result.
    pub async fn api_ok(&self, method: &str, body: Value) -> Value {
        let response = self.api(method, body.clone()).await;
        assert_eq!(
            response.status,
            200,
            "/api/{method} {body}: {} {}",
            response.status,
            response.text()
        );
        let value = response.json();
        assert!(
            value.get("error").is_none(),
            "/api/{method} {body} answered an error: {value}"
        );
        value
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("/api/{method} {body}: no result in {value}"))
    }

    /// Reads a metric sample (`name` including labels) from `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text();
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l[name.len() + 1..].trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The port in a `listening on http://ADDR:PORT` (or `https://`) log line.
fn parse_listening_port(log: &str) -> Option<u16> {
    let at = log.find("listening on http")?;
    let rest = &log[at + "listening on http".len()..];
    let rest = rest
        .strip_prefix("s://")
        .or_else(|| rest.strip_prefix("://"))?;
    let addr: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '(')
        .collect();
    let (_, port) = addr.rsplit_once(':')?;
    let digits: String = port.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|p| *p != 0)
}

/// Runs `herald ARGS` to completion (bounded), without inherited `HERALD_*` variables.
pub async fn run_cli(args: &[&str], dir: &std::path::Path) -> Output {
    run_cli_env(args, dir, &[]).await
}

/// [`run_cli`] with these environment variables set.
pub async fn run_cli_env(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    clean_env(&mut cmd);
    cmd.envs(env.iter().copied());
    let child = cmd.spawn().expect("spawn herald");
    let pid = child.id();
    let waited = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    match waited {
        Ok(output) => output.unwrap().expect("wait for herald"),
        Err(_) => {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("herald {args:?} did not finish within 20 s");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket client (tokio-tungstenite)
// ---------------------------------------------------------------------------------------------

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// One thing read from a WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text (or binary) data message.
    Text(String),
    /// A close frame: code and reason (code 1005 when the frame had none).
    Close(u16, String),
    /// The connection ended without a close frame (EOF or error).
    Ended(String),
}

/// A Centrifugo protocol client over tokio-tungstenite. Pushes that arrive while waiting for a
/// reply are kept for [`Ws::next_push`].
pub struct Ws {
    stream: WsStream,
    pending: VecDeque<Value>,
    next_id: u32,
}

impl Ws {
    /// Opens a WebSocket to `url` (bounded).
    pub async fn open(url: &str) -> Ws {
        let (stream, response) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
            .await
            .expect("WebSocket handshake timed out")
            .expect("WebSocket handshake failed");
        assert_eq!(response.status().as_u16(), 101);
        Ws::from_stream(stream)
    }

    /// Opens a WebSocket to `url` whose upgrade request has these extra `headers` (bounded).
    pub async fn open_with_headers(url: &str, headers: &[(&str, &str)]) -> Ws {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = url.into_client_request().expect("a WebSocket URL");
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::try_from(*name).expect("a header name"),
                http::HeaderValue::try_from(*value).expect("a header value"),
            );
        }
        let (stream, response) =
            tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request))
                .await
                .expect("WebSocket handshake timed out")
                .expect("WebSocket handshake failed");
        assert_eq!(response.status().as_u16(), 101);
        Ws::from_stream(stream)
    }

    /// A client on a WebSocket whose handshake is done.
    fn from_stream(stream: WsStream) -> Ws {
        Ws {
            stream,
            pending: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(STEP, self.stream.send(Message::text(text)))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Sends one JSON command as a text frame.
    pub async fn send(&mut self, command: &Value) {
        self.send_text(&command.to_string()).await;
    }

    /// Sends a raw message (e.g. binary) without waiting for anything.
    pub async fn send_message(&mut self, message: Message) {
        tokio::time::timeout(STEP, self.stream.send(message))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// The next frame, or `None` if nothing arrives within `wait`. WS-level pings and pongs are
    /// skipped (tungstenite answers pings itself).
    pub async fn next_frame_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            return Some(match next {
                None => Frame::Ended("stream ended".into()),
                Some(Err(e)) => Frame::Ended(e.to_string()),
                Some(Ok(Message::Text(text))) => Frame::Text(text.to_string()),
                Some(Ok(Message::Binary(data))) => {
                    Frame::Text(String::from_utf8_lossy(&data).into_owned())
                }
                Some(Ok(Message::Close(frame))) => match frame {
                    Some(f) => Frame::Close(u16::from(f.code), f.reason.to_string()),
                    None => Frame::Close(u16::from(CloseCode::Status), String::new()),
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            });
        }
    }

    /// The next frame; panics if none arrives within [`STEP`].
    pub async fn next_frame(&mut self) -> Frame {
        self.next_frame_within(STEP)
            .await
            .expect("no frame within the step timeout")
    }

    /// The JSON values of the next text frame (newline-separated); panics on a close.
    pub async fn next_values(&mut self) -> Vec<Value> {
        match self.next_frame().await {
            Frame::Text(text) => split_values(&text),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Sends `command` (an object without `id`) with the next id and returns the reply with that
    /// id; pushes met on the way are kept for [`Ws::next_push`], server pings skipped.
    pub async fn call(&mut self, command: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = command;
        command["id"] = json!(id);
        self.send(&command).await;
        self.reply_to(id).await
    }

    /// Waits for the reply with `id` (pushes kept, pings skipped).
    pub async fn reply_to(&mut self, id: u32) -> Value {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self
                .next_frame_within(wait)
                .await
                .unwrap_or_else(|| panic!("no reply to command {id} within {STEP:?}"));
            let text = match frame {
                Frame::Text(text) => text,
                other => panic!("waiting for the reply to command {id}, got {other:?}"),
            };
            let mut found = None;
            for value in split_values(&text) {
                if value.get("id").and_then(Value::as_u64) == Some(u64::from(id)) {
                    found = Some(value);
                } else if value.get("push").is_some() {
                    self.pending.push_back(value);
                }
            }
            if let Some(value) = found {
                return value;
            }
        }
    }

    /// Sends a connect command with `token` and returns the reply.
    pub async fn connect(&mut self, token: &str) -> Value {
        self.call(json!({"connect": {"token": token}})).await
    }

    /// Subscribes to `channel`, returning the reply.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.call(json!({"subscribe": {"channel": channel}})).await
    }

    /// Subscribes to `channel`, asserting success.
    pub async fn subscribe_ok(&mut self, channel: &str) {
        let reply = self.subscribe(channel).await;
        assert!(
            reply.get("subscribe").is_some() && reply.get("error").is_none(),
            "subscribe {channel}: {reply}"
        );
    }

    /// Publishes `data` to `channel`, returning the reply.
    pub async fn publish(&mut self, channel: &str, data: Value) -> Value {
        self.call(json!({"publish": {"channel": channel, "data": data}}))
            .await
    }

    /// The next push (`{"push":…}` value); panics after [`STEP`]. Server pings are skipped.
    pub async fn next_push(&mut self) -> Value {
        self.next_push_within(STEP)
            .await
            .expect("no push within the step timeout")
    }

    /// The next push, or `None` if none arrives within `wait`.
    pub async fn next_push_within(&mut self, wait: Duration) -> Option<Value> {
        if let Some(push) = self.pending.pop_front() {
            return Some(push);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame_within(left).await? {
                Frame::Text(text) => {
                    for value in split_values(&text) {
                        if value.get("push").is_some() {
                            self.pending.push_back(value);
                        } else if value != json!({}) {
                            panic!("expected a push, got {value}");
                        }
                    }
                    if let Some(push) = self.pending.pop_front() {
                        return Some(push);
                    }
                }
                other => panic!("expected a push, got {other:?}"),
            }
        }
    }

    /// Reads until a close frame and returns its code and reason (data frames are skipped);
    /// panics if the connection ends without one or nothing comes within `wait`.
    pub async fn expect_close_within(&mut self, wait: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame_within(left).await {
                None => panic!("no close frame within {wait:?}"),
                Some(Frame::Text(_)) => continue,
                Some(Frame::Close(code, reason)) => {
                    // Keep polling so that tungstenite sends its close reply and the server
                    // sees a clean closing handshake (it would otherwise wait for it).
                    let _ = tokio::time::timeout(STEP, async {
                        while self.stream.next().await.is_some() {}
                    })
                    .await;
                    // Then end our side of the TCP connection, as a client that closes does
                    // (the server waits for this FIN before it forgets the connection).
                    match self.stream.get_mut() {
                        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => {
                            let _ = tcp.shutdown().await;
                        }
                        tokio_tungstenite::MaybeTlsStream::Rustls(tls) => {
                            let _ = tls.shutdown().await;
                        }
                        _ => {}
                    }
                    return (code, reason);
                }
                Some(Frame::Ended(why)) => panic!("connection ended without a close frame: {why}"),
            }
        }
    }

    /// [`Ws::expect_close_within`] with [`STEP`].
    pub async fn expect_close(&mut self) -> (u16, String) {
        self.expect_close_within(STEP).await
    }

    /// Asserts that the connection is alive and usable: a command still gets its reply.
    pub async fn assert_alive(&mut self) {
        let reply = self.call(json!({"rpc": {"method": "alive?"}})).await;
        assert_eq!(reply["error"]["code"], 108, "{reply}");
    }
}

/// Splits a frame's text into its newline-separated JSON values.
pub fn split_values(text: &str) -> Vec<Value> {
    text.split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}")))
        .collect()
}

/// Asserts a reply is an error with `code` for command `id`.
#[track_caller]
pub fn assert_error(reply: &Value, code: u64) {
    assert_eq!(
        reply["error"]["code"].as_u64(),
        Some(code),
        "expected error {code}, got {reply}"
    );
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket client over TcpStream (manual handshake and framing)
// ---------------------------------------------------------------------------------------------

/// A minimal hand-rolled WebSocket client: for invalid frames, odd handshakes and a client that
/// never reads.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// The head of an HTTP response: status code and the header block as text.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub text: String,
}

/// Sends a WebSocket handshake to `/connection/websocket` with `extra` headers and returns the
/// response head and the connection (ready for frames when the status is 101).
pub async fn raw_handshake(port: u16, extra: &[(&str, &str)]) -> (Head, RawWs) {
    raw_handshake_on(
        tokio::time::timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect timed out")
            .expect("connect"),
        port,
        extra,
    )
    .await
}

/// [`raw_handshake`] on an already connected socket.
pub async fn raw_handshake_on(
    stream: TcpStream,
    port: u16,
    extra: &[(&str, &str)],
) -> (Head, RawWs) {
    let mut request = format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    );
    let has_key = extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Key"));
    if !has_key {
        request.push_str("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
    }
    for (k, v) in extra {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut raw = RawWs {
        stream,
        buf: Vec::new(),
    };
    tokio::time::timeout(STEP, raw.stream.write_all(request.as_bytes()))
        .await
        .expect("write timed out")
        .expect("write handshake");
    let head = tokio::time::timeout(STEP, raw.read_head())
        .await
        .expect("no handshake response within the step timeout");
    (head, raw)
}

impl RawWs {
    async fn read_head(&mut self) -> Head {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let status = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line in {text:?}"));
                return Head { status, text };
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .expect("read response head");
            assert!(n > 0, "connection closed before the response head");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one final, masked frame with `opcode` (1 text, 2 binary, 8 close…).
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let frame = encode_client_frame(opcode, payload);
        tokio::time::timeout(STEP, self.stream.write_all(&frame))
            .await
            .expect("write timed out")
            .expect("write frame");
    }

    /// Reads one frame; `None` when the connection ends (EOF or error) first.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, payload, used)) = decode_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some((opcode, payload));
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until a close frame (code, reason), skipping data frames; `None` when the
    /// connection ends without one. Bounded by `wait`.
    pub async fn read_close_within(&mut self, wait: Duration) -> Option<(u16, String)> {
        let read = async {
            while let Some((opcode, payload)) = self.read_frame().await {
                if opcode == 8 {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1005
                    };
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into_owned();
                    return Some((code, reason));
                }
            }
            None
        };
        tokio::time::timeout(wait, read)
            .await
            .expect("no close frame nor end of connection in time")
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Encodes a final client frame (masked, as RFC 6455 requires of clients).
pub fn encode_client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Decodes one unmasked server frame from the front of `buf`: (opcode, payload, bytes used).
fn decode_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            )
        }
        n => (n as usize, 2),
    };
    let mask = if masked {
        if buf.len() < at + 4 {
            return None;
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < at + len {
        return None;
    }
    let mut payload = buf[at..at + len].to_vec();
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Some((opcode, payload, at + len))
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A complete HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of HTTP {} is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// A header's value (first occurrence).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`Connection: close`) over a fresh TCP connection, bounded by [`STEP`].
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let stream = tokio::time::timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("connect timed out")
        .expect("connect");
    http_on(stream, port, method, path, headers, body).await
}

/// [`http`] on a connection already open (plain TCP or TLS).
pub async fn http_on<S>(
    mut stream: S,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let exchange = async {
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        if let Some(body) = body {
            bytes.extend_from_slice(body);
        }
        stream.write_all(&bytes).await.expect("write request");
        let mut response = Vec::new();
        match stream.read_to_end(&mut response).await {
            Ok(_) => {}
            // A TLS peer that closes the TCP connection without close_notify after a
            // complete `Connection: close` response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
            Err(e) => panic!("read response: {e}"),
        }
        parse_response(&response)
    };
    tokio::time::timeout(STEP, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete response within {STEP:?}"))
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = find(raw, b"\r\n\r\n").expect("no end of response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    out
}
