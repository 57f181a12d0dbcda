//! The streaming transports (HTTP-streaming, SSE and their unidirectional kinds) over a plain
//! HTTP/1.1 connection, served without hyper.
//!
//! Why: hyper's HTTP/1.1 connection keeps an 8 KiB write buffer (made with the connection) and
//! an 8 KiB read buffer (filled once to see the peer close) for as long as the connection
//! lives, and a stream lives as long as its client: 16 KiB per idle stream, where a whole
//! WebSocket connection costs under 1 KiB (it leaves hyper at its upgrade). hyper has no
//! option to shrink either, so a connection whose first request opens a stream is served here
//! from the start: its request is parsed from a short-lived buffer, the response head written
//! once, and then the socket goes to the client's own task, which writes each batch of the
//! stream's output as one chunk (`Transfer-Encoding: chunked`) from a buffer freed after the
//! write ([`ChunkedWriter`]), and this task ends. Idle, the connection holds no buffer at all,
//! and is one task (its client's), as a WebSocket connection is.
//!
//! Only the plain case comes here, decided by looking at the request without reading it
//! ([`opens_stream`]): an HTTP/1.1 GET or POST of a streaming endpoint whose whole head has
//! arrived, with a `Content-Length` body (or none) and no `Expect`. Anything else (a request
//! split over several packets, a chunked request body, HTTP/1.0, TLS, HTTP/2) is served by
//! hyper as before, with the same handler ([`super::open_http_stream`]). The connection
//! carries that one stream and closes after it, as the SDKs open a new connection per stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{HttpResponse, Node, Watched, WsSettings, json_error, stream_framing};
use crate::transport::chunked::ChunkedWriter;
use crate::transport::http_stream::{self, Framing};
use crate::transport::{Endpoint, Endpoints};

/// The largest request head looked at; a longer one is left to hyper.
const MAX_HEAD: usize = 8 * 1024;

/// The most headers a request served here may have (more: hyper serves it).
const MAX_HEADERS: usize = 64;

/// A request that opens a stream, as [`opens_stream`] parsed it: its head (without a body),
/// how many bytes of the connection the head takes, its `Content-Length` and its framing.
pub(super) struct Opening {
    head: Request<()>,
    head_len: usize,
    body_len: usize,
    framing: Framing,
}

/// Whether the first request of a plain-text connection opens a stream and can be served here:
/// the request, looked at without reading it, is a whole HTTP/1.1 GET or POST head for a
/// streaming endpoint, with no `Expect` and no `Transfer-Encoding`.
pub(super) async fn opens_stream(stream: &TcpStream, endpoints: &Endpoints) -> Option<Opening> {
    // On the heap, and only while looking: a buffer in this future would be in every
    // connection's task, WebSockets' included.
    let mut buf = vec![0u8; MAX_HEAD];
    let n = stream.peek(&mut buf).await.ok()?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = parsed.parse(&buf[..n]).ok()? else {
        return None;
    };
    if parsed.version != Some(1) {
        return None;
    }
    let method = match parsed.method? {
        "GET" => Method::GET,
        "POST" => Method::POST,
        _ => return None,
    };
    let target = parsed.path?;
    let path = target.split('?').next().unwrap_or(target);
    let endpoint = endpoints.find(path)?;
    if !matches!(
        endpoint,
        Endpoint::HttpStream | Endpoint::Sse | Endpoint::UniHttpStream | Endpoint::UniSse
    ) {
        return None;
    }
    let mut head = Request::builder()
        .method(method)
        .uri(target)
        .version(Version::HTTP_11);
    let mut body_len = 0;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == http::header::EXPECT || name == http::header::TRANSFER_ENCODING {
            return None;
        }
        if name == http::header::CONTENT_LENGTH {
            body_len = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
        }
        head = head.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let head = head.body(()).ok()?;
    let framing = stream_framing(endpoint, &head)?;
    Some(Opening {
        head,
        head_len,
        body_len,
        framing,
    })
}

/// Serves the connection whose first request opens a stream (see the module documentation).
pub(super) async fn serve(
    node: Arc<Node>,
    ws: Arc<WsSettings>,
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    opening: Opening,
) {
    let write_timeout = ws.connection.write_timeout;
    let framing = opening.framing;
    let req = match read_request(&node, &mut stream, opening).await {
        Ok(req) => req,
        Err(Some(refused)) => {
            write_full(&mut stream, refused, write_timeout).await;
            return;
        }
        Err(None) => return,
    };
    let watched = Watched::default();
    let workers = ws.workers.clone();
    let routed = super::open_http_stream(node, ws, req, peer, &watched, framing).await;
    let (parts, body) = routed.into_parts();
    match body {
        Either::Left(full) => {
            write_full(
                &mut stream,
                Response::from_parts(parts, full),
                write_timeout,
            )
            .await;
        }
        Either::Right(body) => {
            let watched = watched.lock().unwrap_or_else(|e| e.into_inner()).take();
            let head = head(&parts, None);
            // Not kept for the stream's life: the head is all that is needed of it.
            drop(parts);
            let writer = match ChunkedWriter::new(stream, &workers, head, body, write_timeout) {
                Ok(writer) => Box::new(writer),
                // The socket failed already; dropping the body ends the stream.
                Err(e) => return tracing::debug!(%peer, "stream closed before its head: {e}"),
            };
            // From here the client's task writes the stream, and this task ends: an idle
            // stream is one task, as a WebSocket is.
            let mut writer = match watched {
                Some(stream) => match stream.hand_over(writer) {
                    Ok(()) => return,
                    Err(writer) => writer,
                },
                None => writer,
            };
            // The client's task ended already (it could not connect): what it queued, such as
            // its disconnect push, is written from here.
            let _ = std::future::poll_fn(|cx| writer.poll_write(cx)).await;
        }
    }
}

/// Reads the request head `opening` looked at and its body (`Content-Length` bytes, at most
/// one more than the endpoint accepts, within `http_server.body_read_timeout`); the response to
/// send instead, or `None` when the peer went away.
async fn read_request(
    node: &Node,
    stream: &mut TcpStream,
    opening: Opening,
) -> Result<Request<Full<Bytes>>, Option<HttpResponse>> {
    let (_, limit) = http_stream::body_limit(node.config(), opening.framing);
    let wanted = opening.head_len + opening.body_len.min(limit.saturating_add(1));
    let mut buf = vec![0u8; wanted];
    let timeout = node.config().http_server.body_read_timeout;
    match tokio::time::timeout(timeout, stream.read_exact(&mut buf)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return Err(None),
        Err(_) => {
            return Err(Some(json_error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "request timeout: the body did not arrive within {timeout:?}; send the \
                     whole body at once"
                ),
            )));
        }
    }
    let body = Bytes::from(buf).slice(opening.head_len..);
    let (parts, ()) = opening.head.into_parts();
    Ok(Request::from_parts(parts, Full::new(body)))
}

/// A response head, with `Content-Length` for a complete body of `len` bytes (the connection
/// then closes) or `Transfer-Encoding: chunked` for a stream.
fn head(parts: &http::response::Parts, len: Option<usize>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let status = parts.status;
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match len {
        Some(len) => out.extend_from_slice(
            format!("content-length: {len}\r\nconnection: close\r\n").as_bytes(),
        ),
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes a complete response and closes the connection.
async fn write_full(stream: &mut TcpStream, response: HttpResponse, write_timeout: Duration) {
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut out = head(&parts, Some(body.len()));
    out.extend_from_slice(&body);
    let _ = tokio::time::timeout(write_timeout, async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
