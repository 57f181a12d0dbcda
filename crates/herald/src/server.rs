//! The HTTP listener: accepts connections, routes requests (the transports' endpoints, server
//! API, health, metrics) and shuts down gracefully.
//!
//! HTTP is served on threads of its own, and each WebSocket moves to the worker runtime once
//! upgraded (see [`Server::run`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::http_guard::{AcceptBackoff, AcceptLog, TimedBody};
use crate::node::{LiveConnection, Node};
use crate::protocol::Encoding;
use crate::transport::http_stream::{self, Framing, StreamBody};
use crate::transport::{
    Emulation, Endpoint, Endpoints, Json, Protobuf, UniWebSocketTransport, WebSocketTransport,
    uni_websocket,
};
use crate::ws::{self, DeflateConfig, HandshakeConfig, Limits, Outbox, WebSocket};

mod http1_stream;

/// Path of the bidirectional WebSocket endpoint (Centrifugo's).
pub const WEBSOCKET_PATH: &str = "/connection/websocket";

/// How long shutdown waits for clients to take their close frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A response body: small, complete bodies only.
pub type HttpResponse = Response<Full<Bytes>>;

/// A response of any endpoint: a complete body, or a streaming transport's stream.
type Routed = Response<Either<Full<Bytes>, StreamBody>>;

/// Settings derived once from the config for every connection (TLS) and every WebSocket.
struct WsSettings {
    /// TLS termination (`http_server.tls`), when enabled: every accepted connection does its
    /// handshake first (see [`serve_http`]).
    tls: Option<crate::tls::Terminator>,
    handshake: HandshakeConfig,
    connection: Arc<ws::Config>,
    /// The unidirectional WebSocket's handshake and connection settings.
    uni_websocket: uni_websocket::Settings,
    /// The outbound queue budget every connection's outbox shares.
    outbox: Arc<ws::Budget>,
    /// The runtime WebSocket connections run on: the one [`Server::bind`] was called on.
    workers: tokio::runtime::Handle,
    /// `client.connection_limit` and `client.connection_rate_limit`.
    limiter: crate::limits::ConnectionLimiter,
    /// Which transport serves which path.
    endpoints: Endpoints,
    /// The streaming connections, by session, for the emulation endpoint.
    emulation: Arc<Emulation>,
    /// Held from the connection limit's check until the new connection is counted: the HTTP
    /// threads admit one handshake at a time (held across no await).
    admission: std::sync::Mutex<()>,
}

/// The HTTP server of a node.
pub struct Server {
    node: Arc<Node>,
    listener: TcpListener,
    ws: Arc<WsSettings>,
}

impl Server {
    /// Binds the configured address. Port 0 picks a free port (see [`Server::local_addr`]).
    /// With TLS on, loads the certificate and starts watching for its reload (SIGHUP, file
    /// changes).
    pub async fn bind(node: Arc<Node>) -> std::io::Result<Server> {
        let http = &node.config().http_server;
        let host = match http.address.as_str() {
            "" => "0.0.0.0",
            other => other,
        };
        let listener = listen((host, http.port)).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {host}:{}: {e} (is another server running? change \
                     http_server.port or pass --port)",
                    http.port
                ),
            )
        })?;
        let tls = crate::tls::Terminator::from_config(&node.config().http_server.tls)
            .map_err(std::io::Error::other)?;
        if let Some(tls) = &tls {
            // From here on, before the server says it listens: a SIGHUP sent once it does
            // must reload the certificate, never end the process.
            let watch = tls
                .watch(node.shutdown().clone())
                .map_err(context("cannot watch for SIGHUP (TLS certificate reload)"))?;
            tokio::spawn(watch);
        }
        let ws = Arc::new(WsSettings {
            tls,
            ..ws_settings(&node)
        });
        Ok(Server { node, listener, ws })
    }

    /// Whether the listener speaks TLS (`https://`, `wss://`).
    pub fn is_tls(&self) -> bool {
        self.ws.tls.is_some()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `node.shutdown` is cancelled, then closes every client with 3001 and waits
    /// (a bounded time) for them to go.
    ///
    /// HTTP (the server API, WebSocket handshakes, the web UI) is served by a runtime of its
    /// own, on `herald-http` threads (as many as the connections' workers, see
    /// [`http_threads`]); an upgraded WebSocket moves to the runtime `run` is called on, which
    /// runs nothing else. A publish request then never queues behind the connections' writes:
    /// under fan-out load, with everything on one runtime, it waited up to a whole round of
    /// writes to be read (publish round trip p99 116–151 ms with 10,000 subscribers × 100
    /// msg/s) and its fan-out started that much later.
    ///
    /// Fails when that thread cannot be started, or its runtime or listener cannot be set up
    /// there (it then stops the node first).
    pub async fn run(self) -> std::io::Result<()> {
        let Server { node, listener, ws } = self;
        let timers = node.clone();
        tokio::spawn(async move { timers.pings().run(timers.shutdown().clone()).await });
        let timers = node.clone();
        tokio::spawn(async move { timers.alarms().run(timers.shutdown().clone()).await });
        let timers = node.clone();
        tokio::spawn(async move { timers.refresh_presence().await });
        node.run_webhooks();
        // The HTTP thread keeps its connections (API calls in flight) until the clients are
        // closed below; dropping `closed` lets it end.
        let (closed, http_may_end) = tokio::sync::oneshot::channel::<()>();
        let listener = listener.into_std()?;
        let http = {
            let node = node.clone();
            std::thread::Builder::new()
                .name(HTTP_THREAD.into())
                .spawn(move || serve_http_thread(node, ws, listener, http_may_end))
                .map_err(context("cannot start the HTTP thread"))?
        };
        node.shutdown().cancelled().await;
        // Connected clients do not each wait for the shutdown (that would cost every idle
        // connection a cancellation future): they are closed from here, as the server API's
        // `disconnect` does. Clients still connecting close themselves when the alarm clock
        // rings them all (see `AlarmClock::run`).
        for client in node.hub().all_clients() {
            client.disconnect(&crate::protocol::Disconnect::SHUTDOWN);
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let live = || node.live_connections();
        while live() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("shut down; {} connections remained", live());
        drop(closed);
        // The HTTP thread ends at once now; joining it must not block a worker thread.
        match tokio::task::spawn_blocking(move || http.join()).await {
            Ok(Ok(result)) => result,
            _ => Err(std::io::Error::other("the HTTP thread panicked")),
        }
    }
}

/// The name of the threads that serve HTTP (and so the server API): engines that keep a
/// connection per runtime tell them apart by it (see `engine::redis::Lane::Http`).
pub const HTTP_THREAD: &str = "herald-http";

/// The `herald-http` thread: accepts connections and serves HTTP on them until shutdown,
/// then keeps the open ones until `may_end` resolves (or its sender is dropped). If it cannot
/// set up, it stops the node and says why.
fn serve_http_thread(
    node: Arc<Node>,
    ws: Arc<WsSettings>,
    listener: std::net::TcpListener,
    may_end: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let threads = http_threads(&node);
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads).thread_name(HTTP_THREAD);
        b
    };
    let served = builder
        .enable_all()
        .build()
        .map_err(context("cannot start the HTTP runtime"))
        .and_then(|runtime| {
            runtime.block_on(async {
                accept_until_shutdown(&node, ws, listener).await?;
                let _ = may_end.await;
                Ok(())
            })
        });
    if served.is_err() {
        node.shutdown().cancel();
    }
    served
}

