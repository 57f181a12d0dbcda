//! The publisher side of `fanout`: publications at a fixed rate through the server HTTP API
//! (`POST /api/publish`, keep-alive HTTP/1.1 over a plain socket, one request in flight per
//! connection) or through a client connection's `publish` command.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::proto;
use crate::stats;
use crate::sys::now_ns;
use crate::worker::{Auth, wait_reply};
use crate::ws::{Target, WsClient, with_timeout};

/// Deadline of one publish request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP API endpoint.
#[derive(Debug, Clone)]
pub struct Api {
    addr: SocketAddr,
    host: String,
    /// Path of the publish method, e.g. `/api/publish`.
    path: String,
    key: String,
}

impl Api {
    /// Parses `http://host:port/prefix` (the API prefix; `/publish` is appended).
    pub fn parse(url: &str, key: &str) -> Result<Api, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// API URLs are supported"))?;
        let (hostport, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let addr = crate::ws::resolve(hostport, 80)?;
        Ok(Api {
            addr,
            host: hostport.to_string(),
            path: format!("{prefix}/publish"),
            key: key.to_string(),
        })
    }

    /// The server's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What an API publish answer says: `Ok(Some(offset))` for `{"result":{"offset":N,…}}` (the
/// publication is in a durable history stream), `Ok(None)` for a result without an offset (a
/// channel without history), `Err` for an `{"error":…}` answer. Read without building JSON
/// values, as the bench may read 100,000 answers a second.
pub fn ack_offset(body: &[u8]) -> Result<Option<u64>, String> {
    let trimmed = body.trim_ascii();
    if proto::find_key(body, b"error").is_some()
        || !(trimmed.starts_with(b"{") && trimmed.ends_with(b"}"))
    {
        return Err(format!("api error: {}", clip(body)));
    }
    Ok(proto::number_after_key(body, b"offset"))
}

/// One keep-alive HTTP connection to the API.
pub struct HttpPublisher {
    api: Api,
    /// Fields appended to every request body after `data` (e.g. `,"delta":true`).
    fields: String,
    stream: Option<TcpStream>,
    req: Vec<u8>,
    resp: Vec<u8>,
}

impl HttpPublisher {
    /// A publisher; the connection opens on first use.
    pub fn new(api: Api) -> HttpPublisher {
        HttpPublisher {
            api,
            fields: String::new(),
            stream: None,
            req: Vec::with_capacity(1024),
            resp: vec![0; 16 * 1024],
        }
    }

    /// Appends `fields` (JSON members, each starting with a comma) to every publish body.
    pub fn with_fields(mut self, fields: &str) -> HttpPublisher {
        self.fields = fields.to_string();
        self
    }

    /// Opens the connection now (so that the first publish does not pay for it).
    pub async fn connect(&mut self) -> Result<(), String> {
        with_timeout(REQUEST_TIMEOUT, self.ensure_connected())
            .await
            .map_err(|e| format!("api connect: {e}"))
    }

    async fn ensure_connected(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.api.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        Ok(())
    }

    /// Publishes `data` (JSON) to `channel_json` (a JSON string literal); returns the
    /// publication's offset when the answer has one (see [`ack_offset`]).
    pub async fn publish(
        &mut self,
        channel_json: &str,
        data: &[u8],
    ) -> Result<Option<u64>, String> {
        match with_timeout(REQUEST_TIMEOUT, self.try_publish(channel_json, data)).await {
            Ok(r) => r,
            Err(e) => {
                self.stream = None;
                Err(format!("api: {e}"))
            }
        }
    }

