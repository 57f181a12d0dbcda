//! A plain "tokio + tokio-tungstenite broadcast" server: the baseline row of the performance
//! issue, runnable on the same machine as Herald and driven by the same `herald-bench`, so
//! that both are measured side by side with one tool instead of against numbers taken
//! elsewhere.
//!
//! ```text
//! cargo run --release -p herald-bench --example broadcast_reference -- --port 8124
//! herald-bench fanout --url ws://127.0.0.1:8124/connection/websocket \
//!     --api http://127.0.0.1:8124/api --api-key x --hmac-secret x --subs 1000 --rate 1000
//! ```
//!
//! It takes the same `-c <config>` and `--port` as `herald` (the config is ignored), so scripts
//! such as `bench/compare.sh` can start it in place of a Herald binary. WebSocket clients and
//! the HTTP API share the one port (default 8000, address 127.0.0.1, `--address` to change).
//!
//! The design is the naive, idiomatic one, on purpose; do not optimise it:
//! * the default multi-thread tokio runtime; hyper 1 serves every HTTP/1.1 connection and
//!   hands `GET /connection/websocket` upgrades to tokio-tungstenite
//!   (`WebSocketStream::from_raw_socket`, default `WebSocketConfig`); TCP_NODELAY is set on
//!   accepted sockets, as any latency-sensitive server does; the listener is plain
//!   `TcpListener::bind`, whose listen backlog is the standard library's 128 (Herald asks for
//!   more), so a burst of connects can overflow it and those clients retry after ~1 s;
//! * one `tokio::sync::broadcast` channel for the whole server carries every publication,
//!   encoded once into a complete push frame (`Utf8Bytes`, shared by all receivers) and
//!   tagged with its channel name;
//! * each WebSocket connection is one task: it reads the client's commands and, once
//!   subscribed, `select!`s between its broadcast receiver and the socket; woken by a
//!   publication, it `feed`s it and every other one already waiting in its receiver
//!   (`try_recv`) to the sink and flushes once: the usual tokio-tungstenite way to write a
//!   backlog, one write per wake-up rather than per message (with a `send` per message this
//!   server saturates at ~0.2 M deliveries/s here);
//! * a receiver that falls more than `--capacity` publications behind (default 16,384: over
//!   3 s of backlog at 5,000 publications/s) skips what it missed (`RecvError::Lagged`); the
//!   skipped count is printed, and the bench reports the loss.
//!
//! Just enough of the Centrifugo client protocol (v2, JSON, newline-separated commands) for
//! `herald-bench fanout`, `idle` and `connect`: `connect` (answered
//! `{"id":1,"connect":{"client":"…","version":"ref","ping":0,"pong":false}}`; the server sends
//! no pings), `subscribe` / `unsubscribe` (`{"id":2,"subscribe":{}}`), `publish` and `ping`;
//! `{}` from the client (a pong) is ignored; anything else with an id gets error 104. A
//! publication to channel C with data D is pushed as `{"push":{"channel":"C","pub":{"data":D}}}`
//! with D copied verbatim. The `centrifuge-json` subprotocol is accepted when offered. A frame
//! that is not a valid command (or arrives before `connect`) closes that client with 3501.
//!
//! HTTP API: `POST /api/publish` with `{"channel":C,"data":D}` (what `herald-bench --api
//! http://host:port/api` sends), or `POST /api` with `{"method":"publish","params":{…}}`;
//! both answer `{"result":{}}` (no offset: there is no history).
//!
//! Memory: tungstenite 0.28's default `read_buffer_size` is 128 KiB, and it zero-fills that
//! buffer before the first read, so each connection holds about 129 KiB resident (measured with
//! `herald-bench idle`). That is what the default configuration costs, and it is kept: a
//! typical server does not tune it.
//!
//! What it deliberately does not do: no authentication (connection tokens and the API key are
//! accepted without being checked), no history, recovery, presence or join/leave, no server
//! pings, no per-connection queue budget beyond the broadcast channel's lag, no holding of
//! output to gather more into one write (it writes what is waiting when it wakes). SIGINT or
//! SIGTERM prints a summary and exits.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes, handshake::derive_accept_key};

/// Largest HTTP API request body read.
const MAX_API_BODY: usize = 8 << 20;

#[derive(Debug, Parser)]
#[command(about = "Reference tokio + tokio-tungstenite broadcast server for herald-bench")]
struct Args {
    /// Address to listen on (WebSocket and HTTP API).
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// Port to listen on (WebSocket and HTTP API).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Capacity of the broadcast channel: how many publications a receiver may fall behind
    /// before it skips the oldest.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1 << 24))]
    capacity: u32,
    /// Accepted and ignored (so scripts can start this like `herald -c config.json`).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
}

/// One publication as every receiver gets it: the channel it was published to and the push
/// frame, encoded once.
#[derive(Clone)]
struct Publication {
    channel: Arc<str>,
    frame: Utf8Bytes,
}