/// How many threads serve HTTP: as many as run the connections (`workers`, default one per
/// core).
///
/// Why more than one: a publish through the server API fans out on the thread that serves it
/// (a push into every subscriber's outbox), so at 1,000 subscribers × 5,000 publications/s
/// the API threads do 5 million pushes a second. On one thread, with the cores saturated by
/// the connections' writes, the scheduler gave that thread a third of a core at best and the
/// API fell to ~3,100 of the 5,000 publishes/s asked (issue 25); with a thread per core the
/// fan-out of concurrent requests runs in parallel and gets the scheduler's share of each
/// core (see bench/RESULTS.md). Handling HTTP on the connections' runtime instead would make
/// a publish wait behind their writes again (see [`Server::run`]).
fn http_threads(node: &Node) -> usize {
    match node.config().workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Accepts connections on `listener` (registered here, with the HTTP thread's runtime) and
/// serves HTTP on each, until `node.shutdown` is cancelled.
async fn accept_until_shutdown(
    node: &Arc<Node>,
    ws: Arc<WsSettings>,
    listener: std::net::TcpListener,
) -> std::io::Result<()> {
    let listener =
        TcpListener::from_std(listener).map_err(context("cannot register the listener"))?;
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            () = node.shutdown().cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let log = backoff.succeeded();
                    log_accept(&backoff, log, None);
                    tokio::spawn(serve_http(node.clone(), ws.clone(), stream, peer));
                }
                Err(e) => {
                    // EMFILE and the like leave the connection in the accept queue, so the
                    // listener stays readable: without a wait this would spin a core (and log
                    // a line per try).
                    let (wait, log) = backoff.failed(std::time::Instant::now());
                    log_accept(&backoff, log, Some(&e));
                    tokio::select! {
                        () = node.shutdown().cancelled() => return Ok(()),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// Logs what [`AcceptBackoff`] says to log: one warning when `accept()` starts failing, a
/// reminder a minute, one line when it works again.
fn log_accept(backoff: &AcceptBackoff, log: AcceptLog, error: Option<&std::io::Error>) {
    let advice = |e: &std::io::Error| {
        if crate::http_guard::out_of_resources(e) {
            " (the process is out of file descriptors or memory: raise its limit, e.g. \
             `ulimit -n` or systemd's LimitNOFILE, or lower the load)"
        } else {
            ""
        }
    };
    match (log, error) {
        (AcceptLog::Started, Some(e)) => tracing::warn!(
            "accept failed: {e}{}; new connections wait in the queue, retrying every 10 ms \
             to 1 s (further failures are counted, not logged)",
            advice(e)
        ),
        (AcceptLog::StillFailing(n), Some(e)) => tracing::warn!(
            "accept still failing: {n} failures since {:.0?} ago, last: {e}{}",
            backoff
                .episode_started()
                .map(|t| t.elapsed())
                .unwrap_or_default(),
            advice(e)
        ),
        (AcceptLog::Recovered(n), _) => {
            tracing::info!("accept works again after {n} failures")
        }
        _ => {}
    }
}

/// Wraps an I/O error with what was being done, keeping its kind.
fn context(what: &'static str) -> impl FnOnce(std::io::Error) -> std::io::Error {
    move |e| std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Pending connections the kernel may hold before `accept`: a small queue drops SYNs when
/// thousands of clients reconnect at once (each drop costs that client a 1 s retry). Linux
/// caps the request at `net.core.somaxconn` (4096 by default), so asking for the most it
/// takes means an operator who raises that sysctl for reconnect storms gets all of it.
const LISTEN_BACKLOG: u32 = 65535;

/// Binds a listener with [`LISTEN_BACKLOG`] (the kernel caps it at `net.core.somaxconn`).
async fn listen(addr: (&str, u16)) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::ErrorKind::AddrNotAvailable.into()))
}

/// The write pacer every WebSocket connection of this server shares (both transports), or
/// none when write coalescing is off.
fn ws_pacer(node: &Node) -> Option<Arc<herald_ws::Pacer>> {
    if node.config().websocket.write_coalesce.is_zero() {
        return None;
    }
    // As many threads as run the connections (`workers`, default one per core).
    let workers = http_threads(node) as u64;
    // `websocket.write_budget` is per worker: a loopback `sendmsg` costs ~6.6 µs of kernel
    // time (bench/RESULTS.md, issue 25: 83 % of the server's samples at 111,000 writes/s), so
    // the default 50,000 is about a third of each worker's time in writes.
    let websocket = &node.config().websocket;
    Some(Arc::new(herald_ws::Pacer::new(
        websocket.write_budget.saturating_mul(workers),
        websocket.write_max_hold,
    )))
}

fn ws_settings(node: &Node) -> WsSettings {
    let websocket = &node.config().websocket;
    let pacer = ws_pacer(node);
    if let Some(pacer) = &pacer {
        node.metrics().watch_pacer(pacer.clone());
    }
    let message_limit = websocket.message_size_limit.max(1024);
    let decompressed_limit = if websocket.decompressed_message_size_limit > 0 {
        websocket.decompressed_message_size_limit
    } else {
        message_limit
    };
    WsSettings {
        tls: None,
        handshake: HandshakeConfig {
            // In order of preference: JSON when a client offers both.
            protocols: vec![
                "centrifuge-json".to_owned(),
                PROTOBUF_SUBPROTOCOL.to_owned(),
            ],
            deflate: DeflateConfig {
                enabled: websocket.compression,
                min_size: websocket.compression_min_size,
                level: websocket.compression_level.clamp(1, 9),
                ..DeflateConfig::default()
            },
            origin: None,
        },
        connection: Arc::new(ws::Config {
            limits: Limits {
                max_message_size: decompressed_limit,
                max_frame_size: message_limit,
                max_fragments: 1024,
            },
            write_timeout: websocket.write_timeout.max(Duration::from_millis(100)),
            write_coalesce: websocket.write_coalesce,
            pacer: pacer.clone(),
            ..ws::Config::default()
        }),
        outbox: Arc::new(crate::transport::outbox_budget(
            node.config().client.queue_max_size.max(1024),
        )),
        workers: tokio::runtime::Handle::current(),
        limiter: crate::limits::ConnectionLimiter::new(
            node.config().client.connection_limit,
            node.config().client.connection_rate_limit,
        ),
        uni_websocket: uni_websocket::Settings::from_config(node.config(), pacer),
        endpoints: Endpoints::from_config(node.config()),
        emulation: node.emulation().clone(),
        admission: std::sync::Mutex::new(()),
    }
}

/// A request body the streaming endpoints can read: hyper's, or the one the lean HTTP/1.1
/// path of [`http1_stream`] read itself.
trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Unpin
    + Send
    + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Unpin
        + Send
        + 'static
{
}

/// The first bytes an HTTP/2 client sends (RFC 9113 §3.4): how a plain-text connection says it
/// speaks HTTP/2 with prior knowledge (h2c).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain-text connection opens with the HTTP/2 preface, looked at without reading
/// it (so that an HTTP/1.1 connection's socket stays a plain `TcpStream`, which the WebSocket
/// layer takes over after an upgrade). `None` when the client sent nothing that tells within
/// the header read deadline (10 s, as hyper's for HTTP/1.1 headers): the connection is dropped.
async fn speaks_h2c(stream: &TcpStream) -> Option<bool> {
    let look = async {
        let mut buf = [0u8; 24];
        loop {
            let n = stream.peek(&mut buf).await.unwrap_or(0);
            if n == 0 || !H2_PREFACE.starts_with(&buf[..n]) {
                return false;
            }
            if n == buf.len() {
                return true;
            }
            // A preface cut in two by the network: look again shortly.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), look)
        .await
        .ok()
}

/// Serves HTTP on an accepted connection, after the TLS handshake when TLS is on: HTTP/2 when
/// the client asks for it (ALPN `h2` over TLS, the preface in plain text), else HTTP/1.1.
async fn serve_http(node: Arc<Node>, ws: Arc<WsSettings>, stream: TcpStream, peer: SocketAddr) {
    match &ws.tls {
        None => match speaks_h2c(&stream).await {
            Some(false) => match http1_stream::opens_stream(&stream, &ws.endpoints).await {
                // A stream outside hyper, whose buffers would stay with it: its request is
                // read here, then its client's task writes it and this task ends.
                Some(opening) => http1_stream::serve(node, ws, stream, peer, opening).await,
                None => serve_http_on(node, ws, TokioIo::new(stream), peer, false).await,
            },
            Some(h2) => serve_http_on(node, ws, TokioIo::new(stream), peer, h2).await,
            None => tracing::debug!(%peer, "closed: no request within 10 s"),
        },
        Some(tls) => match tls.accept(stream).await {
            Ok(stream) => {
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                serve_http_on(node, ws, TokioIo::new(stream), peer, h2).await;
            }
            // A plain-HTTP client, a scanner or a client that does not trust the certificate:
            // nothing the server can act on.
            Err(e) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        },
    }
}

/// Serves HTTP/1.1 (with upgrades) or HTTP/2 (`h2`) on a connection, plain or TLS.
async fn serve_http_on<I>(node: Arc<Node>, ws: Arc<WsSettings>, io: I, peer: SocketAddr, h2: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let write_timeout = ws.connection.write_timeout;
    let watched = Watched::default();
    let service = {
        let watched = watched.clone();
        service_fn(move |req| route(node.clone(), ws.clone(), req, peer, watched.clone()))
    };
    // Boxed: one of two connection types, once per HTTP connection.
    let mut conn: std::pin::Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>> = if h2 {
        // No upgrades on HTTP/2 (a WebSocket handshake there is refused as any malformed
        // one): its clients are the streaming transports, the API and the pages.
        Box::pin(
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(io, service),
        )
    } else {
        Box::pin(
            hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service)
                .with_upgrades(),
        )
    };
    // The write deadline of a streaming response: hyper has none, and a peer that stops
    // reading would otherwise hold its connection (and what is buffered for it) forever.
    let mut last_progress = None;
    loop {
        let stream = watched.lock().unwrap_or_else(|e| e.into_inner()).clone();
        tokio::select! {
            served = &mut conn => {
                if let Err(e) = served {
                    tracing::debug!(%peer, "http connection: {e}");
                }
                return;
            }
            // Ticks whether or not a stream is open yet: a request may open one at any time.
            // Only HTTP connections still served by hyper tick (an upgraded WebSocket has
            // left this loop), each once per write timeout.
            () = tokio::time::sleep(write_timeout) => {
                let Some(stream) = stream else { continue };
                let progress = stream.progress();
                if progress.is_some() && progress == last_progress {
                    tracing::debug!(%peer, "HTTP stream cut: its peer read nothing for {write_timeout:?}");
                    stream.cut();
                    return;
                }
                last_progress = progress;
            }
        }
    }
}

/// The stream an HTTP connection carries, once a request opened one: watched for its write
/// deadline by the task serving the connection.
type Watched = Arc<std::sync::Mutex<Option<Arc<http_stream::Stream>>>>;

async fn route(
    node: Arc<Node>,
    ws: Arc<WsSettings>,
    req: Request<Body>,
    peer: SocketAddr,
    watched: Watched,
) -> Result<Routed, Infallible> {
    let path = req.uri().path();
    let config = &node.config();
    let api_prefix = config.http_api.handler_prefix.as_str();
    // Handlers that read a body get it with the read deadline.
    let body_timeout = config.http_server.body_read_timeout;
    let response = if let Some(endpoint) = ws.endpoints.find(path) {
        match endpoint {
            Endpoint::WebSocket => upgrade(node, ws, req, peer, Flavor::Bidirectional),
            Endpoint::UniWebSocket => upgrade_unidirectional(node, ws, req, peer),
            Endpoint::HttpStream | Endpoint::Sse | Endpoint::UniHttpStream | Endpoint::UniSse => {
                let framing = stream_framing(endpoint, &req).unwrap_or(Framing::Lines);
                return Ok(open_http_stream(node, ws, req, peer, &watched, framing).await);
            }
            Endpoint::Emulation => emulate(node, ws, req).await,
        }
    } else if !config.http_api.disabled
        && (path == api_prefix || path.starts_with(&format!("{api_prefix}/")))
    {
        let req = req.map(|body| TimedBody::new(body, body_timeout));
        crate::api::handle_request(&node, req).await
    } else if crate::web::handles(config, path) {
        let req = req.map(|body| TimedBody::new(body, body_timeout));
        crate::web::handle(&node, req, peer).await
    } else if config.health.enabled
        && path == endpoint_path(&config.health.handler_prefix)
        && req.method() == Method::GET
    {
        health(&node)
    } else if config.prometheus.enabled
        && path == endpoint_path(&config.prometheus.handler_prefix)
        && req.method() == Method::GET
    {
        let mut response = Response::new(Full::new(Bytes::from(node.metrics().render(node.hub()))));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        response
    } else {
        json_error(StatusCode::NOT_FOUND, "no such endpoint")
    };
    Ok(response.map(Either::Left))
}

/// `/health`: 200 `{}` while the engine can deliver; 503 with `{"error": …}` naming what is
/// down otherwise (a Redis engine whose PUB/SUB link is lost, a presence manager whose Redis
/// fails), so that a load balancer sends new clients elsewhere. Connected clients are kept
/// either way.
fn health(node: &Node) -> HttpResponse {
    match node
        .broker()
        .health()
        .and_then(|()| node.presence().health())
    {
        Ok(()) => json(StatusCode::OK, "{}".into()),
        Err(problem) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": problem }).to_string(),
        ),
    }
}

/// Admits a new connection under `client.connection_limit` and
/// `client.connection_rate_limit`, as Centrifugo's ConnLimit middleware does before anything
/// else; the response to send if not. The caller holds `ws.admission` from before this check
/// until the `LiveConnection` that counts the connection, awaiting nothing in between, so
/// concurrent requests on the HTTP threads cannot overshoot the limit.
fn admit(node: &Node, ws: &WsSettings, peer: SocketAddr, what: &str) -> Option<HttpResponse> {
    let open = node.live_connections();
    let refusal = ws.limiter.admit(open).err()?;
    node.metrics().connection_refused(refusal);
    if ws.limiter.should_log() {
        tracing::warn!(%peer, open, "{what} refused: {}", refusal.message());
    }
    Some(json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        refusal.message(),
    ))
}

/// The CORS headers of a response to a browser page from an allowed origin (the streaming
/// endpoints are fetched cross-origin, unlike a WebSocket, which CORS does not cover).
fn allow_origin<Q, B>(req: &Request<Q>, response: &mut Response<B>) {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return;
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
}

/// The answer to a CORS preflight (`OPTIONS`) of a streaming endpoint, whose origin was
/// allowed: the methods and the headers the page asked for.
fn preflight<B>(req: &Request<B>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    allow_origin(req, &mut response);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("300"),
    );
    response
}