    async fn try_publish(
        &mut self,
        channel_json: &str,
        data: &[u8],
    ) -> io::Result<Result<Option<u64>, String>> {
        use std::io::Write as _;
        self.ensure_connected().await?;
        let body_len =
            r#"{"channel":,"data":}"#.len() + channel_json.len() + data.len() + self.fields.len();
        self.req.clear();
        write!(
            self.req,
            "POST {} HTTP/1.1\r\nHost: {}\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n{{\"channel\":{channel_json},\"data\":",
            self.api.path, self.api.host, self.api.key
        )?;
        self.req.extend_from_slice(data);
        self.req.extend_from_slice(self.fields.as_bytes());
        self.req.push(b'}');
        let stream = self.stream.as_mut().expect("connected above");
        if let Err(e) = stream.write_all(&self.req).await {
            self.stream = None;
            return Err(e);
        }
        match read_response(stream, &mut self.resp).await {
            Ok((status, body, close)) => {
                if close {
                    self.stream = None;
                }
                if status != 200 {
                    return Ok(Err(format!("HTTP {status}: {}", clip(&body))));
                }
                Ok(ack_offset(&body))
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

fn clip(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(200)]);
    s.trim().to_string()
}

/// Reads one HTTP/1.1 response: (status, body, connection closes after it).
pub async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> io::Result<(u16, Vec<u8>, bool)> {
    let mut end = 0;
    loop {
        if end == buf.len() {
            if buf.len() >= 1 << 20 {
                return Err(io::Error::other("response too large"));
            }
            buf.resize(buf.len() * 2, 0);
        }
        // One `recv` per response (a short read clears the socket's readiness).
        let (n, _) = crate::ws::recv_some(stream, &mut buf[end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        end += n;
        match parse_response(&buf[..end])? {
            Parsed::Partial => continue,
            Parsed::Done {
                status,
                body,
                close,
                used,
            } => {
                if used != end {
                    // The server sent more than one response: the connection is out of step.
                    return Ok((status, body, true));
                }
                return Ok((status, body, close));
            }
        }
    }
}

/// Result of [`parse_response`].
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A whole response.
    Done {
        /// Status code.
        status: u16,
        /// Body (de-chunked).
        body: Vec<u8>,
        /// `Connection: close` (or HTTP/1.0).
        close: bool,
        /// Bytes of `buf` it took.
        used: usize,
    },
}

/// Parses a complete HTTP/1.1 response (Content-Length or chunked body) from `buf`.
pub fn parse_response(buf: &[u8]) -> io::Result<Parsed> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let mut close = resp.version == Some(0);
    let mut content_length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .to_ascii_lowercase()
                .windows(7)
                .any(|w| w == b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.to_ascii_lowercase();
            if v.windows(5).any(|w| w == b"close") {
                close = true;
            }
        }
    }
    let rest = &buf[head_len..];
    if chunked {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            match httparse::parse_chunk_size(&rest[at..]) {
                Ok(httparse::Status::Complete((n, size))) => {
                    let size = size as usize;
                    let start = at + n;
                    if rest.len() < start + size + 2 {
                        return Ok(Parsed::Partial);
                    }
                    if size == 0 {
                        // Trailers are not expected; a final CRLF ends the body.
                        return Ok(Parsed::Done {
                            status,
                            body,
                            close,
                            used: head_len + start + 2,
                        });
                    }
                    body.extend_from_slice(&rest[start..start + size]);
                    at = start + size + 2;
                }
                Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
                Err(_) => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk")),
            }
        }
    }
    let len = match content_length {
        Some(n) => n,
        None if status == 204 || status == 304 || (100..200).contains(&status) => 0,
        // Body until close: not expected from a keep-alive API.
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response without length",
            ));
        }
    };
    if rest.len() < len {
        return Ok(Parsed::Partial);
    }
    Ok(Parsed::Done {
        status,
        body: rest[..len].to_vec(),
        close,
        used: head_len + len,
    })
}

/// Publishes through a client connection's `publish` command.
pub struct ClientPublisher {
    ws: WsClient,
    next_id: u32,
    buf: Vec<u8>,
}