struct State {
    tx: broadcast::Sender<Publication>,
    next_client: AtomicU64,
    connections: AtomicU64,
    publications: AtomicU64,
    lagged: AtomicU64,
}

impl State {
    /// Encodes the push frame once and hands it to every receiver.
    fn publish(&self, req: &PublishRequest) -> Result<(), serde_json::Error> {
        let frame = serde_json::to_string(&Push {
            push: PushBody {
                channel: &req.channel,
                publication: PubBody { data: &req.data },
            },
        })?;
        self.publications.fetch_add(1, Relaxed);
        // An error only means that nobody is subscribed.
        let _ = self.tx.send(Publication {
            channel: Arc::from(req.channel.as_str()),
            frame: Utf8Bytes::from(frame),
        });
        Ok(())
    }
}

#[derive(Serialize)]
struct Push<'a> {
    push: PushBody<'a>,
}

#[derive(Serialize)]
struct PushBody<'a> {
    channel: &'a str,
    #[serde(rename = "pub")]
    publication: PubBody<'a>,
}

#[derive(Serialize)]
struct PubBody<'a> {
    data: &'a RawValue,
}

/// A client command; `{}` (all fields absent) is the client's pong.
#[derive(Deserialize)]
struct Command {
    #[serde(default)]
    id: u32,
    connect: Option<serde::de::IgnoredAny>,
    subscribe: Option<ChannelRequest>,
    unsubscribe: Option<ChannelRequest>,
    publish: Option<PublishRequest>,
    ping: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ChannelRequest {
    channel: String,
}

#[derive(Deserialize)]
struct PublishRequest {
    channel: String,
    data: Box<RawValue>,
}

/// A reply to command `id`: `{"id":N,` then the fields of `body` (so that `id` comes first,
/// as Centrifugo writes it).
#[derive(Serialize)]
struct Reply {
    id: u32,
    #[serde(flatten)]
    body: serde_json::Value,
}

/// The older single-endpoint API form: `POST /api` with `{"method":"publish","params":{…}}`.
#[derive(Deserialize)]
struct ApiCommand {
    method: String,
    params: Box<RawValue>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.config {
        eprintln!("broadcast_reference: ignoring config {}", path.display());
    }
    let addr = SocketAddr::new(args.address, args.port);
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("broadcast_reference: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (tx, _) = broadcast::channel(args.capacity as usize);
    let state = Arc::new(State {
        tx,
        next_client: AtomicU64::new(1),
        connections: AtomicU64::new(0),
        publications: AtomicU64::new(0),
        lagged: AtomicU64::new(0),
    });
    eprintln!(
        "broadcast_reference: listening on {addr} (ws://{addr}/connection/websocket, API http://{addr}/api), broadcast capacity {}",
        args.capacity
    );
    tokio::spawn(report_lag(state.clone()));

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(req, state.clone()));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    });
                }
                Err(e) => {
                    // Out of descriptors, typically: wait a little rather than spin.
                    eprintln!("broadcast_reference: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    eprintln!(
        "broadcast_reference: {} clients connected ({} connections open), {} publications, {} skipped by lagging receivers",
        state.next_client.load(Relaxed) - 1,
        state.connections.load(Relaxed),
        state.publications.load(Relaxed),
        state.lagged.load(Relaxed),
    );
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Prints the lag total whenever it grew (at most once a second).
async fn report_lag(state: Arc<State>) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = state.lagged.load(Relaxed);
        if now != last {
            eprintln!("broadcast_reference: lagging receivers skipped {now} publications so far");
            last = now;
        }
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/connection/websocket") => upgrade(req, state),
        (&Method::POST, "/api/publish") => match read_json::<PublishRequest>(req).await {
            Ok(p) => api_publish(&state, &p),
            Err(resp) => resp,
        },
        (&Method::POST, "/api") => match read_json::<ApiCommand>(req).await {
            Ok(cmd) if cmd.method == "publish" => {
                match serde_json::from_str::<PublishRequest>(cmd.params.get()) {
                    Ok(p) => api_publish(&state, &p),
                    Err(_) => reply(
                        StatusCode::BAD_REQUEST,
                        r#"{"error":{"code":107,"message":"bad request"}}"#,
                    ),
                }
            }
            Ok(_) => reply(
                StatusCode::OK,
                r#"{"error":{"code":104,"message":"method not found"}}"#,
            ),
            Err(resp) => resp,
        },
        _ => reply(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    })
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let body = Limited::new(req.into_body(), MAX_API_BODY)
        .collect()
        .await
        .map_err(|_| {
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"error":{"code":107,"message":"bad request"}}"#,
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|_| {
        reply(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":107,"message":"bad request"}}"#,
        )
    })
}

fn api_publish(state: &State, req: &PublishRequest) -> Response<Body> {
    match state.publish(req) {
        Ok(()) => reply(StatusCode::OK, r#"{"result":{}}"#),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"code":100,"message":"internal server error"}}"#,
        ),
    }
}