/// Reads a request's whole body, at most `limit` bytes (`option` names the limit, for the
/// advice) and within the body read deadline; the error response otherwise.
async fn read_body<B: RequestBody>(
    node: &Node,
    req: Request<B>,
    limit: usize,
    option: &str,
) -> Result<Bytes, HttpResponse> {
    let timeout = node.config().http_server.body_read_timeout;
    let body = TimedBody::new(req.into_body(), timeout);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is over {option} ({limit} bytes)"),
        )),
        Err(e) if crate::http_guard::timed_out(e.as_ref()).is_some() => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            &format!("request timeout: {e}; send the whole body at once"),
        )),
        Err(e) => Err(json_error(
            StatusCode::BAD_REQUEST,
            &format!("could not read the body: {e}"),
        )),
    }
}

/// The checks every streaming request passes first: the method, the origin (answering a
/// CORS preflight); the response to send instead, if any.
fn streaming_request_refused<B>(
    node: &Node,
    req: &Request<B>,
    peer: SocketAddr,
    get_too: bool,
) -> Option<HttpResponse> {
    if !origin_allowed(node, req) {
        tracing::info!(%peer, path = req.uri().path(), "refused: origin not in client.allowed_origins");
        return Some(json_error(
            StatusCode::FORBIDDEN,
            "origin not allowed: add it to client.allowed_origins",
        ));
    }
    if req.method() == Method::OPTIONS {
        return Some(preflight(req));
    }
    if req.method() != Method::POST && !(get_too && req.method() == Method::GET) {
        return Some(json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST (or GET for SSE), as the SDKs' streaming transports do",
        ));
    }
    None
}