impl ClientPublisher {
    /// Connects and authenticates a publishing client (user `<prefix>publisher-<n>`).
    pub async fn connect(url: &str, auth: &Auth, n: usize) -> Result<ClientPublisher, String> {
        let target = Target::parse(url)?;
        let mut ws = with_timeout(
            Duration::from_secs(10),
            WsClient::connect(&target, None, 16 * 1024, n as u64 + 77),
        )
        .await
        .map_err(|e| format!("publisher websocket: {e}"))?;
        let token = match auth {
            Auth::Hmac {
                secret,
                user_prefix,
            } => Some(crate::token::connection_token(
                &format!("{user_prefix}publisher-{n}"),
                crate::token::unix_now() + 24 * 3600,
                secret.as_bytes(),
            )),
            other => other.token_for(n),
        };
        let cmd = match token {
            Some(t) => {
                serde_json::json!({"id": 1, "connect": {"token": t, "name": "herald-bench"}})
            }
            None => serde_json::json!({"id": 1, "connect": {"name": "herald-bench"}}),
        };
        ws.send_text(cmd.to_string().as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(10), wait_reply(&mut ws, 1))
            .await
            .map_err(|_| "publisher connect: timeout".to_string())?
            .map_err(|e| format!("publisher connect: {e}"))?;
        Ok(ClientPublisher {
            ws,
            next_id: 2,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Publishes `data` to `channel_json` and waits for the reply.
    pub async fn publish(&mut self, channel_json: &str, data: &[u8]) -> Result<(), String> {
        use std::io::Write as _;
        let id = self.next_id;
        self.next_id += 1;
        self.buf.clear();
        let _ = write!(
            self.buf,
            r#"{{"id":{id},"publish":{{"channel":{channel_json},"data":"#
        );
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"}}");
        self.ws
            .send_text(&self.buf)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        tokio::time::timeout(REQUEST_TIMEOUT, wait_reply(&mut self.ws, id))
            .await
            .map_err(|_| "publish: timeout".to_string())?
    }
}

/// Either kind of publisher.
pub enum Publisher {
    /// Through the HTTP API.
    Http(Box<HttpPublisher>),
    /// Through a client connection.
    Client(Box<ClientPublisher>),
}

impl Publisher {
    async fn publish(&mut self, channel_json: &str, data: &[u8]) -> Result<(), String> {
        match self {
            Publisher::Http(p) => p.publish(channel_json, data).await.map(|_| ()),
            Publisher::Client(p) => p.publish(channel_json, data).await,
        }
    }
}

/// A send later than this after its due time counts as late (as in the `publish` scenario).
pub const LATE_NS: u64 = crate::publish::LATE_NS;

/// Shared publisher counters.
#[derive(Default)]
pub struct PubCounters {
    /// Publications acknowledged.
    pub ok: AtomicU64,
    /// Publications that failed.
    pub failed: AtomicU64,
    /// Monotonic ns of the first send.
    pub first_ns: AtomicU64,
    /// Monotonic ns of the last acknowledged send.
    pub last_ns: AtomicU64,
    /// Publications sent more than [`LATE_NS`] after their due time: the publisher (or the
    /// server's previous answer) fell behind the asked rate. A fan-out result is only
    /// comparable at the asked rate: a late publication also carries a later `ts`, so its
    /// subscribers' latency hides the wait (coordinated omission).
    pub late: AtomicU64,
    /// The most a publication was sent after its due time, ns.
    pub max_late_ns: AtomicU64,
    /// Failure reasons.
    pub errors: stats::Tally,
}

/// What a publisher run should do.
pub struct Plan {
    /// Channel, as a JSON string literal.
    pub channel_json: String,
    /// Total publications.
    pub total: u64,
    /// Publications per second.
    pub rate: f64,
    /// Size of each publication's data object.
    pub payload_size: usize,
    /// Start time (monotonic ns).
    pub start_ns: u64,
    /// Stop sending at this time even when behind schedule.
    pub hard_stop_ns: u64,
}

/// Runs one publisher: publications `index, index+stride, …` each at its scheduled time
/// (`start + n/rate`); returns the publish round-trip histogram.
pub async fn run_one(
    mut p: Publisher,
    index: u64,
    stride: u64,
    plan: Arc<Plan>,
    counters: Arc<PubCounters>,
) -> Histogram<u64> {
    let mut rtt = stats::new_hist();
    let mut data = Vec::with_capacity(plan.payload_size + 64);
    let mut n = index;
    while n < plan.total {
        let due = plan.start_ns + (n as f64 * 1e9 / plan.rate) as u64;
        let now = now_ns();
        if now >= plan.hard_stop_ns {
            break;
        }
        if due > now {
            tokio::time::sleep(Duration::from_nanos(due - now)).await;
        }
        let ts = now_ns();
        let behind = ts.saturating_sub(due);
        if behind > LATE_NS {
            counters.late.fetch_add(1, Relaxed);
        }
        counters.max_late_ns.fetch_max(behind, Relaxed);
        counters.first_ns.fetch_min(ts, Relaxed);
        proto::bench_data(&mut data, ts, n + 1, plan.payload_size);
        match p.publish(&plan.channel_json, &data).await {
            Ok(()) => {
                let done = now_ns();
                stats::record_ns(&mut rtt, done - ts);
                counters.ok.fetch_add(1, Relaxed);
                counters.last_ns.fetch_max(ts, Relaxed);
            }
            Err(e) => {
                counters.failed.fetch_add(1, Relaxed);
                counters.errors.add(e);
            }
        }
        n += stride;
    }
    rtt
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[test]
    fn parses_api_urls() {
        let a = Api::parse("http://127.0.0.1:8000/api", "k").unwrap();
        assert_eq!(a.path, "/api/publish");
        assert_eq!(a.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(
            Api::parse("http://127.0.0.1:8000/api/", "k").unwrap().path,
            "/api/publish"
        );
        assert_eq!(
            Api::parse("http://127.0.0.1:8000", "k").unwrap().path,
            "/publish"
        );
        assert!(Api::parse("https://x/api", "k").is_err());
    }

    #[test]
    fn reads_publish_answers() {
        assert_eq!(
            ack_offset(br#"{"result":{"offset":42,"epoch":"abc"}}"#),
            Ok(Some(42))
        );
        assert_eq!(
            ack_offset(br#"{ "result" : { "epoch":"x", "offset" : 7 } }"#),
            Ok(Some(7))
        );
        // No history in the channel's namespace: a result without a position.
        assert_eq!(ack_offset(br#"{"result":{}}"#), Ok(None));
        let e = ack_offset(br#"{"error":{"code":102,"message":"unknown channel"}}"#).unwrap_err();
        assert!(e.contains("unknown channel"), "{e}");
        assert_eq!(ack_offset(b"{}"), Ok(None));
        assert!(ack_offset(b"").is_err());
        assert!(ack_offset(b"not json").is_err());
    }

    #[test]
    fn parses_responses() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"result\":{}}";
        assert_eq!(parse_response(&r[..20]).unwrap(), Parsed::Partial);
        // Content-Length says 11: the body is the first 11 bytes.
        match parse_response(r).unwrap() {
            Parsed::Done {
                status,
                body,
                close,
                used,
            } => {
                assert_eq!((status, close), (200, false));
                assert_eq!(body, b"{\"result\":{");
                assert_eq!(used, r.len() - 2);
            }
            p => panic!("{p:?}"),
        }
        let r = b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n";
        match parse_response(r).unwrap() {
            Parsed::Done {
                status,
                body,
                close,
                used,
            } => {
                assert_eq!((status, close, used), (404, true, r.len()));
                assert_eq!(body, b"hello!!!");
            }
            p => panic!("{p:?}"),
        }
        assert_eq!(parse_response(&r[..r.len() - 3]).unwrap(), Parsed::Partial);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    /// A keep-alive exchange with a scripted server: two requests on one connection.
    #[tokio::test]
    async fn publishes_over_keep_alive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            for reply in [
                &b"{\"result\":{\"offset\":5,\"epoch\":\"e\"}}"[..],
                &b"{\"error\":{\"code\":102,\"message\":\"unknown channel\"}}"[..],
            ] {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                loop {
                    n += s.read(&mut buf[n..]).await.unwrap();
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap();
                        if n >= i + 4 + len {
                            seen.push(text);
                            break;
                        }
                    }
                }
                let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", reply.len());
                s.write_all(resp.as_bytes()).await.unwrap();
                s.write_all(reply).await.unwrap();
            }
            seen
        });
        let api = Api::parse(&format!("http://{addr}/api"), "secret").unwrap();
        let mut p = HttpPublisher::new(api);
        let offset = p
            .publish("\"bench\"", br#"{"ts":1,"seq":1,"pad":""}"#)
            .await
            .unwrap();
        assert_eq!(offset, Some(5));
        let err = p.publish("\"nope\"", b"{}").await.unwrap_err();
        assert!(err.contains("unknown channel"), "{err}");
        let seen = server.await.unwrap();
        assert!(seen[0].starts_with("POST /api/publish HTTP/1.1\r\n"));
        assert!(seen[0].contains("X-API-Key: secret\r\n"));
        assert!(seen[0].ends_with(r#"{"channel":"bench","data":{"ts":1,"seq":1,"pad":""}}"#));
        assert!(seen[1].ends_with(r#"{"channel":"nope","data":{}}"#));
    }
}