/// Answers a WebSocket upgrade request with 101 and serves the connection once hyper hands
/// it over.
fn upgrade(mut req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let headers = req.headers();
    let wants_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let (true, true, Some(key)) = (wants_websocket, version_ok, key) else {
        return reply(
            StatusCode::BAD_REQUEST,
            r#"{"error":"not a websocket upgrade"}"#,
        );
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return reply(StatusCode::BAD_REQUEST, r#"{"error":"bad key"}"#);
    };
    let json_protocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "centrifuge-json");

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            state.connections.fetch_add(1, Relaxed);
            serve_client(ws, &state).await;
            state.connections.fetch_sub(1, Relaxed);
        }
    });

    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if json_protocol {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("centrifuge-json"),
        );
    }
    resp
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// One client's state.
#[derive(Default)]
struct Session {
    connected: bool,
    channels: HashSet<String>,
    rx: Option<broadcast::Receiver<Publication>>,
}

/// Why a client is let go.
enum Disconnect {
    /// The client sent something that is not a valid command: close with 3501.
    BadRequest,
    /// The socket failed.
    Gone,
}

/// The connection's one task: client commands, and publications once subscribed.
async fn serve_client(mut ws: Ws, state: &State) {
    let mut session = Session::default();
    loop {
        tokio::select! {
            incoming = ws.next() => {
                let result = match incoming {
                    Some(Ok(Message::Text(text))) => {
                        handle_commands(&mut ws, state, &mut session, text.as_str()).await
                    }
                    Some(Ok(Message::Binary(_))) => Err(Disconnect::BadRequest),
                    // tokio-tungstenite answers pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => Err(Disconnect::Gone),
                };
                match result {
                    Ok(()) => {}
                    Err(Disconnect::BadRequest) => {
                        let _ = ws
                            .close(Some(CloseFrame {
                                code: CloseCode::from(3501),
                                reason: "bad request".into(),
                            }))
                            .await;
                        return;
                    }
                    Err(Disconnect::Gone) => return,
                }
            }
            publication = recv(&mut session.rx) => {
                let mut next = publication;
                let mut fed = false;
                loop {
                    match next {
                        Ok(p) => {
                            if session.channels.contains(&*p.channel) {
                                if ws.feed(Message::Text(p.frame)).await.is_err() {
                                    return;
                                }
                                fed = true;
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            state.lagged.fetch_add(n, Relaxed);
                        }
                        Err(RecvError::Closed) => return,
                    }
                    // Whatever else is already waiting goes out with the same flush.
                    next = match session.rx.as_mut().map(|rx| rx.try_recv()) {
                        Some(Ok(p)) => Ok(p),
                        Some(Err(TryRecvError::Lagged(n))) => Err(RecvError::Lagged(n)),
                        _ => break,
                    };
                }
                if fed && ws.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The next publication, or never when the client has not subscribed.
async fn recv(rx: &mut Option<broadcast::Receiver<Publication>>) -> Result<Publication, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Handles the commands of one text frame (one per line), sending a reply to each.
async fn handle_commands(
    ws: &mut Ws,
    state: &State,
    session: &mut Session,
    text: &str,
) -> Result<(), Disconnect> {
    for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
        let cmd: Command = serde_json::from_str(line).map_err(|_| Disconnect::BadRequest)?;
        let id = cmd.id;
        let answer = if cmd.connect.is_some() {
            session.connected = true;
            let n = state.next_client.fetch_add(1, Relaxed);
            serde_json::json!({"connect": {
                "client": format!("00000000-0000-4000-8000-{n:012x}"),
                "version": "ref",
                "ping": 0,
                "pong": false,
            }})
        } else if !session.connected {
            return Err(Disconnect::BadRequest);
        } else if let Some(sub) = cmd.subscribe {
            if session.channels.insert(sub.channel) {
                if session.rx.is_none() {
                    session.rx = Some(state.tx.subscribe());
                }
                serde_json::json!({"subscribe": {}})
            } else {
                serde_json::json!({"error": {"code": 105, "message": "already subscribed"}})
            }
        } else if let Some(unsub) = cmd.unsubscribe {
            session.channels.remove(&unsub.channel);
            if session.channels.is_empty() {
                session.rx = None;
            }
            serde_json::json!({"unsubscribe": {}})
        } else if let Some(publish) = cmd.publish {
            match state.publish(&publish) {
                Ok(()) => serde_json::json!({"publish": {}}),
                Err(_) => {
                    serde_json::json!({"error": {"code": 100, "message": "internal server error"}})
                }
            }
        } else if cmd.ping.is_some() {
            serde_json::json!({"ping": {}})
        } else if id == 0 {
            // `{}`: the client's pong (this server sends no pings anyway).
            continue;
        } else {
            serde_json::json!({"error": {"code": 104, "message": "method not found"}})
        };
        let answer = serde_json::to_string(&Reply { id, body: answer })
            .map_err(|_| Disconnect::BadRequest)?;
        ws.send(Message::Text(answer.into()))
            .await
            .map_err(|_| Disconnect::Gone)?;
    }
    Ok(())
}