/// Opens an HTTP-streaming (`/connection/http_stream`) or SSE (`/connection/sse`) connection,
/// or a unidirectional one of either: the request's body (or for an SSE GET its `cf_connect`
/// query parameter) is the connect command (the connect request, unidirectional), the
/// response streams the connection's output (see
/// [`crate::transport::http_stream`]).
async fn open_http_stream<B: RequestBody>(
    node: Arc<Node>,
    ws: Arc<WsSettings>,
    req: Request<B>,
    peer: SocketAddr,
    watched: &Watched,
    framing: Framing,
) -> Routed {
    let sse = framing.sse();
    if let Some(refused) = streaming_request_refused(&node, &req, peer, sse) {
        return refused.map(Either::Left);
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let kept = kept_headers(&node, req.headers());
    let config = node.config();
    let (option, limit) = http_stream::body_limit(config, framing);
    let connect = if req.method() == Method::GET {
        match cf_connect(req.uri().query(), limit, option) {
            Ok(connect) => connect,
            Err((status, message)) => return json_error(status, &message).map(Either::Left),
        }
    } else {
        match read_body(&node, req, limit, option).await {
            Ok(connect) => connect,
            Err(refused) => return refused.map(Either::Left),
        }
    };
    // A unidirectional client says nothing after its connect request: one that does not parse
    // is answered here, where an HTTP status still reaches it.
    if framing.unidirectional()
        && serde_json::from_slice::<crate::protocol::ConnectRequest>(&connect).is_err()
    {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the connect request is not a JSON connect request object (e.g. {\"token\":\"…\"})",
        )
        .map(Either::Left);
    }
    // After the body is read: nothing is awaited from here to the `LiveConnection`.
    let admitting = crate::sync::lock(&ws.admission);
    if let Some(refused) = admit(&node, &ws, peer, "HTTP stream") {
        return refused.map(Either::Left);
    }
    let live = LiveConnection::new(node.clone());
    drop(admitting);
    let outbox = Arc::new(Outbox::sharing(ws.outbox.clone()));
    if !kept.is_empty() {
        node.policy().keep_headers(&outbox, kept);
    }
    let (transport, body, stream) =
        http_stream::open_watched(framing, connect, outbox, ws.emulation.clone());
    let transforms = match framing {
        Framing::UniLines => Some(&config.uni_http_stream.connect_code_to_http_response),
        Framing::UniSse => Some(&config.uni_sse.connect_code_to_http_response),
        Framing::Lines | Framing::Binary | Framing::Sse => None,
    }
    .filter(|transforms| transforms.enabled);
    let outcome = transforms.map(|_| transport.await_connect());
    ws.workers.spawn(crate::client::serve(live, transport));
    if let (Some(transforms), Some(outcome)) = (transforms, outcome) {
        // The status waits for the connect: a refusal becomes an HTTP response. Bounded by
        // the time a client has to connect at all.
        let refused = match tokio::time::timeout(config.client.stale_close_delay, outcome).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err((code, message)))) => Some(transforms.response_for(code, &message)),
            // The connection ended, or its connect took too long: nothing to say but 500.
            Ok(Err(_)) | Err(_) => Some(transforms.response_for(0, "")),
        };
        if let Some((status, text)) = refused {
            // Dropping the body ends the connection, whose client sees its stream gone.
            drop(body);
            let mut response = Response::new(Full::new(Bytes::from(text)));
            *response.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            if let Some(origin) = origin {
                response
                    .headers_mut()
                    .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
            return response.map(Either::Left);
        }
    }
    *watched.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream);
    let mut response = http_stream::response(framing, Either::Right(body));
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// The connect command of an SSE GET: its `cf_connect` query parameter (EventSource can send
/// no body), at most `limit` bytes; else the status and message to answer with.
fn cf_connect(
    query: Option<&str>,
    limit: usize,
    option: &str,
) -> Result<Bytes, (StatusCode, String)> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "cf_connect")
        .map(|(_, value)| value)
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                "no connect command: send it in the cf_connect query parameter, or POST it".into(),
            )
        })?;
    let decoded = crate::api::auth::percent_decode(value).ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            "cf_connect is not a percent-encoded UTF-8 string".into(),
        )
    })?;
    if decoded.len() > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the connect command is over {option} ({limit} bytes)"),
        ));
    }
    Ok(Bytes::from(decoded.into_owned()))
}

/// The framing of the stream a request to `endpoint` opens, if it opens one.
fn stream_framing<B>(endpoint: Endpoint, req: &Request<B>) -> Option<Framing> {
    Some(match endpoint {
        // The SDKs' Protobuf builds POST their connect command as binary.
        Endpoint::HttpStream if is_binary(req) => Framing::Binary,
        Endpoint::HttpStream => Framing::Lines,
        Endpoint::Sse => Framing::Sse,
        Endpoint::UniHttpStream => Framing::UniLines,
        Endpoint::UniSse => Framing::UniSse,
        Endpoint::WebSocket | Endpoint::UniWebSocket | Endpoint::Emulation => return None,
    })
}

/// Whether a request's body is Protobuf (`Content-Type: application/octet-stream`), as the
/// SDKs' Protobuf builds send their streaming requests.
fn is_binary<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// The emulation endpoint: hands a streaming connection the commands its client POSTed (see
/// [`crate::transport::emulation`]); 204 once they are queued for it.
async fn emulate(node: Arc<Node>, ws: Arc<WsSettings>, req: Request<Body>) -> HttpResponse {
    if let Some(refused) =
        streaming_request_refused(&node, &req, SocketAddr::from(([0, 0, 0, 0], 0)), false)
    {
        return refused;
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    allow_origin(&req, &mut response);
    let binary = is_binary(&req);
    let limit = node.config().emulation.max_request_body_size;
    let body = match read_body(&node, req, limit, "emulation.max_request_body_size").await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let delivered = match Emulation::parse(&body, binary) {
        Err(refused) => Err(refused),
        // The session is this node's, or the client does not say whose.
        Ok(request) if request.node.is_empty() || request.node == node.id() => {
            ws.emulation.deliver_to(&request.session, request.data)
        }
        Ok(request) => crate::transport::emulation::forward(&node, request).await,
    };
    let status = match delivered {
        Ok(()) => {
            *response.status_mut() = StatusCode::NO_CONTENT;
            return response;
        }
        Err(e @ crate::transport::emulation::Refused::BadRequest) => (StatusCode::BAD_REQUEST, e),
        Err(e @ crate::transport::emulation::Refused::NoSession) => (StatusCode::NOT_FOUND, e),
        Err(e @ crate::transport::emulation::Refused::Busy) => (StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e @ crate::transport::emulation::Refused::Unreachable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, e)
        }
    };
    let mut refused = json_error(status.0, &status.1.to_string());
    for (name, value) in response.headers() {
        refused.headers_mut().insert(name, value.clone());
    }
    refused
}

/// The path an endpoint's `handler_prefix` serves it on: the prefix without trailing `/`
/// (`/` itself for an empty result), as Centrifugo registers its handlers.
pub(crate) fn endpoint_path(prefix: &str) -> &str {
    match prefix.trim_end_matches('/') {
        "" => "/",
        path => path,
    }
}

/// The path of the WebSocket endpoint: `websocket.handler_prefix` (default
/// [`WEBSOCKET_PATH`]).
pub fn websocket_path(config: &crate::config::Config) -> &str {
    endpoint_path(&config.websocket.handler_prefix)
}

/// A JSON response.
pub fn json(status: StatusCode, body: String) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON error response `{"error":{"code":<status>,"message":...}}`.
pub fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    let body = serde_json::json!({"error": {"code": status.as_u16(), "message": message}});
    json(status, body.to_string())
}

/// Whether a browser page from `origin` may connect (`client.allowed_origins`; when empty, only
/// pages served by the same host, as in Centrifugo).
fn origin_allowed<B>(node: &Node, req: &Request<B>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true; // not a browser
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let client = &node.config().client;
    if !client.allowed_origins.is_empty() {
        return client.origin_allowed(origin);
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin_host.eq_ignore_ascii_case(host)
}

/// The encoding a WebSocket connection speaks, as Centrifugo chooses it: Protobuf when the
/// handshake agreed on the `centrifuge-protobuf` subprotocol (the SDKs' Protobuf builds offer
/// only that one; offered alongside `centrifuge-json`, JSON wins, the server's preference), or
/// when the URL asks for it with `format=protobuf` or `cf_protocol=protobuf` (clients that
/// cannot set a subprotocol); JSON otherwise.
fn ws_encoding<B>(req: &Request<B>, negotiated: &ws::Negotiated) -> Encoding {
    let by_subprotocol = negotiated.protocol.as_deref() == Some(PROTOBUF_SUBPROTOCOL);
    let by_query = req.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|p| p == "format=protobuf" || p == "cf_protocol=protobuf")
    });
    if by_subprotocol || by_query {
        Encoding::Protobuf
    } else {
        Encoding::Json
    }
}

/// The headers of the request that opens a connection that the node's policy keeps for later
/// (a proxy's `http_headers`): none unless a proxy forwards some.
fn kept_headers(node: &Node, headers: &http::HeaderMap) -> Vec<(http::HeaderName, HeaderValue)> {
    node.policy()
        .wanted_headers()
        .iter()
        .filter_map(|name| headers.get(name).map(|v| (name.clone(), v.clone())))
        .collect()
}

/// The WebSocket subprotocol of the Protobuf format.
const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";

/// Which WebSocket a handshake opens.
enum Flavor {
    /// The client protocol's (`/connection/websocket`).
    Bidirectional,
    /// The unidirectional one (`/connection/uni_websocket`), with the connect request its URL
    /// carried, if any.
    Unidirectional(Option<Box<crate::protocol::ConnectRequest>>),
}

/// The unidirectional WebSocket's handshake: its `cf_connect` query parameter, when there is
/// one, must be a connect request (400 otherwise, while an HTTP status still reaches the
/// client); then as any WebSocket.
fn upgrade_unidirectional(
    node: Arc<Node>,
    ws: Arc<WsSettings>,
    req: Request<Body>,
    peer: SocketAddr,
) -> HttpResponse {
    let query = req.uri().query();
    let in_url = query.is_some_and(|q| q.split('&').any(|p| p.starts_with("cf_connect=")));
    let connect = if in_url {
        let limit = node.config().uni_websocket.message_size_limit;
        let bytes = match cf_connect(query, limit, "uni_websocket.message_size_limit") {
            Ok(bytes) => bytes,
            Err((status, message)) => return json_error(status, &message),
        };
        match uni_websocket::parse_connect(&bytes) {
            Some(request) => Some(Box::new(request)),
            None => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "cf_connect is not a JSON connect request object (e.g. {\"token\":\"…\"})",
                );
            }
        }
    } else {
        None
    };
    upgrade(node, ws, req, peer, Flavor::Unidirectional(connect))
}

fn upgrade(
    node: Arc<Node>,
    ws: Arc<WsSettings>,
    mut req: Request<Body>,
    peer: SocketAddr,
    flavor: Flavor,
) -> HttpResponse {
    // Before anything else, as Centrifugo's ConnLimit middleware. Admission is serialized
    // (HTTP has several threads) and nothing is awaited between this check and the
    // `LiveConnection` below, so concurrent handshakes cannot overshoot the limit.
    let admitting = crate::sync::lock(&ws.admission);
    let open = node.live_connections();
    if let Err(refusal) = ws.limiter.admit(open) {
        node.metrics().connection_refused(refusal);
        if ws.limiter.should_log() {
            tracing::warn!(%peer, open, "WebSocket refused: {}", refusal.message());
        }
        return json_error(StatusCode::SERVICE_UNAVAILABLE, refusal.message());
    }
    if ws::handshake::is_upgrade_request(&req) && !origin_allowed(&node, &req) {
        tracing::info!(%peer, "WebSocket refused: origin not in client.allowed_origins");
        return json_error(
            StatusCode::FORBIDDEN,
            "origin not allowed: add it to client.allowed_origins",
        );
    }
    let handshake = match flavor {
        Flavor::Bidirectional => &ws.handshake,
        Flavor::Unidirectional(_) => &ws.uni_websocket.handshake,
    };
    let (response, negotiated) = match ws::handshake::accept(&req, handshake) {
        Ok(accepted) => accepted,
        Err(e) => return e.to_response().map(|body| Full::new(Bytes::from(body))),
    };
    let encoding = ws_encoding(&req, &negotiated);
    let kept = kept_headers(&node, req.headers());
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Counted from the handshake on, so that shutdown waits for this connection too.
    let live = LiveConnection::new(node.clone());
    drop(admitting);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(%peer, "upgrade failed: {e}"),
        };
        let outbox = Arc::new(Outbox::sharing(ws.outbox.clone()));
        if !kept.is_empty() {
            node.policy().keep_headers(&outbox, kept);
        }
        let connection = match flavor {
            Flavor::Bidirectional => &ws.connection,
            Flavor::Unidirectional(_) => &ws.uni_websocket.connection,
        };
        match WebSocket::from_upgraded_on(
            &ws.workers,
            upgraded,
            &negotiated,
            connection.clone(),
            outbox,
        ) {
            // The connection gets a task of its own whose future is the `serve` future
            // itself, stored in the task's allocation: no second allocation for it, and
            // none of this task's locals kept alongside.
            Ok(socket) => match (flavor, encoding) {
                (Flavor::Unidirectional(connect), _) => {
                    let transport = UniWebSocketTransport::new(socket, connect, &ws.uni_websocket);
                    ws.workers.spawn(crate::client::serve(live, transport));
                }
                (Flavor::Bidirectional, Encoding::Protobuf) => {
                    let transport = WebSocketTransport::<Protobuf>::new(socket);
                    ws.workers.spawn(crate::client::serve(live, transport));
                }
                (Flavor::Bidirectional, _) => {
                    let transport = WebSocketTransport::<Json>::new(socket);
                    ws.workers.spawn(crate::client::serve(live, transport));
                }
            },
            Err(e) => tracing::warn!(%peer, "WebSocket setup failed: {e}"),
        }
    });
    response.map(|()| Full::new(Bytes::new()))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The accept queue's length limit of a listening socket: Linux reports it in `tcp_info`'s
    /// `tcpi_sacked` for a socket in the LISTEN state.
    fn accept_queue_limit(listener: &TcpListener) -> u32 {
        use std::os::fd::AsRawFd as _;
        // SAFETY: `tcp_info` is plain old data, so all zeroes is a valid value.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: a valid socket descriptor, and a buffer of `len` writable bytes for the
        // option, which the kernel fills up to `len`.
        let rc = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(
            rc,
            0,
            "getsockopt(TCP_INFO): {}",
            std::io::Error::last_os_error()
        );
        info.tcpi_sacked
    }

    /// `websocket.write_budget` and `write_max_hold` are what the connections' pacer paces by:
    /// the same busy connections are held longer under a smaller budget, never longer than the
    /// configured hold.
    #[tokio::test]
    async fn the_pacer_follows_the_write_budget_and_max_hold() {
        let hold_with = |budget: u64, max_hold_ms: u64| {
            let mut config = crate::config::Config {
                workers: 1,
                ..Default::default()
            };
            config.websocket.write_budget = budget;
            config.websocket.write_max_hold = Duration::from_millis(max_hold_ms);
            let node = Node::new(config).expect("test node");
            let pacer = ws_pacer(&node).expect("pacing is on with write_coalesce");
            // 1,000 connections write in one counting period; the next period's first
            // write computes the hold.
            let t0 = tokio::time::Instant::now() + Duration::from_millis(1);
            for _ in 0..1_000 {
                pacer.wrote(None, t0);
            }
            pacer.wrote(None, t0 + Duration::from_millis(300));
            pacer.hold(Duration::from_millis(5))
        };
        // The default budget: 1,000 writers / 50,000 per s = 20 ms.
        assert_eq!(hold_with(50_000, 100), Duration::from_millis(20));
        // A tenth of it: 200 ms, held to the configured most.
        assert_eq!(hold_with(5_000, 150), Duration::from_millis(150));
        assert_eq!(hold_with(10_000, 200), Duration::from_millis(100));
    }

    /// Protobuf by the agreed subprotocol or by either query parameter Centrifugo accepts;
    /// JSON otherwise.
    #[test]
    fn the_encoding_follows_the_subprotocol_or_the_query() {
        let request = |uri: &str| Request::get(uri).body(()).expect("a request");
        let agreed = |protocol: &str| ws::Negotiated {
            protocol: Some(protocol.to_owned()),
            ..ws::Negotiated::default()
        };
        let none = ws::Negotiated::default();
        let path = "/connection/websocket";
        assert_eq!(ws_encoding(&request(path), &none), Encoding::Json);
        assert_eq!(
            ws_encoding(&request(path), &agreed("centrifuge-json")),
            Encoding::Json
        );
        assert_eq!(
            ws_encoding(&request(path), &agreed("centrifuge-protobuf")),
            Encoding::Protobuf
        );
        for query in ["format=protobuf", "a=1&cf_protocol=protobuf"] {
            let uri = format!("{path}?{query}");
            assert_eq!(ws_encoding(&request(&uri), &none), Encoding::Protobuf);
        }
        let uri = format!("{path}?format=json");
        assert_eq!(ws_encoding(&request(&uri), &none), Encoding::Json);
    }

    #[tokio::test]
    async fn the_listener_takes_as_long_an_accept_queue_as_the_kernel_allows() {
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .expect("/proc/sys/net/core/somaxconn")
            .trim()
            .parse()
            .expect("a number");
        let listener = listen(("127.0.0.1", 0)).await.expect("bind a free port");
        assert_eq!(accept_queue_limit(&listener), somaxconn.min(LISTEN_BACKLOG));
    }
}
